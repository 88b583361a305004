"""Tile URLs and the TileJSON document, for the read routes and the management routes alike.

The read routes (`GET …/tilejson.json`) and the management routes (the answer to a create or a
replace) describe a mosaic with the same document, built here.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request

from lambda_handler.rendering import ImageFormat
from lambda_handler.routes.common import forwarded_query

# Tile route variants, most specific first: Starlette matches in registration order.
TILE_PATHS = {
    "tile_scale_format": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}@{scale}x.{format}",
    "tile_scale": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}@{scale}x",
    "tile_format": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}",
    "tile": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
}
# Query parameters that describe the document, not the tiles: not copied into tile URLs.
DOCUMENT_PARAMS = {"tile_format", "tile_scale", "minzoom", "maxzoom", "tileMatrixSetId"}


@dataclass
class TileJSONParams:
    """Options of TileJSON and WMTS documents (echoed into their tile URLs)."""

    tile_format: Annotated[
        ImageFormat | None,
        Query(description="Tile format in the tile URL (default: chosen per tile)."),
    ] = None
    tile_scale: Annotated[
        int, Query(ge=1, le=4, description="Tile scale: 1 = 256px tiles, 2 = 512px…")
    ] = 1
    minzoom: Annotated[int | None, Query(ge=0, le=30, description="Override minzoom.")] = None
    maxzoom: Annotated[int | None, Query(ge=0, le=30, description="Override maxzoom.")] = None


def tile_route_kind(tile_format: ImageFormat | None, tile_scale: int) -> str:
    """The TILE_PATHS key of the tile route for this format and scale."""
    return "tile" + ("_scale" if tile_scale > 1 else "") + ("_format" if tile_format else "")


def tile_url(
    request: Request,
    route_prefix: str,
    path_params: Mapping[str, Any],
    tms_id: str,
    tile_format: ImageFormat | None,
    tile_scale: int,
) -> str:
    """URL of the `route_prefix:tile…` route with `{z}/{x}/{y}` placeholders (and the mosaic's
    own path parameters taken from `path_params`)."""
    kind = tile_route_kind(tile_format, tile_scale)
    params: dict[str, Any] = {
        **path_params,
        "tileMatrixSetId": tms_id,
        "z": "{z}",
        "x": "{x}",
        "y": "{y}",
        "scale": tile_scale,
        "format": tile_format.value if tile_format else None,
    }
    names = set(re.findall(r"{(\w+)}", TILE_PATHS[kind])) | {"mosaic_id"}
    selected = {k: v for k, v in params.items() if k in names}
    return str(request.url_for(f"{route_prefix}:{kind}", **selected))


def versioned_tile_url(
    request: Request,
    route_prefix: str,
    tms_id: str,
    tile_format: ImageFormat | None,
    tile_scale: int,
    version: str,
) -> str:
    """URL template of the tiles, carrying the request's tile options and `v=` the mosaic's
    version: a cache in front (the stack's CDN) keys tiles by the full query string, so
    tiles of an updated mosaic are new cache entries, never stale ones."""
    url = tile_url(request, route_prefix, request.path_params, tms_id, tile_format, tile_scale)
    query = forwarded_query(request, DOCUMENT_PARAMS | {"v"})
    return f"{url}?{query + '&' if query else ''}{urlencode({'v': version})}"


def document_zooms(backend: Any, tms: Any, params: TileJSONParams) -> tuple[int, int]:
    """The zooms of a TileJSON/WMTS document: the mosaic's or the query's, within the levels
    the TMS has (the query allows 0-30; some TMSs stop earlier)."""
    minzoom = backend.minzoom if params.minzoom is None else params.minzoom
    maxzoom = backend.maxzoom if params.maxzoom is None else params.maxzoom
    low, high = tms.minzoom, tms.maxzoom
    minzoom, maxzoom = min(max(minzoom, low), high), min(max(maxzoom, low), high)
    return minzoom, max(minzoom, maxzoom)


def tilejson_document(
    *,
    name: str,
    version: str,
    tiles_url: str,
    minzoom: int,
    maxzoom: int,
    bounds: Sequence[float],
    description: str | None = None,
    attribution: str | None = None,
) -> dict[str, Any]:
    """A TileJSON 3.0.0 document (`description`/`attribution` only when given)."""
    west, south, east, north = bounds
    document: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": name,
        "version": version,
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": [west, south, east, north],
        "center": [(west + east) / 2, (south + north) / 2, minzoom],
    }
    if description:
        document["description"] = description
    if attribution:
        document["attribution"] = attribution
    return document
