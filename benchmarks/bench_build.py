"""Index building: ours vs cogeo-mosaic's `MosaicJSON.from_features` on the same footprints.

Run: `pip install -e .[bench]` then `python benchmarks/bench_build.py [--count 10000]`.
The last line printed is the ratio (cogeo-mosaic time / ours); the indexes must be equal.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from footprints import scene_footprints
from timing import timed

from lambda_handler.mosaic import from_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--minzoom", type=int, default=7)
    parser.add_argument("--maxzoom", type=int, default=12)
    parser.add_argument("--quadkey-zoom", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    try:
        from cogeo_mosaic.mosaic import MosaicJSON as PeerMosaicJSON
    except ImportError:
        sys.exit("cogeo-mosaic is not installed: pip install -e .[bench]")

    features = scene_footprints(args.count)
    options = {"quadkey_zoom": args.quadkey_zoom}
    ours_time, ours = timed(
        lambda: from_features(features, args.minzoom, args.maxzoom, **options), args.repeat
    )
    peer_time, peer = timed(
        lambda: PeerMosaicJSON.from_features(features, args.minzoom, args.maxzoom, **options),
        max(1, args.repeat - 2),
    )
    equal = ours.tiles == peer.tiles
    print(
        f"footprints: {args.count}, zooms {args.minzoom}-{args.maxzoom}, quadkey_zoom {args.quadkey_zoom}"
    )
    print(f"quadkeys: ours {len(ours.tiles)}, cogeo-mosaic {len(peer.tiles)}")
    print(f"indexes equal: {equal}")
    if not equal:
        missing = set(peer.tiles) - set(ours.tiles)
        extra = set(ours.tiles) - set(peer.tiles)
        differ = [k for k in set(ours.tiles) & set(peer.tiles) if ours.tiles[k] != peer.tiles[k]]
        print(
            f"  only in cogeo-mosaic: {len(missing)}, only in ours: {len(extra)}, differing: {len(differ)}"
        )
    print(f"ours: {ours_time:.3f} s, cogeo-mosaic: {peer_time:.3f} s")
    print(f"ratio (cogeo-mosaic / ours): {peer_time / ours_time:.1f}")
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()
