"""What the deployed stack relies on the app for: versioned tile URLs behind the CDN, the public
base URL instead of `Host`, and one structured JSON log line per Lambda invoke."""

import json
import subprocess
import sys
import uuid
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import morecantile
import pytest
from fastapi.testclient import TestClient

from lambda_handler.app import create_app
from lambda_handler.handler import ApiFunction
from lambda_handler.request_log import JsonFormatter, route_of
from lambda_handler.settings import LambdaSettings
from tests.lambda_support import http_api_event
from tests.servers_api import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def app_client(api_store):
    """The app as the stack configures it: a public URL (the CDN's) in front."""
    settings = api_store.settings.model_copy(update={"public_url": "https://tiles.example.org"})
    with TestClient(create_app(settings)) as client:
        yield client


def _tile_url(client: TestClient, mosaic_id: str, document: str = "tilejson.json") -> str:
    response = client.get(f"/mosaics/{mosaic_id}/{document}", params={"rescale": "0,200"})
    assert response.status_code == 200, response.text
    if document == "tilejson.json":
        return response.json()["tiles"][0]
    marker = 'template="'
    start = response.text.index(marker) + len(marker)
    return response.text[start : response.text.index('"', start)].replace("&amp;", "&")


def _version(url: str) -> str:
    (version,) = parse_qs(urlsplit(url).query)["v"]
    return version


def test_tile_urls_carry_the_mosaic_version_and_change_with_every_write(app_client, api_store):
    a, b, c, _ = api_store.scene_paths
    mosaic_id = f"cdn-{uuid.uuid4().hex[:8]}"
    body = {"id": mosaic_id, "urls": [a], "minzoom": 7, "maxzoom": 9}
    assert app_client.post("/mosaics", json=body, headers=AUTH).status_code == 201

    first = _tile_url(app_client, mosaic_id)
    assert first.startswith("https://tiles.example.org/mosaics/")  # not the test client's host
    assert parse_qs(urlsplit(first).query)["rescale"] == ["0,200"]
    wmts_first = _tile_url(app_client, mosaic_id, "WMTSCapabilities.xml")
    assert _version(wmts_first) == _version(first)
    # The same document asked twice: the same URL (the CDN's cache key does not churn).
    assert _tile_url(app_client, mosaic_id) == first

    patched = app_client.patch(f"/mosaics/{mosaic_id}", json={"urls": [b]}, headers=AUTH)
    assert patched.status_code == 200, patched.text
    second = _tile_url(app_client, mosaic_id)
    assert _version(second) != _version(first)

    replaced = app_client.put(f"/mosaics/{mosaic_id}", json={"urls": [c]}, headers=AUTH)
    assert replaced.status_code == 200, replaced.text
    third = _tile_url(app_client, mosaic_id)
    assert _version(third) not in (_version(first), _version(second))

    # A `v` given to the TileJSON request is not echoed: the mosaic decides it.
    pinned = app_client.get(f"/mosaics/{mosaic_id}/tilejson.json", params={"v": "old"})
    assert _version(pinned.json()["tiles"][0]) == _version(third)
    # The versioned URL is a working tile URL (the tile under the TileJSON's center).
    lon, lat, zoom = pinned.json()["center"]
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, zoom)
    path = urlsplit(third.format(z=tile.z, x=tile.x, y=tile.y))
    response = app_client.get(f"{path.path}?{path.query}")
    assert response.status_code == 200, response.text
    # The map page loads its TileJSON and scripts from the public URL, whatever the Host.
    page = app_client.get(f"/mosaics/{mosaic_id}/map", headers={"Host": "evil.example"})
    assert page.status_code == 200
    assert "https://tiles.example.org/mosaics/" in page.text and "evil.example" not in page.text
    assert app_client.delete(f"/mosaics/{mosaic_id}", headers=AUTH).status_code == 204


def test_route_template_has_few_distinct_values():
    assert (
        route_of("/mosaics/abc/tiles/WebMercatorQuad/9/143/183@2x.png")
        == "/mosaics/{mosaic_id}/tiles/WebMercatorQuad/{z}/{x}/{y}@2x.png"
    )
    assert route_of("/mosaics/abc/tiles/WebMercatorQuad/9/143/183") == (
        "/mosaics/{mosaic_id}/tiles/WebMercatorQuad/{z}/{x}/{y}"
    )
    assert route_of("/mosaics/x/point/-78.4,45.2/assets") == (
        "/mosaics/{mosaic_id}/point/{lon},{lat}/assets"
    )
    assert route_of("/mosaic/bbox/-79,44,-77,46/assets") == (
        "/mosaic/bbox/{minx},{miny},{maxx},{maxy}/assets"
    )
    assert route_of("/healthz") == "/healthz"


def test_each_invoke_logs_one_json_line(api_store, caplog):
    function = ApiFunction(api_store.settings, LambdaSettings())
    context = SimpleNamespace(aws_request_id="req-123")
    caplog.set_level("INFO", logger="lambda_handler.request")
    function(http_api_event("/mosaics/scenes/info"), context)
    function(http_api_event("/mosaics/no-such-mosaic/bounds"), context)
    records = [r for r in caplog.records if r.name == "lambda_handler.request"]
    assert len(records) == 2
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    ok, missing = lines
    assert ok["requestId"] == "req-123" and ok["apiRequestId"]
    assert (ok["method"], ok["route"], ok["mosaic"], ok["status"]) == (
        "GET",
        "/mosaics/{mosaic_id}/info",
        "scenes",
        200,
    )
    assert ok["level"] == "INFO" and ok["durationMs"] > 0
    assert (missing["mosaic"], missing["status"]) == ("no-such-mosaic", 404)


def test_a_failed_invoke_is_logged_at_error_and_raised(api_store, caplog):
    function = ApiFunction(api_store.settings, LambdaSettings())
    caplog.set_level("INFO", logger="lambda_handler.request")
    with pytest.raises(Exception):  # noqa: B017 - whatever mangum raises on a malformed event
        function({"not": "an API event"}, SimpleNamespace(aws_request_id="req-bad"))
    (record,) = [r for r in caplog.records if r.name == "lambda_handler.request"]
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["status"] == 500 and "exception" in line


def test_configure_formats_every_record_as_json():
    """In a fresh process (it changes the root logger): library lines become JSON too."""
    code = (
        "import logging; from lambda_handler import request_log as r;"
        "r.configure('WARNING', __import__('sys').stdout);"
        "logging.getLogger('rasterio').warning('careful %s', 'now', extra={'mosaic': 'm'});"
        "logging.getLogger('x').info('dropped at WARNING');"
        "r.configure('INFO', __import__('sys').stdout);"
        "logging.getLogger('botocore.credentials').info('library INFO: dropped');"
        "logging.getLogger('lambda_handler.x').info('package INFO: kept', extra={'aws_request_id': 'r1'})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first["message"] == "careful now" and first["mosaic"] == "m"
    assert first["logger"] == "rasterio" and first["level"] == "WARNING"
    assert first["timestamp"].endswith("Z")
    # The runtime's request id attribute becomes `requestId`.
    assert second["message"] == "package INFO: kept" and second["requestId"] == "r1"
    assert "aws_request_id" not in second


def test_preflights_answered_by_the_app(api_store):
    """The stack routes OPTIONS to the tiler (API Gateway's CORS is off): the app answers
    preflights, write methods only for the write origins."""
    settings = api_store.settings.model_copy(
        update={"cors_origins": ["*"], "write_cors_origins": ["https://app.example.org"]}
    )
    with TestClient(create_app(settings)) as client:

        def preflight(path: str, origin: str, method: str):
            return client.options(
                path,
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )

        read = preflight("/mosaics/scenes/tilejson.json", "https://any.example", "GET")
        assert read.status_code == 200
        assert read.headers["access-control-allow-origin"] in ("*", "https://any.example")
        write = preflight("/mosaics", "https://app.example.org", "POST")
        assert write.status_code == 200
        assert write.headers["access-control-allow-origin"] == "https://app.example.org"
        assert "POST" in write.headers["access-control-allow-methods"]
        refused = preflight("/mosaics", "https://evil.example", "POST")
        # Refused: no Access-Control-Allow-Origin, so the browser never sends the write.
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
