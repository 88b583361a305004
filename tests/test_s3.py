"""What only the S3 backend does, against two real S3 implementations (moto server and s3rver):
its URI, the probe of a server's conditional puts, one client per process, and the AWS path end
to end: COGs in the S3 stand-in, their mosaic in DynamoDB, tiles rendered through GDAL. What
every object store does is in tests/test_object_stores.py."""

from pathlib import Path

import numpy as np
import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend, aws
from lambda_handler.backends.s3 import S3Backend, parse_s3_uri, s3_client
from lambda_handler.errors import InvalidMosaicError, MosaicAuthError, MosaicExistsError
from lambda_handler.mosaic import from_urls
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.mosaic.tiling import tile_quadkey
from lambda_handler.sample_data import SCENES
from tests.servers_aws import unique_name


def document(tag: str = "a") -> MosaicJSON:
    tiles = {
        tile_quadkey(x, y, 8): [f"s3://cogs/{tag}/{x}_{y}.tif"] for x in range(4) for y in range(4)
    }
    return MosaicJSON(
        mosaicjson="0.0.3", minzoom=4, maxzoom=12, quadkey_zoom=8, tiles=tiles, name=tag
    )


@pytest.fixture
def bucket(s3_env) -> str:
    """A fresh bucket on the current S3 stand-in."""
    name = unique_name("mosaics")
    s3_env.client("s3").create_bucket(Bucket=name)
    return name


def test_uri():
    assert parse_s3_uri("s3://b/k/m.json.gz") == ("b", "k/m.json.gz")
    for bad in ("s3://b", "s3://b/", "s3:///k", "s3://b/dir/"):
        with pytest.raises(InvalidMosaicError):
            parse_s3_uri(bad)


def test_conditional_put_detection(bucket, s3_env):
    backend = S3Backend(f"s3://{bucket}/m.json", mosaic_def=document())
    # moto honours If-None-Match on PutObject; s3rver 3.7 ignores it (head-then-put fallback)
    assert backend.conditional_put_supported() is (s3_env.name == "moto")
    listed = s3_env.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == []  # the probe object is gone


def test_creator_racing_between_head_and_put_loses(moto_server, monkeypatch):
    """Another writer creates the key between our HEAD and our PUT: with a server that honours
    `If-None-Match: *` (moto, like AWS) our PUT is refused and the other document stays."""
    for name, value in moto_server.boto3_env("s3").items():
        monkeypatch.setenv(name, value)
    other = moto_server.client("s3")
    bucket = unique_name("race")
    other.create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/race.json"
    backend = S3Backend(uri, mosaic_def=document("late"))
    assert backend.conditional_put_supported()
    events = s3_client().meta.events

    def sneak_in(**kwargs) -> None:
        other.put_object(Bucket=bucket, Key="race.json", Body=document("early").to_json())

    events.register_first("before-call.s3.PutObject", sneak_in)
    try:
        with pytest.raises(MosaicExistsError):
            backend.write()
    finally:
        events.unregister("before-call.s3.PutObject", sneak_in)
    cache.clear_all()
    assert MosaicBackend(uri).mosaic_def.name == "early"


def test_unknown_access_key_is_auth_error(s3rver_server, monkeypatch):
    """s3rver checks access key ids (not SigV4 signatures): an unknown key is MosaicAuthError."""
    for name, value in s3rver_server.boto3_env("s3").items():
        monkeypatch.setenv(name, value)
    name = unique_name("auth")
    s3rver_server.client("s3").create_bucket(Bucket=name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NOT-A-KEY")
    with pytest.raises(MosaicAuthError, match="InvalidAccessKeyId"):
        MosaicBackend(f"s3://{name}/m.json")


def test_one_client_per_process(s3_env):
    assert s3_client() is s3_client() is aws.client("s3")


# ---------------------------------------------------------------------- end to end
@pytest.mark.aws
@pytest.mark.slow  # its servers are asked for by name: conftest's marking cannot see them
@pytest.mark.parametrize("s3_name,dynamodb_name", [("moto", "moto"), ("s3rver", "dynalite")])
def test_cogs_in_s3_mosaic_in_dynamodb(request, sample_cogs, monkeypatch, s3_name, dynamodb_name):
    """COGs uploaded to the S3 stand-in, their mosaic (s3:// URLs, footprints read through GDAL)
    stored in DynamoDB: tiles and points equal those of the same mosaic over local files."""
    s3 = request.getfixturevalue(f"{s3_name}_server")
    dynamodb = request.getfixturevalue(f"{dynamodb_name}_server")
    for name, value in {**s3.boto3_env("s3"), **s3.gdal_env()}.items():
        monkeypatch.setenv(name, value)
    for name, value in dynamodb.boto3_env("dynamodb").items():
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.setenv(name, value)
    bucket = unique_name("cogs")
    client = s3.client("s3")
    client.create_bucket(Bucket=bucket)
    urls = []
    for path in sample_cogs:
        key = f"scenes/{Path(path).name}"
        client.upload_file(path, bucket, key)
        urls.append(f"s3://{bucket}/{key}")

    from lambda_handler.backends.dynamodb import DynamoDBBackend

    table = unique_name("e2e")
    # dynalite and moto accept any credentials: the S3 ones serve both
    DynamoDBBackend.create_table(table)
    uri = f"dynamodb:///{table}:scenes"
    with MosaicBackend(uri, mosaic_def=from_urls(urls, quadkey_zoom=8)) as backend:
        backend.write()
    local = MosaicBackend(None, mosaic_def=from_urls(sample_cogs, quadkey_zoom=8))

    cache.clear_all()
    with MosaicBackend(uri) as remote:
        lon = (SCENES[1].center_lon + SCENES[2].center_lon) / 2
        lat = (SCENES[1].center_lat + SCENES[2].center_lat) / 2
        tile = remote.tms.tile(lon, lat, 10)
        image, assets = remote.tile(tile.x, tile.y, tile.z)
        expected, expected_assets = local.tile(tile.x, tile.y, tile.z)
        assert [Path(a).name for a in assets] == [Path(a).name for a in expected_assets]
        assert all(a.startswith(f"s3://{bucket}/") for a in assets) and len(assets) >= 2
        np.testing.assert_array_equal(image.array.data, expected.array.data)
        np.testing.assert_array_equal(image.array.mask, expected.array.mask)
        assert image.array.count() > 0

        points = remote.point(lon, lat)
        expected_points = local.point(lon, lat)
        assert [Path(a).name for a, _ in points] == [Path(a).name for a, _ in expected_points]
        for (_, got), (_, want) in zip(points, expected_points, strict=True):
            np.testing.assert_array_equal(got.array, want.array)
        # a low-zoom tile over the whole mosaic reads through one Query as well
        low = remote.tms.tile(lon, lat, 6)
        image, assets = remote.tile(low.x, low.y, low.z)
        assert len(assets) == len(sample_cogs)
