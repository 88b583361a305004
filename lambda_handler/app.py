"""`create_app(settings)`: the FastAPI app served by the Lambda functions and the local server.

Building the app imports no geospatial library (rasterio, rio-tiler, morecantile, numpy...):
the routes import them when they first read a mosaic. The `/mosaics` and `/mosaic` routes are
built on first use (`DeferredRoutes`): a Lambda cold start does not pay for ~300 parameter
validators of routes it may never use. tests/test_imports.py guards both.
"""

import functools
import os
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.staticfiles import StaticFiles

from lambda_handler.api_errors import install_error_handlers
from lambda_handler.routes.deferred import DeferredRoutes, document_deferred_routes
from lambda_handler.routes.middleware import (
    BodyLimitMiddleware,
    CacheControlMiddleware,
    DeadlineMiddleware,
    ErrorJSONMiddleware,
    HeadAsGetMiddleware,
    PublicHostMiddleware,
    SplitCORSMiddleware,
    TextGZipMiddleware,
)
from lambda_handler.routes.security import WriteAuthMiddleware
from lambda_handler.routes.viewer import STATIC_DIR
from lambda_handler.settings import ApiSettings

MOSAIC_ID_PREFIX = "/mosaics/{mosaic_id}"
MOSAIC_URL_PREFIX = "/mosaic"
# Route names of the management routes (checked when they are built), for url_for.
MANAGEMENT_ROUTES = frozenset(
    {
        "list_mosaics",
        "create_mosaic",
        "replace_mosaic",
        "update_mosaic",
        "delete_mosaic",
        "job_status",
    }
)


# The route modules are imported by the factories of their groups, on first use.
def _management_router() -> Any:
    from lambda_handler.routes.mosaics import mosaics_router

    return mosaics_router()


def _mosaic_router(form: str, prefix: str) -> Any:
    from lambda_handler.routes.common import mosaic_id_uri, mosaic_url_uri
    from lambda_handler.routes.tiles import MosaicTilerFactory

    path_dependency = mosaic_id_uri if form == "id" else mosaic_url_uri
    return MosaicTilerFactory(path_dependency, form, prefix).router


# GDAL variables this module put into the environment (not the user's or Lambda's own).
_OWN_GDAL_DEFAULTS: set[str] = set()


def apply_gdal_defaults(settings: ApiSettings) -> None:
    """Bounded HTTP waits and no side-car probing for every GDAL open of the process (the
    footprint reads of writes too), unless the environment says otherwise. Tile and point
    reads also set them per request (`asset_gdal_options`), with the deadline's time left."""
    for key, value in settings.asset_gdal_options().items():
        if key not in os.environ:
            os.environ[key] = value
            _OWN_GDAL_DEFAULTS.add(key)


def asset_gdal_options(settings: ApiSettings) -> dict[str, str]:
    """The GDAL options of asset reads: the settings', except where the environment set a GDAL
    variable itself (the Lambda functions do; the batch function's HTTP timeout is longer)."""
    return {
        key: os.environ[key] if key in os.environ and key not in _OWN_GDAL_DEFAULTS else value
        for key, value in settings.asset_gdal_options().items()
    }


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The API for `settings` (default: from MOSAIC_API_* environment variables)."""
    settings = settings or ApiSettings()
    apply_gdal_defaults(settings)
    app = FastAPI(
        title=settings.title,
        description="Tiles, TileJSON, WMTS and points of MosaicJSON mosaics of COGs.",
        root_path=settings.root_path,
    )
    app.state.settings = settings
    install_error_handlers(app)

    # Management first: `GET /mosaics` must not be taken for a mosaic id.
    app.router.routes += [
        DeferredRoutes(
            ("/mosaics", "/mosaics/{mosaic_id}", "/mosaics/jobs/{job_id:uuid}"),
            MANAGEMENT_ROUTES.__contains__,
            _management_router,
        ),
        DeferredRoutes(
            (MOSAIC_ID_PREFIX, MOSAIC_ID_PREFIX + "/..."),
            lambda name: name.startswith("id:"),
            functools.partial(_mosaic_router, "id", MOSAIC_ID_PREFIX),
        ),
        DeferredRoutes(
            (MOSAIC_URL_PREFIX, MOSAIC_URL_PREFIX + "/..."),
            lambda name: name.startswith("url:"),
            functools.partial(_mosaic_router, "url", MOSAIC_URL_PREFIX),
        ),
    ]
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # async: answered on the event loop, even when every worker thread is busy.
    @app.get("/healthz", tags=["Health"], summary="Health check")
    async def healthz() -> JSONResponse:
        """Liveness: the app answers (no store is contacted)."""
        return JSONResponse(
            {"status": "ok", "title": settings.title}, headers={"Cache-Control": "no-store"}
        )

    document_deferred_routes(app)

    # Outermost last. From the outside in: CORS sees every answer, errors included; links use
    # a trusted host; HEAD runs as GET; credentials are checked from the headers before the
    # body is read, the body is capped as it streams in; then the deadline, and unexpected
    # errors become JSON 500s inside it (so they get CORS headers and keep the connection).
    app.add_middleware(CacheControlMiddleware, cache_control=settings.cache_control)
    app.add_middleware(TextGZipMiddleware, minimum_size=settings.gzip_minimum_size)
    app.add_middleware(ErrorJSONMiddleware)
    app.add_middleware(DeadlineMiddleware, timeout=settings.request_timeout)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(WriteAuthMiddleware, settings=settings)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(
        PublicHostMiddleware, public_url=settings.public_url, allowed_hosts=settings.allowed_hosts
    )
    app.add_middleware(
        SplitCORSMiddleware,
        read_origins=settings.cors_origins,
        write_origins=settings.write_cors_origins,
        expose_headers=["ETag", "Server-Timing", "X-Assets", "Content-Bbox", "Location"],
    )
    return app
