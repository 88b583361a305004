"""Issue 16, "nothing hangs": coordinates that would freeze PROJ, a per-request deadline (504),
an asset server that never answers, /healthz during a slow request, a capped body, and the
bounds of the work a write may ask for. Real uvicorn servers and a real hung socket."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from lambda_handler.app import create_app
from lambda_handler.backends import MosaicBackend
from lambda_handler.mosaic.builder import dataset_footprint, from_features, from_urls
from lambda_handler.settings import ApiSettings
from tests.lambda_support import OVERLAP, tile_path
from tests.servers_api import API_KEY, uvicorn_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class HungServer:
    """Accepts connections on 127.0.0.1 and never answers (a COG server gone dark)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)  # kept open, never answered

    def close(self) -> None:
        self._stop.set()
        for connection in self.connections:
            connection.close()
        self.sock.close()


@pytest.fixture
def hung_server() -> Iterator[HungServer]:
    server = HungServer()
    try:
        yield server
    finally:
        server.close()


def _store(db: Path, sample_cogs: list[str], hung_url: str) -> None:
    """Mosaics `scenes` (the sample COGs) and `hung` (one asset on the hung server)."""
    MosaicBackend(f"sqlite:///{db}:scenes", mosaic_def=from_urls(sample_cogs, name="scenes")).write(
        overwrite=True
    )
    feature = {
        "type": "Feature",
        "geometry": dataset_footprint(sample_cogs[0])["geometry"],
        "properties": {"path": f"{hung_url}/hung.tif"},
    }
    document = from_features([feature], 7, 9, name="hung")
    MosaicBackend(f"sqlite:///{db}:hung", mosaic_def=document).write(overwrite=True)


@pytest.fixture
def fault_server(tmp_path, sample_cogs, hung_server) -> Iterator[str]:
    """uvicorn with a 2 s request deadline and GDAL HTTP timeouts longer than it."""
    db = tmp_path / "m.db"
    _store(db, sample_cogs, hung_server.url)
    env = {
        **__import__("os").environ,
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"sqlite:///{db}:{{mosaic_id}}",
        "MOSAIC_API_REQUEST_TIMEOUT": "2",
        "MOSAIC_API_ASSET_HTTP_TIMEOUT": "30",
        "MOSAIC_API_ASSET_HTTP_CONNECT_TIMEOUT": "30",
        "MOSAIC_API_ASSET_HTTP_MAX_RETRY": "0",
        "MOSAIC_API_API_KEY": API_KEY,
        "MOSAIC_API_MAX_BODY_BYTES": "4096",
        "MOSAIC_API_CORS_ORIGINS": json.dumps(["*"]),
    }
    for key in ("GDAL_HTTP_TIMEOUT", "GDAL_HTTP_MAX_RETRY", "GDAL_HTTP_CONNECTTIMEOUT"):
        env.pop(key, None)
    with uvicorn_server("lambda_handler.app:create_app", env, tmp_path / "uvicorn.log") as base:
        yield base


def test_hung_asset_answers_504_naming_it_while_the_server_carries_on(fault_server):
    hung = tile_path("hung", -78.4, 45.2, 9)
    valid = tile_path("scenes", *OVERLAP, 9)
    warm_up(fault_server + valid)
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        slow = pool.submit(httpx.get, fault_server + hung, timeout=30)
        time.sleep(0.3)
        # while the hung read is in flight: liveness and other tiles answer at once
        for _ in range(5):
            t0 = time.monotonic()
            assert httpx.get(fault_server + "/healthz", timeout=5).status_code == 200
            assert time.monotonic() - t0 < 1.0
        assert httpx.get(fault_server + valid, timeout=10).status_code == 200
        response = slow.result()
        elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert "hung.tif" in response.json()["detail"]
    assert "MOSAIC_API_REQUEST_TIMEOUT" in response.json()["detail"]
    assert elapsed < 10
    # the server still serves normally afterwards
    assert httpx.get(fault_server + valid, timeout=10).status_code == 200


def warm_up(url: str) -> None:
    """Until `url` answers 200: the first request under a prefix builds its routes and imports
    the reading stack, which can take longer than the 2 s deadline on a busy machine."""
    deadline = time.monotonic() + 60
    while httpx.get(url, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the server never answered the valid tile"
        time.sleep(0.5)


@pytest.mark.parametrize(
    "path",
    [
        "/mosaics/scenes/point/1e300,1e300?coord_crs=EPSG:3857",
        "/mosaics/scenes/point/1e18,1e18/assets?coord_crs=EPSG:3857",
        "/mosaics/scenes/bbox/-1e18,-1e18,1e18,1e18/assets?coord_crs=EPSG:3857",
        "/mosaics/scenes/point/1e300,45?coord_crs=EPSG:32618",
        "/mosaics/scenes/bbox/0,0,1e400,1/assets",
    ],
)
def test_coordinates_that_would_freeze_proj_are_422(fault_server, path):
    warm_up(fault_server + "/mosaics/scenes/point/-78.15,45.4")
    t0 = time.monotonic()
    response = httpx.get(fault_server + path, timeout=10, headers={"Origin": "http://a.test"})
    assert response.status_code == 422, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert time.monotonic() - t0 < 3
    assert httpx.get(fault_server + "/healthz", timeout=2).status_code == 200


def test_gdal_timeout_fails_only_that_request_with_424(tmp_path, sample_cogs, hung_server):
    db = tmp_path / "m.db"
    _store(db, sample_cogs, hung_server.url)
    settings = ApiSettings(
        mosaic_uri_template=f"sqlite:///{db}:{{mosaic_id}}",
        request_timeout=20,
        asset_http_timeout=1,
        asset_http_connect_timeout=1,
        asset_http_max_retry=0,
    )
    with TestClient(create_app(settings)) as client:
        t0 = time.monotonic()
        response = client.get(tile_path("hung", -78.4, 45.2, 9))
        assert time.monotonic() - t0 < 10
        assert response.status_code == 424, response.text
        assert "hung.tif" in response.json()["detail"]
        assert client.get(tile_path("scenes", *OVERLAP, 9)).status_code == 200


# ---------------------------------------------------------------------------- body
def test_body_over_the_cap_is_413_as_it_streams(fault_server):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(2000):  # up to 2 MB, chunked: no Content-Length to go by
            sent += 1024
            yield b" " * 1024

    try:
        response = httpx.post(f"{fault_server}/mosaics", content=chunks(), headers=AUTH, timeout=10)
    except httpx.TransportError:
        pytest.fail("the server dropped the connection instead of answering 413")
    assert response.status_code == 413, response.text
    assert "MOSAIC_API_MAX_BODY_BYTES" in response.json()["detail"]
    # a body within the cap is read and validated as usual
    small = httpx.post(f"{fault_server}/mosaics", json={"id": "x"}, headers=AUTH, timeout=10)
    assert small.status_code == 422


# ---------------------------------------------------------------------------- write limits
@pytest.fixture
def limited(tmp_path, sample_cogs) -> Iterator[TestClient]:
    settings = ApiSettings(
        mosaic_uri_template=f"sqlite:///{tmp_path / 'm.db'}:{{mosaic_id}}",
        api_key=API_KEY,
        max_quadkey_zoom=10,
        max_zoom_span=4,
        max_items=3,
        max_quadkeys=4,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _named(response: httpx.Response, field: str) -> bool:
    assert response.status_code == 422, response.text
    return any(field in item["loc"] for item in response.json()["detail"])


def test_write_work_is_bounded_before_the_index_is_built(limited, sample_cogs):
    one = sample_cogs[:1]
    body = {"id": "m", "urls": one, "minzoom": 8, "maxzoom": 10}
    assert _named(limited.post("/mosaics", json={**body, "quadkey_zoom": 18}, headers=AUTH),
                  "quadkey_zoom")  # fmt: skip
    assert _named(limited.post("/mosaics", json={**body, "minzoom": 2}, headers=AUTH), "maxzoom")
    assert _named(
        limited.post("/mosaics", json={**body, "urls": sample_cogs}, headers=AUTH), "urls"
    )
    # four scenes at quadkey zoom 10 need more than 4 footprint tiles
    too_many = limited.post(
        "/mosaics",
        json={"id": "m", "urls": sample_cogs[:3], "minzoom": 8, "maxzoom": 10,
              "quadkey_zoom": 10},
        headers=AUTH,
    )  # fmt: skip
    assert too_many.status_code == 422 and "quadkey_zoom" in too_many.text
    assert limited.get("/mosaics/m").status_code == 404  # nothing was written
    ok = limited.post("/mosaics", json={**body, "quadkey_zoom": 8}, headers=AUTH)
    assert ok.status_code == 201, ok.text
    # a whole document with more quadkeys than allowed
    tiles = {f"0{i:02d}": ["a.tif"] for i in range(5)}
    document = {"mosaicjson": "0.0.3", "minzoom": 0, "maxzoom": 3, "quadkey_zoom": 3,
                "bounds": [-180, -85, 180, 85], "tiles": tiles}  # fmt: skip
    assert _named(
        limited.post("/mosaics", json={"id": "d", "mosaic": document}, headers=AUTH), "mosaic"
    )
    # PATCH: too many datasets at once
    features = [{"type": "Feature", "geometry": None, "properties": {"path": "a.tif"}}] * 4
    assert _named(limited.patch("/mosaics/m", json={"features": features}, headers=AUTH),
                  "features")  # fmt: skip


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow  # a uvicorn process of its own
def test_a_huge_chunked_body_costs_no_memory(tmp_path):
    """100 MB streamed without Content-Length: the server answers 413 after its cap and its
    peak memory stays where it was (the body is never held)."""
    import select
    import subprocess
    import sys

    from tests.processes import free_port

    port = free_port()
    env = {
        **__import__("os").environ,
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"sqlite:///{tmp_path / 'm.db'}:{{mosaic_id}}",
        "MOSAIC_API_API_KEY": API_KEY,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "lambda_handler.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                # warm the write path (route building, pydantic) before measuring
                if httpx.post(base + "/mosaics", json={}, headers=AUTH).status_code == 422:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        before = _peak_rss_kb(process.pid)
        chunk = b" " * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /mosaics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"x-api-key: {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            while sent < 100 * 1024 * 1024:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server answered before the body ended
                try:
                    sock.sendall(frame)
                except OSError:
                    break
                sent += len(chunk)
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 50 * 1024 * 1024  # answered long before the 100 MB were sent
        growth_mb = (_peak_rss_kb(process.pid) - before) / 1024
        print(f"sent {sent / 2**20:.1f} MB, peak memory growth {growth_mb:.1f} MB")
        assert growth_mb < 30, f"peak memory grew by {growth_mb:.0f} MB"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_deadlines_and_gdal_timeouts_per_function(monkeypatch):
    from lambda_handler import handler
    from lambda_handler.app import asset_gdal_options

    # the API function stays under API Gateway's 30 s; the batch function under Lambda's 900 s
    assert handler.ApiFunction().api_settings().request_timeout < 30
    monkeypatch.delenv("MOSAIC_API_REQUEST_TIMEOUT", raising=False)
    assert 30 < handler.BatchFunction().api_settings().request_timeout < 900
    # the stack sets it from each function's own timeout: the batch function follows it
    monkeypatch.setenv("MOSAIC_API_REQUEST_TIMEOUT", "296")
    assert handler.BatchFunction().api_settings().request_timeout == 296
    monkeypatch.delenv("MOSAIC_API_REQUEST_TIMEOUT")
    # a GDAL variable the environment sets itself (Lambda's, the batch's longer timeout) wins
    settings = ApiSettings(asset_http_timeout=3)
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "120")
    monkeypatch.setattr("lambda_handler.app._OWN_GDAL_DEFAULTS", set())
    options = asset_gdal_options(settings)
    assert options["GDAL_HTTP_TIMEOUT"] == "120"
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR" or (
        "GDAL_DISABLE_READDIR_ON_OPEN" in __import__("os").environ
    )
    monkeypatch.delenv("GDAL_HTTP_TIMEOUT")
    assert asset_gdal_options(settings)["GDAL_HTTP_TIMEOUT"] == "3"
