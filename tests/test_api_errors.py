"""Status codes of errors (mapped in lambda_handler/api_errors.py) and response headers."""

import gzip

import httpx
import morecantile
import pytest

from lambda_handler.app import create_app

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
OVERLAP = (-78.15, 45.40)


def tile_path(mosaic: str, lon: float, lat: float, z: int, suffix: str = "") -> str:
    tile = WEB_MERCATOR.tile(lon, lat, z)
    return f"/mosaics/{mosaic}/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}{suffix}"


def field_of(response: httpx.Response) -> list[str]:
    """Every location named by a 422 answer."""
    assert response.status_code == 422, response.text
    return [str(part) for item in response.json()["detail"] for part in item["loc"]]


def test_unknown_mosaic_is_404(client):
    for path in ("/mosaics/nope", "/mosaics/nope/info", "/mosaics/nope/tilejson.json"):
        response = client.get(path)
        assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert client.get(tile_path("nope", *OVERLAP, 9)).status_code == 404


def test_tiles_outside_are_404(client):
    # As titiler.mosaic (issue 15): zooms outside the mosaic's render, tiles of the grid
    # outside the bounds are 204; only tiles the TMS does not have are 404.
    outside_zooms = client.get(tile_path("scenes", *OVERLAP, 14))
    assert outside_zooms.status_code == 200
    outside_bounds = client.get(tile_path("scenes", 10.0, 10.0, 9))
    assert outside_bounds.status_code == 204 and "bounds" in outside_bounds.headers["x-reason"]
    outside_grid = client.get("/mosaics/scenes/tiles/WebMercatorQuad/9/99999/1")
    assert outside_grid.status_code == 404
    far_point = client.get("/mosaics/scenes/point/10,10")
    assert far_point.status_code == 404


def test_no_data_is_204(client):
    # between scenes a and d: the quadkey lists both, neither covers the tile
    gap = client.get(tile_path("gap", -78.0, 45.1, 12, ".png"))
    assert gap.status_code == 204 and gap.content == b""
    assert client.get(tile_path("gap", -78.4, 45.2, 12, ".png")).status_code == 200
    # inside the mosaic bounds, outside every scene
    corner = client.get("/mosaics/scenes/point/-78.7,45.8")
    assert corner.status_code == 204


def test_invalid_parameters_are_422_naming_the_field(client):
    base = tile_path("scenes", *OVERLAP, 9)
    cases = {
        "pixel_selection": {"pixel_selection": "best"},
        "rescale": {"rescale": "a,b"},
        "colormap_name": {"colormap_name": "nope"},
        "colormap": {"colormap": "{not json"},
        "bidx": {"bidx": 0},
        "buffer": {"buffer": 0.3},
        "tilesize": {"tilesize": 100000},
        "resampling": {"resampling": "magic"},
        "nodata": {"nodata": "abc"},
        "expression": {"expression": "b1+"},
    }
    for name, params in cases.items():
        assert name in field_of(client.get(base, params=params)), name
    assert "format" in field_of(client.get(base + ".gif"))
    assert "tileMatrixSetId" in field_of(client.get("/mosaics/scenes/tiles/NoSuchTMS/9/1/1"))
    assert "mosaic_id" in field_of(client.get("/mosaics/bad..id/info"))
    assert "coord_crs" in field_of(
        client.get("/mosaics/scenes/point/-78,45.3", params={"coord_crs": "EPSG:0"})
    )
    assert "colormap" in field_of(client.get(base, params={"colormap_name": "viridis"}))


def test_unreadable_asset_is_424_naming_it(client):
    response = client.get(tile_path("broken", -78.4, 45.2, 9))
    assert response.status_code == 424
    assert "missing.tif" in response.json()["detail"]


def test_cache_headers_etag_and_304(client):
    path = tile_path("scenes", *OVERLAP, 9, ".png")
    first = client.get(path)
    assert first.headers["cache-control"] == "public, max-age=60"
    etag = first.headers["etag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = client.get(path + "?rescale=0,100")
    assert other.headers["etag"] != etag
    meta = client.get("/mosaics/scenes")
    assert (
        client.get("/mosaics/scenes", headers={"If-None-Match": meta.headers["etag"]}).status_code
        == 304
    )
    assert client.get("/healthz").headers["cache-control"] == "no-store"


def test_server_timing(client):
    timing = client.get(tile_path("scenes", *OVERLAP, 9, ".png")).headers["server-timing"]
    names = [part.split(";")[0].strip() for part in timing.split(",")]
    assert {"search", "read", "render"} <= set(names)


def test_gzip_for_text_not_images(client):
    gz = {"Accept-Encoding": "gzip"}
    meta = client.get("/mosaics/scenes", params={"tiles": "true"}, headers=gz)
    assert meta.headers["content-encoding"] == "gzip" and meta.json()["tiles"]
    wmts = client.get("/mosaics/scenes/WMTSCapabilities.xml", headers=gz)
    assert wmts.headers["content-encoding"] == "gzip"
    page = client.get("/mosaics/scenes/map", headers=gz)
    assert page.headers["content-encoding"] == "gzip"
    tile = client.get(tile_path("scenes", *OVERLAP, 9, ".png"), headers=gz)
    assert "content-encoding" not in tile.headers
    assert tile.content[:4] == b"\x89PNG"


def test_gzip_body_is_really_compressed(api_server):
    raw = httpx.get(
        f"{api_server}/mosaics/scenes?tiles=true",
        headers={"Accept-Encoding": "gzip"},
    )
    with httpx.stream(
        "GET", f"{api_server}/mosaics/scenes?tiles=true", headers={"Accept-Encoding": "gzip"}
    ) as response:
        body = b"".join(response.iter_raw())
    assert gzip.decompress(body) == raw.content


def test_cors(client):
    allowed = client.get("/mosaics/scenes", headers={"Origin": "http://example.test"})
    assert allowed.headers["access-control-allow-origin"] == "http://example.test"
    other = client.get("/mosaics/scenes", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    # Writes have their own origins (MOSAIC_API_WRITE_CORS_ORIGINS): readers cannot write.
    preflight = client.options(
        "/mosaics",
        headers={"Origin": "http://writer.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    reader = client.options(
        "/mosaics",
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "DELETE"},
    )
    assert reader.status_code == 400
    assert "access-control-allow-origin" not in reader.headers
    posted = client.post("/mosaics", json={}, headers={"Origin": "http://example.test"})
    assert "access-control-allow-origin" not in posted.headers
    read_preflight = client.options(
        "/mosaics/scenes",
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "GET"},
    )
    assert read_preflight.status_code == 200


# ---------------------------------------------------------------------------- issue 16
BAD_INPUT = [
    # (path, query, field named in the 422)
    (tile_path("scenes", *OVERLAP, 9), {"bidx": 99}, "bidx"),
    (tile_path("scenes", *OVERLAP, 9), {"bidx": 99999999999}, "bidx"),
    (tile_path("scenes", *OVERLAP, 9), {"expression": "b99"}, "expression"),
    (tile_path("scenes", *OVERLAP, 9), {"expression": "+".join(["b1"] * 5000)}, "expression"),
    (tile_path("scenes", *OVERLAP, 9), {"expression": "-" * 900 + "b1"}, "expression"),
    (tile_path("scenes", *OVERLAP, 9), {"nodata": "nan"}, "nodata"),
    (tile_path("scenes", *OVERLAP, 9), {"nodata": "-inf"}, "nodata"),
    (tile_path("scenes", *OVERLAP, 9), {"nodata": "1e400"}, "nodata"),
    ("/mosaics/scenes/point/-78.15,45.4", {"bidx": 25}, "bidx"),
    ("/mosaics/scenes/point/nan,45.4", {}, "lon"),
    ("/mosaics/scenes/point/1e300,1e300", {"coord_crs": "EPSG:3857"}, "lon"),
    ("/mosaics/scenes/point/1e18,1e18/assets", {"coord_crs": "EPSG:3857"}, "lon"),
    ("/mosaics/scenes/bbox/nan,45,-77,46/assets", {}, "minx"),
    ("/mosaics/scenes/bbox/0,0,nan,1/assets", {}, "maxx"),
    ("/mosaics/scenes/bbox/-1e18,0,1e18,1/assets", {"coord_crs": "EPSG:3857"}, "minx"),
]


@pytest.mark.parametrize(("path", "query", "field"), BAD_INPUT)
def test_bad_input_is_422_json_with_cors(client, path, query, field):
    response = client.get(path, params=query, headers={"Origin": "http://example.test"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "http://example.test"
    assert field in field_of(response)
    assert all(item["type"] for item in response.json()["detail"])


def test_missing_band_is_named(client):
    base = tile_path("scenes", *OVERLAP, 9)
    for query, text in (({"bidx": 5}, "band 5"), ({"expression": "b1/b5"}, "band b5")):
        response = client.get(base, params=query)
        assert response.status_code == 422 and text in response.text, response.text
        assert "3 band(s)" in response.text


def test_head_answers_like_get_without_body(client):
    path = tile_path("scenes", *OVERLAP, 9, ".png")
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == got.headers["content-type"]
    assert client.head("/mosaics/scenes/info").status_code == 200
    assert client.head("/mosaics/nope/info").status_code == 404


def app_with_a_bug():
    """The app plus a route with a bug (an unexpected exception), for uvicorn."""
    app = create_app()

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("a bug")

    return app


def _read_response(sock) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.slow  # a uvicorn process of its own
def test_unexpected_error_is_json_500_and_keeps_the_connection(api_store, tmp_path):
    import os
    import socket

    from tests.servers_api import uvicorn_server

    env = {**os.environ, **api_store.env()}
    with uvicorn_server("tests.test_api_errors:app_with_a_bug", env, tmp_path / "log") as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /bug HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\n\r\n")
            first = _read_response(sock)
            assert first.startswith(b"HTTP/1.1 500")
            assert b"application/json" in first and b"RuntimeError" in first
            assert b"access-control-allow-origin: http://example.test" in first.lower()
            # the same connection answers the next request
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
