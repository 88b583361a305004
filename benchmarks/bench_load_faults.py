"""Load with faults against a real uvicorn server: valid tiles and points, invalid requests
(the issue 16 list) and one asset server that never answers.

Prints, per phase (valid load only, then mixed load with the hung asset): requests, 5xx among
valid and invalid requests, dropped connections (transport errors), p50/p99 latency of valid
requests and their throughput; and what the requests on the hung asset got (504/424 naming it).
Target: 0 x 5xx, 0 dropped connections, and valid latencies that do not stall.

    python benchmarks/bench_load_faults.py [--clients 20] [--duration 15] [--invalid 0.3]
"""

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import morecantile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambda_handler.backends import MosaicBackend  # noqa: E402
from lambda_handler.mosaic.builder import dataset_footprint, from_features, from_urls  # noqa: E402
from lambda_handler.sample_data import generate_scenes  # noqa: E402
from tests.processes import free_port  # noqa: E402

TMS = morecantile.tms.get("WebMercatorQuad")
# Points inside the sample scenes (lambda_handler.sample_data), where tiles have data.
POINTS = [(-78.15, 45.40), (-78.4, 45.2), (-77.9, 45.5), (-78.3, 45.6)]
INVALID = [
    ("tile", {"bidx": "99"}),
    ("tile", {"bidx": "99999999999"}),
    ("tile", {"expression": "b99"}),
    ("tile", {"expression": "+".join(["b1"] * 5000)}),
    ("tile", {"nodata": "nan"}),
    ("tile", {"nodata": "-inf"}),
    ("tile", {"nodata": "1e400"}),
    ("tile", {"bidx": "5"}),
    ("/mosaics/scenes/point/-78.15,45.4", {"bidx": "25"}),
    ("/mosaics/scenes/point/1e300,1e300", {"coord_crs": "EPSG:3857"}),
    ("/mosaics/scenes/point/1e18,1e18/assets", {"coord_crs": "EPSG:3857"}),
    ("/mosaics/scenes/bbox/-1e18,-1e18,1e18,1e18/assets", {"coord_crs": "EPSG:3857"}),
    ("/mosaics/scenes/bbox/nan,45,-77,46/assets", {}),
    ("/mosaics/scenes/bbox/0,0,nan,1/assets", {}),
]


class HungServer:
    """Accepts connections on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)


def tile_path(mosaic: str, lon: float, lat: float, z: int) -> str:
    tile = TMS.tile(lon, lat, z)
    return f"/mosaics/{mosaic}/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png"


def prepare(workdir: Path, hung_url: str) -> str:
    cogs = generate_scenes(workdir / "cogs", "uint8")
    db = workdir / "mosaics.db"
    MosaicBackend(f"sqlite:///{db}:scenes", mosaic_def=from_urls(cogs, name="scenes")).write(
        overwrite=True
    )
    feature = {
        "type": "Feature",
        "geometry": dataset_footprint(cogs[0])["geometry"],
        "properties": {"path": f"{hung_url}/hung.tif"},
    }
    MosaicBackend(f"sqlite:///{db}:hung", mosaic_def=from_features([feature], 7, 10)).write(
        overwrite=True
    )
    return f"sqlite:///{db}:{{mosaic_id}}"


def start_server(
    template: str, args: argparse.Namespace, log: Path
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": template,
        "MOSAIC_API_REQUEST_TIMEOUT": str(args.request_timeout),
        "MOSAIC_API_ASSET_HTTP_TIMEOUT": str(args.gdal_timeout),
        "MOSAIC_API_ASSET_HTTP_MAX_RETRY": "0",
        "MOSAIC_API_CORS_ORIGINS": '["*"]',
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "lambda_handler.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("uvicorn did not start: " + log.read_text()[-2000:])
        time.sleep(0.2)
    # warm both route groups and the reading stack (the first tile imports rasterio)
    for _ in range(60):
        if httpx.get(base + tile_path("scenes", *POINTS[0], 9), timeout=60).status_code == 200:
            break
        time.sleep(0.5)
    return process, base


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.valid_latency: list[float] = []
        self.status: Counter[tuple[str, int]] = Counter()
        self.dropped = 0
        self.hung_details: Counter[str] = Counter()

    def add(self, kind: str, status: int, seconds: float, detail: str = "") -> None:
        with self.lock:
            self.status[(kind, status)] += 1
            if kind == "valid":
                self.valid_latency.append(seconds)
            if kind == "hung":
                self.hung_details["names the asset" if "hung.tif" in detail else detail[:80]] += 1


ZOOMS: list[int] = []  # the mosaic's zooms, read from /info before the load


def valid_request(rng: random.Random) -> tuple[str, dict]:
    lon, lat = rng.choice(POINTS)
    if rng.random() < 0.8:
        return tile_path("scenes", lon, lat, rng.choice(ZOOMS)), {}
    return f"/mosaics/scenes/point/{lon},{lat}", {}


def client_loop(base: str, kind_mix: tuple[float, bool], stop: float, seed: int, out: Results):
    invalid_share, hung = kind_mix
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as http:
        while time.monotonic() < stop:
            if hung:
                kind, (path, query) = "hung", (tile_path("hung", *POINTS[1], 9), {})
            elif rng.random() < invalid_share:
                path, query = rng.choice(INVALID)
                if path == "tile":
                    path = tile_path("scenes", *POINTS[0], 9)
                kind = "invalid"
            else:
                kind, (path, query) = "valid", valid_request(rng)
            start = time.perf_counter()
            try:
                response = http.get(path, params=query)
            except httpx.TransportError:
                with out.lock:
                    out.dropped += 1
                continue
            detail = response.text if kind == "hung" else ""
            out.add(kind, response.status_code, time.perf_counter() - start, detail)


def run_phase(base: str, clients: int, duration: float, invalid: float, hung: int) -> Results:
    out = Results()
    stop = time.monotonic() + duration
    threads = [
        threading.Thread(
            target=client_loop, args=(base, (invalid, i < hung), stop, i, out), daemon=True
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def report(name: str, out: Results, duration: float) -> None:
    lat = sorted(out.valid_latency)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    five = sum(n for (kind, status), n in out.status.items() if kind != "hung" and status >= 500)
    total = sum(out.status.values())
    by_kind = Counter()
    for (kind, _), n in out.status.items():
        by_kind[kind] += n
    print(f"\n== {name}")
    print(f"requests                 {total} ({dict(by_kind)})")
    print(f"5xx (valid + invalid)    {five}")
    print(f"dropped connections      {out.dropped}")
    print(f"valid p50 / p99 (ms)     {pct(0.50):.0f} / {pct(0.99):.0f}")
    print(f"valid throughput (req/s) {len(lat) / duration:.1f}")
    if any(kind == "hung" for kind, _ in out.status):
        hung = {status: n for (kind, status), n in out.status.items() if kind == "hung"}
        print(f"hung-asset answers       {hung} {dict(out.hung_details)}")
    wrong = {key: n for key, n in out.status.items()
             if (key[0] == "valid" and key[1] not in (200, 204))
             or (key[0] == "invalid" and not 400 <= key[1] < 500)}  # fmt: skip
    if wrong:
        print(f"unexpected answers       {wrong}")
    if lat:
        print(f"valid mean (ms)          {statistics.mean(lat) * 1000:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0, help="Seconds per phase.")
    parser.add_argument("--invalid", type=float, default=0.3, help="Share of invalid requests.")
    parser.add_argument("--hung-clients", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=25.0)
    parser.add_argument("--gdal-timeout", type=int, default=3)
    args = parser.parse_args()

    hung = HungServer()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        template = prepare(workdir, hung.url)
        process, base = start_server(template, args, workdir / "uvicorn.log")
        info = httpx.get(base + "/mosaics/scenes", timeout=30).json()
        ZOOMS.extend(range(info["minzoom"], info["maxzoom"] + 1))
        try:
            print(f"server {base}, {args.clients} clients, {args.duration:g} s per phase, "
                  f"deadline {args.request_timeout:g} s, GDAL HTTP timeout {args.gdal_timeout} s")  # fmt: skip
            baseline = run_phase(base, args.clients, args.duration, 0.0, 0)
            report("valid load only", baseline, args.duration)
            mixed = run_phase(base, args.clients, args.duration, args.invalid, args.hung_clients)
            report(
                f"{args.invalid:.0%} invalid + {args.hung_clients} client(s) on a hung asset",
                mixed,
                args.duration,
            )
            alive = httpx.get(base + "/healthz", timeout=5).status_code
            print(f"\n/healthz after the run: {alive}; server process alive: "
                  f"{process.poll() is None}")  # fmt: skip
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
