"""Writer processes of the DynamoDB concurrency and crash tests (`python -m tests.dynamodb_workers`).

Each command runs in its own process, so it can be SIGKILLed and has its own boto3 client
(its environment points it at a server or a fault proxy):
- `write URI DOCUMENT.json [--overwrite]`: write a document; exit 0, or 3 with the error's
  message and notes on stderr.
- `update URI TAG COUNT X Y ZOOM`: COUNT updates adding asset `s3://b/TAG/{i}.tif` inside tile
  (X, Y, ZOOM); prints one JSON line: the assets whose update was acknowledged, and the refused
  ones with their error class.
"""

import json
import sys

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.errors import MosaicError
from lambda_handler.mosaic.model import MosaicJSON
from tests.geometry import inset_box


def feature(x: int, y: int, zoom: int, path: str, tms) -> dict:
    """A footprint strictly inside tile (x, y, zoom) of `tms`."""
    west, south, east, north = tms.bounds(x, y, zoom)
    return inset_box(west, south, east, north, (east - west) / 10, path)


def write(uri: str, path: str, overwrite: bool) -> int:
    """Write the document in `path` to `uri`."""
    with open(path) as stream:
        document = MosaicJSON.parse(stream.read())
    try:
        with MosaicBackend(uri, mosaic_def=document) as backend:
            backend.write(overwrite=overwrite)
    except MosaicError as err:
        notes = " | ".join(getattr(err, "__notes__", []))
        print(f"{type(err).__name__}: {err} | {notes}", file=sys.stderr)
        return 3
    return 0


def update(uri: str, tag: str, count: int, x: int, y: int, zoom: int) -> int:
    """`count` updates, each adding one asset; report acknowledged and refused ones."""
    acknowledged, refused = [], {}
    for index in range(count):
        asset = f"s3://b/{tag}/{index}.tif"
        cache.clear_all()
        try:
            with MosaicBackend(uri) as backend:
                backend.update([feature(x, y, zoom, asset, backend.mosaic_tms)])
        except MosaicError as err:
            refused[asset] = f"{type(err).__name__}: {err}"
            continue
        acknowledged.append(asset)
    print(json.dumps({"acknowledged": acknowledged, "refused": refused}))
    return 0


def main(argv: list[str]) -> int:
    """Dispatch a command line."""
    command, *args = argv
    if command == "write":
        return write(args[0], args[1], "--overwrite" in args[2:])
    if command == "update":
        uri, tag, count, x, y, zoom = args
        return update(uri, tag, int(count), int(x), int(y), int(zoom))
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
