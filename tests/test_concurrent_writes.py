"""Concurrent writers of one mosaic lose nothing: every store applies all their updates or
refuses the losers with a typed error, in real processes against real servers (issue 18).

Each run races N writer processes of M updates each, every update adding a new asset of its own
to the same quadkeys (tests/lost_updates.py), then reads the stored mosaic: every acknowledged
asset must be there and the version must count every acknowledged update.
"""

import sqlite3
import threading
import uuid

import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.errors import (
    MosaicChangedError,
    MosaicConflictError,
    MosaicNotFoundError,
    MosaicPreconditionError,
)
from tests.cloud_buckets import (
    gcs_requests,
    new_azure_container,
    new_gcs_bucket,
    new_s3_bucket,
    uploads,
)
from tests.lost_updates import (
    AREA,
    BASE_ASSET,
    RunResult,
    create_mosaic,
    run_conditional_http_writers,
    run_http_writers,
    run_update_writers,
    square,
)

# Refusals a store may answer a losing writer with (and nothing else).
REFUSALS = ("MosaicConflictError", "MosaicChangedError")


def assert_nothing_lost(result: RunResult, may_refuse: bool) -> None:
    """Every acknowledged update is stored and counted; every other one was refused with a
    typed conflict error."""
    assert not result.unexpected, result.unexpected
    total = result.writers * result.updates
    assert len(result.acknowledged) + len(result.refused) == total
    for asset, outcome in result.refused.items():
        assert outcome.startswith(REFUSALS), (asset, outcome)
    if not may_refuse:
        assert not result.refused, result.refused
    assert result.lost == [], f"{len(result.lost)} acknowledged updates lost: {result.lost[:5]}"
    assert set(result.acknowledged) | {BASE_ASSET} == result.stored_assets
    assert result.version == result.expected_version


# ---------------------------------------------------------------------------- SQLite, file
@pytest.mark.parametrize(("writers", "updates"), [(2, 50), (4, 50)])
def test_sqlite_concurrent_updates_are_all_applied(tmp_path, writers, updates):
    uri = f"sqlite:///{tmp_path / 'mosaics.db'}:race"
    result = run_update_writers(uri, "SQLite", writers, updates)
    # One BEGIN IMMEDIATE transaction per update: writers wait, none is refused.
    assert_nothing_lost(result, may_refuse=False)
    assert len(result.acknowledged) == writers * updates


def test_file_concurrent_updates_are_all_applied(tmp_path):
    uri = f"file://{tmp_path / 'race.json.gz'}"
    result = run_update_writers(uri, "file", 3, 20)
    assert_nothing_lost(result, may_refuse=False)
    assert len(result.acknowledged) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.json.gz"], "no lock file left"


def test_sqlite_writer_waits_for_a_held_transaction_then_refuses_with_a_typed_error(
    tmp_path, monkeypatch
):
    """A writer that cannot get the write lock within the busy timeout is refused with
    MosaicConflictError (409), and the holder's data is untouched."""
    from lambda_handler.settings import write_settings

    db = tmp_path / "mosaics.db"
    uri = f"sqlite:///{db}:held"
    create_mosaic(uri)
    monkeypatch.setenv("MOSAIC_WRITE_LOCK_TIMEOUT", "0.5")
    write_settings.cache_clear()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        lon, lat, size = AREA
        with MosaicBackend(uri) as backend, pytest.raises(MosaicConflictError, match="locked"):
            backend.update([square(lon, lat, size, "late.tif")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        # Restore the environment before forgetting the cached settings: nothing after this
        # test may see the short timeout.
        monkeypatch.undo()
        write_settings.cache_clear()
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.version == "1.0.0"
        assert "late.tif" not in {a for v in backend.to_document().tiles.values() for a in v}


def test_file_update_waits_for_the_lock_holder(tmp_path):
    """While another process-like holder keeps the lock, an update waits, then applies on top
    of what the holder wrote (its read happens after the lock is granted)."""
    uri = str(tmp_path / "m.json")
    create_mosaic(uri)
    holder = MosaicBackend(uri)
    lon, lat, size = AREA
    done = threading.Event()

    def late_update() -> None:
        with MosaicBackend(uri) as backend:
            backend.update([square(lon, lat, size, "second.tif")])
        done.set()

    with holder._write_guard():
        holder._refresh()
        thread = threading.Thread(target=late_update)
        thread.start()
        assert not done.wait(0.5), "the update must wait for the lock"
        holder.update([square(lon, lat, size, "first.tif")])
    thread.join(30)
    assert done.is_set()
    stored = MosaicBackend(uri).to_document()
    assets = {a for v in stored.tiles.values() for a in v}
    assert {"first.tif", "second.tif"} <= assets
    assert stored.version == "1.0.2"


# ---------------------------------------------------------------------------- S3 (moto)
@pytest.fixture
def moto_s3(moto_server, monkeypatch):
    """boto3 pointed at moto's S3 (it honours If-Match on PutObject); a fresh bucket."""
    return new_s3_bucket(moto_server, monkeypatch, prefix="race")


def test_s3_concurrent_updates_on_moto_lose_nothing(moto_s3):
    result = run_update_writers(f"s3://{moto_s3}/race.json", "S3 (moto)", 3, 10)
    assert_nothing_lost(result, may_refuse=True)
    assert result.acknowledged, "at least the retries must get updates through"


def test_s3_update_sends_if_match_and_retries_a_lost_race(moto_s3, moto_server):
    """A write slipped in between an update's read and its put: the put is refused by
    If-Match (412), the update re-reads and applies on top of the other writer's change."""
    uri = f"s3://{moto_s3}/m.json"
    create_mosaic(uri)
    lon, lat, size = AREA
    backend = MosaicBackend(uri)
    original = backend._read_for_write
    interfered = []

    def read_then_interfere():
        result = original()
        if not interfered:
            interfered.append(True)
            with MosaicBackend(uri) as other:
                other.update([square(lon, lat, size, "other.tif")])
        return result

    backend._read_for_write = read_then_interfere
    backend.update([square(lon, lat, size, "mine.tif")])
    stored = MosaicBackend(uri).to_document()
    assert {"other.tif", "mine.tif"} <= {a for v in stored.tiles.values() for a in v}
    assert stored.version == "1.0.2"


# ---------------------------------------------------------------------------- Azure (azurite)
@pytest.fixture
def azure_container(azurite, monkeypatch):
    return new_azure_container(azurite, monkeypatch, prefix="race")


def test_azure_concurrent_updates_on_azurite_lose_nothing(azure_container):
    uri = f"az://devstoreaccount1.blob.core.windows.net/{azure_container}/race.json"
    result = run_update_writers(uri, "Azure (azurite)", 3, 10)
    assert_nothing_lost(result, may_refuse=True)
    assert result.acknowledged


# ---------------------------------------------------------------------------- GCS (emulator)
@pytest.fixture
def gcs_bucket(gcs_emulator, monkeypatch):
    return new_gcs_bucket(gcs_emulator, monkeypatch, prefix="race")


def test_gcs_update_sends_the_generation_it_read(gcs_bucket):
    """gcp-storage-emulator ignores preconditions, so a race cannot be shown there: the update
    must upload with `ifGenerationMatch` set to the generation of the copy it merged into."""
    from lambda_handler.backends.gcs import gcs_client

    uri = f"gs://{gcs_bucket}/m.json"
    create_mosaic(uri)
    generation = gcs_client().bucket(gcs_bucket).get_blob("m.json").generation
    with gcs_requests() as requests:
        lon, lat, size = AREA
        with MosaicBackend(uri) as backend:
            backend.update([square(lon, lat, size, "new.tif")])
    sent = uploads(requests)
    assert len(sent) == 1
    assert f"ifGenerationMatch={generation}" in sent[0]


# ---------------------------------------------------------------------------- HTTP API
def test_api_concurrent_patches_are_all_applied(api_store, api_server):
    from tests.servers_api import API_KEY

    mosaic_id = f"race-{uuid.uuid4().hex[:8]}"
    result = run_http_writers(api_server, mosaic_id, api_store.uri(mosaic_id), API_KEY, 20)
    assert not result.unexpected, result.unexpected
    for asset, outcome in result.refused.items():
        assert outcome.startswith("HTTP 409"), (asset, outcome)
    assert result.lost == []
    assert len(result.acknowledged) == 20, result.refused
    assert result.version == result.expected_version


def test_precondition_is_checked_on_the_fresh_read(tmp_path):
    """An update whose precondition fails on the copy read under the lock stores nothing."""
    uri = f"sqlite:///{tmp_path / 'm.db'}:m"
    create_mosaic(uri)

    def refuse(backend) -> None:
        raise MosaicPreconditionError(f"revision {backend.revision} is not the one expected")

    lon, lat, size = AREA
    with MosaicBackend(uri) as backend, pytest.raises(MosaicPreconditionError):
        backend.update([square(lon, lat, size, "x.tif")], precondition=refuse)
    assert MosaicBackend(uri).mosaic_def.version == "1.0.0"


def test_api_concurrent_conditional_patches_exactly_one_wins(api_store, api_server):
    """Processes holding the same ETag PATCH with If-Match at once: one is applied, every
    other answers 412, and only the winner's asset is stored."""
    from tests.servers_api import API_KEY

    mosaic_id = f"ifmatch-{uuid.uuid4().hex[:8]}"
    uri = api_store.uri(mosaic_id)
    result = run_conditional_http_writers(api_server, mosaic_id, uri, API_KEY, 8)
    assert not result.unexpected, result.unexpected
    assert len(result.acknowledged) == 1, result.refused
    assert all(o.startswith("HTTP 412") for o in result.refused.values()), result.refused
    assert result.lost == []
    assert result.stored_assets == {BASE_ASSET, *result.acknowledged}
    assert result.version == "1.0.1"


# ---------------------------------------------------------------------------- guarded replace/delete
@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_stale_write_and_delete_are_refused_by_if_match(kind, request):
    """A backend holding an old copy (its ETag) can neither overwrite nor delete the newer one."""
    if kind == "s3":
        uri = f"s3://{request.getfixturevalue('moto_s3')}/m.json"
    else:
        container = request.getfixturevalue("azure_container")
        uri = f"az://devstoreaccount1.blob.core.windows.net/{container}/m.json"
    create_mosaic(uri)
    stale = MosaicBackend(uri)
    stale._refresh()  # remembers the ETag of this copy
    lon, lat, size = AREA
    with MosaicBackend(uri) as other:
        other.update([square(lon, lat, size, "other.tif")])
    with pytest.raises(MosaicChangedError, match="If-Match"):
        stale.write(overwrite=True)
    with pytest.raises(MosaicChangedError, match="If-Match"):
        stale.delete()
    stored = MosaicBackend(uri).to_document()
    assert "other.tif" in {a for v in stored.tiles.values() for a in v}


def _store_uri(kind: str, request, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}:m"
    if kind == "file":
        return str(tmp_path / "m.json")
    if kind == "s3":
        return f"s3://{request.getfixturevalue('moto_s3')}/m.json"
    container = request.getfixturevalue("azure_container")
    return f"az://devstoreaccount1.blob.core.windows.net/{container}/m.json"


@pytest.mark.parametrize("kind", ["sqlite", "file", "s3", "azure"])
def test_replace_and_delete_check_the_precondition_on_the_fresh_copy(kind, request, tmp_path):
    uri = _store_uri(kind, request, tmp_path)
    create_mosaic(uri)
    holder = MosaicBackend(uri)
    seen = holder.revision
    lon, lat, size = AREA
    with MosaicBackend(uri) as other:  # a write after `seen` was read
        other.update([square(lon, lat, size, "other.tif")])

    def unchanged(backend) -> None:
        if backend.revision != seen:
            raise MosaicPreconditionError(f"{backend.revision} is not {seen}")

    replacement = MosaicBackend(uri).to_document()
    replacement.tiles = {qk: ["replaced.tif"] for qk in replacement.tiles}
    with pytest.raises(MosaicPreconditionError):
        MosaicBackend(uri).replace(replacement, precondition=unchanged)
    with pytest.raises(MosaicPreconditionError):
        MosaicBackend(uri).delete_if(unchanged)
    stored = MosaicBackend(uri)
    assert "other.tif" in {a for v in stored.to_document().tiles.values() for a in v}

    current = stored.revision
    fresh = MosaicBackend(uri)
    fresh.replace(replacement, precondition=lambda b: None)
    after = MosaicBackend(uri)
    assert after.revision != current
    assert {a for v in after.to_document().tiles.values() for a in v} == {"replaced.tif"}
    after.delete_if(lambda b: None)
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)


def test_gcs_replace_and_delete_send_the_generation_they_read(gcs_bucket):
    from lambda_handler.backends.gcs import gcs_client

    uri = f"gs://{gcs_bucket}/m.json"
    create_mosaic(uri)
    generation = gcs_client().bucket(gcs_bucket).get_blob("m.json").generation
    with gcs_requests() as sent:
        backend = MosaicBackend(uri)
        backend.replace(MosaicBackend(uri).to_document())
        replaced = gcs_client().bucket(gcs_bucket).get_blob("m.json").generation
        MosaicBackend(uri).delete_if(lambda b: None)
    uploaded = uploads(sent)
    deletes = [url for method, url in sent if method == "DELETE"]
    assert len(uploaded) == 1 and f"ifGenerationMatch={generation}" in uploaded[0]
    assert len(deletes) == 1 and f"ifGenerationMatch={replaced}" in deletes[0]


def test_s3_update_reports_a_server_that_ignores_if_match(s3_env, caplog):
    """moto honours If-Match; s3rver ignores it, and an update there says so (once) instead
    of silently running unguarded. The update itself is applied on both."""
    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    s3_env.client("s3").create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/m.json"
    create_mosaic(uri)
    lon, lat, size = AREA
    with caplog.at_level("WARNING", logger="lambda_handler.backends.s3"):
        for name in ("one.tif", "two.tif"):
            with MosaicBackend(uri) as backend:
                backend.update([square(lon, lat, size, name)])
    warnings = [r for r in caplog.records if "ignores If-Match" in r.getMessage()]
    assert len(warnings) == (0 if s3_env.name == "moto" else 1)
    stored = MosaicBackend(uri).to_document()
    assert {"one.tif", "two.tif"} <= {a for v in stored.tiles.values() for a in v}
    assert stored.version == "1.0.2"
    listed = s3_env.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == ["m.json"], "probe objects are deleted"
