"""DynamoDB failures: retries, rollback of a failed write, an invisible failed create, a
server killed mid-write, the writer lock."""

import time
from collections import Counter

import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import (
    OVERVIEW_SUFFIX,
    DynamoDBBackend,
    Lease,
)
from lambda_handler.errors import (
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.tiling import tile_quadkey
from tests.dynamodb_support import (
    block,
    document,
    expected_overviews,
    proxied_env,
    query_path,
    raw_items,
    read_tiles,
    stored_overviews,
    write,
)
from tests.fault_proxy import DROP, Reply
from tests.servers_aws import unique_name


# ---------------------------------------------------------------------- failures
def test_throttling_and_5xx_are_retried(table, dynamodb_env, fault_proxy, monkeypatch):
    def policy(index, request):
        # every other request fails once, each in its own way
        if index in (0, 6):
            return Reply.dynamodb_error(400, "ThrottlingException", "Rate of requests exceeds")
        if index == 2:
            return Reply.dynamodb_error(500, "InternalServerError")
        if index == 4:
            return DROP
        return None

    proxy = fault_proxy(dynamodb_env.endpoint, policy)
    proxied_env(monkeypatch, proxy)
    uri = f"dynamodb:///{table}:retry"
    tiles = block(0, 0, 10, 8)
    write(uri, document(tiles))
    assert proxy.injected == 4
    assert read_tiles(uri) == tiles


def test_unprocessed_items_and_keys_are_retried(table, dynamodb_env, fault_proxy, monkeypatch):
    seen = Counter()

    def policy(index, request):
        operation = request.operation
        seen[operation] += 1
        if operation == "BatchWriteItem" and seen[operation] <= 3:
            return Reply.dynamodb_ok({"UnprocessedItems": request.json()["RequestItems"]})
        if operation == "BatchGetItem" and seen[operation] <= 2:
            return Reply.dynamodb_ok(
                {"Responses": {}, "UnprocessedKeys": request.json()["RequestItems"]}
            )
        return None

    proxy = fault_proxy(dynamodb_env.endpoint, policy)
    proxied_env(monkeypatch, proxy)
    uri = f"dynamodb:///{table}:unprocessed"
    tiles = block(0, 0, 12, 8)
    write(uri, document(tiles))
    with MosaicBackend(uri) as backend:
        assert backend._fetch_quadkeys(list(tiles)) == tiles
    assert proxy.injected == 5
    assert read_tiles(uri) == tiles


def test_unprocessed_forever_is_an_error(table, dynamodb_env, fault_proxy, monkeypatch, aws_tuning):
    aws_tuning(unprocessed_attempts=2)

    def policy(index, request):
        if request.operation == "BatchWriteItem":
            return Reply.dynamodb_ok({"UnprocessedItems": request.json()["RequestItems"]})
        return None

    proxied_env(monkeypatch, fault_proxy(dynamodb_env.endpoint, policy))
    uri = f"dynamodb:///{table}:stuck"
    with pytest.raises(MosaicWriteError, match="unprocessed after 2"):
        write(uri, document(block(0, 0, 4, 8)))
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)


def test_failed_overwrite_is_rolled_back(table, dynamodb_env, fault_proxy, monkeypatch, aws_tuning):
    """New tile writes fail (server errors beyond the retries): the writer restores the
    previous items, the previous mosaic is exactly intact."""
    aws_tuning(max_attempts=2)
    uri = f"dynamodb:///{table}:rollback"
    old = block(0, 0, 12, 8, "old")
    write(uri, document(old, name="old"))
    old_overviews = raw_items(dynamodb_env, table, "rollback" + OVERVIEW_SUFFIX)

    writes = Counter()

    def policy(index, request):
        if request.operation == "BatchWriteItem" and b"/new/" in request.body:
            writes["new"] += 1
            if writes["new"] > 2:  # a couple of batches go through, then the server fails
                return Reply.dynamodb_error(500, "InternalServerError")
        return None

    proxied_env(monkeypatch, fault_proxy(dynamodb_env.endpoint, policy))
    new = block(4, 4, 12, 8, "new")
    with pytest.raises(MosaicWriteError) as failure:
        write(uri, document(new, name="new"), overwrite=True)
    assert "rolled back" in "".join(getattr(failure.value, "__notes__", []))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_env.endpoint)
    assert read_tiles(uri) == old
    assert set(raw_items(dynamodb_env, table, "rollback")) == {"-1", *old}
    assert raw_items(dynamodb_env, table, "rollback" + OVERVIEW_SUFFIX) == old_overviews
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.name == "old"
        assert backend.overview_zooms == frozenset(range(2, 6))


def test_failed_create_is_invisible(table, dynamodb_env, fault_proxy, monkeypatch, aws_tuning):
    """Batches die halfway (connections dropped): no mosaic appears; the orphan items are
    removed by the next create of the same name, which must not inherit them."""
    aws_tuning(max_attempts=2)
    count = Counter()

    def policy(index, request):
        if request.operation == "BatchWriteItem":
            count["batches"] += 1
            if count["batches"] > 3:
                return DROP
        return None

    proxied_env(monkeypatch, fault_proxy(dynamodb_env.endpoint, policy))
    uri = f"dynamodb:///{table}:halfway"
    with pytest.raises(MosaicWriteError):
        write(uri, document(block(0, 0, 20, 8)))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_env.endpoint)
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)
    assert "halfway" not in DynamoDBBackend.list_mosaics(table)
    tiles = block(0, 0, 5, 8)
    write(uri, document(tiles))
    assert read_tiles(uri) == tiles
    assert stored_overviews(dynamodb_env, table, "halfway") == expected_overviews(tiles, 8)


def test_server_killed_mid_write(private_dynalite, monkeypatch, aws_tuning):
    """dynalite is killed while an overwrite is under way, then restarted on its data: the
    previous mosaic (metadata and every quadkey) is still there and readable; re-running the
    write completes it; a create killed halfway stays invisible."""
    aws_tuning(max_attempts=1, write_lock_seconds=1, write_threads=1)
    server = private_dynalite
    for name, value in server.boto3_env("dynamodb").items():
        monkeypatch.setenv(name, value)
    table = unique_name("kill")
    DynamoDBBackend.create_table(table)
    uri = f"dynamodb:///{table}:victim"
    old = block(0, 0, 20, 8, "old")
    write(uri, document(old, name="old"))

    new = block(5, 5, 20, 8, "new")
    backend = MosaicBackend(uri, mosaic_def=document(new, name="new"))
    sent = Counter()

    def kill_after_three(model, **kwargs) -> None:
        if model.name == "BatchWriteItem":
            sent["batches"] += 1
            if sent["batches"] == 4:
                server.kill()

    backend.client.meta.events.register("before-call.dynamodb", kill_after_three)
    try:
        with pytest.raises(MosaicWriteError) as failure:
            backend.write(overwrite=True)
    finally:
        backend.client.meta.events.unregister("before-call.dynamodb", kill_after_three)
    assert "nothing was committed" in "".join(getattr(failure.value, "__notes__", []))
    server.restart()
    cache.clear_all()
    with MosaicBackend(uri) as reopened:
        # the staged items name a generation that never committed: the old version, whole
        assert reopened.mosaic_def.name == "old"
        assert reopened.to_document().tiles == old
        assert reopened.overview_zooms == frozenset(range(2, 6))
        assert reopened.get_assets(0, 0, 3) == query_path(old, tile_quadkey(0, 0, 3))
    staged = [i for i in raw_items(server, table, "victim").values() if "next_gen" in i]
    assert staged  # the killed write got that far
    time.sleep(1.1)  # the dead writer's lock expires
    write(uri, document(new, name="new"), overwrite=True)
    assert read_tiles(uri) == new
    assert stored_overviews(server, table, "victim") == expected_overviews(new, 8)


def test_write_lock_blocks_a_second_writer(table, dynamodb_env):
    uri = f"dynamodb:///{table}:locked"
    write(uri, document(block(0, 0, 2, 8)))
    fresh = f"dynamodb:///{table}:fresh"
    leases = [
        Lease(MosaicBackend(uri).table, "update"),
        Lease(DynamoDBBackend(fresh, mosaic_def=document({})).table, "create"),
    ]
    for lease in leases:
        lease.acquire(exists_error=False)
    try:
        with pytest.raises(MosaicWriteError, match="being written by another writer"):
            write(uri, document(block(0, 0, 3, 8)), overwrite=True)
        with pytest.raises(MosaicWriteError, match="being written by another writer"):
            MosaicBackend(uri).delete()
        with pytest.raises(MosaicExistsError, match="being written by another writer"):
            write(fresh, document(block(0, 0, 3, 8)))
    finally:
        for lease in leases:
            lease.release()
    write(uri, document(block(0, 0, 3, 8)), overwrite=True)
    assert len(read_tiles(uri)) == 9
    write(fresh, document(block(0, 0, 3, 8)))
    assert len(read_tiles(fresh)) == 9
