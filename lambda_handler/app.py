"""`create_app(settings)`: the FastAPI app served by the Lambda functions and the local server.

Building the app imports no geospatial library (rasterio, rio-tiler, morecantile, numpy...):
the routes import them when they first read a mosaic. The `/mosaics` and `/mosaic` routes are
built on first use (`DeferredRoutes`): a Lambda cold start does not pay for ~300 parameter
validators of routes it may never use. tests/test_imports.py guards both.
"""

import functools
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from lambda_handler.api_errors import install_error_handlers
from lambda_handler.routes.deferred import DeferredRoutes, document_deferred_routes
from lambda_handler.routes.middleware import CacheControlMiddleware, TextGZipMiddleware
from lambda_handler.routes.viewer import STATIC_DIR
from lambda_handler.settings import ApiSettings

WRITE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]
MOSAIC_ID_PREFIX = "/mosaics/{mosaic_id}"
MOSAIC_URL_PREFIX = "/mosaic"
# Route names of the management routes (checked when they are built), for url_for.
MANAGEMENT_ROUTES = frozenset(
    {"list_mosaics", "create_mosaic", "replace_mosaic", "update_mosaic", "delete_mosaic"}
)


# The route modules are imported by the factories of their groups, on first use.
def _management_router() -> Any:
    from lambda_handler.routes.mosaics import mosaics_router

    return mosaics_router()


def _mosaic_router(form: str, prefix: str) -> Any:
    from lambda_handler.routes.common import mosaic_id_uri, mosaic_url_uri
    from lambda_handler.routes.tiles import mosaic_router

    return mosaic_router(mosaic_id_uri if form == "id" else mosaic_url_uri, form, prefix)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The API for `settings` (default: from MOSAIC_API_* environment variables)."""
    settings = settings or ApiSettings()
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
            ("/mosaics", "/mosaics/{mosaic_id}"),
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

    @app.get("/healthz", tags=["Health"], summary="Health check")
    def healthz() -> JSONResponse:
        """Liveness: the app answers (no store is contacted)."""
        return JSONResponse(
            {"status": "ok", "title": settings.title}, headers={"Cache-Control": "no-store"}
        )

    document_deferred_routes(app)

    # Outermost last: CORS must see every answer, errors included.
    app.add_middleware(CacheControlMiddleware, cache_control=settings.cache_control)
    app.add_middleware(TextGZipMiddleware, minimum_size=settings.gzip_minimum_size)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "OPTIONS", *WRITE_METHODS],
        allow_headers=["*"],
        expose_headers=["ETag", "Server-Timing", "X-Assets", "Content-Bbox", "Location"],
    )
    return app
