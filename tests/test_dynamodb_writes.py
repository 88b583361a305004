"""DynamoDB writes: cogeo-mosaic's layout, overwrite rules, updates, delete, listing, limits."""

import json
import threading
from collections import Counter
from decimal import Decimal

import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import (
    LOCK_SUFFIX,
    OVERVIEW_SUFFIX,
    SLOT_LIMIT,
    DynamoDBBackend,
)
from lambda_handler.errors import (
    InvalidMosaicError,
    MosaicExistsError,
    MosaicNotFoundError,
)
from lambda_handler.mosaic.tiling import tile_quadkey
from tests.dynamodb_support import (
    block,
    counting,
    document,
    expected_overviews,
    inside_feature,
    query_path,
    raw_items,
    read_tiles,
    stored_overviews,
    write,
)
from tests.waiting import join_all


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
    barrier = threading.Barrier(2, timeout=60)
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
    join_all(threads, timeout=300, what="the two creators")
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
