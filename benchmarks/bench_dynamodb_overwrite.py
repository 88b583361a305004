"""What the DynamoDB generation protocol costs: create vs overwrite vs update, on a stand-in.

Run: `python benchmarks/bench_dynamodb_overwrite.py [--quadkeys 5000] [--server moto|dynalite]`.
Starts the stand-in on a free port of 127.0.0.1 and stops it at the end.

Prints, for a mosaic of N quadkeys (quadkey_zoom 10):
- create: seconds and items written (tile + overview items, written once);
- overwrite where every quadkey changes: seconds, items written (staging + promotion: about
  twice the items of a create, the price of never showing a mixed mosaic), and the split of the
  time between staging, commit and promotion;
- update of 1% of the quadkeys: seconds and items written;
- tile reads at quadkey_zoom: median milliseconds with strongly consistent and eventually
  consistent reads.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_dynamodb import REGION, block_tiles, serving

from tests.geometry import inset_box


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quadkeys", type=int, default=5000)
    parser.add_argument("--server", choices=("moto", "dynalite"), default="moto")
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    side = int(args.quadkeys**0.5)
    with tempfile.TemporaryDirectory() as directory, serving(args.server) as endpoint:
        del directory
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": REGION,
            }
        )
        from lambda_handler import cache
        from lambda_handler.backends import MosaicBackend
        from lambda_handler.backends.dynamodb import DynamoDBBackend, dynamodb_client
        from lambda_handler.mosaic.model import MosaicJSON
        from lambda_handler.settings import aws_settings

        table = "bench-generations"
        DynamoDBBackend.create_table(table)
        uri = f"dynamodb:///{table}:bench"
        items = Counter()
        phases: dict[str, float] = {}
        client = dynamodb_client(REGION)

        def count(model, params, **kwargs) -> None:
            if model.name == "BatchWriteItem":
                items["written"] += sum(len(v) for v in params["RequestItems"].values())
            if model.name == "PutItem" and "_generation" in params.get("Item", {}):
                phases["commit"] = time.perf_counter()

        client.meta.events.register("provide-client-params.dynamodb", count)

        def doc(tag: str) -> MosaicJSON:
            tiles = {qk: [f"s3://b/{tag}/{qk}.tif"] for qk in block_tiles(300, 300, side, side, 10)}
            return MosaicJSON(
                mosaicjson="0.0.3", minzoom=4, maxzoom=12, quadkey_zoom=10, tiles=tiles
            )

        def write(document: MosaicJSON, overwrite: bool) -> tuple[float, int]:
            items.clear()
            phases.clear()
            backend = MosaicBackend(uri, mosaic_def=document)
            started = time.perf_counter()
            backend.write(overwrite=overwrite)
            ended = time.perf_counter()
            phases["start"], phases["end"] = started, ended
            return ended - started, items["written"]

        first = doc("one")
        print(f"{args.server}: mosaic of {len(first.tiles)} quadkeys (quadkey_zoom 10)")
        seconds, written = write(first, False)
        print(f"create     {seconds:7.2f} s  {written:7d} items written")
        seconds, written = write(doc("two"), True)
        staging = phases["commit"] - phases["start"]
        promotion = phases["end"] - phases["commit"]
        print(
            f"overwrite  {seconds:7.2f} s  {written:7d} items written "
            f"(staging and checks {staging:.2f} s, promotion {promotion:.2f} s)"
        )
        changed = list(doc("two").tiles)[: max(1, len(first.tiles) // 100)]
        from lambda_handler.mosaic.tiling import quadkey_to_tile

        features = []
        with MosaicBackend(uri) as backend:
            tms = backend.mosaic_tms
        for quadkey in changed:
            west, south, east, north = tms.bounds(*quadkey_to_tile(quadkey))
            inset = (east - west) / 10
            features.append(
                inset_box(west, south, east, north, inset, f"s3://b/added/{quadkey}.tif")
            )
        items.clear()
        with MosaicBackend(uri) as backend:
            started = time.perf_counter()
            backend.update(features)
            seconds = time.perf_counter() - started
        print(f"update     {seconds:7.2f} s  {items['written']:7d} items written "
              f"({len(changed)} quadkeys changed)")  # fmt: skip
        for consistent in (True, False):
            os.environ["MOSAIC_AWS_CONSISTENT_READS"] = str(consistent).lower()
            aws_settings.cache_clear()
            with MosaicBackend(uri) as backend:
                timings = []
                for quadkey in list(first.tiles)[: args.reads]:
                    cache.clear_all()
                    x, y, z = quadkey_to_tile(quadkey)
                    started = time.perf_counter()
                    backend.get_assets(x, y, z)
                    timings.append(time.perf_counter() - started)
            kind = "consistent" if consistent else "eventual  "
            print(f"tile read ({kind}) median {statistics.median(timings) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
