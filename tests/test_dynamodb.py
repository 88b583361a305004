"""DynamoDB backend against two real DynamoDB implementations (moto server and dynalite)."""

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import (
    LOCK_SUFFIX,
    OVERVIEW_SUFFIX,
    SLOT_LIMIT,
    DynamoDBBackend,
    Lease,
    dynamodb_client,
    metadata_fingerprint,
    parse_dynamodb_uri,
)
from lambda_handler.backends.dynamodb.batch_io import batch_write, delete_requests
from lambda_handler.errors import (
    InvalidMosaicError,
    InvalidMosaicNameError,
    MosaicConflictError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.mosaic.tiling import quadkey_to_tile, tile_quadkey
from lambda_handler.settings import aws_settings
from tests.fault_proxy import DROP, DROP_AFTER, Reply
from tests.servers_aws import REGION, unique_name
from tests.waiting import Deadline


# ---------------------------------------------------------------------- helpers
def block(x0: int, y0: int, size: int, zoom: int, tag: str = "a") -> dict[str, list[str]]:
    """`size` x `size` quadkeys from (x0, y0) at `zoom`, each with its own and a shared asset."""
    tiles = {}
    for x in range(x0, x0 + size):
        for y in range(y0, y0 + size):
            tiles[tile_quadkey(x, y, zoom)] = [f"s3://b/{tag}/{x}_{y}.tif", f"s3://b/{tag}/all.tif"]
    return tiles


def document(
    tiles: dict[str, list[str]], quadkey_zoom: int = 8, minzoom: int | None = None, **extra
) -> MosaicJSON:
    return MosaicJSON(
        mosaicjson="0.0.3",
        minzoom=max(0, quadkey_zoom - 6) if minzoom is None else minzoom,
        maxzoom=quadkey_zoom + 4,
        quadkey_zoom=quadkey_zoom,
        bounds=(-180.0, -85.0, 180.0, 85.0),
        tiles=tiles,
        **extra,
    )


def raw_items(server, table: str, mosaic: str) -> dict[str, dict]:
    """Every item of a partition, read with a plain client (quadkey -> item)."""
    client = server.client("dynamodb")
    items, params = {}, {}
    paging = Deadline(60, f"the last Query page of partition {mosaic!r}")
    while True:
        paging.check(f"{len(items)} items so far")
        page = client.query(
            TableName=table,
            KeyConditionExpression="mosaicId = :m",
            ExpressionAttributeValues={":m": {"S": mosaic}},
            ConsistentRead=True,
            **params,
        )
        items.update({item["quadkey"]["S"]: item for item in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return items
        params = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def query_path(tiles: dict[str, list[str]], prefix: str) -> list[str]:
    """What the Query path answers for a prefix: its children's assets in quadkey order, first
    occurrence kept (computed here from the document, independently of the backend)."""
    children = sorted(qk for qk in tiles if qk.startswith(prefix))
    return list(dict.fromkeys(a for qk in children for a in tiles[qk]))


def expected_overviews(
    tiles: dict[str, list[str]], quadkey_zoom: int, minzoom: int = 2
) -> dict[str, list[str]]:
    """Every overview a fresh write must store: each prefix of zoom minzoom .. quadkey_zoom - 3
    (`document` gives a quadkey_zoom-8 mosaic minzoom 2)."""
    prefixes = {qk[:zoom] for qk in tiles for zoom in range(minzoom, quadkey_zoom - 2)}
    return {prefix: query_path(tiles, prefix) for prefix in prefixes}


def stored_overviews(server, table: str, mosaic: str) -> dict[str, list[str] | None]:
    """The overview partition read with a plain client: prefix -> assets (None: a marker)."""
    found = {}
    for key, item in raw_items(server, table, mosaic + OVERVIEW_SUFFIX).items():
        if key != "info":
            assets = item.get("assets")
            found[key.partition(":")[2]] = [a["S"] for a in assets["L"]] if assets else None
    return found


def random_tiles(seed: int, count: int, zoom: int = 8, tag: str = "r") -> dict[str, list[str]]:
    """`count` scattered quadkeys with overlapping assets (order and de-duplication matter)."""
    rng = random.Random(seed)
    side = 1 << zoom
    tiles = {}
    while len(tiles) < count:
        x, y = rng.randrange(side // 4, side // 2), rng.randrange(side // 4, 3 * side // 4)
        assets = [f"s3://b/{tag}/{x // 3}_{y // 3}.tif"]
        if rng.random() < 0.4:
            assets.insert(0, f"s3://b/{tag}/wide_{x // 7}_{y // 5}.tif")
        if rng.random() < 0.1:
            assets.append(f"s3://b/{tag}/only_{x}_{y}.tif")
        tiles[tile_quadkey(x, y, zoom)] = assets
    return tiles


def inside_feature(uri: str, x0: int, y0: int, zoom: int, path: str, size: int = 1) -> dict:
    """A footprint strictly inside the `size` x `size` quadkeys from (x0, y0): no neighbour."""
    with MosaicBackend(uri) as backend:
        west, _, _, north = backend.mosaic_tms.bounds(x0, y0, zoom)
        _, south, east, _ = backend.mosaic_tms.bounds(x0 + size - 1, y0 + size - 1, zoom)
    inset = 0.01
    x0, y0, x1, y1 = west + inset, north - inset, east - inset, south + inset
    return {
        "type": "Feature",
        "properties": {"path": path},
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x0, y1], [x1, y1], [x1, y0], [x0, y0], [x0, y1]]],
        },
    }


@contextmanager
def counting(backend: DynamoDBBackend | None = None) -> Iterator[Counter]:
    """Count the DynamoDB operations the backend's client sends (a botocore event hook); without
    a backend, the operations of the process-wide client (e.g. opening a mosaic)."""
    calls: Counter = Counter()

    def hook(model, **kwargs) -> None:
        calls[model.name] += 1

    client = backend.client if backend else dynamodb_client(REGION)
    events = client.meta.events
    events.register("before-call.dynamodb", hook)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", hook)


@pytest.fixture
def table(dynamodb_env) -> str:
    """A fresh mosaic table on the current DynamoDB stand-in."""
    name = unique_name("mosaics")
    assert DynamoDBBackend.create_table(name) is True
    return name


@pytest.fixture
def aws_tuning(monkeypatch):
    """Set MOSAIC_AWS_* settings for one test."""

    def apply(**values) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"MOSAIC_AWS_{name.upper()}", str(value))
        aws_settings.cache_clear()

    yield apply
    aws_settings.cache_clear()


def write(uri: str, doc: MosaicJSON, overwrite: bool = False) -> None:
    with MosaicBackend(uri, mosaic_def=doc) as backend:
        backend.write(overwrite=overwrite)


def read_tiles(uri: str) -> dict[str, list[str]]:
    cache.clear_all()
    with MosaicBackend(uri) as backend:
        return backend.to_document().tiles


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
    barrier = threading.Barrier(len(docs))
    creators = threading.Barrier(len(docs), timeout=30)
    errors: list[str] = []

    def hold(**kwargs) -> None:
        creators.wait()  # the table cannot exist before every writer asks for it

    def create(mosaic: str) -> None:
        barrier.wait()
        try:
            write(f"dynamodb:///{name}:{mosaic}", document(docs[mosaic]))
        except Exception as err:  # noqa: BLE001 - any failure is reported below
            errors.append(repr(err))

    threads = [threading.Thread(target=create, args=(mosaic,)) for mosaic in docs]
    events = dynamodb_client(REGION).meta.events
    events.register("before-call.dynamodb.CreateTable", hold)
    try:
        with counting() as calls:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
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


# ---------------------------------------------------------------------- writes
def test_layout_is_cogeo_mosaics(table, dynamodb_env):
    """What we write is exactly cogeo-mosaic's layout: metadata item + one item per quadkey."""
    tiles = block(10, 10, 3, 8)
    doc = document(tiles, name="layout")
    uri = f"dynamodb:///{table}:layout"
    write(uri, doc)
    items = raw_items(dynamodb_env, table, "layout")
    assert set(items) == {"-1", *tiles}
    meta = items["-1"]
    generation = meta["_generation"]["S"]
    for quadkey, assets in tiles.items():
        assert items[quadkey] == {
            "mosaicId": {"S": "layout"},
            "quadkey": {"S": quadkey},
            "assets": {"L": [{"S": a} for a in assets]},
            "gen": {"S": generation},  # an attribute cogeo-mosaic ignores
        }
    assert "tiles" not in meta
    assert meta["minzoom"] == {"N": "2"} and meta["quadkey_zoom"] == {"N": "8"}
    # numbers are DynamoDB numbers (servers may normalise "85.0" to "85")
    assert [Decimal(v["N"]) for v in meta["bounds"]["L"]] == [-180, -85, 180, 85]
    assert meta["mosaicjson"] == {"S": "0.0.3"} and meta["name"] == {"S": "layout"}
    # no lock left behind
    assert raw_items(dynamodb_env, table, "layout" + LOCK_SUFFIX) == {}
    # overviews live in their own partition, without a metadata item: never listed as a mosaic
    overviews = raw_items(dynamodb_env, table, "layout" + OVERVIEW_SUFFIX)
    assert "-1" not in overviews and overviews
    assert set(meta["_overviews"]["M"]) >= {"fingerprint", "minzoom", "maxzoom"}
    assert "_pending" not in meta  # the write finished promoting
    assert DynamoDBBackend.list_mosaics(table) == ["layout"]


def test_reads_a_mosaic_laid_out_by_cogeo_mosaic(table, dynamodb_env):
    """Items put with plain boto3 calls exactly as cogeo-mosaic's DynamoDBBackend.write does
    (`model_dump_json(exclude={'tiles'})` parsed with Decimal, nulls included)."""
    client = dynamodb_env.client("dynamodb")
    from boto3.dynamodb.types import TypeSerializer

    meta_json = json.dumps(
        {
            "mosaicjson": "0.0.3",
            "name": None,
            "description": None,
            "version": "1.0.0",
            "attribution": None,
            "minzoom": 4,
            "maxzoom": 12,
            "quadkey_zoom": 8,
            "bounds": [-78.5, 45.0, -77.5, 45.75],
            "center": [-78.0, 45.375, 4],
            "tilematrixset": None,
            "asset_type": None,
            "asset_prefix": "s3://bucket/",
            "data_type": None,
            "colormap": None,
            "layers": None,
        }
    )
    serializer = TypeSerializer()
    meta = json.loads(meta_json, parse_float=Decimal)
    items = [{"quadkey": "-1", "mosaicId": "legacy", **meta}]
    tiles = block(71, 91, 4, 8)
    items += [{"mosaicId": "legacy", "quadkey": qk, "assets": a} for qk, a in tiles.items()]
    for item in items:
        client.put_item(TableName=table, Item={k: serializer.serialize(v) for k, v in item.items()})
    with MosaicBackend(f"dynamodb:///{table}:legacy") as backend:
        assert backend.mosaic_def.bounds == (-78.5, 45.0, -77.5, 45.75)
        assert backend.mosaic_def.center == (-78.0, 45.375, 4)
        assert backend.quadkey_zoom == 8 and backend.minzoom == 4
        assert backend.get_assets(72, 92, 8) == [
            "s3://bucket/" + a for a in tiles[tile_quadkey(72, 92, 8)]
        ]
        assert backend.to_document().tiles == tiles
        # no overview partition: low zooms are answered by the Query
        assert backend.overview_zooms == frozenset()
        with counting(backend) as calls:
            assets = backend.get_assets(4, 5, 4)
        assert calls == Counter({"Query": 1})
        assert assets == ["s3://bucket/" + a for a in query_path(tiles, tile_quadkey(4, 5, 4))]
    assert "legacy" in DynamoDBBackend.list_mosaics(table)
    # an update builds the overviews of the whole mosaic, as a fresh write would
    feature = inside_feature(f"dynamodb:///{table}:legacy", 72, 92, 8, "s3://bucket/added.tif")
    with MosaicBackend(f"dynamodb:///{table}:legacy") as backend:
        backend.update([feature])
    updated = read_tiles(f"dynamodb:///{table}:legacy")
    assert updated[tile_quadkey(72, 92, 8)][0] == "added.tif"
    assert stored_overviews(dynamodb_env, table, "legacy") == expected_overviews(updated, 8, 4)
    cache.clear_all()
    with MosaicBackend(f"dynamodb:///{table}:legacy") as backend:
        assert backend.overview_zooms == frozenset({4, 5})


def test_overwrite_rules(table, dynamodb_env):
    uri = f"dynamodb:///{table}:ow"
    first = block(10, 10, 4, 8, "one")
    write(uri, document(first))
    with pytest.raises(MosaicExistsError, match="already exists"):
        write(uri, document(block(10, 10, 4, 8, "two")))
    assert read_tiles(uri) == first
    second = block(12, 12, 4, 8, "two")  # overlaps part of the first, drops the rest
    second[tile_quadkey(10, 10, 8)] = first[tile_quadkey(10, 10, 8)]  # one quadkey unchanged
    write(uri, document(second, name="second"), overwrite=True)
    assert read_tiles(uri) == second
    items = raw_items(dynamodb_env, table, "ow")
    # removed quadkeys are empty tombstones of the new generation until the next write
    live = {qk for qk, item in items.items() if item.get("assets", {}).get("L")}
    assert live == {"-1", *second} - {"-1"} and "-1" in items
    generation = items["-1"]["_generation"]["S"]
    for quadkey in set(items) - live - {"-1"}:
        assert quadkey in first and items[quadkey]["gen"]["S"] == generation
    assert all("next_gen" not in item for item in items.values())  # promotion finished
    write(uri, document(second, name="third"), overwrite=True)
    assert set(raw_items(dynamodb_env, table, "ow")) == {"-1", *second}
    # the overviews are those of a fresh write of the new version (stale prefixes removed)
    assert stored_overviews(dynamodb_env, table, "ow") == expected_overviews(second, 8)
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.name == "third"


def test_unchanged_quadkeys_are_not_rewritten(table, dynamodb_env):
    uri = f"dynamodb:///{table}:same"
    tiles = block(0, 0, 10, 8)
    write(uri, document(tiles))
    with MosaicBackend(uri, mosaic_def=document(tiles)) as backend, counting(backend) as calls:
        backend.write(overwrite=True)
    assert calls["BatchWriteItem"] == 0
    assert read_tiles(uri) == tiles


def test_concurrent_creators_one_wins_nothing_mixed(table, dynamodb_env):
    uri = f"dynamodb:///{table}:race"
    docs = {tag: document(block(0, 0, 20, 8, tag)) for tag in ("left", "right")}
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def create(tag: str) -> None:
        backend = MosaicBackend(uri, mosaic_def=docs[tag])
        barrier.wait()
        try:
            backend.write()
            outcome[tag] = "won"
        except MosaicExistsError:
            outcome[tag] = "lost"

    threads = [threading.Thread(target=create, args=(tag,)) for tag in docs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome.values()) == ["lost", "won"]
    winner = next(tag for tag, result in outcome.items() if result == "won")
    assert read_tiles(uri) == docs[winner].tiles


def test_update_is_idempotent_and_keeps_assets(table, dynamodb_env):
    uri = f"dynamodb:///{table}:upd"
    tiles = block(71, 91, 2, 8)
    write(uri, document(tiles, quadkey_zoom=8))
    feature = inside_feature(uri, 71, 91, 8, "s3://b/new.tif")
    for _ in range(2):  # running the same update twice gives the same assets
        cache.clear_all()
        with MosaicBackend(uri) as backend:
            backend.update([feature])
    stored = read_tiles(uri)
    key = tile_quadkey(71, 91, 8)
    assert stored[key] == ["s3://b/new.tif", *tiles[key]]
    for quadkey, assets in tiles.items():
        assert set(assets) <= set(stored[quadkey])
        assert len(stored[quadkey]) == len(set(stored[quadkey]))
    with MosaicBackend(uri) as backend:
        assert backend.mosaic_def.version == "1.0.2"


def test_update_of_missing_mosaic(table, dynamodb_env):
    uri = f"dynamodb:///{table}:gone"
    write(uri, document(block(0, 0, 2, 8)))
    backend = MosaicBackend(uri)
    MosaicBackend(uri).delete()
    with pytest.raises(MosaicNotFoundError):
        backend._persist_update(backend.mosaic_def, {tile_quadkey(0, 0, 8): ["x"]})


def test_delete_removes_every_item(table, dynamodb_env):
    uri = f"dynamodb:///{table}:del"
    tiles = {qk: [f"s3://bucket/{'y' * 900}/{qk}.tif"] for qk in block(0, 0, 40, 8)}
    write(uri, document(tiles))
    write(f"dynamodb:///{table}:keep", document(block(0, 0, 2, 8)))
    assert raw_items(dynamodb_env, table, "del" + OVERVIEW_SUFFIX)
    MosaicBackend(uri).delete()
    assert raw_items(dynamodb_env, table, "del") == {}
    assert raw_items(dynamodb_env, table, "del" + OVERVIEW_SUFFIX) == {}
    with pytest.raises(MosaicNotFoundError):
        MosaicBackend(uri)
    with pytest.raises(MosaicNotFoundError):
        DynamoDBBackend(uri, mosaic_def=document(tiles)).delete()
    assert DynamoDBBackend.list_mosaics(table) == ["keep"]


def test_list_mosaics(table, dynamodb_env):
    for name in ("b-mosaic", "a.mosaic", "c_mosaic"):
        write(f"dynamodb:///{table}:{name}", document(block(0, 0, 2, 8)))
    assert DynamoDBBackend.list_mosaics(table) == ["a.mosaic", "b-mosaic", "c_mosaic"]
    assert DynamoDBBackend.list_mosaics(f"dynamodb://us-east-1/{table}") == [
        "a.mosaic",
        "b-mosaic",
        "c_mosaic",
    ]
    with pytest.raises(MosaicNotFoundError):
        DynamoDBBackend.list_mosaics("no-such-table")
    # The store listings the CLI (`mosaic-tiler list`) and `GET /mosaics` use.
    from lambda_handler.stores import list_mosaic_ids, list_mosaics

    assert list_mosaics(f"dynamodb:///{table}") == ["a.mosaic", "b-mosaic", "c_mosaic"]
    assert list_mosaic_ids(f"dynamodb:///{table}:{{mosaic_id}}") == [
        "a.mosaic",
        "b-mosaic",
        "c_mosaic",
    ]
    assert list_mosaic_ids("dynamodb:///no-such-table:{mosaic_id}") == []


def test_item_over_400kb_is_rejected_before_writing(table, dynamodb_env):
    tiles = block(0, 0, 3, 8)
    heavy = tile_quadkey(1, 2, 8)
    tiles[heavy] = [f"s3://bucket/{'z' * 200}/{i}.tif" for i in range(2000)]
    uri = f"dynamodb:///{table}:heavy"
    with pytest.raises(InvalidMosaicError, match=rf"quadkey '{heavy}'.*larger quadkey_zoom"):
        write(uri, document(tiles))
    assert raw_items(dynamodb_env, table, "heavy") == {}
    assert raw_items(dynamodb_env, table, "heavy" + LOCK_SUFFIX) == {}
    # just under the limit is accepted by the server
    tiles[heavy] = [f"s3://bucket/{'z' * 200}/{i:05d}.tif" for i in range(900)]
    size = sum(len(a) + 1 for a in tiles[heavy])
    assert SLOT_LIMIT - 20_000 < size < SLOT_LIMIT
    write(uri, document(tiles))
    assert read_tiles(uri)[heavy] == tiles[heavy]
    # overwriting it stages both versions in one item: still under DynamoDB's limit
    tiles[heavy] = [f"s3://bucket/{'y' * 200}/{i:05d}.tif" for i in range(900)]
    write(uri, document(tiles), overwrite=True)
    assert read_tiles(uri)[heavy] == tiles[heavy]


# ---------------------------------------------------------------------- overviews
def test_update_recomputes_the_changed_overviews(table, dynamodb_env):
    """An update rewrites the overviews above the changed quadkeys from their stored children
    (one Query per changed zoom-5 prefix, not the whole mosaic): equal to a fresh write."""
    tiles = random_tiles(seed=3, count=800)
    uri = f"dynamodb:///{table}:ovupd"
    write(uri, document(tiles))
    # 4 x 4 quadkeys from (63, 95): across zoom-5 prefix borders (x 63|64, y 95|96)
    feature = inside_feature(uri, 63, 95, 8, "s3://b/update.tif", size=4)
    for _ in range(2):  # idempotent
        cache.clear_all()
        with MosaicBackend(uri) as backend, counting(backend) as calls:
            backend.update([feature])
        assert calls["Query"] == 4  # the four zoom-5 prefixes the footprint touches
    updated = read_tiles(uri)
    assert updated[tile_quadkey(64, 96, 8)][0] == "s3://b/update.tif"
    assert stored_overviews(dynamodb_env, table, "ovupd") == expected_overviews(updated, 8)
    cache.clear_all()
    with MosaicBackend(uri) as backend:
        assert backend.overview_zooms == frozenset(range(2, 6))
        assert backend.get_assets(0, 0, 2) == query_path(updated, "00")


def test_oversized_overview_falls_back(table, dynamodb_env):
    """A prefix whose assets exceed DynamoDB's item limit gets a marker, not an item that the
    server would refuse; its ancestors too. Readers answer a marker from the four children's
    overviews (one BatchGetItem) where the zoom below has overviews, else with the Query."""
    heavy = {
        tile_quadkey(x, y, 4): [f"s3://bucket/{'h' * 200}/{x}_{y}_{i}.tif" for i in range(30)]
        for x in range(8)
        for y in range(8)
    }  # 64 quadkeys of ~7 KB each under prefix "0": ~440 KB together
    light = block(8, 0, 4, 4)  # 16 quadkeys under prefix "1"
    tiles = {**heavy, **light}
    uri = f"dynamodb:///{table}:big"
    write(uri, document(tiles, quadkey_zoom=4))
    assert stored_overviews(dynamodb_env, table, "big") == {
        "": None,
        "0": None,
        "1": query_path(tiles, "1"),
    }
    cache.clear_all()
    with MosaicBackend(uri, minzoom=0) as backend:
        assert backend.overview_zooms == frozenset({0, 1})
        for x, y, z, expected_calls in [
            (0, 0, 1, {"GetItem": 1, "Query": 1}),  # marker, no overviews below: the Query
            (1, 0, 1, {"GetItem": 1}),
            # marker: children "0" (marker: Query), "1" (overview), "2" and "3" (no item: Query)
            (0, 0, 0, {"GetItem": 1, "BatchGetItem": 1, "Query": 3}),
        ]:
            with counting(backend) as calls:
                assets = backend.get_assets(x, y, z)
            assert assets == query_path(tiles, tile_quadkey(x, y, z))
            assert calls == Counter(expected_calls), (x, y, z)


def test_missing_or_stale_overviews_fall_back_to_the_query(table, dynamodb_env):
    """A missing overview item is answered by the Query; overviews written for other metadata
    (a tool that does not know overviews rewrote the mosaic) are not trusted at all."""
    tiles = block(32, 48, 16, 8)  # the 256 quadkeys of tile (2, 3, 4)
    uri = f"dynamodb:///{table}:stale"
    write(uri, document(tiles))
    client = dynamodb_env.client("dynamodb")
    overview_item = {
        "mosaicId": {"S": "stale" + OVERVIEW_SUFFIX},
        "quadkey": {"S": "z4:" + tile_quadkey(2, 3, 4)},
    }
    client.delete_item(TableName=table, Key=overview_item)
    cache.clear_all()
    with MosaicBackend(uri) as backend:
        with counting(backend) as calls:
            assets = backend.get_assets(2, 3, 4)
        assert calls == Counter({"GetItem": 1, "Query": 1})
        assert assets == query_path(tiles, tile_quadkey(2, 3, 4))
    # another tool rewrites the mosaic (new tiles and metadata, overview partition untouched)
    rewritten = block(32, 48, 16, 8, tag="other")
    meta = raw_items(dynamodb_env, table, "stale")["-1"]
    meta["name"] = {"S": "rewritten"}
    puts = [
        {
            "PutRequest": {
                "Item": {
                    "mosaicId": {"S": "stale"},
                    "quadkey": {"S": quadkey},
                    "assets": {"L": [{"S": a} for a in assets]},
                }
            }
        }
        for quadkey, assets in rewritten.items()
    ]
    for start in range(0, len(puts), 25):
        client.batch_write_item(RequestItems={table: puts[start : start + 25]})
    client.put_item(TableName=table, Item=meta)
    cache.clear_all()
    with MosaicBackend(uri) as backend:
        assert backend.overview_zooms == frozenset()
        with counting(backend) as calls:
            assets = backend.get_assets(1, 1, 3)
        assert calls == Counter({"Query": 1})
        assert assets == query_path(rewritten, tile_quadkey(1, 1, 3))


# The fields cogeo-mosaic 9.2's MosaicJSON dumps (`model_dump_json(exclude={"tiles"})`).
COGEO_METADATA_FIELDS = (
    "mosaicjson",
    "name",
    "description",
    "version",
    "attribution",
    "minzoom",
    "maxzoom",
    "quadkey_zoom",
    "bounds",
    "center",
    "tilematrixset",
    "asset_type",
    "asset_prefix",
    "data_type",
    "colormap",
    "layers",
)


def cogeo_mosaic_write(table: str, mosaic: str, tiles: dict[str, list[str]]) -> None:
    """cogeo-mosaic 9.2's `DynamoDBBackend.write(overwrite=True)` of a mosaic it read from
    this table, same metadata, new tiles, call for call: boto3's resource API; `_mosaic_exists`
    (GetItem -1), `delete()` (one Query projecting quadkey, batch_writer DeleteItem of each
    and of -1), then batch_writer PutItem of the metadata item (the JSON dump parsed with
    Decimal: the whole item, no private attribute) and of `{mosaicId, quadkey, assets}`."""
    import boto3
    from boto3.dynamodb.conditions import Key

    resource = boto3.resource("dynamodb", region_name=REGION)
    dynamo_table = resource.Table(table)
    _ = dynamo_table.table_status  # cogeo's _table_exists()
    key = {"mosaicId": mosaic, "quadkey": "-1"}
    stored = dynamo_table.get_item(Key=key).get("Item", {})  # cogeo's _mosaic_exists()
    assert stored
    # the document cogeo-mosaic read (its MosaicJSON fields; absent ones dump as null)
    plain = {k: v for k, v in stored.items() if k in COGEO_METADATA_FIELDS}
    meta_json = json.dumps(
        {f: plain.get(f) for f in COGEO_METADATA_FIELDS},
        default=lambda v: int(v) if v == v.to_integral_value() else float(v),
    )
    # delete(): one unpaginated Query, then a batch of deletes
    response = dynamo_table.query(
        KeyConditionExpression=Key("mosaicId").eq(mosaic), ProjectionExpression="quadkey"
    )
    quadkeys = [i["quadkey"] for i in response["Items"] if i["quadkey"] != "-1"] + ["-1"]
    with dynamo_table.batch_writer() as batch:
        for quadkey in quadkeys:
            batch.delete_item(Key={"mosaicId": mosaic, "quadkey": quadkey})
    meta = json.loads(meta_json, parse_float=Decimal)
    items = [{"quadkey": "-1", "mosaicId": mosaic, **meta}]
    items += [{"mosaicId": mosaic, "quadkey": qk, "assets": a} for qk, a in tiles.items()]
    with dynamo_table.batch_writer() as batch:
        for item in items:
            batch.put_item(item)


def test_cogeo_mosaic_rewrite_with_same_metadata_is_detected(table, dynamodb_env):
    """cogeo-mosaic rewrites a mosaic this project wrote: same metadata (the overview
    fingerprint still matches its values), new tiles, the overview partition untouched. Its
    metadata PutItem replaces the whole item and drops the overview description, so low zooms
    are answered by the Query with the new assets, never by the stale overview items; the next
    write of this project rebuilds the overviews."""
    uri = f"dynamodb:///{table}:cogeo"
    old = block(32, 48, 16, 8, "old")
    write(uri, document(old, name="same"))
    before = raw_items(dynamodb_env, table, "cogeo")["-1"]
    assert stored_overviews(dynamodb_env, table, "cogeo") == expected_overviews(old, 8)
    new = block(32, 48, 16, 8, "new")
    cogeo_mosaic_write(table, "cogeo", new)
    after = raw_items(dynamodb_env, table, "cogeo")["-1"]
    assert metadata_fingerprint(after) == metadata_fingerprint(before)  # same metadata
    assert stored_overviews(dynamodb_env, table, "cogeo") == expected_overviews(old, 8)  # stale
    cache.clear_all()
    with MosaicBackend(uri) as backend:
        assert backend.overview_zooms == frozenset()
        assert backend.mosaic_def.name == "same"
        for x, y, z in [(2, 3, 4), (1, 1, 3), (0, 0, 2), (4, 6, 5), (8, 12, 6), (16, 24, 7)]:
            prefix = tile_quadkey(x, y, z)
            assets = backend.get_assets(x, y, z)
            assert assets == query_path(new, prefix), (x, y, z)
            assert not any("/old/" in a for a in assets)
        assert backend.get_assets(40, 50, 8) == new[tile_quadkey(40, 50, 8)]
    # this project writes again: the overviews follow the new tiles and are trusted again
    newer = block(32, 48, 16, 8, "newer")
    write(uri, document(newer, name="same"), overwrite=True)
    assert stored_overviews(dynamodb_env, table, "cogeo") == expected_overviews(newer, 8)
    cache.clear_all()
    with MosaicBackend(uri) as backend:
        assert backend.overview_zooms == frozenset({2, 3, 4, 5})
        assert backend.get_assets(2, 3, 4) == query_path(newer, tile_quadkey(2, 3, 4))


# ---------------------------------------------------------------------- failures
def proxied_env(monkeypatch, proxy) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint)


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


# ---------------------------------------------------------------------- never a mixed mosaic
# The versions written by the tests below: every quadkey changes, some disappear, some appear.
OLD = block(0, 0, 24, 8, "old")
NEW = block(4, 4, 24, 8, "new")


def sample_tiles() -> list[tuple[int, int, int]]:
    """Tiles over both versions at every zoom the mosaic serves below and at its quadkey zoom
    (overview items at 2-5, the Query at 6-7, one item at 8)."""
    tiles = []
    for zoom in range(2, 9):
        side = 28 >> (8 - zoom)
        step = max(1, side // 3)
        tiles += [(x, y, zoom) for x in range(0, side + 1, step) for y in range(0, side + 1, step)]
    return tiles


def expected_assets(tiles: dict[str, list[str]], x: int, y: int, z: int) -> list[str]:
    """What a tile reads in one version (computed from the document)."""
    if z >= 8:
        return list(tiles.get(tile_quadkey(x >> (z - 8), y >> (z - 8), 8), []))
    return query_path(tiles, tile_quadkey(x, y, z))


class MixChecker:
    """Reads tiles and a bbox from a thread, over and over, while a writer works elsewhere:
    through fresh opens (no cache) and through one backend opened before the write (cached
    metadata that goes stale). Records every answer that is neither entirely `old` nor
    entirely `new`."""

    def __init__(self, uri: str, old: dict[str, list[str]], new: dict[str, list[str]]):
        self.uri = uri
        self.old, self.new = old, new
        self.expected = {
            tile: (expected_assets(old, *tile), expected_assets(new, *tile))
            for tile in sample_tiles()
        }
        self.reads = 0
        self.mixed: list[tuple] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._long_lived = MosaicBackend(uri)

    def _check(self, backend: DynamoDBBackend, tile: tuple[int, int, int]) -> None:
        assets = backend.get_assets(*tile)
        self.reads += 1
        if assets not in self.expected[tile]:
            self.mixed.append((tile, assets))

    def _check_bbox(self, backend: DynamoDBBackend) -> None:
        # the 256 quadkeys of tile (1, 1, 4): three BatchGetItem requests
        west, south, east, north = backend.mosaic_tms.bounds(1, 1, 4)
        inset = 1e-6
        assets = backend.assets_for_bbox(west + inset, south + inset, east - inset, north - inset)
        self.reads += 1
        if assets not in self.expected[(1, 1, 4)] and sorted(assets) not in [
            sorted(e) for e in self.expected[(1, 1, 4)]
        ]:
            self.mixed.append(("bbox", assets))

    def _run(self) -> None:
        tiles = list(self.expected)
        rng = random.Random(0)
        while not self._stop.is_set():
            try:
                cache.clear_all()
                fresh = MosaicBackend(self.uri)
                for tile in rng.sample(tiles, 6):
                    self._check(fresh, tile)
                self._check_bbox(fresh)
                # the backend opened before the write resolves with its old generation
                for tile in rng.sample([t for t in tiles if t[2] < 8], 6):
                    self._check(self._long_lived, tile)
            except Exception as err:  # noqa: BLE001 - recorded and asserted on
                self.errors.append(f"{type(err).__name__}: {err}")
                time.sleep(0.05)

    def __enter__(self) -> "MixChecker":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def sweep(self) -> None:
        """Read every zoom-6 and zoom-7 tile of the area once (fresh and long-lived backend)."""
        cache.clear_all()
        fresh = MosaicBackend(self.uri)
        for zoom in (6, 7):
            side = 28 >> (8 - zoom)
            for x in range(side + 1):
                for y in range(side + 1):
                    tile = (x, y, zoom)
                    self.expected.setdefault(
                        tile,
                        (expected_assets(self.old, *tile), expected_assets(self.new, *tile)),
                    )
                    self._check(fresh, tile)
                    self._check(self._long_lived, tile)

    def assert_never_mixed(self) -> None:
        """At least some reads happened, none failed, none mixed."""
        assert not self.errors, self.errors[:3]
        assert not self.mixed, self.mixed[:3]
        assert self.reads >= 10, self.reads


def run_worker(*args: str, env: dict[str, str], timeout: float = 300) -> tuple[int, str, str]:
    """Run `python -m tests.dynamodb_workers ARGS` with the current environment plus `env`."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tests.dynamodb_workers", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    return result.returncode, result.stdout, result.stderr


def start_worker(*args: str, env: dict[str, str]):
    """Start `python -m tests.dynamodb_workers ARGS` (to be killed)."""
    import os
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "tests.dynamodb_workers", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )


def worker_env(endpoint: str, **settings) -> dict[str, str]:
    """A writer process's environment: its DynamoDB endpoint, a short lease, few retries."""
    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "MOSAIC_AWS_WRITE_LOCK_SECONDS": "5",
        "MOSAIC_AWS_MAX_ATTEMPTS": "2",
        "MOSAIC_AWS_WRITE_THREADS": "2",
    }
    env.update({f"MOSAIC_AWS_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def document_file(tmp_path, tiles: dict[str, list[str]], name: str) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(document(tiles, name=name).to_json())
    return str(path)


def write_when_free(uri: str, doc: MosaicJSON, overwrite: bool = True) -> float:
    """Write as soon as the writer lock allows; returns the seconds waited (fails after 60)."""
    started = time.monotonic()
    unlocked = Deadline(60, f"the writer lock of {uri} to be free")
    while True:
        try:
            write(uri, doc, overwrite=overwrite)
            return time.monotonic() - started
        except MosaicConflictError:
            unlocked.check()
            time.sleep(0.2)


def staged_items(server, table: str, mosaic: str) -> list[dict]:
    return [i for i in raw_items(server, table, mosaic).values() if "next_gen" in i]


def assert_layout_readable(server, table: str, mosaic: str, *versions: dict) -> None:
    """What cogeo-mosaic reads (`item.get('assets', [])` per quadkey) is a list of strings on
    every item, each some version's value of that quadkey (it may lag, it never breaks)."""
    for quadkey, item in raw_items(server, table, mosaic).items():
        if quadkey == "-1":
            continue
        assets = [a["S"] for a in item.get("assets", {"L": []})["L"]]
        assert assets in [v.get(quadkey, []) for v in versions], quadkey


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
    with MixChecker(uri, OLD, NEW) as checker:
        code, _, stderr = run_worker(
            "write",
            uri,
            document_file(tmp_path, NEW, "new"),
            "--overwrite",
            env=worker_env(proxy.endpoint),
        )
        time.sleep(1.0)  # and reads go on after the writer is gone
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
    with MixChecker(uri, OLD, NEW) as checker:
        code, _, stderr = run_worker(
            "write",
            uri,
            document_file(tmp_path, NEW, "new"),
            "--overwrite",
            env=worker_env(proxy.endpoint),
        )
        time.sleep(1.0)  # and reads go on after the writer is gone
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
