"""`create_app(settings)`: the FastAPI app served by the Lambda functions and the local server."""

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from lambda_handler.api_errors import install_error_handlers
from lambda_handler.routes.common import mosaic_id_uri, mosaic_url_uri
from lambda_handler.routes.middleware import CacheControlMiddleware, TextGZipMiddleware
from lambda_handler.routes.mosaics import mosaics_router
from lambda_handler.routes.tiles import mosaic_router
from lambda_handler.routes.viewer import STATIC_DIR
from lambda_handler.settings import ApiSettings

WRITE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]


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
    app.include_router(mosaics_router())
    app.include_router(mosaic_router(mosaic_id_uri, "id"), prefix="/mosaics/{mosaic_id}")
    app.include_router(mosaic_router(mosaic_url_uri, "url"), prefix="/mosaic")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["Health"], summary="Health check")
    def healthz() -> JSONResponse:
        """Liveness: the app answers (no store is contacted)."""
        return JSONResponse(
            {"status": "ok", "title": settings.title}, headers={"Cache-Control": "no-store"}
        )

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
