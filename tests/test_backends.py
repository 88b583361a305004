"""Memory, file and SQLite backends, the dispatcher, quadkey lookups and caching."""

import gzip
import json
import os
import sqlite3

import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend, backend_class
from lambda_handler.backends.file import FileBackend
from lambda_handler.backends.memory import MemoryBackend
from lambda_handler.backends.sqlite import SQLiteBackend
from lambda_handler.errors import (
    BackendNotAvailableError,
    InvalidMosaicError,
    InvalidMosaicNameError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
    UnsupportedURIError,
)
from lambda_handler.mosaic import from_features
from tests.geometry import square


def store_uris(tmp_path):
    return {
        "file": str(tmp_path / "m.json"),
        "file-gz": f"file://{tmp_path / 'm.json.gz'}",
        "sqlite": f"sqlite:///{tmp_path / 'store.db'}:test",
    }


@pytest.fixture(params=["file", "file-gz", "sqlite"])
def uri(request, tmp_path) -> str:
    return store_uris(tmp_path)[request.param]


# ---------------------------------------------------------------------------- dispatcher
@pytest.mark.parametrize(
    ("uri", "cls"),
    [
        (None, MemoryBackend),
        (":memory:", MemoryBackend),
        ("/tmp/x.json", FileBackend),
        ("relative/x.json.gz", FileBackend),
        ("file:///tmp/x.json", FileBackend),
        ("sqlite:///x.db:name", SQLiteBackend),
    ],
)
def test_dispatcher_picks_backend(uri, cls):
    assert backend_class(uri) is cls


def test_unknown_scheme_lists_supported_ones():
    with pytest.raises(UnsupportedURIError) as info:
        MosaicBackend("ftp://host/mosaic.json")
    assert "'ftp://'" in str(info.value)
    for scheme in ("dynamodb://", "s3://", "sqlite:///", "stac+https://", "gs://", "az://"):
        assert scheme in str(info.value)


def test_missing_backend_module_is_named(monkeypatch):
    from lambda_handler import backends

    monkeypatch.setitem(
        backends._BACKENDS, "zz://", ("lambda_handler.backends.not_built", "X", "Imaginary")
    )
    with pytest.raises(BackendNotAvailableError, match="Imaginary backend"):
        MosaicBackend("zz://somewhere")


# ---------------------------------------------------------------------------- round trips
def test_round_trip(uri, mosaic):
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        backend.write()
    with MosaicBackend(uri) as backend:
        stored = backend.to_document()
        assert stored.tiles == mosaic.tiles
        assert stored.bounds == pytest.approx(mosaic.bounds)
        assert backend.quadkey_zoom == 7
        assert (backend.minzoom, backend.maxzoom) == (5, 10)
        info = backend.info(quadkeys=True)
        assert sorted(info.quadkeys) == sorted(mosaic.tiles)
        assert info.mosaic_quadkey_zoom == 7


def test_gzip_file_is_really_gzip(tmp_path, mosaic):
    path = tmp_path / "m.json.gz"
    with MosaicBackend(str(path), mosaic_def=mosaic) as backend:
        backend.write()
    assert json.loads(gzip.decompress(path.read_bytes()))["tiles"] == mosaic.tiles


def test_write_refuses_to_overwrite(uri, mosaic):
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        backend.write()
    changed = mosaic.model_copy(update={"tiles": {"0000000": ["z.tif"]}})
    with MosaicBackend(uri, mosaic_def=changed) as backend, pytest.raises(MosaicExistsError):
        backend.write()
    with MosaicBackend(uri) as backend:
        assert backend.to_document().tiles == mosaic.tiles, "nothing written on refusal"
    with MosaicBackend(uri, mosaic_def=changed) as backend:
        backend.write(overwrite=True)
    with MosaicBackend(uri) as backend:
        assert backend.to_document().tiles == {"0000000": ["z.tif"]}


def test_missing_mosaic(uri):
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)


def test_delete(uri, mosaic):
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        backend.write()
    with MosaicBackend(uri) as backend:
        backend.delete()
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)


def test_update_merges_bumps_version_and_is_idempotent(uri, mosaic):
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        backend.write()
    addition = [square(1.5, 1.2, 1.0, "new.tif"), square(30.0, 30.0, 1.0, "far.tif")]
    with MosaicBackend(uri) as backend:
        key = next(k for k, v in mosaic.tiles.items() if "a.tif" in v)
        backend.update(addition)
    with MosaicBackend(uri) as backend:
        first = backend.to_document()
        assert first.version == "1.0.1"
        assert first.bounds[2] >= 30.0, "bounds grow to hold the new footprint"
        merged = [k for k, v in first.tiles.items() if "new.tif" in v]
        assert merged and all(first.tiles[k][0] == "new.tif" for k in merged)
        assert any("far.tif" in v for v in first.tiles.values()), "new quadkeys are added"
        assert first.tiles[key][-1] in mosaic.tiles[key]
        backend.update(addition)
    with MosaicBackend(uri) as backend:
        second = backend.to_document()
        assert second.tiles == first.tiles, "re-running an update adds nothing twice"
        assert second.version == "1.0.2"
        backend.update([square(1.5, 1.2, 1.0, "last.tif")], add_first=False)
    with MosaicBackend(uri) as backend:
        third = backend.to_document()
        assert all(v[-1] == "last.tif" for v in third.tiles.values() if "last.tif" in v)


def test_failed_file_write_keeps_previous_document(tmp_path, mosaic, monkeypatch):
    path = tmp_path / "m.json"
    with MosaicBackend(str(path), mosaic_def=mosaic) as backend:
        backend.write()
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    changed = mosaic.model_copy(update={"tiles": {"0000000": ["z.tif"]}})
    with MosaicBackend(str(path), mosaic_def=changed) as backend, pytest.raises(MosaicWriteError):
        backend.write(overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"], "no temporary file left behind"


def test_bad_file_contents(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(InvalidMosaicError, match="not valid JSON"):
        MosaicBackend(str(bad))
    fake_gz = tmp_path / "bad.json.gz"
    fake_gz.write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(InvalidMosaicError, match="gzip"):
        MosaicBackend(str(fake_gz))


# ---------------------------------------------------------------------------- lookups
def test_lookups_above_at_and_below_quadkey_zoom(mosaic):
    backend = MosaicBackend(None, mosaic_def=mosaic)
    tms = backend.tms
    for key, assets in mosaic.tiles.items():
        tile = tms.quadkey_to_tile(key)
        assert backend.assets_for_tile(*tile) == assets
        # children at z+2 have the same assets (parent lookup)
        child = tms.children(tile, zoom=tile.z + 2)[5]
        assert backend.assets_for_tile(*child) == assets
    # a zoom-5 tile gathers every quadkey below it (ordered, de-duplicated)
    for key in {k[:5] for k in mosaic.tiles}:
        expected = list(
            dict.fromkeys(
                a for k in sorted(mosaic.tiles) if k.startswith(key) for a in mosaic.tiles[k]
            )
        )
        assert backend.assets_for_tile(*tms.quadkey_to_tile(key)) == expected
    assert backend.assets_for_tile(0, 0, 7) == []


def test_point_and_bbox_lookups(mosaic):
    backend = MosaicBackend(None, mosaic_def=mosaic)
    assert set(backend.assets_for_point(1.5, 1.2)) == {"a.tif", "b.tif"}
    assert backend.assets_for_point(100, 60) == []
    assert set(backend.assets_for_bbox(-5, -5, 5, 5)) == {"a.tif", "b.tif", "c.tif"}
    assert set(backend.assets_for_bbox(-3.2, -2.2, -2.8, -1.8)) == {"c.tif"}
    # a bbox over the whole world takes the coarse prefix path and finds everything
    assert set(backend.assets_for_bbox(-180, -85, 180, 85)) == {"a.tif", "b.tif", "c.tif"}


def test_asset_prefix_is_applied_on_lookup():
    features = [square(1, 1, 1, "s3://bucket/a.tif")]
    mosaic = from_features(features, 5, 7, asset_prefix="s3://bucket/")
    backend = MosaicBackend(None, mosaic_def=mosaic)
    assert backend.assets_for_point(1, 1) == ["s3://bucket/a.tif"]
    assert backend.assets_for_point(1, 1, reverse=True) == ["s3://bucket/a.tif"]


def test_sqlite_lookups_match_document(tmp_path, mosaic):
    uri = f"sqlite:///{tmp_path / 'store.db'}:test"
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        backend.write()
    memory = MosaicBackend(None, mosaic_def=mosaic)
    with MosaicBackend(uri) as backend:
        for z in range(5, 10):
            for key in {k[:z] for k in mosaic.tiles}:
                tile = backend.tms.quadkey_to_tile(key.ljust(z, "0"))
                assert backend.assets_for_tile(*tile) == memory.assets_for_tile(*tile)
        assert set(backend.assets_for_bbox(-180, -85, 180, 85)) == {"a.tif", "b.tif", "c.tif"}


# ---------------------------------------------------------------------------- SQLite specifics
def test_sqlite_many_mosaics_layout_and_index(tmp_path, mosaic):
    db = tmp_path / "store.db"
    for name in ("one", "two", "three"):
        with MosaicBackend(f"sqlite:///{db}:{name}", mosaic_def=mosaic) as backend:
            backend.write()
    assert SQLiteBackend.list_mosaics_in_db(f"sqlite:///{db}") == ["one", "three", "two"]
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 3
        indexes = connection.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type='index'"
        ).fetchall()
        assert ("idx:two:quadkey", "two") in indexes
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT assets FROM \"two\" WHERE quadkey >= '03' AND quadkey < '034'"
        ).fetchall()
        assert "idx:two:quadkey" in str(plan)
        names = [r[0] for r in connection.execute("SELECT name FROM mosaicjson_metadata")]
        assert sorted(names) == ["one", "three", "two"]
    with MosaicBackend(f"sqlite:///{db}:two") as backend:
        backend.delete()
    assert SQLiteBackend.list_mosaics_in_db(str(db)) == ["one", "three"]


@pytest.mark.parametrize(
    "name",
    [
        'x"; DROP TABLE mosaicjson_metadata; --',
        "a/b",
        "..",
        ".hidden",
        "a b",
        "mosaicjson_metadata",
        "sqlite_master",
        "",
    ],
)
def test_sqlite_rejects_unsafe_names(tmp_path, mosaic, name):
    with pytest.raises((InvalidMosaicNameError, InvalidMosaicError)):
        MosaicBackend(f"sqlite:///{tmp_path / 'x.db'}:{name}", mosaic_def=mosaic)
    assert not (tmp_path / "x.db").exists(), "nothing written when validation fails"


def test_sqlite_missing_database_is_not_created(tmp_path):
    with pytest.raises(MosaicNotFoundError, match="database not found"):
        MosaicBackend(f"sqlite:///{tmp_path / 'nope.db'}:x")
    assert not (tmp_path / "nope.db").exists()


def test_sqlite_failed_write_leaves_previous_mosaic(tmp_path, mosaic):
    uri = f"sqlite:///{tmp_path / 'store.db'}:test"
    with MosaicBackend(uri, mosaic_def=mosaic) as backend:
        backend.write()
    # A tile whose assets cannot be encoded fails midway through the inserts.
    broken = mosaic.model_copy(update={"tiles": {**mosaic.tiles, "0000000": [object()]}})
    with MosaicBackend(uri, mosaic_def=broken) as backend, pytest.raises(TypeError):
        backend.write(overwrite=True)
    with MosaicBackend(uri) as backend:
        assert backend.to_document().tiles == mosaic.tiles


def test_validate_mosaic_name_rules():
    from lambda_handler.backends import validate_mosaic_name

    for good in ("a", "my-mosaic_1.v2", "X" * 255):
        assert validate_mosaic_name(good) == good
    for bad in ("", "a/b", "../x", "a..b", ".x", "X" * 256, "a;b", "a'b"):
        with pytest.raises(InvalidMosaicNameError):
            validate_mosaic_name(bad)


# ---------------------------------------------------------------------------- caching
def test_reads_are_cached_and_invalidated_by_writes(tmp_path, mosaic):
    path = tmp_path / "m.json"
    with MosaicBackend(str(path), mosaic_def=mosaic) as backend:
        backend.write()
    with MosaicBackend(str(path)) as backend:
        backend.assets_for_point(1.5, 1.2)
    assert len(cache.metadata_cache) == 1 and len(cache.assets_cache) >= 1

    # Changed behind the package's back: the cached copy is served until the TTL ends.
    other = mosaic.model_copy(update={"tiles": {}, "version": "9.9.9"})
    path.write_text(other.to_json())
    with MosaicBackend(str(path)) as backend:
        assert backend.mosaic_def.version == mosaic.version

    # Written through the package: the cache is dropped and the new version is read.
    with MosaicBackend(str(path), mosaic_def=other) as backend:
        backend.write(overwrite=True)
    with MosaicBackend(str(path)) as backend:
        assert backend.mosaic_def.version == "9.9.9"
        assert backend.assets_for_point(1.5, 1.2) == []


def test_cache_can_be_disabled(tmp_path, mosaic, monkeypatch):
    from lambda_handler.settings import cache_settings

    monkeypatch.setenv("MOSAIC_CACHE_DISABLE", "true")
    cache_settings.cache_clear()
    try:
        path = tmp_path / "m.json"
        with MosaicBackend(str(path), mosaic_def=mosaic) as backend:
            backend.write()
        with MosaicBackend(str(path)) as backend:
            backend.assets_for_point(1.5, 1.2)
        assert len(cache.metadata_cache) == 0 and len(cache.assets_cache) == 0
    finally:
        monkeypatch.delenv("MOSAIC_CACHE_DISABLE")
        cache_settings.cache_clear()
