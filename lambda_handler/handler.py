"""Lambda entry points: `handler` (HTTP API / REST API) and `batch_handler` (Function URL).

Both run the FastAPI app through mangum. Module import is stdlib only outside Lambda; in Lambda
(`AWS_LAMBDA_FUNCTION_NAME` set) the init phase warms up the entry point `_HANDLER` names
(`lambda_handler.snapstart`): GDAL/PROJ defaults go into the environment before rasterio is
imported, the app and its tile routes are built, the tile path is imported and, under SnapStart
or provisioned concurrency, one tile is rendered from a COG shipped in the package, so the first
request has nothing left to import or build; the SnapStart hooks are registered there too.
`MOSAIC_LAMBDA_WARM_UP=off` only builds the app (no geospatial import: the first request that
reads a mosaic imports rasterio, rio-tiler, numpy and morecantile; tests/test_imports.py).

The event loop: mangum 0.22 runs each request on `asyncio.get_event_loop()`. On Python 3.12+
that call fails or warns when no loop is set, and anything that used `asyncio.run` in between
leaves no loop set. `LambdaAdapter` owns one loop and sets it before every invoke, so one loop
serves every warm invoke on 3.11-3.13.

Responses over Lambda's 6 MB payload limit: the API function answers 413 (pointing at the batch
URL), the batch function exports the body to S3 and redirects to it (`lambda_responses`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lambda_handler import request_log
from lambda_handler.lambda_responses import (
    LambdaResponse,
    export_response,
    json_answer,
    response_size,
    too_large_answer,
)

if TYPE_CHECKING:
    from lambda_handler.settings import ApiSettings, LambdaSettings

logger = logging.getLogger(__name__)

# The key of an asynchronous write job's event (lambda_handler.jobs.JOB_EVENT_KEY; not
# imported from there: this module imports only the standard library).
JOB_EVENT_KEY = "mosaic_tiler_job"
LambdaEvent = dict[str, Any]
_environment_applied = False
_environment_lock = threading.Lock()


def in_lambda() -> bool:
    """Whether this process runs in AWS Lambda (or is made to look like it)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def _proj_data_dir() -> str | None:
    """The PROJ database shipped in the asset (the bundler keeps only the newer of rasterio's
    and pyproj's); found without importing either package."""
    import importlib.util

    for package, parts in (("rasterio", ("proj_data",)), ("pyproj", ("proj_dir", "share", "proj"))):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = os.path.join(location, *parts)
            if os.path.isfile(os.path.join(candidate, "proj.db")):
                return candidate
    return None


def apply_environment(
    settings: LambdaSettings, batch: bool = False, environ: dict[str, str] | None = None
) -> dict[str, str]:
    """Put the Lambda GDAL/PROJ defaults into `environ` (default: `os.environ`) without
    overriding what is already set; returns what was added."""
    from lambda_handler.settings import ReadSettings, env_name

    environ = os.environ if environ is None else environ
    wanted = settings.gdal_environment(batch=batch)
    if "PROJ_DATA" not in wanted and "PROJ_DATA" not in environ and "PROJ_LIB" not in environ:
        proj = _proj_data_dir()
        if proj:
            wanted["PROJ_DATA"] = proj
    if batch:
        wanted[env_name(ReadSettings, "http_timeout")] = str(settings.batch_read_http_timeout)
    added = {key: value for key, value in wanted.items() if key not in environ}
    environ.update(added)
    return added


def _prepare_process(batch: bool) -> None:
    """Once per process, in Lambda: apply the environment defaults before the app imports GDAL."""
    global _environment_applied
    with _environment_lock:
        if _environment_applied or not in_lambda():
            return
        from lambda_handler.settings import LambdaSettings

        settings = LambdaSettings()
        apply_environment(settings, batch=batch)
        request_log.configure(settings.log_level)
        _environment_applied = True


class LambdaAdapter:
    """Calls an ASGI app for Lambda events through mangum, on one event loop kept across invokes.

    `app_factory` is called once, by the first invoke (or `warm_up`).
    """

    def __init__(self, app_factory: Callable[[], Any]) -> None:
        self._factory = app_factory
        self._mangum: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop invokes run on (created on first use, replaced only if closed)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    @property
    def app(self) -> Any:
        """The ASGI app (built now if needed)."""
        self.warm_up()
        return self._mangum.app

    def warm_up(self) -> None:
        """Build the app and the mangum adapter now (Lambda's init phase)."""
        if self._mangum is None:
            with self._lock:
                if self._mangum is None:
                    from mangum import Mangum

                    app = self._factory()
                    asyncio.set_event_loop(self.loop)
                    # lifespan off: the app has no startup work, and mangum would run a full
                    # startup/shutdown cycle on every invoke.
                    self._mangum = Mangum(app, lifespan="off")

    def __call__(self, event: LambdaEvent, context: Any = None) -> LambdaResponse:
        """Answer one Lambda event."""
        self.warm_up()
        asyncio.set_event_loop(self.loop)
        return self._mangum(event, context)


# ---------------------------------------------------------------------------- identity
WRITE_EVENT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def event_method(event: LambdaEvent) -> str:
    """HTTP method of an API Gateway (v1 or v2) or Function URL event."""
    context = event.get("requestContext") or {}
    method = (context.get("http") or {}).get("method") or event.get("httpMethod") or ""
    return str(method).upper()


def iam_identity(event: LambdaEvent) -> str | None:
    """The caller's IAM identity API Gateway verified (SigV4), or None: HTTP API v2 and
    Function URLs put it in `requestContext.authorizer.iam`, REST API v1 in
    `requestContext.identity` (`userArn`, `caller`)."""
    context = event.get("requestContext") or {}
    iam = (context.get("authorizer") or {}).get("iam") or {}
    for key in ("userArn", "callerId", "userId"):
        if iam.get(key):
            return str(iam[key])
    identity = context.get("identity") or {}
    for key in ("userArn", "caller"):
        if identity.get(key):
            return str(identity[key])
    return None


# ---------------------------------------------------------------------------- the two functions
class ApiFunction:
    """The API function: the app for `ApiSettings`, oversized responses refused with 413."""

    batch = False

    def __init__(
        self,
        api_settings: ApiSettings | None = None,
        lambda_settings: LambdaSettings | None = None,
    ) -> None:
        self._api_settings = api_settings
        self._lambda_settings = lambda_settings
        self.adapter = LambdaAdapter(self._build_app)

    @property
    def lambda_settings(self) -> LambdaSettings:
        """The Lambda settings (from the environment unless given)."""
        if self._lambda_settings is None:
            from lambda_handler.settings import LambdaSettings

            self._lambda_settings = LambdaSettings()
        return self._lambda_settings

    def api_settings(self) -> ApiSettings:
        """The app's settings (from the environment unless given)."""
        if self._api_settings is None:
            from lambda_handler.settings import ApiSettings

            self._api_settings = ApiSettings()
        return self._api_settings

    def _build_app(self) -> Any:
        _prepare_process(self.batch)
        from lambda_handler.app import create_app

        return create_app(self.api_settings())

    def warm_up(self) -> None:
        """Build the app now."""
        self.adapter.warm_up()

    def __call__(self, event: LambdaEvent, context: Any = None) -> LambdaResponse:
        """Answer one event (HTTP API v2, REST API v1 or Function URL), logging one JSON line;
        an asynchronous write job (`JOB_EVENT_KEY`, see lambda_handler/jobs.py) is run."""
        if isinstance(event, dict) and JOB_EVENT_KEY in event:
            return self.run_job(event)
        started = time.perf_counter()
        token = request_log.start_request(context)
        try:
            response = self._answer(event, context)
        except BaseException as err:
            request_log.log_request(event, context, None, time.perf_counter() - started, err)
            raise
        else:
            request_log.log_request(event, context, response, time.perf_counter() - started)
            return response
        finally:
            request_log.end_request(token)

    def run_job(self, event: LambdaEvent) -> dict[str, Any]:
        """Run the write job an asynchronous self-invocation carries; returns its outcome."""
        _prepare_process(self.batch)
        from lambda_handler.jobs import run_job_event

        return run_job_event(event, self.api_settings())

    def _answer(self, event: LambdaEvent, context: Any) -> LambdaResponse:
        refusal = self.refuse_unverified_write(event)
        if refusal is not None:
            return refusal
        response = self.adapter(event, context)
        size = response_size(response)
        limit = self.lambda_settings.response_limit_bytes
        if size > limit:
            return self.oversized(response, size)
        return response

    def refuse_unverified_write(self, event: LambdaEvent) -> LambdaResponse | None:
        """403 for a write event without a verified IAM identity, in Lambda, when no API key
        is configured (the writer function relies on API Gateway's IAM authorization: this is
        defence in depth should a route lose its authorizer). None to go on."""
        if not in_lambda() or event_method(event) not in WRITE_EVENT_METHODS:
            return None
        if self.api_settings().api_key or iam_identity(event):
            return None
        return json_answer(
            403,
            {
                "detail": "writes need a verified IAM identity (SigV4-signed request through the "
                "IAM-authorized API route); none is in the request context"
            },
        )

    def oversized(self, response: LambdaResponse, size: int) -> LambdaResponse:
        """What to answer instead of a response Lambda would refuse."""
        return too_large_answer(size, self.lambda_settings.response_limit_bytes)


class BatchFunction(ApiFunction):
    """The batch function: larger tiles, longer timeouts, large responses through S3."""

    batch = True

    def api_settings(self) -> ApiSettings:
        """ApiSettings from the environment with the batch limits on top."""
        if self._api_settings is None:
            from lambda_handler.settings import ApiSettings, env_name

            # Function URL: no 30 s cap. The deadline is the stack's (MOSAIC_API_REQUEST_TIMEOUT,
            # from the function's timeout) or the batch default, below Lambda's 900 s.
            overrides: dict[str, Any] = {}
            if env_name(ApiSettings, "request_timeout") not in os.environ:
                overrides["request_timeout"] = self.lambda_settings.batch_request_timeout
            self._api_settings = ApiSettings(
                max_tile_size=self.lambda_settings.batch_max_tile_size, **overrides
            )
        return self._api_settings

    def oversized(self, response: LambdaResponse, size: int) -> LambdaResponse:
        """Export the body and redirect to it."""
        return export_response(response, self.lambda_settings, size)


_api_function = ApiFunction()
_batch_function = BatchFunction()


def handler(event: LambdaEvent, context: Any = None) -> LambdaResponse:
    """Lambda entry point of the API function (API Gateway HTTP API v2 / REST API v1 events)."""
    return _api_function(event, context)


def batch_handler(event: LambdaEvent, context: Any = None) -> LambdaResponse:
    """Lambda entry point of the batch function (Function URL events)."""
    return _batch_function(event, context)


def entry_function() -> ApiFunction | None:
    """The function object of the entry point `_HANDLER` names (None: neither of ours)."""
    entry = os.environ.get("_HANDLER", "")
    if entry.endswith(".batch_handler"):
        return _batch_function
    if entry.endswith(".handler"):
        return _api_function
    return None


def _init_in_lambda() -> None:
    """Lambda's init phase: warm up the configured entry point (app, GDAL/PROJ, one tile from
    the shipped COG) and register the SnapStart hooks. Init is billed like an invoke, and with
    SnapStart it runs once per published version: work done here is not paid by the first
    request. A failed warm-up is logged and leaves the function serving (the first request
    then does the work, and says what is broken if it is)."""
    function = entry_function()
    if not in_lambda() or function is None:
        return
    from lambda_handler import snapstart

    snapstart.register_hooks()
    _prepare_process(function.batch)
    level = snapstart.warm_up_level(function.lambda_settings.warm_up)
    if level == "off":
        function.warm_up()
        return
    try:
        snapstart.warm_up(function, level)
    except Exception:
        logger.exception("init warm-up failed; the first request will load what it needs")


_init_in_lambda()
