"""Init-time warm-up and the Lambda SnapStart runtime hooks.

What a map user waits for after a cold start is init plus the first tile. `warm_up` does at init
everything a first tile would otherwise do: it builds the app and mangum, sets the GDAL/PROJ
environment, then renders one PNG tile through the real app and its real routes from a tiny COG
shipped in the package (`warmup/warmup.tif`, UTM, so the PROJ database and the warp are warmed
too), with no network, and builds the boto3 client of a DynamoDB or S3 mosaic store (botocore's
service model and endpoint rules, ~100 ms for S3). Python modules, pydantic validators of the
tile routes, GDAL drivers, PROJ's database and rio-tiler's code paths are all loaded before the
first request.

With SnapStart, Lambda snapshots the initialised process once per published version and restores
it for each new execution environment: the warm-up is then paid once per version. Some state in
that snapshot is shared by every restored environment or may be stale there; `after_restore`
replaces it (boto3 clients holding the init's credentials and connections, `random`'s seed,
TTL caches keyed on a monotonic clock, GDAL's curl connections and cached HTTP data).
`register_hooks` hands both hooks to `snapshot_restore_py` (the Lambda runtime provides it; its
absence elsewhere is not an error: the hooks only run under SnapStart).
"""

from __future__ import annotations

import base64
import ctypes
import glob
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambda_handler.handler import ApiFunction

logger = logging.getLogger(__name__)

WARMUP_DIR = Path(__file__).resolve().parent / "warmup"
WARMUP_COG = WARMUP_DIR / "warmup.tif"
WARMUP_MOSAIC = WARMUP_DIR / "warmup.json"  # its assets say "{asset}": the COG's path
WARMUP_TILE = (11, 597, 736)  # the WebMercatorQuad tile at the COG's centre (-75.0, 45.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class WarmUpError(RuntimeError):
    """The init-time warm-up tile could not be rendered (the message says what answered)."""


# What the last warm-up and restore did, in seconds (logged, read by the benchmark and tests).
timings: dict[str, float] = {}
restores = 0


def get_event(path: str, host: str, query: str = "", request_id: str = "warm-up") -> dict[str, Any]:
    """A minimal API Gateway HTTP API (payload 2.0) GET event (the warm-up's, the benchmark's)."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": host, "accept": "image/png"},
        "requestContext": {
            "http": {
                "method": "GET",
                "path": path,
                "sourceIp": "127.0.0.1",
                "protocol": "HTTP/1.1",
            },
            "stage": "$default",
            "domainName": host,
            "requestId": request_id,
        },
        "isBase64Encoded": False,
    }


def render_warmup_tile(function: ApiFunction) -> bytes:
    """Render the warm-up tile through `function`'s app and routes; the PNG bytes.

    The app's settings (`app.state.settings`, which the `get_settings` dependency returns) are
    swapped for the duration (init runs no other request) for a copy whose mosaic store is a
    temporary directory holding the warm-up mosaic and whose asset allow-list is the package's
    warm-up directory: the routes, readers and renderers are the ones real requests use.
    Caches filled by this mosaic are emptied afterwards.
    """
    from urllib.parse import urlsplit

    from lambda_handler import cache

    app = function.adapter.app
    settings = app.state.settings
    workdir = Path(tempfile.mkdtemp(prefix="mosaic-warmup-"))
    try:
        document = WARMUP_MOSAIC.read_text().replace("{asset}", str(WARMUP_COG))
        (workdir / "warmup.json").write_text(document)
        warm_settings = settings.model_copy(
            update={
                "mosaic_uri_template": f"file://{workdir}/{{mosaic_id}}.json",
                "allowed_asset_prefixes": [WARMUP_DIR.as_uri() + "/"],
            }
        )
        app.state.settings = warm_settings
        z, x, y = WARMUP_TILE
        host = urlsplit(settings.public_url or "").hostname or "warm-up.invalid"
        event = get_event(f"/mosaics/warmup/tiles/WebMercatorQuad/{z}/{x}/{y}.png", host)
        response = function.adapter(event, None)
    finally:
        app.state.settings = settings
        shutil.rmtree(workdir, ignore_errors=True)
        cache.clear_all()
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    if response.get("statusCode") != 200 or not data.startswith(PNG_MAGIC):
        raise WarmUpError(f"the warm-up tile answered {response.get('statusCode')}: {data[:300]!r}")
    return data


# What the first tile imports that building the app does not (found by diffing sys.modules
# around the warm-up tile); each pulls in its libraries (rasterio, rio-tiler, numpy, ...).
TILE_PATH_MODULES = (
    "lambda_handler.reading",
    "lambda_handler.cache",
    "lambda_handler.mosaic.tiling",
    "lambda_handler.backends.base",
    "rio_tiler.mosaic.reader",
    "rasterio.warp",
    # The first connection to a host name encodes it with the idna codec (S3, DynamoDB, HTTP).
    "encodings.idna",
)
STORE_MODULES = {
    "dynamodb": "lambda_handler.backends.dynamodb",
    "s3": "lambda_handler.backends.s3",
    "file": "lambda_handler.backends.file",
    "sqlite": "lambda_handler.backends.sqlite",
}
INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"  # set by Lambda
# Where init runs ahead of any request: a snapshot, or a provisioned environment.
AHEAD_OF_REQUESTS = frozenset({"snap-start", "provisioned-concurrency"})


def warm_up_level(configured: str) -> str:
    """`tile`, `imports` or `off` for the `MOSAIC_LAMBDA_WARM_UP` setting: `auto` renders the
    warm-up tile where init runs ahead of requests (SnapStart, provisioned concurrency) and
    only imports on an on-demand cold start, where an extra tile would add to the wait."""
    if configured != "auto":
        return configured
    ahead = os.environ.get(INITIALIZATION_TYPE, "") in AHEAD_OF_REQUESTS
    return "tile" if ahead else "imports"


def warm_up(function: ApiFunction, level: str = "tile") -> dict[str, float]:
    """Init's work, once: the app and the tile routes, the modules a tile uses, the store's
    boto3 client and (level `tile`) one rendered tile, which loads GDAL's drivers and PROJ.

    Returns (and records in `timings`) the seconds each step took.
    """
    started = time.perf_counter()
    function.warm_up()
    built = time.perf_counter()
    template = function.adapter.app.state.settings.mosaic_uri_template
    import_tile_path(function, template)
    imported = time.perf_counter()
    prepare_store_client(template)
    prepared = time.perf_counter()
    if level == "tile":
        render_warmup_tile(function)
    done = time.perf_counter()
    timings.update(
        {
            "app": built - started,
            "imports": imported - built,
            "store_client": prepared - imported,
            "warm_up": done - started,
        }
    )
    if level == "tile":
        timings["first_tile"] = done - prepared
    logger.info(
        "warm-up (%s): %s", level, ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items())
    )
    return dict(timings)


def import_tile_path(function: ApiFunction, template: str) -> None:
    """Build the `/mosaics/{mosaic_id}/...` routes and import what a tile request uses."""
    import importlib

    from lambda_handler.routes.deferred import DeferredRoutes

    for route in function.adapter.app.router.routes:
        if isinstance(route, DeferredRoutes) and "/mosaics/{mosaic_id}/..." in route.paths:
            route.routes  # noqa: B018 - builds them
    store = STORE_MODULES.get(template.split("://", 1)[0].lower())
    for name in (*TILE_PATH_MODULES, *((store,) if store else ())):
        importlib.import_module(name)


# One call per store, answered in process by a canned error (no network): botocore's endpoint
# rules, signer, retry handlers and response parser run and load what they load lazily.
_CANNED_CALLS: dict[str, tuple[str, str, dict[str, Any], int, bytes]] = {
    "s3": (
        "GetObject",
        "get_object",
        {"Bucket": "warm-up", "Key": "warm-up.json"},
        404,
        b"<Error><Code>NoSuchKey</Code><Message>warm-up</Message></Error>",
    ),
    "dynamodb": (
        "GetItem",
        "get_item",
        {"TableName": "warm-up", "Key": {"mosaicId": {"S": "warm-up"}, "quadkey": {"S": "-1"}}},
        400,
        b'{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",'
        b'"message":"warm-up"}',
    ),
}


class _CannedBody:
    """The `raw` of a botocore response that never went over the network."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        """The body, as urllib3's stream() yields it."""
        yield self._body


def prepare_store_client(template: str) -> str | None:
    """Build the boto3 client of the store the mosaic URI template names (DynamoDB or S3) and
    make one call with it that a `before-send` handler answers in process (no network):
    botocore's modules, service model, endpoint rules, signer and parser load now and stay
    loaded (`backends.aws` shares its data loader) when the client itself is replaced after a
    restore. Returns the service, or None for other stores."""
    service = {"dynamodb": "dynamodb", "s3": "s3"}.get(template.split("://", 1)[0].lower())
    if service is None:
        return None
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError

    from lambda_handler.backends import aws

    client = aws.client(service)
    operation, method, params, status, body = _CANNED_CALLS[service]
    event = f"before-send.{client.meta.service_model.service_id.hyphenize()}.{operation}"

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"x-amzn-RequestId": "warm-up"}, _CannedBody(body))

    client.meta.events.register_first(event, answer, unique_id="mosaic-warm-up")
    try:
        getattr(client, method)(**params)
    except ClientError:
        pass  # the canned answer is an error, as intended
    finally:
        client.meta.events.unregister(event, unique_id="mosaic-warm-up")
    return service


# ---------------------------------------------------------------------------- SnapStart hooks
def _gdal_library() -> Any | None:
    """The GDAL shared library rasterio loaded, or None while rasterio is not imported."""
    rasterio = sys.modules.get("rasterio")
    if rasterio is None:
        return None
    package = Path(rasterio.__file__).resolve().parent
    for pattern in (
        str(package.parent / "rasterio.libs" / "libgdal*.so*"),
        str(package / ".dylibs" / "libgdal*.dylib"),
    ):
        for path in sorted(glob.glob(pattern)):
            return ctypes.CDLL(path)
    try:  # a rasterio built against the system GDAL
        return ctypes.CDLL("libgdal.so")
    except OSError:
        return None


def clear_gdal_network_state() -> bool:
    """Drop GDAL's cached HTTP data, file properties and curl connections
    (`VSICurlClearCache`); False when GDAL is not loaded."""
    library = _gdal_library()
    if library is None:
        return False
    library.VSICurlClearCache.restype = None
    library.VSICurlClearCache()
    return True


def before_snapshot(function: ApiFunction | None = None) -> None:
    """SnapStart's before-snapshot hook: make sure the snapshot holds the tile-level warm-up
    (init did it unless `MOSAIC_LAMBDA_WARM_UP` says otherwise or it failed: a failure is
    logged, the snapshot is still taken), then drop network state it must not carry."""
    function = function or _entry_function()
    if (
        function is not None
        and function.lambda_settings.warm_up != "off"
        and "first_tile" not in timings
    ):
        try:
            warm_up(function, "tile")
        except Exception:
            logger.exception("warm-up before the snapshot failed")
    _forget_network_state()


def after_restore() -> None:
    """SnapStart's after-restore hook: replace what every restored environment must have of
    its own, or fresh."""
    global restores
    started = time.perf_counter()
    _forget_network_state()
    # Every environment restored from one snapshot would draw the same "random" numbers.
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    # TTL caches compare monotonic timestamps, and that clock is not continuous across a
    # restore; their entries would also be as old as the snapshot.
    from lambda_handler import cache

    cache.clear_all()
    restores += 1
    timings["restore"] = time.perf_counter() - started


def _forget_network_state() -> None:
    """boto3 clients (they hold the credentials and connections of the environment that made
    them) and GDAL's HTTP state."""
    if "lambda_handler.backends.aws" in sys.modules:
        sys.modules["lambda_handler.backends.aws"].clear_clients()
    responses = sys.modules.get("lambda_handler.lambda_responses")
    if responses is not None:
        responses.exports_client.cache_clear()
    clear_gdal_network_state()


def _entry_function() -> ApiFunction | None:
    """The function object of the entry point named by `_HANDLER`, if any."""
    from lambda_handler import handler

    return handler.entry_function()


def register_hooks() -> bool:
    """Register the hooks with the runtime's `snapshot_restore_py`; False when it is absent
    (outside Lambda, or a runtime without SnapStart support)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    return True


def report() -> str:
    """The timings as one JSON line (for logs and the benchmark)."""
    return json.dumps({key: round(value, 4) for key, value in timings.items()})
