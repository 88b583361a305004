"""Helpers shared by the routes: mosaic URIs, opening backends, ETags, headers.

pyproj, morecantile, rasterio and rio-tiler are imported by the helpers that use them (on the
first request that reads a mosaic), not at startup.
"""

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Query, Request
from starlette.responses import Response

from lambda_handler.api_errors import ApiError, OutsideMosaicError
from lambda_handler.backends import MosaicBackend, validate_mosaic_name
from lambda_handler.routes.dependencies import get_settings
from lambda_handler.settings import ApiSettings

if TYPE_CHECKING:
    from morecantile import TileMatrixSet

    from lambda_handler.backends.base import MosaicJSONBackend


def uri_for_id(mosaic_id: str, settings: ApiSettings) -> str:
    """Backend URI of a mosaic id (validated: 422 for unsafe names)."""
    validate_mosaic_name(mosaic_id)
    return settings.mosaic_uri_template.replace("{mosaic_id}", mosaic_id)


# validate_mosaic_name's rule as a JSON-schema pattern (no lookahead: dot-separated parts, so
# no leading '.' and no '..'), so the OpenAPI document says which ids exist.
MOSAIC_ID_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$"
MosaicIdPath = Annotated[
    str,
    Path(
        description="Mosaic id: letters, digits, '-', '_', '.' (not first, never '..').",
        pattern=MOSAIC_ID_PATTERN,
        max_length=255,
    ),
]


def mosaic_id_uri(
    mosaic_id: MosaicIdPath,
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> str:
    """Dependency: the backend URI of the `{mosaic_id}` path parameter."""
    return uri_for_id(mosaic_id, settings)


def mosaic_url_uri(
    url: Annotated[
        str, Query(min_length=1, description="Backend URI of the mosaic (allow-listed prefixes).")
    ],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> str:
    """Dependency: the `?url=` backend URI, if the settings' allow-list accepts it."""
    if not settings.allowed_url_prefixes:
        raise ApiError(403, "the ?url= form is disabled (MOSAIC_API_ALLOWED_URL_PREFIXES)")
    # '..' could walk out of an allowed directory or bucket prefix.
    parts = url.replace("\\", "/").split("/")
    if ".." in parts or "\x00" in url:
        raise ApiError(422, f"url: '..' is not allowed in {url!r}", field="url")
    # Parsed comparison: a string prefix admits user@other-host and sibling folders.
    from lambda_handler.url_policy import UrlNotAllowed, check_url

    try:
        check_url(url, settings.allowed_url_prefixes, "url")
    except UrlNotAllowed as err:
        raise ApiError(403, str(err)) from err
    return url


@contextmanager
def open_backend(uri: str, tms: "TileMatrixSet | None" = None) -> "Iterator[MosaicJSONBackend]":
    """Open the mosaic at `uri` for requests in `tms` (default WebMercatorQuad), closed after.

    The backend chooses the reader (by the mosaic's asset type) and the zooms (translated to
    `tms`) itself, as for every other entry point."""
    from rio_tiler.constants import WEB_MERCATOR_TMS

    with MosaicBackend(uri, tms=tms or WEB_MERCATOR_TMS) as backend:
        yield backend


def check_tile(backend: "MosaicJSONBackend", x: int, y: int, z: int) -> None:
    """404 unless (x, y, z) is a tile of the TMS; 204 when it does not touch the mosaic.

    As titiler.mosaic: a zoom outside the mosaic's zooms still renders (maps over-zoom), and a
    tile of the grid outside the mosaic's bounds is "no data here" (204), not an error."""
    from morecantile import Tile
    from rasterio.warp import transform_bounds
    from rio_tiler.errors import NoAssetFoundError

    from lambda_handler.reading import GDAL_ERRORS

    if not backend.tile_in_tms(x, y, z):
        raise OutsideMosaicError(
            f"tile {z}/{x}/{y} does not exist in {backend.tms.id} "
            f"(zooms {backend.tms.minzoom}-{backend.tms.maxzoom})"
        )
    tms = backend.tms
    try:
        west, south, east, north = tms.bounds(Tile(x=x, y=y, z=z))
        if tms.rasterio_geographic_crs != backend.crs:
            west, south, east, north = transform_bounds(
                tms.rasterio_geographic_crs, backend.crs, west, south, east, north
            )
    except (ValueError, *GDAL_ERRORS):
        return  # cannot tell here: the readers decide
    mw, ms, me, mn = backend.bounds
    if not (west < me and east > mw and south < mn and north > ms):
        raise NoAssetFoundError(f"tile {z}/{x}/{y} is outside the mosaic bounds")


def check_point(backend: "MosaicJSONBackend", lon: float, lat: float) -> None:
    """404 unless the point (in the mosaic's geographic CRS) lies within the mosaic bounds."""
    mw, ms, me, mn = backend.bounds
    if not (mw <= lon <= me and ms <= lat <= mn):
        raise OutsideMosaicError(f"point ({lon}, {lat}) is outside the mosaic bounds")


def make_etag(uri: str, version: str, request: Request) -> str:
    """ETag of a response: the mosaic, its revision (`backend.revision`: changes with every
    write) and the request (path and query)."""
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    return _etag(uri, version, request.url.path, query)


def mosaic_etag(uri: str, version: str, path: str) -> str:
    """The ETag `GET {path}` (the mosaic's metadata, no query) answers: what `If-Match` on
    PATCH/PUT/DELETE of the same path is compared with."""
    return _etag(uri, version, path, "")


def _etag(uri: str, version: str, path: str, query: str) -> str:
    digest = hashlib.sha1(
        f"{uri}\n{version}\n{path}\n{query}".encode(), usedforsecurity=False
    ).hexdigest()
    return f'"{digest[:32]}"'


def not_modified(request: Request, etag: str) -> Response | None:
    """A 304 answer when the client already holds `etag`, else None."""
    header = request.headers.get("if-none-match")
    if header and (header.strip() == "*" or etag in [t.strip() for t in header.split(",")]):
        return Response(status_code=304, headers={"ETag": etag})
    return None


def server_timing(timings: list[tuple[str, float]]) -> str:
    """`Server-Timing` header value."""
    return ", ".join(f"{name};dur={value:.2f}" for name, value in timings)


def forwarded_query(request: Request, drop: set[str]) -> str:
    """The request's query string without `drop` (for URLs pointing back at the API)."""
    from urllib.parse import urlencode

    items = [(k, v) for k, v in request.query_params.multi_items() if k not in drop]
    return urlencode(items)


def package_dir(name: str) -> str:
    """A folder of the package (static files, templates)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name)
