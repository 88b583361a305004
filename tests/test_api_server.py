"""`lambda_handler.server`: the demo mosaic and `serve` on a real socket."""

import sys

import httpx
import morecantile
import pytest
from fastapi.testclient import TestClient

from lambda_handler.app import create_app
from lambda_handler.server import prepare_demo
from tests.processes import ServerProcess, free_port, serving


def test_demo_mosaic_is_served_with_its_map(tmp_path):
    settings, map_path = prepare_demo(tmp_path / "demo")
    assert map_path.startswith("/mosaics/demo/map")
    with TestClient(create_app(settings)) as client:
        page = client.get(map_path)
        assert page.status_code == 200 and "leaflet.js" in page.text
        tilejson = client.get("/mosaics/demo/tilejson.json" + map_path[len("/mosaics/demo/map") :])
        tj = tilejson.json()
        west, south, east, north = tj["bounds"]
        tile = morecantile.tms.get("WebMercatorQuad").tile(
            (west + east) / 2, (south + north) / 2, tj["maxzoom"]
        )
        url = tj["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y)
        assert client.get(url).status_code == 200
    # running it again replaces the demo mosaic instead of failing
    assert prepare_demo(tmp_path / "demo")[1] == map_path


@pytest.mark.slow  # a uvicorn process of its own
def test_serve_runs_uvicorn_on_the_given_store(api_store, tmp_path):
    port = free_port()
    code = (
        "from lambda_handler.server import serve; "
        f"serve(host='127.0.0.1', port={port}, store={api_store.settings.mosaic_uri_template!r})"
    )
    server = ServerProcess("serve", [sys.executable, "-c", code], tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}/mosaics/scenes/info"
    with serving(server, url):
        response = httpx.get(url, timeout=10)
    assert response.status_code == 200 and response.json()["name"] == "scenes"
