"""DynamoDB overview items: recomputed by updates, oversized, stale or missing ones fall back
to the Query, a cogeo-mosaic rewrite is detected."""

import json
from collections import Counter
from decimal import Decimal

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import (
    OVERVIEW_SUFFIX,
    metadata_fingerprint,
)
from lambda_handler.mosaic.tiling import tile_quadkey
from tests.dynamodb_support import (
    block,
    counting,
    document,
    expected_overviews,
    inside_feature,
    query_path,
    random_tiles,
    raw_items,
    read_tiles,
    stored_overviews,
    write,
)
from tests.servers_aws import REGION


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
