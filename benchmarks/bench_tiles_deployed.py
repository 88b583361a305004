"""Tiles as deployed (issue 13): 16 COGs on S3, the mosaic in DynamoDB, real round trips.

moto server stands in for S3 and DynamoDB; a latency proxy (benchmarks/latency_proxy.py) in
front of it adds `--delay-ms` (default 20 ms) to every request and counts them. Our app and
titiler.mosaic (cogeo-mosaic's DynamoDB backend) run under uvicorn on 127.0.0.1, both with
titiler's documented Lambda GDAL settings, and are asked for the same tiles alternately after
one warm-up pass (warm processes, as a busy Lambda). Per zoom (maxzoom, a middle zoom, minzoom
with all 16 scenes in the tile): p50/p95 of both, the ratio, S3 and DynamoDB requests per tile
for both, our Server-Timing breakdown, and whether the decoded pixels are identical.

Run: `.venv/bin/python benchmarks/bench_tiles.py [--delay-ms 20] [--rounds 3] [--tiles 12]`.
"""

import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import morecantile
import numpy
from bench_tiles import PEER_APP, bare_read, percentile, start_server
from latency_proxy import LatencyProxy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.processes
from tests.processes import free_port

REGION = "us-east-1"
BUCKET = "bench-cogs"
TABLE = "bench-mosaics"
ZOOMS = (13, 11, 9)
# titiler's documented Lambda GDAL settings (docs: Deployment > AWS Lambda), for both servers.
TITILER_LAMBDA_GDAL = {
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_CACHEMAX": "200",
    "CPL_VSIL_CURL_CACHE_SIZE": "200000000",
    "GDAL_BAND_BLOCK_CACHE": "HASHSET",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "PYTHONWARNINGS": "ignore",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "5000000",
}


def start_moto(workdir: Path) -> tuple[subprocess.Popen, str]:
    """moto server on a free loopback port; (process, endpoint) once it answers."""
    port = free_port()
    command = [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    log = open(workdir / "moto.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(endpoint + "/moto-api/", timeout=1)
            return process, endpoint
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("moto server did not start")


def write_scenes(directory: Path) -> tuple[list[Path], tuple[int, int, int]]:
    """16 overlapping 3-band COGs (UTM 18N, 1024 px at 12 m, 512 px blocks, overviews) in a
    4 x 4 grid inside one zoom-9 tile; (paths, that tile)."""
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin
    from rasterio.warp import transform as warp_transform

    tms = morecantile.tms.get("WebMercatorQuad")
    tile = tms.tile(-77.6, 45.1, 9)
    bounds = tms.bounds(tile)
    lon, lat = (bounds.left + bounds.right) / 2, (bounds.bottom + bounds.top) / 2
    xs, ys = warp_transform("EPSG:4326", "EPSG:32618", [lon], [lat])
    size, res, step = 1024, 12.0, 8000.0
    directory.mkdir(parents=True, exist_ok=True)
    rng = numpy.random.default_rng(13)
    paths = []
    rows, cols = numpy.mgrid[0:size, 0:size]
    for i in range(4):
        for j in range(4):
            west = xs[0] + (j - 2) * step - size * res / 2 + step / 2
            north = ys[0] - (i - 2) * step + size * res / 2 - step / 2
            data = numpy.empty((3, size, size), dtype="uint8")
            for band in range(3):
                base = (rows // 16 * (band + 1) + cols // 16 * (4 * i + j + 1)) % 200 + 30
                data[band] = base + rng.integers(0, 20, (size, size))
            data[:, rows + cols < size // 6] = 0  # a slanted nodata collar, as real scenes
            profile = {
                "driver": "GTiff",
                "width": size,
                "height": size,
                "count": 3,
                "dtype": "uint8",
                "crs": "EPSG:32618",
                "transform": from_origin(west, north, res, res),
                "nodata": 0,
            }
            path = directory / f"scene_{i}{j}.tif"
            with MemoryFile() as memory, memory.open(**profile) as dataset:
                dataset.write(data)
                rasterio.shutil.copy(
                    dataset,
                    path,
                    driver="COG",
                    COMPRESS="DEFLATE",
                    BLOCKSIZE=512,
                    OVERVIEW_RESAMPLING="NEAREST",
                )
            paths.append(path)
    return paths, (tile.x, tile.y, tile.z)


def pick_tiles(bounds, zoom: int, count: int) -> list[tuple[int, int, int]]:
    """Up to `count` tiles of the mosaic's inner area at `zoom`, spread evenly."""
    tms = morecantile.tms.get("WebMercatorQuad")
    west, south, east, north = bounds
    dx, dy = (east - west) * 0.2, (north - south) * 0.2  # inside: several scenes per tile
    tiles = [
        (t.x, t.y, t.z) for t in tms.tiles(west + dx, south + dy, east - dx, north - dy, [zoom])
    ]
    step = max(1, len(tiles) // count)
    return tiles[::step][:count]


def decode(content: bytes) -> numpy.ndarray:
    """Pixels (bands + alpha) of a PNG."""
    from rasterio.io import MemoryFile

    with MemoryFile(io.BytesIO(content)) as memory, memory.open() as dataset:
        return dataset.read()


def parse_server_timing(header: str) -> dict[str, float]:
    """{name: milliseconds} of a Server-Timing header."""
    timings = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name and rest:
            timings[name] = float(rest)
    return timings


def run_deployed(rounds: int, delay_ms: float, tiles_per_zoom: int) -> None:
    """Run the deployed-like benchmark and print its tables."""
    import boto3

    from lambda_handler.backends.dynamodb import DynamoDBBackend
    from lambda_handler.mosaic.builder import from_urls

    workdir = Path(tempfile.mkdtemp(prefix="bench-tiles-deployed-"))
    paths, full_tile = write_scenes(workdir / "cogs")
    moto, moto_endpoint = start_moto(workdir)
    proxy = LatencyProxy(moto_endpoint, delay_ms).start()
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }
    servers = []
    try:
        os.environ.update(credentials)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = moto_endpoint
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for path in paths:
            s3.upload_file(str(path), BUCKET, f"cogs/{path.name}")
        document = from_urls([str(p) for p in paths], minzoom=9, maxzoom=13, quadkey_zoom=9)
        local_to_s3 = {str(p): f"s3://{BUCKET}/cogs/{p.name}" for p in paths}
        document.tiles = {k: [local_to_s3[a] for a in v] for k, v in document.tiles.items()}
        uri = f"dynamodb://{REGION}/{TABLE}:bench"
        DynamoDBBackend.create_table(TABLE)
        DynamoDBBackend(uri, mosaic_def=document).write(overwrite=True)

        env = {
            **credentials,
            **TITILER_LAMBDA_GDAL,
            "AWS_ENDPOINT_URL_DYNAMODB": proxy.endpoint,
            "AWS_S3_ENDPOINT": proxy.endpoint.removeprefix("http://"),
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
        }
        ours, ours_url = start_server(
            "lambda_handler.app:create_app",
            {**env, "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"dynamodb://{REGION}/{TABLE}:{{mosaic_id}}"},
        )
        servers.append(ours)
        (workdir / "peer_app.py").write_text(PEER_APP)
        peer, peer_url = start_server("peer_app:app", env, app_dir=str(workdir))
        servers.append(peer)

        results = {}
        with httpx.Client(timeout=120) as client:
            for zoom in ZOOMS:
                tiles = (
                    [full_tile] if zoom == 9 else pick_tiles(document.bounds, zoom, tiles_per_zoom)
                )
                results[zoom] = measure(client, proxy, ours_url, peer_url, uri, tiles, rounds)
        for process in servers:  # the floor runs alone on the machine
            process.terminate()
            process.wait(timeout=10)
        servers.clear()
        os.environ.update({k: v for k, v in env.items() if k != "PYTHONWARNINGS"})
        for result in results.values():
            result["floor"] = rio_tiler_floor(uri, result["tile_list"], rounds)
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=10)
        proxy.stop()
        moto.terminate()
        moto.wait(timeout=10)
    report(results, delay_ms, rounds, len(paths))


def measure(client, proxy, ours_url, peer_url, uri, tiles, rounds) -> dict:
    """Timings, request counts, Server-Timing and pixel identity of one zoom."""
    out: dict = {"ours": [], "peer": [], "tiles": len(tiles), "identical": True}
    out["tile_list"] = tiles
    counts: dict = defaultdict(list)
    breakdown: dict = defaultdict(list)

    def get(name: str, url: str) -> httpx.Response:
        before = proxy.counts()
        start = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - start) * 1000
        after = proxy.counts()
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} -> {response.status_code}: {response.text[:300]}")
        out[name].append(elapsed)
        counts[(name, "s3")].append(after["s3"] - before["s3"])
        counts[(name, "dynamodb")].append(after["dynamodb"] - before["dynamodb"])
        return response

    for round_index in range(rounds + 1):
        for x, y, z in tiles:
            ours_tile = f"{ours_url}/mosaics/bench/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
            peer_tile = f"{peer_url}/mosaicjson/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url={uri}"
            # Alternate which server goes first, so neither always finds the other's warm-up.
            order = [("ours", ours_tile), ("peer", peer_tile)]
            if (round_index + x) % 2:
                order.reverse()
            responses = {name: get(name, url) for name, url in order}
            if round_index == 0:  # warm-up: compare pixels, then forget the figures
                if not numpy.array_equal(
                    decode(responses["ours"].content), decode(responses["peer"].content)
                ):
                    out["identical"] = False
                    print(f"pixels differ at {z}/{x}/{y}")
                out["first_ours_s3"] = out.get("first_ours_s3", 0) + counts[("ours", "s3")][-1]
                out["first_peer_s3"] = out.get("first_peer_s3", 0) + counts[("peer", "s3")][-1]
                out["ours"].clear()
                out["peer"].clear()
                counts.clear()
                continue
            for name, value in parse_server_timing(
                responses["ours"].headers.get("Server-Timing", "")
            ).items():
                breakdown[name].append(value)
    out["counts"] = {key: statistics.mean(values) for key, values in counts.items()}
    out["breakdown"] = {key: statistics.median(values) for key, values in breakdown.items()}
    return out


def rio_tiler_floor(uri: str, tiles: list, rounds: int) -> list[float]:
    """Milliseconds per tile of the pixel work alone: rio-tiler's mosaic_reader over the
    tile's assets + PNG (bench_tiles.bare_read: no server; the asset list looked up untimed) in
    this process, through the same proxy and GDAL settings. Both servers compute exactly these
    pixels, so no server that keeps them identical answers faster (warm, after one untimed
    pass). It reads every asset of the tile's quadkey (no per-asset extent filter, as titiler):
    at high zooms, where most of them miss the tile, a tiler that skips them is faster; at
    minzoom, where every scene is in the tile, it is the floor."""
    from lambda_handler.settings import ApiSettings

    threads = ApiSettings().threads
    bare_read(uri, tiles, threads)
    return [ms for _ in range(rounds) for ms in bare_read(uri, tiles, threads)]


def report(results: dict, delay_ms: float, rounds: int, scenes: int) -> None:
    """Print the tables."""
    print(
        f"{scenes} COGs on S3 (moto), mosaic in DynamoDB (moto), proxy delay {delay_ms:g} ms per "
        f"request, {rounds} timed rounds after one warm-up, titiler's Lambda GDAL settings"
    )
    print(
        f"{'zoom':>4} {'tiles':>5} {'peer p50':>9} {'peer p95':>9} {'ours p50':>9} "
        f"{'ours p95':>9} {'ratio':>6} {'pixels':>9}"
    )
    met = True
    for zoom, r in results.items():
        p50o, p50p = statistics.median(r["ours"]), statistics.median(r["peer"])
        ratio = p50o / p50p
        met &= ratio <= 0.5 and r["identical"]
        print(
            f"{zoom:>4} {r['tiles']:>5} {p50p:>8.0f}m {percentile(r['peer'], 95):>8.0f}m "
            f"{p50o:>8.0f}m {percentile(r['ours'], 95):>8.0f}m {ratio:>6.2f} "
            f"{'identical' if r['identical'] else 'DIFFER':>9}"
        )
    print("\nthe pixel work alone (rio-tiler mosaic_reader + PNG, no server, same proxy and GDAL)")
    print(f"{'zoom':>4} {'floor p50':>10} {'floor/peer':>10} {'ours/floor':>10}")
    for zoom, r in results.items():
        floor = statistics.median(r["floor"])
        print(
            f"{zoom:>4} {floor:>9.0f}m {floor / statistics.median(r['peer']):>10.2f} "
            f"{statistics.median(r['ours']) / floor:>10.2f}"
        )
    print("\nrequests per tile at the proxy (warm; first pass in brackets: S3 total over tiles)")
    print(f"{'zoom':>4} {'peer S3':>8} {'peer DDB':>8} {'ours S3':>8} {'ours DDB':>8}")
    for zoom, r in results.items():
        c = r["counts"]
        print(
            f"{zoom:>4} {c[('peer', 's3')]:>8.1f} {c[('peer', 'dynamodb')]:>8.1f} "
            f"{c[('ours', 's3')]:>8.1f} {c[('ours', 'dynamodb')]:>8.1f}   "
            f"[peer {r['first_peer_s3']}, ours {r['first_ours_s3']}]"
        )
    print("\nour Server-Timing per zoom (p50, ms)")
    for zoom, r in results.items():
        print(f"{zoom:>4} " + ", ".join(f"{k} {v:.1f}" for k, v in r["breakdown"].items()))
    print(
        "target (ours/peer <= 0.50 at every zoom, pixels identical):", "met" if met else "NOT met"
    )
