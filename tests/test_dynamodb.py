"""DynamoDB backend against two real DynamoDB implementations (moto server and dynalite):
URIs, the table, round trips and reads. Writes, overviews, failures and crashes have their
own modules (tests/test_dynamodb_*.py); helpers are in tests/dynamodb_support.py."""

import random
import threading
from collections import Counter

import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import (
    DynamoDBBackend,
    dynamodb_client,
    parse_dynamodb_uri,
)
from lambda_handler.errors import (
    InvalidMosaicError,
    InvalidMosaicNameError,
    MosaicNotFoundError,
)
from lambda_handler.mosaic.tiling import quadkey_to_tile, tile_quadkey
from tests.dynamodb_support import (
    block,
    counting,
    document,
    document_file,
    expected_overviews,
    query_path,
    random_tiles,
    read_tiles,
    start_worker,
    stored_overviews,
    worker_env,
    write,
)
from tests.servers_aws import REGION, unique_name
from tests.waiting import join_all


# ---------------------------------------------------------------------- URIs and table
def test_uri_forms(monkeypatch):
    assert parse_dynamodb_uri("dynamodb://eu-west-1/tbl:m.1") == ("eu-west-1", "tbl", "m.1")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert parse_dynamodb_uri("dynamodb:///tbl:m") == ("ap-south-1", "tbl", "m")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert parse_dynamodb_uri("dynamodb:///tbl:m")[0] == "us-east-1"
    for bad in ("dynamodb://tbl:m", "dynamodb:///tbl", "dynamodb:///tbl:a/b", "dynamodb:///t:m"):
        with pytest.raises((InvalidMosaicError, InvalidMosaicNameError)):
            parse_dynamodb_uri(bad)


def test_missing_table_and_mosaic(dynamodb_env):
    with pytest.raises(MosaicNotFoundError, match="table 'no-such-table' not found"):
        MosaicBackend("dynamodb:///no-such-table:m")
    name = unique_name("t")
    DynamoDBBackend.create_table(name)
    assert DynamoDBBackend.create_table(name) is False  # exists already
    with pytest.raises(MosaicNotFoundError, match="mosaic 'absent' not found"):
        MosaicBackend(f"dynamodb:///{name}:absent")
    # reads never create a table (only a write does, below)
    assert "no-such-table" not in dynamodb_env.client("dynamodb").list_tables()["TableNames"]


def test_write_creates_a_missing_table(dynamodb_env):
    """As cogeo-mosaic's write: a table that does not exist is created (on-demand, the key
    schema of `create_table`) and the mosaic written into it."""
    name = unique_name("created")
    client = dynamodb_env.client("dynamodb")
    assert name not in client.list_tables()["TableNames"]
    tiles = block(0, 0, 4, 8)
    write(f"dynamodb:///{name}:m", document(tiles))
    table = client.describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert sorted((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]) == [
        ("mosaicId", "HASH"),
        ("quadkey", "RANGE"),
    ]
    assert read_tiles(f"dynamodb:///{name}:m") == tiles
    assert DynamoDBBackend.create_table(name) is False  # the explicit helper stays


def test_writers_meeting_a_missing_table_at_once_all_succeed(dynamodb_env):
    """Three writers meet the missing table, and their CreateTable calls are held until all
    three are sending one: one creates the table, the other two get ResourceInUseException,
    wait until it is ACTIVE and write."""
    name = unique_name("barrier")
    docs = {f"m{i}": block(i * 4, 0, 4, 8, f"t{i}") for i in range(3)}
    barrier = threading.Barrier(len(docs), timeout=60)
    creators = threading.Barrier(len(docs), timeout=30)
    errors: list[str] = []

    def hold(**kwargs) -> None:
        creators.wait()  # the table cannot exist before every writer asks for it

    def create(mosaic: str) -> None:
        barrier.wait()
        try:
            write(f"dynamodb:///{name}:{mosaic}", document(docs[mosaic]))
        except Exception as err:  # any failure is reported below
            errors.append(repr(err))

    threads = [threading.Thread(target=create, args=(mosaic,)) for mosaic in docs]
    events = dynamodb_client(REGION).meta.events
    events.register("before-call.dynamodb.CreateTable", hold)
    try:
        with counting() as calls:
            for thread in threads:
                thread.start()
            join_all(threads, timeout=300, what="the writers meeting a missing table")
    finally:
        events.unregister("before-call.dynamodb.CreateTable", hold)
    assert not errors, errors
    assert calls["CreateTable"] == len(docs)  # all three sent it, only one could create
    for mosaic, tiles in docs.items():
        assert read_tiles(f"dynamodb:///{name}:{mosaic}") == tiles


def test_concurrent_writers_create_one_missing_table(dynamodb_env, tmp_path):
    """Three writer processes meet the same missing table at once: one creates it, the others
    get ResourceInUseException and wait for it; every mosaic is written."""
    name = unique_name("racecreate")
    docs = {f"m{i}": block(i * 4, 0, 4, 8, f"t{i}") for i in range(3)}
    env = worker_env(dynamodb_env.endpoint)
    workers = {
        mosaic: start_worker(
            "write", f"dynamodb:///{name}:{mosaic}", document_file(tmp_path, tiles, mosaic), env=env
        )
        for mosaic, tiles in docs.items()
    }
    for worker in workers.values():
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    for mosaic, tiles in docs.items():
        assert read_tiles(f"dynamodb:///{name}:{mosaic}") == tiles


# ---------------------------------------------------------------------- round trip and reads
def test_round_trip(table, dynamodb_env):
    tiles = block(40, 90, 16, 8)
    doc = document(tiles, name="roundtrip", attribution="me", asset_prefix="")
    doc.colormap = {1: (255, 0, 0, 255)}
    uri = f"dynamodb://us-east-1/{table}:roundtrip"
    write(uri, doc)
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.tiles == {}  # tiles stay in the table
        assert backend.mosaic_def.name == "roundtrip"
        assert backend.mosaic_def.colormap == {1: (255, 0, 0, 255)}
        assert backend.mosaic_def.bounds == doc.bounds
        assert backend.get_assets(41, 91, 8) == ["s3://b/a/41_91.tif", "s3://b/a/all.tif"]
        assert backend.get_assets(41 * 4 + 3, 91 * 4, 10) == backend.get_assets(41, 91, 8)
        assert backend.get_assets(0, 0, 8) == []
        exported = backend.to_document()
        assert exported.tiles == tiles
        assert sorted(backend.info(quadkeys=True).quadkeys) == sorted(tiles)
        assert exported.metadata() == {**doc.metadata()}


def test_low_zoom_tile_is_one_request(table, dynamodb_env):
    """Opening is one GetItem (metadata with its overview description); a tile 1-2 zooms above
    quadkey_zoom is one Query, 3+ zooms above (down to minzoom) one GetItem of its overview;
    never one request per child quadkey. Below minzoom (never served) there are no overviews."""
    tiles = block(32, 48, 32, 8)  # 1024 quadkeys; a zoom-4 tile covers 256 of them
    uri = f"dynamodb:///{table}:lowzoom"
    write(uri, document(tiles))
    cache.clear_all()
    with counting() as calls:
        backend = MosaicBackend(uri)
    assert calls == Counter({"GetItem": 1})
    assert backend.overview_zooms == frozenset(range(2, 6))
    for x, y, z, operation in [
        (9, 13, 6, "Query"),
        (2, 3, 4, "GetItem"),
        (0, 0, 2, "GetItem"),
        (0, 0, 1, "Query"),
    ]:
        with counting(backend) as calls:
            assets = backend.get_assets(x, y, z)
        assert calls == Counter({operation: 1}), (x, y, z)
        assert assets == query_path(tiles, tile_quadkey(x, y, z))
    assert len([qk for qk in tiles if qk.startswith(tile_quadkey(2, 3, 4))]) == 256


def test_overviews_equal_the_query_path_at_every_zoom(table, dynamodb_env):
    """Several thousand scattered quadkeys: every stored overview is exactly the Query path's
    answer, and tiles read at every zoom agree with it (one request each)."""
    tiles = random_tiles(seed=7, count=3000)
    uri = f"dynamodb:///{table}:everyzoom"
    write(uri, document(tiles, minzoom=0))
    assert stored_overviews(dynamodb_env, table, "everyzoom") == expected_overviews(tiles, 8, 0)
    cache.clear_all()
    rng = random.Random(1)
    with MosaicBackend(uri) as backend:
        for zoom in range(8):
            prefixes = sorted({qk[:zoom] for qk in tiles})
            # moto's Query costs ~0.2 s on this partition: a few Query-path tiles suffice.
            size = 10 if zoom <= 5 else 3
            sample = prefixes if len(prefixes) <= size else rng.sample(prefixes, size)
            if zoom in (3, 7):
                sample.append("1" * zoom)  # a tile without any quadkey (outside the data)
            for prefix in sample:
                x, y, _ = quadkey_to_tile(prefix)
                with counting(backend) as calls:
                    assets = backend.get_assets(x, y, zoom)
                assert assets == query_path(tiles, prefix), prefix
                if zoom <= 5 and query_path(tiles, prefix):
                    assert calls == Counter({"GetItem": 1})
                elif zoom > 5:
                    assert calls == Counter({"Query": 1})


def test_zoom_zero_never_returns_metadata(table, dynamodb_env):
    tiles = block(0, 0, 2, 1)
    uri = f"dynamodb:///{table}:z0"
    write(uri, document(tiles, quadkey_zoom=1))
    with MosaicBackend(uri, minzoom=0) as backend:
        assets = backend.get_assets(0, 0, 0)
        assert "-1" not in backend._fetch_prefix("")
    assert sorted(assets) == sorted({a for v in tiles.values() for a in v})


def test_bbox_uses_batch_get(table, dynamodb_env):
    tiles = block(100, 100, 15, 10)  # 225 quadkeys
    uri = f"dynamodb:///{table}:bbox"
    write(uri, document(tiles, quadkey_zoom=10))
    with MosaicBackend(uri) as backend:
        west, _, _, north = backend.mosaic_tms.bounds(100, 100, 10)
        _, south, east, _ = backend.mosaic_tms.bounds(114, 114, 10)
        inset = 1e-6
        with counting(backend) as calls:
            assets = backend.assets_for_bbox(
                west + inset, south + inset, east - inset, north - inset
            )
    assert calls == Counter({"BatchGetItem": 3})  # 225 keys, 100 per request
    assert sorted(assets) == sorted({a for v in tiles.values() for a in v})


def test_query_pages_are_followed(table, dynamodb_env):
    """A prefix whose items exceed DynamoDB's 1 MB page: every page is read."""
    big = "x" * 900
    tiles = {
        qk: [f"s3://bucket/{big}/{qk}.tif"] for qk in block(64, 64, 40, 8)
    }  # 1600 items of ~1 KB
    uri = f"dynamodb:///{table}:paged"
    write(uri, document(tiles))
    with MosaicBackend(uri) as backend:
        prefix = tile_quadkey(1, 1, 2)
        expected = {qk for qk in tiles if qk.startswith(prefix)}
        with counting(backend) as calls:
            found = backend._fetch_prefix(prefix)
        assert set(found) == expected
        assert calls["Query"] >= 2
        assert backend.to_document().tiles == tiles
