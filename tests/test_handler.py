"""`handler` / `batch_handler` invoked in process with real event payloads.

The mosaic lives in DynamoDB on a moto server and its COGs in S3 on the same server; tiles are
read through GDAL's S3 driver. The batch export goes to a bucket on that server and the presigned
URL is fetched over HTTP.
"""

import asyncio
import io
import json

import httpx
import numpy as np
import pytest
from rasterio.io import MemoryFile

from lambda_handler import handler as handler_module
from lambda_handler.backends import aws
from lambda_handler.handler import ApiFunction, BatchFunction, LambdaAdapter, apply_environment
from lambda_handler.lambda_responses import response_size
from lambda_handler.settings import ApiSettings, LambdaSettings
from tests.lambda_support import (
    OVERLAP,
    body_bytes,
    function_url_event,
    http_api_event,
    json_body,
    noise_cog,
    rest_api_event,
    store_mosaic,
    tile_path,
)
from tests.servers_aws import unique_name

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def aws_store(moto_server, sample_cogs, tmp_path_factory):
    """boto3 and GDAL pointed at moto for the module; a stored mosaic and an exports bucket."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        for name, value in {**moto_server.boto3_env(), **moto_server.gdal_env()}.items():
            patch.setenv(name, value)
        aws.clear_clients()
        bucket, table, mosaic_id = store_mosaic(moto_server, sample_cogs)
        noise, noise_tile = noise_cog(tmp_path_factory.mktemp("noise"))
        store_mosaic(moto_server, [noise], mosaic_id="noise", table=table)
        exports = unique_name("exports")
        moto_server.client("s3").create_bucket(Bucket=exports)
        yield {
            "table": table,
            "mosaic_id": mosaic_id,
            "bucket": bucket,
            "exports": exports,
            "noise_tile": f"/mosaics/noise/tiles/WebMercatorQuad/{noise_tile}.tif",
        }
    aws.clear_clients()


@pytest.fixture(scope="module")
def api_settings(aws_store) -> ApiSettings:
    """The app's settings: mosaics by id in the DynamoDB table."""
    return ApiSettings(mosaic_uri_template=f"dynamodb:///{aws_store['table']}:{{mosaic_id}}")


@pytest.fixture(scope="module")
def api(api_settings) -> ApiFunction:
    """The API function (one per module: warm invokes share it)."""
    return ApiFunction(api_settings, LambdaSettings())


def test_healthz_http_api_and_rest_api(api):
    for event in (http_api_event("/healthz"), rest_api_event("/healthz")):
        response = api(event)
        assert response["statusCode"] == 200
        assert json_body(response)["status"] == "ok"
        assert response["isBase64Encoded"] is False


def test_png_tile_is_base64_with_content_type(api, aws_store):
    path = tile_path(aws_store["mosaic_id"], *OVERLAP, 9)
    for event in (http_api_event(path), rest_api_event(path)):
        response = api(event)
        assert response["statusCode"] == 200, response["statusCode"]
        assert response["headers"]["content-type"] == "image/png"
        assert response["isBase64Encoded"] is True
        png = body_bytes(response)
        assert png.startswith(PNG_MAGIC)
        with MemoryFile(png) as memfile, memfile.open() as dataset:
            assert dataset.count == 4  # RGB + alpha
            alpha = dataset.read(4)
            assert (alpha == 255).any(), "the tile over three scenes is empty"
            assert dataset.read(1)[alpha == 255].max() > 0


def test_missing_mosaic_is_404_and_bad_zoom_is_422(api, aws_store):
    missing = api(http_api_event(tile_path("no-such-mosaic", *OVERLAP, 9)))
    assert missing["statusCode"] == 404
    assert "no-such-mosaic" in json.dumps(json_body(missing))
    mosaic = aws_store["mosaic_id"]
    invalid = api(http_api_event(f"/mosaics/{mosaic}/tiles/WebMercatorQuad/99/0/0.png"))
    assert invalid["statusCode"] == 422
    assert "z" in json.dumps(json_body(invalid))


def test_json_is_gzipped_when_accepted(api, aws_store):
    path = f"/mosaics/{aws_store['mosaic_id']}/tilejson.json"
    plain = api(http_api_event(path))
    zipped = api(http_api_event(path, headers={"accept-encoding": "gzip, deflate, br"}))
    assert plain["statusCode"] == zipped["statusCode"] == 200
    assert "content-encoding" not in plain["headers"]
    openapi = api(http_api_event("/openapi.json", headers={"accept-encoding": "gzip"}))
    assert openapi["headers"]["content-encoding"] == "gzip"
    assert openapi["isBase64Encoded"] is True
    assert json_body(openapi)["openapi"].startswith("3.")
    assert len(body_bytes(openapi)) < len(json.dumps(json_body(openapi)))
    assert json_body(plain)["tiles"][0].startswith("https://abc123.execute-api")


def test_event_loop_is_reused_across_warm_invokes(api):
    async def app(scope, receive, send):
        loop_id = str(id(asyncio.get_running_loop())).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": loop_id})

    adapter = LambdaAdapter(lambda: app)
    seen = set()
    for round_ in range(4):
        seen.add(body_bytes(adapter(http_api_event("/loop"))))
        if round_ == 1:
            # Code that uses asyncio.run leaves no current loop behind.
            asyncio.run(asyncio.sleep(0))
    assert len(seen) == 1
    assert not adapter.loop.is_closed()

    loop = api.adapter.loop
    for _ in range(3):
        assert api(http_api_event("/healthz"))["statusCode"] == 200
    assert api.adapter.loop is loop and not loop.is_closed()


def test_api_refuses_responses_over_the_lambda_limit(api, aws_store):
    response = api(http_api_event(aws_store["noise_tile"], {"tilesize": "2048"}))
    assert response["statusCode"] == 413
    assert "batch endpoint" in json_body(response)["detail"]


def test_batch_exports_a_large_tiff_through_s3(aws_store, moto_server, api_settings):
    settings = LambdaSettings(exports_bucket=aws_store["exports"], presigned_url_seconds=600)
    batch = BatchFunction(
        ApiSettings(mosaic_uri_template=api_settings.mosaic_uri_template, max_tile_size=4096),
        settings,
    )
    response = batch(function_url_event(aws_store["noise_tile"], {"tilesize": "2048"}))
    assert response["statusCode"] == 303, (
        json_body(response) if response["statusCode"] != 200 else 200
    )
    location = response["headers"]["location"]
    assert location.startswith(moto_server.endpoint) and "X-Amz-Expires=600" in location
    info = json_body(response)
    assert info["size"] > settings.response_limit_bytes
    download = httpx.get(location, timeout=60)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("image/tiff")
    assert len(download.content) == info["size"]
    with MemoryFile(download.content) as memfile, memfile.open() as dataset:
        assert (dataset.width, dataset.height) == (2048, 2048)
        assert np.any(dataset.read(1) > 0)
    keys = moto_server.client("s3").list_objects_v2(Bucket=aws_store["exports"])["Contents"]
    assert any(k["Key"].startswith("exports/") and k["Key"].endswith(".tif") for k in keys)

    small = batch(function_url_event(tile_path(aws_store["mosaic_id"], *OVERLAP, 9)))
    assert small["statusCode"] == 200 and small["headers"]["content-type"] == "image/png"


def test_batch_without_exports_bucket_says_so(aws_store, api_settings):
    batch = BatchFunction(
        ApiSettings(mosaic_uri_template=api_settings.mosaic_uri_template, max_tile_size=4096),
        LambdaSettings(exports_bucket=None),
    )
    response = batch(function_url_event(aws_store["noise_tile"], {"tilesize": "2048"}))
    assert response["statusCode"] == 500
    assert "MOSAIC_LAMBDA_EXPORTS_BUCKET" in json_body(response)["detail"]


def test_batch_settings_raise_the_tile_limit(monkeypatch):
    monkeypatch.setenv("MOSAIC_LAMBDA_BATCH_MAX_TILE_SIZE", "6000")
    monkeypatch.setenv("MOSAIC_API_MAX_TILE_SIZE", "1024")
    assert BatchFunction().api_settings().max_tile_size == 6000
    assert ApiFunction().api_settings().max_tile_size == 1024


def test_gdal_defaults_do_not_override_the_environment():
    environ = {"GDAL_CACHEMAX": "64", "PROJ_DATA": "/opt/proj"}
    added = apply_environment(LambdaSettings(), environ=environ)
    assert environ["GDAL_CACHEMAX"] == "64" and "GDAL_CACHEMAX" not in added
    assert environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert environ["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
    assert environ["GDAL_HTTP_MULTIPLEX"] == "YES"
    assert environ["VSI_CACHE"] == "TRUE"
    assert environ["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"].startswith(".tif")
    assert environ["GDAL_HTTP_TIMEOUT"] == "20"
    batch_env: dict[str, str] = {}
    apply_environment(LambdaSettings(), batch=True, environ=batch_env)
    assert batch_env["GDAL_HTTP_TIMEOUT"] == "120"
    assert batch_env["MOSAIC_READ_HTTP_TIMEOUT"] == "120.0"
    assert batch_env["PROJ_DATA"].endswith(("proj_data", "proj"))


def test_import_is_light():
    """Importing the module builds nothing outside Lambda (the app is built by the first call)."""
    assert handler_module._api_function.adapter._mangum is None or handler_module.in_lambda()
    assert response_size({"body": "x" * 10}) > 10
    buffer = io.BytesIO()
    assert buffer.getvalue() == b""
