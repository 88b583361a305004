"""DynamoDB backend: ours vs cogeo-mosaic's `DynamoDBBackend`, same moto server, same tables.

Run: `pip install -e .[bench]` then `python benchmarks/bench_dynamodb.py`.
The script starts moto server on a free port of 127.0.0.1 and stops it at the end. Each peer
reads the same mosaic (written once; the layouts are the same) and writes the same documents.

Prints three ratios (cogeo-mosaic time / ours):
1. assets of a tile 4 zooms below quadkey_zoom 10 (256 child quadkeys), cold caches: ours reads
   the tile's overview item (one GetItem); for context, ours through the Query path (overviews
   ignored) is printed too;
2. writing a 100,000-quadkey mosaic (ours includes its overview items: their count and size
   relative to the tile items are printed);
3. a tile at quadkey_zoom: cold (open + lookup, empty caches) and warm (cached lookup).
"""

import argparse
import contextlib
import io
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.processes
from tests.processes import free_port

REGION = "us-east-1"
DYNALITE = Path(__file__).resolve().parent.parent / "tests/node/node_modules/.bin/dynalite"


def start_server(kind: str, directory: str) -> tuple[subprocess.Popen, str]:
    """Start moto server or dynalite on a free port of 127.0.0.1; wait until it answers."""
    port = free_port()
    if kind == "moto":
        command = [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    else:
        command = [
            "node",
            str(DYNALITE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--path",
            directory,
            "--createTableMs",
            "0",
        ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint + "/", timeout=1).read()
            return process, endpoint
        except urllib.error.HTTPError:
            return process, endpoint  # any HTTP answer means it serves
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{kind} did not start")


def stop(process: subprocess.Popen) -> None:
    """Terminate a server; kill it if it does not exit within 10 s (moto may be busy)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def block_tiles(x0: int, y0: int, width: int, height: int, zoom: int) -> dict[str, list[str]]:
    """A dense block of quadkeys with one or two realistic asset URLs each."""
    from lambda_handler.mosaic.tiling import tile_quadkey

    tiles = {}
    for x in range(x0, x0 + width):
        for y in range(y0, y0 + height):
            assets = [f"s3://imagery-bucket/scenes/{x // 3}/{y // 3}/scene_{x // 3}_{y // 3}.tif"]
            if (x + y) % 3 == 0:
                assets.append(f"s3://imagery-bucket/scenes/{x // 5}/{y // 5}/overlap.tif")
            tiles[tile_quadkey(x, y, zoom)] = assets
    return tiles


def document(tiles: dict[str, list[str]], minzoom: int, maxzoom: int, quadkey_zoom: int) -> Any:
    from lambda_handler.mosaic.model import MosaicJSON

    return MosaicJSON(
        mosaicjson="0.0.3",
        name="bench",
        minzoom=minzoom,
        maxzoom=maxzoom,
        quadkey_zoom=quadkey_zoom,
        bounds=(-180.0, -85.0, 180.0, 85.0),
        tiles=tiles,
    )


def clear_caches() -> None:
    from cogeo_mosaic.backends.dynamodb import DynamoDBBackend as PeerBackend

    from lambda_handler import cache

    cache.clear_all()
    PeerBackend.get_assets.cache_clear()
    PeerBackend._read.cache_clear()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def bench_low_zoom(table: str, ours_cls: Any, peer_cls: Any, tiles_count: int, block: int) -> float:
    """Ratio of (1): tiles 4 zooms above quadkey_zoom 10, each over 256 stored quadkeys."""
    qz, z = 10, 6
    # block x block tiles of zoom 6 fully covered: 256 quadkeys of zoom 10 each.
    x6, y6 = 18, 22
    tiles = block_tiles(x6 * 16, y6 * 16, 16 * block, 16 * block, qz)
    uri = f"dynamodb://{REGION}/{table}:lowzoom"
    ours_cls(uri, mosaic_def=document(tiles, 4, 14, qz)).write(overwrite=True)
    ours_times, query_times, peer_times = [], [], []
    candidates = [(x6 + dx, y6 + dy) for dx in range(block) for dy in range(block)]
    candidates = (candidates * tiles_count)[:tiles_count]
    for x, y in candidates:
        clear_caches()
        ours_backend = ours_cls(uri)
        peer_backend = peer_cls(uri)
        if z not in ours_backend.overview_zooms:
            sys.exit(f"no overviews at zoom {z}: {sorted(ours_backend.overview_zooms)}")
        t_ours, ours = timed(lambda: ours_backend.get_assets(x, y, z))  # noqa: B023
        t_peer, peer = timed(lambda: peer_backend.get_assets(x, y, z))  # noqa: B023
        clear_caches()
        query_backend = ours_cls(uri)
        query_backend.overview_zooms = frozenset()  # what the Query path alone costs
        t_query, by_query = timed(lambda: query_backend.get_assets(x, y, z))  # noqa: B023
        if sorted(ours) != sorted(peer) or ours != by_query or not ours:
            sys.exit(f"tile {x},{y},{z}: assets differ between ours and cogeo-mosaic")
        ours_times.append(t_ours)
        query_times.append(t_query)
        peer_times.append(t_peer)
    ours_median, peer_median = statistics.median(ours_times), statistics.median(peer_times)
    print(
        f"(1) tile z{z} over quadkey_zoom {qz} (256 of the mosaic's {len(tiles)} quadkeys, "
        f"{len(candidates)} tiles, cold): "
        f"ours {ours_median * 1000:.1f} ms (overview GetItem; the Query path alone: "
        f"{statistics.median(query_times) * 1000:.1f} ms), "
        f"cogeo-mosaic {peer_median * 1000:.1f} ms"
    )
    return peer_median / ours_median


def bench_write(kind: str, ours_cls: Any, peer_cls: Any, count: int) -> float:
    """Ratio of (2): writing a mosaic of `count` quadkeys (zoom 12, minzoom 8). Each tool writes
    to a server of its own, started for it: moto slows down as it holds more items, so the
    second writer on a shared server would be handicapped."""
    from cogeo_mosaic.mosaic import MosaicJSON as PeerMosaicJSON

    from lambda_handler.backends.dynamodb import base_assets, tile_item_size

    side = int(count**0.5)
    tiles = block_tiles(1200, 1400, side, -(-count // side), 12)
    tiles = dict(list(tiles.items())[:count])
    ours_doc = document(tiles, 8, 16, 12)
    peer_doc = PeerMosaicJSON(**ours_doc.model_dump(exclude_none=True))
    uri = f"dynamodb://{REGION}/bench-write:mosaic"
    with serving(kind):
        ours_cls.create_table("bench-write")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            t_peer, _ = timed(lambda: peer_cls(uri, mosaic_def=peer_doc).write())
    with serving(kind):
        ours_cls.create_table("bench-write")
        t_ours, _ = timed(lambda: ours_cls(uri, mosaic_def=ours_doc).write())
        clear_caches()
        reader = ours_cls(uri)
        stored = reader.to_document().tiles
        overview_items = list(reader.table.raw_partition(reader.table.overview_partition).values())
    if stored != tiles:
        sys.exit("our written mosaic does not read back equal")
    # Item sizes as DynamoDB bills them: one write unit per started KB of each item.
    tile_sizes = [tile_item_size(reader.mosaic_name, k, v) for k, v in tiles.items()]
    overview_sizes = [
        tile_item_size(item["mosaicId"]["S"], item["quadkey"]["S"], base_assets(item))
        for item in overview_items
    ]
    tile_units = sum(math.ceil(size / 1024) for size in tile_sizes)
    overview_units = sum(math.ceil(size / 1024) for size in overview_sizes)
    print(
        f"(2) write {len(tiles)} quadkeys: ours {t_ours:.1f} s, cogeo-mosaic {t_peer:.1f} s "
        f"({len(tiles) / t_ours:.0f} vs {len(tiles) / t_peer:.0f} items/s); ours also wrote "
        f"{len(overview_items)} overview items: {len(overview_items) / len(tiles):.1%} more "
        f"items, {sum(overview_sizes) / sum(tile_sizes):.0%} more bytes, "
        f"{overview_units / tile_units:.1%} more write units ({overview_units} over {tile_units})"
    )
    return t_peer / t_ours


def bench_at_quadkey_zoom(table: str, ours_cls: Any, peer_cls: Any, rounds: int) -> tuple:
    """Ratios of (3): a tile at quadkey_zoom, cold (open + lookup) and warm (cached lookup)."""
    qz = 10
    x0, y0 = 300, 380
    tiles = block_tiles(x0, y0, 16, 16, qz)
    uri = f"dynamodb://{REGION}/{table}:atzoom"
    ours_cls(uri, mosaic_def=document(tiles, 4, 14, qz)).write(overwrite=True)
    cold_ours, cold_peer = [], []
    for i in range(rounds):
        x, y = x0 + i % 16, y0 + (i // 16) % 16
        clear_caches()
        t_ours, ours = timed(lambda: ours_cls(uri).get_assets(x, y, qz))  # noqa: B023
        t_peer, peer = timed(lambda: peer_cls(uri).get_assets(x, y, qz))  # noqa: B023
        if ours != peer:
            sys.exit(f"tile {x},{y},{qz}: assets differ between ours and cogeo-mosaic")
        cold_ours.append(t_ours)
        cold_peer.append(t_peer)
    ours_backend, peer_backend = ours_cls(uri), peer_cls(uri)
    ours_backend.get_assets(x0, y0, qz)
    peer_backend.get_assets(x0, y0, qz)
    calls = 5000
    warm_ours, _ = timed(lambda: [ours_backend.get_assets(x0, y0, qz) for _ in range(calls)])
    warm_peer, _ = timed(lambda: [peer_backend.get_assets(x0, y0, qz) for _ in range(calls)])
    cold_o, cold_p = statistics.median(cold_ours), statistics.median(cold_peer)
    print(
        f"(3) tile at quadkey_zoom {qz}: cold (open + lookup) ours {cold_o * 1000:.1f} ms, "
        f"cogeo-mosaic {cold_p * 1000:.1f} ms; warm ours {warm_ours / calls * 1e6:.1f} µs, "
        f"cogeo-mosaic {warm_peer / calls * 1e6:.1f} µs"
    )
    return cold_p / cold_o, warm_peer / warm_ours


@contextlib.contextmanager
def serving(kind: str) -> Iterator[str]:
    """A fresh server of `kind`, boto3 pointed at it (AWS_ENDPOINT_URL); stopped at the end."""
    with tempfile.TemporaryDirectory() as directory:
        process, endpoint = start_server(kind, directory)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
            }
        )
        try:
            yield endpoint
        finally:
            stop(process)


def run(kind: str, args: argparse.Namespace, peer_cls: Any) -> dict[str, float]:
    """Every measurement against one server kind; returns the ratios."""
    from lambda_handler.backends.dynamodb import DynamoDBBackend

    with serving(kind) as endpoint:
        # moto's Query walks every item of the table: one table per measurement keeps the
        # lookups independent of each other.
        tables = {n: f"bench-{n}-{uuid.uuid4().hex[:6]}" for n in ("low", "at")}
        for table in tables.values():
            DynamoDBBackend.create_table(table)
        print(f"== {kind} at {endpoint}")
        low = bench_low_zoom(tables["low"], DynamoDBBackend, peer_cls, args.tiles, args.block)
        cold, warm = bench_at_quadkey_zoom(tables["at"], DynamoDBBackend, peer_cls, args.rounds)
    write = bench_write(kind, DynamoDBBackend, peer_cls, args.quadkeys)
    return {"low": low, "cold": cold, "warm": warm, "write": write}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quadkeys", type=int, default=100_000, help="size of the written mosaic")
    parser.add_argument("--tiles", type=int, default=4, help="low-zoom tiles measured")
    parser.add_argument(
        "--block", type=int, default=2, help="lookup mosaic: BLOCK x BLOCK zoom-6 tiles covered"
    )
    parser.add_argument("--rounds", type=int, default=30, help="cold lookups at quadkey_zoom")
    parser.add_argument(
        "--servers", default="moto,dynalite", help="comma-separated: moto, dynalite"
    )
    args = parser.parse_args()
    try:
        from cogeo_mosaic.backends.dynamodb import DynamoDBBackend as PeerBackend
    except ImportError:
        sys.exit("cogeo-mosaic is not installed: pip install -e .[bench]")
    results = {}
    for kind in args.servers.split(","):
        if kind == "dynalite" and not DYNALITE.exists():
            print("dynalite not installed (npm ci --prefix tests/node): skipped")
            continue
        results[kind] = run(kind, args, PeerBackend)
    print()
    for kind, ratios in results.items():
        print(
            f"[{kind}] ratio (1) low-zoom tile lookup, cogeo-mosaic / ours: "
            f"{ratios['low']:.1f}x (target >= 20x)"
        )
        print(
            f"[{kind}] ratio (2) write {args.quadkeys} quadkeys, cogeo-mosaic / ours: "
            f"{ratios['write']:.1f}x (target >= 3x)"
        )
        print(
            f"[{kind}] ratio (3) tile at quadkey_zoom, cold: {ratios['cold']:.1f}x, "
            f"warm: {ratios['warm']:.1f}x (target >= 1x)"
        )


if __name__ == "__main__":
    main()
