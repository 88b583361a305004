"""STAC backends against a real STAC API (PostgreSQL/PostGIS + pgstac + stac-fastapi-pgstac).

Run: `python benchmarks/bench_stac.py [--items 1000] [--tiles 20]` (as root or as a user that can
run PostgreSQL; needs `apt-get install postgresql-15-postgis-3` and `pip install -e .[test]`).
Prints the time to build an N-item STAC mosaic (search + index) and the time per dynamic tile,
cold (the search goes to the API) and cached (the search comes from the TTL cache).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import morecantile
from timing import timed

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamic_stac import DynamicStacBackend
from lambda_handler.stac.client import search
from lambda_handler.stac.items import forget_items
from tests.pgstac_stack import start_stac_stack
from tests.stac_catalog import make_collection, make_item, polygon, write_cog

COLLECTION = "lmt-bench"
COLUMNS = 40
SIZE = 0.12  # degrees: items on a 0.1° grid overlap their neighbours a little
WEST, SOUTH = 5.0, 40.0


def bench_catalog(directory: Path, count: int) -> tuple[dict, list[dict]]:
    """`count` items on a 0.1° grid, each with one small constant COG asset (B01)."""
    items = []
    for index in range(count):
        west = WEST + 0.1 * (index % COLUMNS)
        south = SOUTH + 0.1 * (index // COLUMNS)
        bounds = (west, south, west + SIZE, south + SIZE)
        href = write_cog(directory / f"b{index:05d}.tif", bounds, 1 + index % 250, 0.002)
        properties = {
            "datetime": f"2024-{1 + index % 12:02d}-{1 + index % 28:02d}T10:00:00Z",
            "eo:cloud_cover": index % 100,
        }
        geometry = {"type": "Polygon", "coordinates": polygon(*bounds)}
        items.append(
            make_item(COLLECTION, f"b{index:05d}", geometry, bounds, properties, {"B01": href})
        )
    return make_collection(COLLECTION, "benchmark items"), items


def clear() -> None:
    cache.clear_all()
    forget_items()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--tiles", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lmt-bench-stac-") as tmp:
        collection, items = bench_catalog(Path(tmp), args.items)
        print(f"catalog: {len(items)} items written in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        stack = start_stac_stack([collection], items)
        print(
            f"STAC API up (postgres, migrate, load, uvicorn) in {time.perf_counter() - started:.1f} s"
        )
        try:
            run(stack.search_url, args)
        finally:
            stack.stop()


def run(url: str, args: argparse.Namespace) -> None:
    query = {"collections": [COLLECTION]}
    search(url, query)  # warm the API (pgstac plans, connection pool) and our HTTP client

    search_time, found = timed(lambda: search(url, query), args.repeat, before=clear)
    assert len(found) == args.items, f"expected {args.items} items, got {len(found)}"
    build_time, mosaic = timed(
        lambda: MosaicBackend("stac+" + url, query=query, minzoom=8, maxzoom=14),
        args.repeat,
        before=clear,
    )
    assets = {a for values in mosaic.mosaic_def.tiles.values() for a in values}
    assert len(assets) == args.items
    start = time.perf_counter()
    MosaicBackend("stac+" + url, query=query, minzoom=8, maxzoom=14)
    cached_open = time.perf_counter() - start
    print(f"static STAC mosaic of {args.items} items (limit 500, quadkey zoom 8):")
    print(f"  search only          {search_time * 1000:8.1f} ms")
    print(
        f"  search + build       {build_time * 1000:8.1f} ms  ({len(mosaic.mosaic_def.tiles)} quadkeys)"
    )
    print(f"  open again (cached)  {cached_open * 1000:8.3f} ms")

    peer(url, query)

    tms = morecantile.tms.get("WebMercatorQuad")
    rows = args.items // COLUMNS
    tiles = []
    for i in range(args.tiles):
        lon = WEST + 0.05 + (COLUMNS * 0.1 - 0.1) * (i / max(1, args.tiles - 1))
        lat = SOUTH + 0.05 + (rows * 0.1 - 0.1) * ((i * 7 % args.tiles) / max(1, args.tiles - 1))
        tiles.append(tms.tile(lon, lat, 12))

    def measure(function, *args, **kwargs) -> float:
        start = time.perf_counter()
        function(*args, **kwargs)
        return time.perf_counter() - start

    cold_search, cached_search, cold_tile, cached_tile, counts = [], [], [], [], []
    with DynamicStacBackend(url, query=query, minzoom=8, maxzoom=14) as dynamic:
        dynamic.tile(tiles[0].x, tiles[0].y, tiles[0].z, assets="B01", threads=0)  # warm GDAL
        for tile in tiles:
            xyz = (tile.x, tile.y, tile.z)
            counts.append(len(dynamic.assets_for_tile(*xyz)))
            clear()
            cold_search.append(measure(dynamic.assets_for_tile, *xyz))
            cached_search.append(measure(dynamic.assets_for_tile, *xyz))
            clear()
            # First render searches the API; the second takes the search from the cache.
            cold_tile.append(measure(dynamic.tile, *xyz, assets="B01", threads=0))
            cached_tile.append(measure(dynamic.tile, *xyz, assets="B01", threads=0))
    print(
        f"dynamic STAC tiles (z12, {len(tiles)} tiles, {statistics.mean(counts):.1f} items each):"
    )
    print(f"  search, cold         {statistics.median(cold_search) * 1000:8.1f} ms / tile")
    print(f"  search, cached       {statistics.median(cached_search) * 1000:8.3f} ms / tile")
    print(f"  tile, cold           {statistics.median(cold_tile) * 1000:8.1f} ms / tile")
    print(f"  tile, cached search  {statistics.median(cached_tile) * 1000:8.1f} ms / tile")
    ratio = statistics.median(cold_tile) / statistics.median(cached_tile)
    print(f"cold / cached tile time: {ratio:.2f}x")


def peer(url: str, query: dict) -> None:
    """cogeo-mosaic's STAC backend on the same API, when installed (`pip install -e .[bench]`)."""
    try:
        from cogeo_mosaic.backends import MosaicBackend as PeerBackend
    except ImportError:
        print("cogeo-mosaic: not installed, peer skipped")
        return
    start = time.perf_counter()
    try:
        with PeerBackend("stac+" + url, query=query, minzoom=8, maxzoom=14) as mosaic:
            count = len({a for values in mosaic.mosaic_def.tiles.values() for a in values})
    except Exception as err:  # the point is to report how the peer fails
        print(f"cogeo-mosaic STACBackend: fails on this API ({type(err).__name__}: {err})")
        return
    elapsed = (time.perf_counter() - start) * 1000
    print(f"cogeo-mosaic STACBackend: {count} items in {elapsed:.1f} ms")


if __name__ == "__main__":
    main()
