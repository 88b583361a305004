"""Every error the API can meet, mapped to an HTTP status code in this one place.

Handlers answer `{"detail": message}` (FastAPI's shape); 422 answers also name the field.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from morecantile.errors import MorecantileError, PointOutsideTMSBounds
from pyproj.exceptions import CRSError as ProjCRSError
from pyproj.exceptions import ProjError
from rasterio.errors import CRSError
from rio_tiler.errors import (
    EmptyMosaicError,
    InvalidBandName,
    InvalidBufferSize,
    InvalidColorFormat,
    InvalidColorMapName,
    InvalidExpression,
    InvalidFormat,
    MaxArraySizeError,
    MissingBands,
    NoAssetFoundError,
    PointOutsideBounds,
    RioTilerError,
    TileOutsideBounds,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from lambda_handler.errors import (
    BackendNotAvailableError,
    FootprintReadError,
    InvalidMosaicError,
    InvalidMosaicNameError,
    MosaicAuthError,
    MosaicError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
    MultipleDataTypeError,
    ReadOnlyBackendError,
    UnsupportedURIError,
)
from lambda_handler.reading import GDAL_ERRORS, AssetReadError
from lambda_handler.rendering import RenderError

logger = logging.getLogger(__name__)


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


class ListingNotSupportedError(MosaicError):
    """The configured store cannot list its mosaics."""


# (exception class, status code, field named in 422 answers); the first match wins, so more
# specific classes come first.
STATUS_CODES: list[tuple[type[BaseException], int, str | None]] = [
    (InvalidMosaicNameError, 422, "mosaic_id"),
    (MosaicNotFoundError, 404, None),
    (MosaicExistsError, 409, None),
    (ReadOnlyBackendError, 405, None),
    (MosaicAuthError, 424, None),
    (FootprintReadError, 424, "urls"),
    (AssetReadError, 424, None),
    (MosaicWriteError, 503, None),
    (UnsupportedURIError, 422, "url"),
    (BackendNotAvailableError, 422, "url"),
    (MultipleDataTypeError, 422, "urls"),
    (InvalidMosaicError, 422, "body"),
    (RenderError, 422, None),
    (ListingNotSupportedError, 501, None),
    (NoAssetFoundError, 204, None),
    (EmptyMosaicError, 204, None),
    (TileOutsideBounds, 404, None),
    (PointOutsideBounds, 404, None),
    (PointOutsideTMSBounds, 404, None),
    (InvalidBandName, 422, "bidx"),
    (MissingBands, 422, "bidx"),
    (InvalidExpression, 422, "expression"),
    (InvalidColorMapName, 422, "colormap_name"),
    (InvalidColorFormat, 422, "colormap"),
    (InvalidBufferSize, 422, "buffer"),
    (InvalidFormat, 422, None),
    (MaxArraySizeError, 422, "tilesize"),
    (RioTilerError, 422, None),
    (MorecantileError, 422, "tileMatrixSetId"),
    (CRSError, 422, "coord_crs"),
    (ProjCRSError, 422, "coord_crs"),
    (ProjError, 422, None),
    (MosaicError, 422, None),
]


def status_for(error: BaseException) -> tuple[int, str | None]:
    """(status code, field) of an error; GDAL failures outside an asset read are 424."""
    if isinstance(error, ApiError):
        return error.status_code, error.field
    for cls, status, field in STATUS_CODES:
        if isinstance(error, cls):
            return status, getattr(error, "field", None) or field
    if isinstance(error, GDAL_ERRORS):
        return 424, None
    return 500, None


def error_response(error: BaseException) -> Response:
    """The response of an error (no body for 204)."""
    status, field = status_for(error)
    message = str(error) or type(error).__name__
    if status == 204:
        return Response(status_code=204, headers={"X-Reason": message[:200]})
    if status >= 500:
        logger.error("request failed: %s", message, exc_info=error)
    detail: object = message
    if status == 422:
        detail = [
            {"loc": ["query" if field != "body" else "body", field or "request"], "msg": message}
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
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", ""), "type": item.get("type")}
        for item in error.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    for cls in (ApiError, MosaicError, RioTilerError, MorecantileError, ProjError, CRSError):
        app.add_exception_handler(cls, _handle)
    for cls in GDAL_ERRORS:
        app.add_exception_handler(cls, _handle)
