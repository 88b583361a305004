"""DynamoDB: never a mixed mosaic, whatever happens to a writer (dropped connections, a lost
commit answer, SIGKILL, concurrent update processes, a lapsed lease)."""

import json
import threading
import time
from collections import Counter

import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import (
    OVERVIEW_SUFFIX,
    DynamoDBBackend,
    Lease,
)
from lambda_handler.backends.dynamodb.batch_io import batch_write, delete_requests
from lambda_handler.errors import (
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.tiling import tile_quadkey
from tests.dynamodb_support import (
    NEW,
    OLD,
    MixChecker,
    assert_layout_readable,
    block,
    document,
    document_file,
    expected_overviews,
    inside_feature,
    overwrite_while_reading,
    proxied_env,
    raw_items,
    read_tiles,
    run_worker,
    staged_items,
    start_worker,
    stored_overviews,
    worker_env,
    write,
    write_when_free,
)
from tests.fault_proxy import DROP, DROP_AFTER


def test_dropped_connections_mid_overwrite_never_mix(
    table, dynamodb_env, fault_proxy, tmp_path, aws_tuning
):
    """The stand-in drops every connection from the middle of an overwrite's staging until
    after its cleanup failed: readers (fresh and cached) only ever see the old version, whole;
    the metadata matches the tiles; the next write waits only for the short lease."""
    aws_tuning(write_lock_seconds=10)
    uri = f"dynamodb:///{table}:dropped"
    write(uri, document(OLD, name="old"))
    broken = threading.Event()
    batches = Counter()

    def policy(index, request):
        if request.operation == "BatchWriteItem":
            batches["n"] += 1
            if batches["n"] > 8:
                broken.set()
        return DROP if broken.is_set() else None

    proxy = fault_proxy(dynamodb_env.endpoint, policy)
    checker, code, stderr = overwrite_while_reading(uri, tmp_path, proxy.endpoint)
    assert code == 3, stderr
    assert "cleaning up the staged items failed" in stderr  # the rollback failed too
    checker.assert_never_mixed()
    assert staged_items(dynamodb_env, table, "dropped")  # the write got halfway
    assert read_tiles(uri) == OLD
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.name == "old"
    assert_layout_readable(dynamodb_env, table, "dropped", OLD)
    waited = write_when_free(uri, document(NEW, name="new"))
    assert waited < 20  # the writer's 5-s lease, not minutes
    assert read_tiles(uri) == NEW
    assert stored_overviews(dynamodb_env, table, "dropped") == expected_overviews(NEW, 8)
    assert not staged_items(dynamodb_env, table, "dropped")


def test_dropped_connections_after_the_commit(
    table, dynamodb_env, fault_proxy, tmp_path, aws_tuning
):
    """Connections drop right after the commit, while items are promoted: readers see the new
    version whole from the commit on; the write reports success (it is committed); the
    unfinished promotion is completed by the next update, without a person."""
    aws_tuning(write_lock_seconds=10)
    uri = f"dynamodb:///{table}:promote"
    write(uri, document(OLD, name="old"))
    committed = threading.Event()

    def policy(index, request):
        if committed.is_set():
            return DROP
        if request.operation == "PutItem" and b'"_generation"' in request.body:
            committed.set()  # forwarded: this is the commit
        return None

    proxy = fault_proxy(dynamodb_env.endpoint, policy)
    checker, code, stderr = overwrite_while_reading(uri, tmp_path, proxy.endpoint)
    assert code == 0, stderr
    checker.assert_never_mixed()
    meta = raw_items(dynamodb_env, table, "promote")["-1"]
    assert meta["_pending"] == {"BOOL": True} and meta["name"] == {"S": "new"}
    assert staged_items(dynamodb_env, table, "promote")
    assert read_tiles(uri) == NEW
    assert_layout_readable(dynamodb_env, table, "promote", OLD, NEW)  # cogeo-mosaic lags
    # the next writer finishes the promotion first
    time.sleep(5.1)  # the writer could not release its 5-s lease
    key = tile_quadkey(10, 10, 8)
    feature = inside_feature(uri, 10, 10, 8, "s3://b/added.tif")
    with MosaicBackend(uri) as backend:
        backend.update([feature])
    expected = {**NEW, key: ["s3://b/added.tif", *NEW[key]]}
    assert read_tiles(uri) == expected
    items = raw_items(dynamodb_env, table, "promote")
    assert "_pending" not in items["-1"]
    assert_layout_readable(dynamodb_env, table, "promote", expected)
    assert not [i for i in items.values() if "next_gen" in i and i["quadkey"]["S"] != key]


def test_commit_answer_lost(table, dynamodb_env, fault_proxy, tmp_path):
    """The commit reaches the server but its answer is lost: the writer reads the metadata
    back, finds its generation and completes the write."""
    uri = f"dynamodb:///{table}:lost"
    write(uri, document(OLD, name="old"))

    def policy(index, request):
        if request.operation == "PutItem" and b'"_generation"' in request.body:
            return DROP_AFTER
        return None

    proxy = fault_proxy(dynamodb_env.endpoint, policy)
    code, _, stderr = run_worker(
        "write",
        uri,
        document_file(tmp_path, NEW, "new"),
        "--overwrite",
        env=worker_env(proxy.endpoint, max_attempts=1),
    )
    assert code == 0, stderr
    assert proxy.injected >= 1
    assert read_tiles(uri) == NEW
    assert "_pending" not in raw_items(dynamodb_env, table, "lost")["-1"]


@pytest.mark.parametrize("phase", ["staging", "promoting"])
def test_sigkilled_writer(table, dynamodb_env, fault_proxy, tmp_path, aws_tuning, phase):
    """A writer process is SIGKILLed while it stages (or promotes) an overwrite: readers see
    one version whole throughout (the old one, or the new one from the commit on); its lease
    blocks the next write only until its short expiry; the next write completes the work."""
    import signal

    aws_tuning(write_lock_seconds=10)
    uri = f"dynamodb:///{table}:killed"
    write(uri, document(OLD, name="old"))

    def slow(index, request):  # a slow network: room to kill the writer mid-way
        if request.operation == "BatchWriteItem":
            time.sleep(0.05)
        return None

    proxy = fault_proxy(dynamodb_env.endpoint, slow)
    client = dynamodb_env.client("dynamodb")
    key = {"mosaicId": {"S": "killed"}, "quadkey": {"S": "-1"}}
    old_generation = client.get_item(TableName=table, Key=key)["Item"]["_generation"]["S"]
    with MixChecker(uri, OLD, NEW) as checker:
        writer = start_worker(
            "write",
            uri,
            document_file(tmp_path, NEW, "new"),
            "--overwrite",
            env=worker_env(proxy.endpoint, write_threads=1),
        )
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            if phase == "staging" and len(staged_items(dynamodb_env, table, "killed")) >= 100:
                break
            meta = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
            if phase == "promoting" and meta["_generation"]["S"] != old_generation:
                time.sleep(0.3)  # a few promotion batches
                break
            time.sleep(0.05)
        assert writer.poll() is None, writer.communicate()
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        time.sleep(1.0)  # readers keep reading after the kill
    checker.sweep()
    checker.assert_never_mixed()
    visible = OLD if phase == "staging" else NEW
    assert read_tiles(uri) == visible
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.name == ("old" if phase == "staging" else "new")
    assert staged_items(dynamodb_env, table, "killed")
    assert_layout_readable(dynamodb_env, table, "killed", OLD, NEW)
    final = block(2, 2, 24, 8, "final")
    waited = write_when_free(uri, document(final, name="final"))
    assert waited < 20  # the dead writer's lease expired (5 s), nobody had to step in
    assert read_tiles(uri) == final
    assert not staged_items(dynamodb_env, table, "killed")
    assert stored_overviews(dynamodb_env, table, "killed") == expected_overviews(final, 8)


def test_orphans_of_a_failed_create_are_removed_by_delete(
    table, dynamodb_env, fault_proxy, monkeypatch, aws_tuning
):
    aws_tuning(max_attempts=1, write_lock_seconds=3)
    broken = threading.Event()
    batches = Counter()

    def policy(index, request):
        if request.operation == "BatchWriteItem":
            batches["n"] += 1
            if batches["n"] > 3:
                broken.set()
        return DROP if broken.is_set() else None

    proxied_env(monkeypatch, fault_proxy(dynamodb_env.endpoint, policy))
    uri = f"dynamodb:///{table}:orphans"
    with pytest.raises(MosaicWriteError):
        write(uri, document(block(0, 0, 20, 8)))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_env.endpoint)
    assert raw_items(dynamodb_env, table, "orphans")  # left behind, invisible
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)
    time.sleep(3.1)  # the failed writer could not release its lease
    DynamoDBBackend(uri, mosaic_def=document({})).delete()
    assert raw_items(dynamodb_env, table, "orphans") == {}
    assert raw_items(dynamodb_env, table, "orphans" + OVERVIEW_SUFFIX) == {}


def test_concurrent_update_processes(table, dynamodb_env):
    """Four processes update one mosaic at once: every acknowledged update is stored and
    counted in the version; the others are refused with a clear error (409 in the API)."""
    uri = f"dynamodb:///{table}:busy"
    write(uri, document(block(60, 60, 4, 8)))
    env = {"MOSAIC_AWS_WRITE_LOCK_SECONDS": "5"}
    workers = [
        start_worker("update", uri, f"w{i}", "6", str(60 + i), "61", "8", env=env) for i in range(4)
    ]
    acknowledged, refused = [], {}
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        acknowledged += report["acknowledged"]
        refused.update(report["refused"])
    assert acknowledged
    assert len(acknowledged) + len(refused) == 24
    for message in refused.values():
        assert message.startswith("MosaicConflictError") and "another writer" in message
    stored = read_tiles(uri)
    present = {a for assets in stored.values() for a in assets}
    assert set(acknowledged) <= present
    assert not set(refused) & present
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.version == f"1.0.{len(acknowledged)}"


def test_a_lapsed_lease_never_comes_back(table, dynamodb_env):
    """A writer whose heartbeat could not renew in time stops for good, even if a late
    renewal then succeeds: no batch is ever skipped silently."""
    backend = DynamoDBBackend(f"dynamodb:///{table}:lapse", mosaic_def=document({}))
    lease = Lease(backend.table, "overwrite")
    lease.acquire(exists_error=False)
    try:
        assert lease.valid
        lease.valid_until = time.monotonic() - 1  # as if renewals stalled
        assert not lease.valid
        lease.valid_until = time.monotonic() + 60  # a late renewal
        assert not lease.valid
        requests = delete_requests([backend.table.key(tile_quadkey(0, 0, 8))])
        with pytest.raises(MosaicWriteError, match="could not be renewed in time"):
            batch_write(backend.table, requests, lease)
    finally:
        lease.release()
