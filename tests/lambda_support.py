"""Helpers of the Lambda tests: real event shapes, a DynamoDB mosaic of COGs on S3 and a
stand-in of the Python 3.12 runtime directory the bundle runs against.

The events follow the payloads AWS documents for API Gateway HTTP API (payload format 2.0),
REST API (1.0) and Lambda Function URLs (2.0, `lambda-url` domain).
"""

import base64
import gzip
import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlencode

import morecantile

from cdk.bundling import BundleSpec, cache_root
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import DynamoDBBackend
from lambda_handler.mosaic.builder import from_urls
from tests.servers_aws import AwsServer, unique_name

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
OVERLAP = (-78.15, 45.40)  # scenes a, b and c overlap here (lambda_handler.sample_data)
# What Lambda's Python 3.12 runtime provides outside the asset (versions of the test env;
# snapshot-restore-py is the SnapStart hook registry of the managed runtime).
RUNTIME_REQUIREMENTS = (
    "boto3==1.43.11",
    "botocore==1.43.11",
    "awslambdaric==4.2.2",
    "snapshot-restore-py==1.0.0",
)


def http_api_event(
    path: str,
    query: dict[str, str] | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    domain: str = "abc123.execute-api.us-east-1.amazonaws.com",
) -> dict:
    """An API Gateway HTTP API event (payload format 2.0, `$default` stage)."""
    raw_query = urlencode(query or {})
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {
            "accept": "*/*",
            "host": domain,
            "user-agent": "pytest",
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": domain.split(".")[0],
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "21/Nov/2025:06:00:00 +0000",
            "timeEpoch": 1763704800000,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    return event


def function_url_event(path: str, query: dict[str, str] | None = None, **kwargs) -> dict:
    """A Lambda Function URL event (payload 2.0 on a `lambda-url` domain)."""
    domain = "abcdefghijklmnop.lambda-url.us-east-1.on.aws"
    event = http_api_event(path, query, domain=domain, **kwargs)
    event["requestContext"]["authorizer"] = {
        "iam": {
            "accessKey": "AKIAEXAMPLE",
            "accountId": "123456789012",
            "callerId": "AIDAEXAMPLE",
            "userArn": "arn:aws:iam::123456789012:user/tester",
            "userId": "AIDAEXAMPLE",
        }
    }
    return event


def rest_api_event(path: str, query: dict[str, str] | None = None, method: str = "GET") -> dict:
    """An API Gateway REST API proxy event (payload format 1.0)."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Accept": "*/*"}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "accountId": "123456789012",
            "apiId": "abc123",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def body_bytes(response: dict) -> bytes:
    """The body of a Lambda proxy response."""
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def json_body(response: dict) -> dict:
    """The JSON body of a response (gunzipped when gzip-encoded)."""
    data = body_bytes(response)
    if (response.get("headers") or {}).get("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return json.loads(data)


def tile_path(mosaic_id: str, lon: float, lat: float, z: int, suffix: str = ".png") -> str:
    """Path of the WebMercatorQuad tile holding a point."""
    tile = WEB_MERCATOR.tile(lon, lat, z)
    return f"/mosaics/{mosaic_id}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}{suffix}"


def noise_cog(directory: Path, z: int = 10, size: int = 2048) -> tuple[str, str]:
    """A COG of random 3-band uint8 noise covering the z tile of `OVERLAP` at `size` pixels
    (noise does not compress: its TIFF tile is ~3 x size^2 bytes). Returns (path, tile path
    suffix '{z}/{x}/{y}')."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_bounds

    tile = WEB_MERCATOR.tile(*OVERLAP, z)
    bounds = WEB_MERCATOR.xy_bounds(tile)
    path = directory / f"noise-{z}-{size}.tif"
    data = np.random.default_rng(7).integers(1, 256, size=(3, size, size), dtype="uint8")
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:3857",
        "transform": from_bounds(*bounds, size, size),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return str(path), f"{tile.z}/{tile.x}/{tile.y}"


def store_mosaic(
    server: AwsServer, cogs: list[str], mosaic_id: str = "lambda-test", table: str | None = None
) -> tuple[str, str, str]:
    """Upload `cogs` to a new bucket, write their mosaic to a new DynamoDB table (both on
    `server`, through boto3 with the server's environment already applied by the caller).

    Returns (bucket, table, mosaic_id). Footprints are read from the local files; the stored
    assets are the `s3://` copies, so reading tiles goes through the S3 stand-in.
    """
    bucket, new_table = unique_name("cogs"), table is None
    table = table or unique_name("mosaics")
    s3 = server.client("s3")
    s3.create_bucket(Bucket=bucket)
    local_to_s3 = {}
    for path in cogs:
        key = f"scenes/{Path(path).name}"
        s3.upload_file(path, bucket, key)
        local_to_s3[path] = f"s3://{bucket}/{key}"
    document = from_urls(list(cogs), minzoom=7, maxzoom=12)
    document = document.model_copy(
        update={
            "tiles": {
                quadkey: [local_to_s3[a] for a in assets]
                for quadkey, assets in document.tiles.items()
            }
        }
    )
    if new_table:
        DynamoDBBackend.create_table(table)
    with MosaicBackend(f"dynamodb:///{table}:{mosaic_id}", mosaic_def=document) as backend:
        backend.write()
    return bucket, table, mosaic_id


def lambda_runtime_dir() -> Path:
    """A stand-in of Lambda's /var/runtime for CPython 3.12 (built once, cached)."""
    spec = BundleSpec()
    key = hashlib.sha256(" ".join(RUNTIME_REQUIREMENTS + spec.platforms).encode()).hexdigest()
    target = cache_root() / f"runtime-{key[:16]}"
    if not (target / ".complete").is_file():
        work = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:6]}")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"]
        cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12"]
        for platform in spec.platforms:
            cmd += ["--platform", platform]
        # A deadline: a stuck download fails the test session instead of hanging it.
        subprocess.run(
            [*cmd, "--target", str(work), *RUNTIME_REQUIREMENTS], check=True, timeout=900
        )
        (work / ".complete").write_text("ok")
        work.rename(target)
    return target
