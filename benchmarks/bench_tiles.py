"""Tile latency: our app vs titiler.mosaic + cogeo-mosaic, and vs a bare rio-tiler mosaic read.

Both servers run under uvicorn on 127.0.0.1 and serve the same file-backed MosaicJSON over the
same generated COGs (lambda_handler.sample_data). The same tiles (≥ 50 per zoom, two zooms) are
requested from each, interleaved so machine noise hits both alike, after one warm-up pass.
The bare baseline reads each tile in process with `rio_tiler.mosaic.mosaic_reader` over the
index's assets and encodes it as PNG: the work any server has to do.

Targets: our p50 ≤ 0.8 × the peer's at every zoom; our p50 ≤ 1.1 × the bare read's.

Run: `.venv/bin/python benchmarks/bench_tiles.py --setup local [--rounds 3]` (needs the
`bench` extra). The default setup, `deployed`, is the one of issue 13: see
benchmarks/bench_tiles_deployed.py.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import morecantile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.processes
from tests.processes import free_port

ZOOMS = (11, 12)
TILES_PER_ZOOM = 60
PEER_APP = textwrap.dedent(
    """
    from fastapi import FastAPI
    from cogeo_mosaic.backends import MosaicBackend
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.mosaic.errors import MOSAIC_STATUS_CODES
    from titiler.mosaic.factory import MosaicTilerFactory

    app = FastAPI()
    app.include_router(MosaicTilerFactory(backend=MosaicBackend).router, prefix="/mosaicjson")
    add_exception_handlers(app, DEFAULT_STATUS_CODES)
    add_exception_handlers(app, MOSAIC_STATUS_CODES)
    """
)


def start_server(app: str, env: dict[str, str], app_dir: str | None = None) -> tuple:
    """Start `uvicorn app` on a free port; (process, base URL) once /docs answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    if app.endswith("create_app"):
        command.append("--factory")
    if app_dir:
        command += ["--app-dir", app_dir]
    process = subprocess.Popen(command, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/docs", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{app} did not start")


def pick_tiles(bounds: tuple[float, ...], zoom: int) -> list[tuple[int, int, int]]:
    """Up to TILES_PER_ZOOM tiles over the mosaic bounds, spread evenly."""
    tms = morecantile.tms.get("WebMercatorQuad")
    tiles = [(t.x, t.y, t.z) for t in tms.tiles(*bounds, zooms=[zoom])]
    step = max(1, len(tiles) // TILES_PER_ZOOM)
    return tiles[::step][:TILES_PER_ZOOM]


def percentile(values: list[float], q: float) -> float:
    """q-th percentile (0-100) of values."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def time_get(client: httpx.Client, url: str) -> tuple[float, int]:
    """(milliseconds, status) of one GET."""
    start = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code not in (200, 204):
        raise RuntimeError(f"GET {url} -> {response.status_code}: {response.text[:300]}")
    return elapsed, response.status_code


def bare_read(mosaic_uri: str, tiles: list[tuple[int, int, int]], threads: int) -> list[float]:
    """Milliseconds of mosaic_reader + PNG encoding per tile, in process: the pixel work alone
    (the tile's asset list is looked up untimed)."""
    from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
    from rio_tiler.io import Reader
    from rio_tiler.mosaic.reader import mosaic_reader

    from lambda_handler.backends import MosaicBackend

    def reader(asset: str, x: int, y: int, z: int, **kwargs):
        with Reader(asset) as src:
            return src.tile(x, y, z, **kwargs)

    times = []
    with MosaicBackend(mosaic_uri) as backend:
        for x, y, z in tiles:
            assets = backend.assets_for_tile(x, y, z)
            start = time.perf_counter()
            try:
                image, _ = mosaic_reader(
                    assets,
                    reader,
                    x,
                    y,
                    z,
                    threads=threads,
                    allowed_exceptions=(TileOutsideBounds,),
                )
                image.render(img_format="PNG")
            except EmptyMosaicError:
                pass
            times.append((time.perf_counter() - start) * 1000)
    return times


def time_zoom(
    client: httpx.Client,
    zoom: int,
    bounds: list[float],
    servers: tuple[str, str],
    mosaic_path: Path,
    rounds: int,
    threads: int,
) -> dict[str, list[float]]:
    """Tile times of both servers (alternating) and of a bare rio-tiler read, at one zoom."""
    ours_url, peer_url = servers
    tiles = pick_tiles(bounds, zoom)
    urls = {
        "ours": [
            f"{ours_url}/mosaics/bench/tiles/WebMercatorQuad/{z}/{x}/{y}.png" for x, y, z in tiles
        ],
        "peer": [
            f"{peer_url}/mosaicjson/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url={mosaic_path}"
            for x, y, z in tiles
        ],
    }
    statuses: dict[str, list[int]] = {name: [] for name in urls}
    for name, group in urls.items():  # warm-up: caches, GDAL, imports
        for url in group:
            statuses[name].append(time_get(client, url)[1])
    if statuses["ours"] != statuses["peer"]:
        raise RuntimeError(f"z{zoom}: the servers disagree on which tiles are empty")
    timings: dict[str, list[float]] = {"ours": [], "peer": []}
    for _ in range(rounds):
        for our_url, peer_tile_url in zip(urls["ours"], urls["peer"], strict=True):
            timings["ours"].append(time_get(client, our_url)[0])
            timings["peer"].append(time_get(client, peer_tile_url)[0])
    bare_read(str(mosaic_path), tiles, threads)  # warm-up
    timings["bare"] = []
    for _ in range(rounds):
        timings["bare"] += bare_read(str(mosaic_path), tiles, threads)
    timings["_count"] = [len(tiles), statuses["ours"].count(200)]
    return timings


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Timed passes over the tiles.")
    parser.add_argument(
        "--setup",
        choices=("deployed", "local"),
        default="deployed",
        help="deployed: COGs on S3 and the mosaic in DynamoDB behind a latency proxy; "
        "local: files on disk.",
    )
    parser.add_argument("--delay-ms", type=float, default=20.0, help="Proxy delay per request.")
    parser.add_argument("--tiles", type=int, default=12, help="Tiles per zoom (deployed).")
    args = parser.parse_args()
    if args.setup == "deployed":
        from bench_tiles_deployed import run_deployed

        run_deployed(args.rounds, args.delay_ms, args.tiles)
        return

    from lambda_handler.mosaic.builder import from_urls
    from lambda_handler.sample_data import generate_scenes
    from lambda_handler.settings import ApiSettings

    workdir = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    paths = generate_scenes(workdir / "cogs")
    document = from_urls(paths, minzoom=9, maxzoom=12, quadkey_zoom=9, name="bench")
    mosaic_path = workdir / "bench.json"
    mosaic_path.write_text(document.to_json())
    threads = ApiSettings().threads

    ours, ours_url = start_server(
        "lambda_handler.app:create_app",
        {"MOSAIC_API_MOSAIC_URI_TEMPLATE": str(workdir / "{mosaic_id}.json")},
    )
    (workdir / "peer_app.py").write_text(PEER_APP)
    peer, peer_url = start_server("peer_app:app", {}, app_dir=str(workdir))
    results: dict[int, dict[str, list[float]]] = {}
    try:
        with httpx.Client(timeout=60) as client:
            for zoom in ZOOMS:
                results[zoom] = time_zoom(
                    client,
                    zoom,
                    document.bounds,
                    (ours_url, peer_url),
                    mosaic_path,
                    args.rounds,
                    threads,
                )
    finally:
        for process in (ours, peer):
            process.terminate()
            process.wait(timeout=10)

    print(f"{len(paths)} COGs, reading threads {threads}, {args.rounds} rounds, PNG tiles")
    print(
        f"{'zoom':>4} {'tiles':>5} {'with data':>9} {'ours p50':>9} {'ours p95':>9} "
        f"{'peer p50':>9} {'peer p95':>9} {'bare p50':>9} {'ours/peer':>9} {'ours/bare':>9}"
    )
    summary = {}
    for zoom, timings in results.items():
        p50 = {k: statistics.median(v) for k, v in timings.items() if not k.startswith("_")}
        p95 = {k: percentile(v, 95) for k, v in timings.items() if not k.startswith("_")}
        ratio_peer = p50["ours"] / p50["peer"]
        ratio_bare = p50["ours"] / p50["bare"]
        count, with_data = timings["_count"]
        print(
            f"{zoom:>4} {count:>5} {with_data:>9} {p50['ours']:>8.1f}m {p95['ours']:>8.1f}m "
            f"{p50['peer']:>8.1f}m {p95['peer']:>8.1f}m {p50['bare']:>8.1f}m "
            f"{ratio_peer:>9.2f} {ratio_bare:>9.2f}"
        )
        summary[zoom] = {"ours/peer": round(ratio_peer, 3), "ours/bare": round(ratio_bare, 3)}
    met = all(v["ours/peer"] <= 0.8 and v["ours/bare"] <= 1.1 for v in summary.values())
    print("targets (ours/peer <= 0.80, ours/bare <= 1.10):", "met" if met else "NOT met")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
