"""Side-by-side check against cogeo-mosaic 9.x (issue 15): the same calls on both, differences
printed. cogeo-mosaic is a peer, never imported by the package or the tests: run this with the
`bench` extra installed (`uv sync --extra bench`, or a venv with `pip install cogeo-mosaic`):

    python benchmarks/check_cogeo_parity.py [--seed 1] [--features 40]

Exit status 1 when a difference is found. Checked: the quadkey index built from the same
footprints in several quadtree TMSs and zooms (with the coverage/sort/limit options and a custom
asset_filter), `mosaicid`, `find_quadkeys`, `_quadkeys`, MosaicBackend's in-memory call forms,
validation on assignment and the exception classes code catches.
"""

import argparse
import random
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import morecantile
from cogeo_mosaic.backends import MosaicBackend as PeerBackend
from cogeo_mosaic.mosaic import MosaicJSON as PeerMosaic
from pydantic import ValidationError

from lambda_handler.backends import MosaicBackend
from lambda_handler.mosaic import MosaicJSON

CASES = [
    ("WebMercatorQuad", (-20, 30, 40, 70), [5, 7]),
    ("UPSArcticWGS84Quad", (-180, 62, 180, 85), [2, 3, 4]),
    ("EuropeanETRS89_LAEAQuad", (-30, 25, 45, 75), [2, 3, 5]),
    ("EuropeanETRS89_LAEAQuad", (-120, 20, -70, 50), [2, 3]),  # outside the TMS
    ("WorldMercatorWGS84Quad", (-20, 30, 40, 70), [4, 6]),
]


def features(rng: random.Random, count: int, area: tuple[float, ...]) -> list[dict]:
    west, south, east, north = area
    out = []
    for i in range(count):
        w = rng.uniform(west, east - 2)
        s = rng.uniform(south, north - 2)
        size = rng.uniform(0.3, 4)
        e, n = min(w + size, east), min(s + size, north)
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        out.append(
            {
                "type": "Feature",
                "properties": {"path": f"f{i}.tif"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return out


def last_two(tile, dataset, geoms, **kwargs):
    return list(dataset)[-2:]


OPTION_SETS: list[dict] = [
    {},
    {"minimum_tile_cover": 0.1, "tile_cover_sort": True, "maximum_items_per_tile": 3},
    {"minimum_tile_cover": 0.1, "maximum_items_per_tile": 3},
    {"tile_cover_sort": True, "maximum_items_per_tile": 2},
    {"asset_filter": last_two},
]


def compare_builders(
    rng: random.Random, count: int, differences: list[str], peer_failures: list[str]
) -> int:
    """Build the same features with both builders for every case: checks made."""
    checked = 0
    for tms_id, area, zooms in CASES:
        tms = morecantile.tms.get(tms_id)
        feats = features(rng, count, area)
        for zoom in zooms:
            for options in OPTION_SETS:
                if tms_id != "WebMercatorQuad" and (
                    "minimum_tile_cover" in options or "tile_cover_sort" in options
                ):
                    continue  # cogeo-mosaic measures coverage on WebMercator tiles only
                checked += 1
                label = f"{tms_id} z{zoom} {sorted(options)}"
                compare_build(feats, zoom, tms, options, label, differences, peer_failures)
    return checked


def compare_build(
    feats: list,
    zoom: int,
    tms: morecantile.TileMatrixSet,
    options: dict,
    label: str,
    differences: list[str],
    peer_failures: list[str],
) -> None:
    """One case: the quadkeys and asset lists of both builders."""
    ours = MosaicJSON.from_features(feats, zoom, zoom, tilematrixset=tms, **options)
    try:
        peer = PeerMosaic.from_features(feats, zoom, zoom, tilematrixset=tms, **options)
    except Exception as err:  # a peer bug is reported, not hidden
        peer_failures.append(f"{label}: cogeo-mosaic raised {err!r}")
        print(f"{label:60s} quadkeys {len(ours.tiles):5d} / (cogeo-mosaic failed)")
        return
    if ours.tiles != peer.tiles:
        only_ours = set(ours.tiles) - set(peer.tiles)
        only_peer = set(peer.tiles) - set(ours.tiles)
        lists = sum(ours.tiles[k] != peer.tiles[k] for k in set(ours.tiles) & set(peer.tiles))
        differences.append(
            f"{label}: {len(only_ours)} quadkeys only here, {len(only_peer)} only "
            f"in cogeo-mosaic, {lists} asset lists differ"
        )
    print(f"{label:60s} quadkeys {len(ours.tiles):5d} / {len(peer.tiles):5d}")


def compare_backends(rng: random.Random, differences: list[str]) -> int:
    """Backend methods and model validation of both: checks made."""
    checked = 0
    feats = features(rng, 10, (5, 40, 15, 50))
    ours_doc = MosaicJSON.from_features(feats, 6, 8)
    peer_doc = PeerMosaic.from_features(feats, 6, 8)
    with (
        MosaicBackend(":memory:", mosaic_def=ours_doc) as a,
        PeerBackend(":memory:", mosaic_def=peer_doc) as b,
    ):
        pairs = {
            "mosaicid": (a.mosaicid, b.mosaicid),
            "_quadkeys": (sorted(a._quadkeys), sorted(b._quadkeys)),
            "find_quadkeys up": (
                a.find_quadkeys(morecantile.Tile(68, 46, 7), 6),
                b.find_quadkeys(morecantile.Tile(68, 46, 7), 6),
            ),
            "find_quadkeys down": (
                a.find_quadkeys(morecantile.Tile(16, 11, 5), 6),
                b.find_quadkeys(morecantile.Tile(16, 11, 5), 6),
            ),
        }
        for name, (x, y) in pairs.items():
            checked += 1
            if x != y:
                differences.append(f"{name}: {x!r} here, {y!r} in cogeo-mosaic")
    for name, build in (("ours", MosaicJSON), ("cogeo-mosaic", PeerMosaic)):
        doc = build(mosaicjson="0.0.3", minzoom=2, maxzoom=4, tiles={})
        checked += 1
        try:
            doc.minzoom = -1
            differences.append(f"{name}: minzoom = -1 accepted")
        except ValidationError:
            pass
    return checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--features", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    differences: list[str] = []
    peer_failures: list[str] = []
    warnings.simplefilter("ignore")
    checked = compare_builders(rng, args.features, differences, peer_failures)
    checked += compare_backends(rng, differences)
    print(f"\n{checked} checks, {len(differences)} differences")
    for line in peer_failures:
        print("  PEER FAILURE (not compared)", line)
    for line in differences:
        print("  DIFFERENCE", line)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
