"""The floor of a cold start for any FastAPI + rio-tiler tiler: a handler that imports the
stack such a tiler loads (FastAPI and pydantic, rasterio, numpy, rio-tiler with morecantile and
pyproj; boto3 for S3) and answers a tile event with bare rio-tiler — no app, no routes, no
mosaic backend. It runs from the peer's asset (which holds all of these) the way the peer and
ours run, so init + first tile of this handler is what neither tiler can go below while it
keeps FastAPI and computes the same pixels. With FLOOR_FASTAPI=0 it skips FastAPI and
pydantic: the floor of any rio-tiler tiler, whatever its HTTP layer."""

FLOOR_HANDLER = """
import base64, json, os, re, urllib.parse

if os.environ.get("FLOOR_FASTAPI", "1") == "1":
    import fastapi  # what a FastAPI tiler loads at init
    import pydantic
from rio_tiler.io import Reader
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.constants import WEB_MERCATOR_TMS

TILE = re.compile(r"/(\\d+)/(\\d+)/(\\d+)\\.png$")


def _document(url):
    if url.startswith("s3://"):
        import boto3

        bucket, _, key = url[5:].partition("/")
        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
        return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    with open(url) as f:
        return json.load(f)


def _read(asset, x, y, z, **kwargs):
    with Reader(asset) as src:
        return src.tile(x, y, z, **kwargs)


def handler(event, context):
    z, x, y = (int(v) for v in TILE.search(event["rawPath"]).groups())
    url = urllib.parse.parse_qs(event["rawQueryString"])["url"][0]
    document = _document(url)
    quadkey = WEB_MERCATOR_TMS.quadkey(x, y, z)[: document.get("quadkey_zoom") or document["minzoom"]]
    image, _ = mosaic_reader(document["tiles"].get(quadkey, []), _read, x, y, z)
    body = image.render(img_format="PNG")
    return {"statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(body).decode(),
            "headers": {"content-type": "image/png"}}
"""
