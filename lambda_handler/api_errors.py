"""Every error the API can meet, mapped to an HTTP status code in this one place.

Handlers answer `{"detail": message}` (FastAPI's shape); 422 answers also name the field.

The errors of rio-tiler, morecantile, pyproj and rasterio are named "module.Class" and resolved
when an error is mapped, against the modules already imported: the app is built without
importing those libraries (Lambda cold start), and an error of a library that was never
imported cannot be raised. Their common base is `Exception`, for which Starlette's handlers
would turn every error into a re-raised 500, so routes are built with `ErrorMappingRoute`,
which answers the mapped errors itself and lets every other error through.
"""

import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lambda_handler.deadline import DeadlineExceededError
from lambda_handler.errors import (
    BackendNotAvailableError,
    FootprintReadError,
    InvalidMosaicError,
    InvalidMosaicNameError,
    ListingNotSupportedError,
    MosaicAuthError,
    MosaicConflictError,
    MosaicError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicPreconditionError,
    MosaicWriteError,
    MultipleDataTypeError,
    ReadOnlyBackendError,
    UnsupportedURIError,
)
from lambda_handler.rendering import RenderError

logger = logging.getLogger(__name__)


_DESCRIPTIONS = {
    304: "Not modified (If-None-Match).",
    400: "Malformed request (e.g. an invalid Content-Length).",
    401: "Credentials required (writes).",
    403: "Forbidden: wrong key, writes disabled, a URL or asset outside the allow-lists.",
    404: "Unknown mosaic, or tile/point outside the mosaic, its zooms or the TMS.",
    405: "The store is read-only.",
    409: "The mosaic exists, or a concurrent write was refused.",
    412: "If-Match does not match the mosaic's ETag.",
    413: "Request body over MOSAIC_API_MAX_BODY_BYTES.",
    424: "A dataset or store could not be read (named in the message).",
    500: "Internal error (logged).",
    501: "The store cannot list mosaics.",
    503: "The store failed to write; the previous mosaic is intact.",
    504: "The request did not finish within MOSAIC_API_REQUEST_TIMEOUT.",
}


_ERROR_CONTENT = {
    "application/json": {
        "schema": {
            "title": "ErrorMessage",
            "type": "object",
            "properties": {"detail": {"type": "string", "title": "Detail"}},
            "required": ["detail"],
        }
    }
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these status codes: a JSON ErrorMessage body (304: none). The
    content type is spelled out: with a `model`, FastAPI would document the route's own media
    type (an image, HTML, XML) for the error too."""
    return {
        code: {"description": _DESCRIPTIONS[code]}
        if code == 304
        else {"description": _DESCRIPTIONS[code], "content": _ERROR_CONTENT}
        for code in codes
    }


# What every read route and every write route may answer besides its own successes and 422.
READ_RESPONSES = error_responses(304, 403, 404, 424, 500, 504)
WRITE_RESPONSES = error_responses(400, 401, 403, 404, 405, 409, 412, 413, 424, 500, 501, 503, 504)


class ApiError(Exception):
    """An error raised by a route with its own status code (and, for 422, the field)."""

    def __init__(self, status_code: int, message: str, field: str | None = None):
        self.status_code = status_code
        self.field = field
        super().__init__(message)


class OutsideMosaicError(ApiError):
    """The tile or point lies outside the mosaic (its bounds, zooms or the TMS grid)."""

    def __init__(self, message: str):
        super().__init__(404, message)


# An error class, or "module.Class" for the classes of lazily imported libraries.
ErrorClass = type[BaseException] | str

# (exception class, status code, field named in 422 answers); the first match wins, so more
# specific classes come first.
STATUS_CODES: list[tuple[ErrorClass, int, str | None]] = [
    (InvalidMosaicNameError, 422, "mosaic_id"),
    (MosaicNotFoundError, 404, None),
    (MosaicExistsError, 409, None),
    (ReadOnlyBackendError, 405, None),
    (MosaicAuthError, 424, None),
    # Before MosaicWriteError, their base: a refused concurrent write is not a store failure.
    (MosaicPreconditionError, 412, None),
    (MosaicConflictError, 409, None),
    (FootprintReadError, 424, "urls"),
    ("lambda_handler.reading.AssetReadError", 424, None),
    ("lambda_handler.reading.AssetNotAllowedError", 403, None),
    ("lambda_handler.reading.InvalidReadOptionError", 422, None),
    (DeadlineExceededError, 504, None),
    (MosaicWriteError, 503, None),
    (UnsupportedURIError, 422, "url"),
    (BackendNotAvailableError, 422, "url"),
    (MultipleDataTypeError, 422, "urls"),
    (InvalidMosaicError, 422, "body"),
    (RenderError, 422, None),
    (ListingNotSupportedError, 501, None),
    ("rio_tiler.errors.NoAssetFoundError", 204, None),
    ("rio_tiler.errors.EmptyMosaicError", 204, None),
    ("rio_tiler.errors.TileOutsideBounds", 404, None),
    ("rio_tiler.errors.PointOutsideBounds", 404, None),
    ("morecantile.errors.PointOutsideTMSBounds", 404, None),
    ("rio_tiler.errors.InvalidBandName", 422, "bidx"),
    ("rio_tiler.errors.MissingBands", 422, "bidx"),
    ("rio_tiler.errors.InvalidExpression", 422, "expression"),
    ("rio_tiler.errors.InvalidColorMapName", 422, "colormap_name"),
    ("rio_tiler.errors.InvalidColorFormat", 422, "colormap"),
    ("rio_tiler.errors.InvalidBufferSize", 422, "buffer"),
    ("rio_tiler.errors.InvalidFormat", 422, None),
    ("rio_tiler.errors.MaxArraySizeError", 422, "tilesize"),
    ("rio_tiler.errors.RioTilerError", 422, None),
    ("morecantile.errors.MorecantileError", 422, "tileMatrixSetId"),
    ("rasterio.errors.CRSError", 422, "coord_crs"),
    ("pyproj.exceptions.CRSError", 422, "coord_crs"),
    ("pyproj.exceptions.ProjError", 422, None),
    (MosaicError, 422, None),
]
# What GDAL raises when a dataset is missing, unreadable or corrupt (lambda_handler.reading's
# GDAL_ERRORS): 424 when met outside an asset read.
GDAL_ERROR_NAMES: tuple[str, ...] = (
    "rasterio.errors.RasterioError",
    "rasterio._err.CPLE_BaseError",
)
# The errors answered by the API; any other error is a bug (500, logged by the server).
HANDLED: tuple[ErrorClass, ...] = (
    ApiError,
    MosaicError,
    "rio_tiler.errors.RioTilerError",
    "morecantile.errors.MorecantileError",
    "pyproj.exceptions.ProjError",
    "rasterio.errors.CRSError",
    *GDAL_ERROR_NAMES,
)


def resolve(cls: ErrorClass) -> type[BaseException] | None:
    """The class itself, or the class a "module.Class" name designates if its module is
    imported (None otherwise: no error of it can exist)."""
    if isinstance(cls, type):
        return cls
    module_name, _, name = cls.rpartition(".")
    module = sys.modules.get(module_name)
    return getattr(module, name, None) if module is not None else None


def is_a(error: BaseException, cls: ErrorClass) -> bool:
    """`isinstance(error, cls)` for a class or a "module.Class" name, importing nothing."""
    resolved = resolve(cls)
    return resolved is not None and isinstance(error, resolved)


def is_handled(error: BaseException) -> bool:
    """Whether the API answers `error` with its own status code (else it is a 500)."""
    return any(is_a(error, cls) for cls in HANDLED)


def status_for(error: BaseException) -> tuple[int, str | None]:
    """(status code, field) of an error; GDAL failures outside an asset read are 424."""
    if isinstance(error, ApiError):
        return error.status_code, error.field
    for cls, status, field in STATUS_CODES:
        if is_a(error, cls):
            return status, getattr(error, "field", None) or field
    if any(is_a(error, cls) for cls in GDAL_ERROR_NAMES):
        return 424, None
    return 500, None


# Fields that are path parameters (422 answers locate them in "path").
PATH_FIELDS = frozenset(
    {"mosaic_id", "tileMatrixSetId", "z", "x", "y", "lon", "lat", "minx", "miny", "maxx", "maxy"}
)


def _location(field: str | None) -> list[str]:
    if field == "body":
        return ["body"]
    return ["path" if field in PATH_FIELDS else "query", field or "request"]


def client_message(error: BaseException, status: int) -> str:
    """The text a client gets: GDAL's own words (local paths, whether a file exists,
    `/vsicurl/` forms) never leave the server; they are logged instead."""
    if isinstance(error, FootprintReadError):
        from lambda_handler.reading import summarize_gdal_error

        reasons = "; ".join(
            f"{path}: {summarize_gdal_error(reason)}" for path, reason in error.failures.items()
        )
        logger.info("footprint read failed: %s", error)
        return f"could not read {len(error.failures)} dataset(s): {reasons}"
    if status == 424 and any(is_a(error, cls) for cls in GDAL_ERROR_NAMES):
        logger.info("dataset read failed: %s", error)
        return "a dataset could not be read: not a readable raster"
    return str(error) or type(error).__name__


def error_response(error: BaseException) -> Response:
    """The response of an error (no body for 204)."""
    status, field = status_for(error)
    message = client_message(error, status)
    if status == 204:
        return Response(status_code=204, headers={"X-Reason": message[:200]})
    if status >= 500:
        logger.error("request failed: %s", message, exc_info=error)
    detail: object = message
    if status == 422:
        detail = [
            {
                "loc": _location(field),
                "msg": message,
                "type": "value_error",
            }
        ]
        return JSONResponse({"detail": detail}, status_code=422)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _handle(request: Request, error: Exception) -> Response:
    return error_response(error)


async def _handle_http(request: Request, error: StarletteHTTPException) -> Response:
    # Starlette's own 404/405 for unknown routes keep their status and headers.
    return JSONResponse(
        {"detail": error.detail}, status_code=error.status_code, headers=error.headers
    )


async def _handle_validation(request: Request, error: RequestValidationError) -> Response:
    # FastAPI's answer, made JSON-safe (ctx may hold exception objects).
    problems = [
        {
            "loc": list(item.get("loc", ())),
            "msg": item.get("msg", ""),
            "type": item.get("type") or "value_error",
        }
        for item in error.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)


class ErrorMappingRoute(APIRoute):
    """An APIRoute answering the errors the API maps (`is_handled`) with `error_response`.

    Exception handlers registered on the app would need the classes, hence the libraries,
    at startup; other errors (HTTPException, request validation, bugs) go on to the app's
    handlers as usual.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As APIRoute, but a 405 lists in `Allow` the methods of every route of the path
        (Starlette lists only the first route's: GET for `/mosaics`, which also takes POST)."""
        if scope["type"] == "http" and self.methods and scope["method"] not in self.methods:
            allowed = _methods_of_path(scope)
            await JSONResponse(
                {"detail": f"method {scope['method']} not allowed: {', '.join(allowed)}"},
                status_code=405,
                headers={"Allow": ", ".join(allowed)},
            )(scope, receive, send)
            return
        await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, wrapped."""
        handler = super().get_route_handler()
        single = _single_valued_query_params(self)

        async def mapped(request: Request) -> Response:
            repeated = [k for k in single if len(request.query_params.getlist(k)) > 1]
            if repeated:
                # FastAPI would silently keep the last value of a repeated scalar parameter.
                return error_response(
                    ApiError(422, f"{repeated[0]}: give it once", field=repeated[0])
                )
            try:
                return await handler(request)
            except Exception as error:
                if not is_handled(error):
                    raise
                return error_response(error)

        return mapped


def _single_valued_query_params(route: APIRoute) -> list[str]:
    """Names (aliases) of the route's query parameters that take one value, not a list."""
    import typing

    def is_list(annotation: Any) -> bool:
        origin = typing.get_origin(annotation)
        if origin in (list, tuple, set, frozenset):
            return True
        return any(is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))

    def query_params(dependant: Any) -> list[Any]:
        found = list(dependant.query_params)
        for sub in dependant.dependencies:
            found += query_params(sub)
        return found

    names = []
    for param in query_params(route.dependant):
        annotation = getattr(param, "field_info", None)
        annotation = getattr(annotation, "annotation", None) or getattr(param, "type_", None)
        if not is_list(annotation):
            names.append(param.alias)
    return names


def _methods_of_path(scope: Scope) -> list[str]:
    """Methods of the app's routes whose path matches the request's."""
    from starlette._utils import get_route_path
    from starlette.routing import Match

    from lambda_handler.routes.deferred import expand_deferred_routes

    path = get_route_path(scope)
    methods: set[str] = set()
    for route in expand_deferred_routes(scope["app"].router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            match, _ = route.matches({**scope, "method": next(iter(route.methods))})
            if match == Match.FULL:
                methods |= set(route.methods)
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`; routes added to the app itself map errors too (routers
    must be created with `route_class=ErrorMappingRoute`)."""
    app.router.route_class = ErrorMappingRoute
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    # Also outside routes (middlewares), for the package's own errors.
    for cls in (ApiError, MosaicError):
        app.add_exception_handler(cls, _handle)
