"""Read endpoints of one mosaic: metadata, tiles, TileJSON, WMTS, points, assets, map page.

`mosaic_router(uri_dependency, name)` builds them for any way of naming a mosaic: the
`/mosaics/{mosaic_id}` form and the allow-listed `/mosaic?url=` form share every route.
"""

import functools
import inspect
import math
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field
from starlette.responses import Response

from lambda_handler.api_errors import READ_RESPONSES, ApiError, ErrorMappingRoute
from lambda_handler.deadline import DEADLINE_KEY
from lambda_handler.rendering import ImageFormat, render_image
from lambda_handler.routes import wmts
from lambda_handler.routes.common import (
    check_point,
    check_tile,
    forwarded_query,
    make_etag,
    not_modified,
    open_backend,
    server_timing,
)
from lambda_handler.routes.dependencies import (
    DOCUMENT_PARAMS,
    DatasetParams,
    LayerParams,
    RenderParams,
    TileJSONParams,
    TileMatrixSetId,
    TileParams,
    get_settings,
    get_tms,
    parse_crs,
    pixel_selection_dependency,
)
from lambda_handler.routes.viewer import map_page
from lambda_handler.settings import ApiSettings

if TYPE_CHECKING:
    from lambda_handler.reading import ReadGuard

IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {fmt.media_type: {} for fmt in ImageFormat},
        "description": "The tile.",
    },
    204: {"description": "No asset has data for this tile."},
    304: {"description": "Not modified (If-None-Match)."},
    404: {"description": "Unknown mosaic, or tile outside the mosaic, its zooms or the TMS."},
    424: {"description": "An asset could not be read (named in the message)."},
}
# The asset listings answer 204 when the index has no asset there (rio-tiler's NoAssetFound).
NO_ASSET: dict[int | str, dict[str, Any]] = {204: {"description": "No asset there."}}
# Tile route variants, most specific first: Starlette matches in registration order.
TILE_PATHS = {
    "tile_scale_format": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}@{scale}x.{format}",
    "tile_scale": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}@{scale}x",
    "tile_format": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}",
    "tile": "/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
}

ZPath = Annotated[int, Path(ge=0, le=30, description="Zoom (TileMatrix identifier).")]
XPath = Annotated[int, Path(ge=0, description="Column of the tile.")]
YPath = Annotated[int, Path(ge=0, description="Row of the tile.")]
TmsPath = Annotated[TileMatrixSetId, Path(description="TileMatrixSet identifier.")]
# Path parameter in one variant of a route, query parameter (with a default) in the other.
TmsField = Annotated[TileMatrixSetId, Field(description="TileMatrixSet identifier.")]
CoordCrs = Annotated[
    str | None, Query(description="CRS of the coordinates (default: the TMS's geographic CRS).")
]


def _json(content: Any, etag: str | None = None, headers: dict[str, str] | None = None) -> Any:
    out = dict(headers or {})
    if etag:
        out["ETag"] = etag
    return JSONResponse(content, headers=out)


def mosaic_router(  # noqa: C901
    uri_dependency: Callable[..., str], name: str, prefix: str = ""
) -> APIRouter:
    """Routes reading one mosaic under `prefix`; `name` prefixes route names (for url_for) and
    tags."""
    router = APIRouter(
        prefix=prefix,
        tags=[f"Mosaic ({name})"],
        route_class=ErrorMappingRoute,
        responses=READ_RESPONSES,
    )
    Uri = Annotated[str, Depends(uri_dependency)]
    Settings = Annotated[ApiSettings, Depends(get_settings)]

    def route_name(kind: str) -> str:
        return f"{name}:{kind}"

    def tile_url(
        request: Request, tms_id: str, fmt: ImageFormat | None, scale: int, version: str
    ) -> str:
        """URL template of the tiles, carrying the request's tile options and `v=` the mosaic's
        version: a cache in front (the stack's CDN) keys tiles by the full query string, so
        tiles of an updated mosaic are new cache entries, never stale ones."""
        kind = "tile" + ("_scale" if scale > 1 else "") + ("_format" if fmt else "")
        params: dict[str, Any] = {
            **request.path_params,
            "tileMatrixSetId": tms_id,
            "z": "{z}",
            "x": "{x}",
            "y": "{y}",
            "scale": scale,
            "format": fmt.value if fmt else None,
        }
        names = _path_names(TILE_PATHS[kind]) | {"mosaic_id"}
        url = str(
            request.url_for(route_name(kind), **{k: v for k, v in params.items() if k in names})
        )
        query = forwarded_query(request, DOCUMENT_PARAMS | {"v"})
        return f"{url}?{query + '&' if query else ''}{urlencode({'v': version})}"

    def cache_version(backend: Any) -> str:
        """What changes with every write: the store's revision where the backend has one (a
        replace may keep the document version), else the document version."""
        return getattr(backend, "revision", None) or backend.mosaic_def.version

    # ------------------------------------------------------------------ metadata
    @router.get("", name=route_name("metadata"), summary="MosaicJSON metadata")
    def metadata(
        request: Request,
        uri: Uri,
        tiles: Annotated[bool, Query(description="Include the quadkey index.")] = False,
    ) -> Any:
        """The MosaicJSON document without its `tiles` (unless `tiles=true`)."""
        with open_backend(uri) as backend:
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            document = backend.to_document() if tiles else backend.mosaic_def
            content = document.model_dump(
                exclude=None if tiles else {"tiles"}, exclude_none=True, mode="json"
            )
        return _json(content, etag)

    @router.get("/info", name=route_name("info"), summary="Mosaic info")
    def info(
        request: Request,
        uri: Uri,
        quadkeys: Annotated[bool, Query(description="List the index's quadkeys.")] = False,
    ) -> Any:
        """Bounds, CRS, zooms, quadkey zoom, version (and quadkeys on request)."""
        with open_backend(uri) as backend:
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            return _json(backend.info(quadkeys=quadkeys).model_dump(mode="json"), etag)

    @router.get("/info.geojson", name=route_name("info_geojson"), summary="Mosaic info (GeoJSON)")
    def info_geojson(
        request: Request,
        uri: Uri,
        quadkeys: Annotated[bool, Query(description="List the index's quadkeys.")] = False,
    ) -> Any:
        """The info as a GeoJSON Feature of the mosaic's bounds (titiler's `/info.geojson`)."""
        with open_backend(uri) as backend:
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            west, south, east, north = (float(v) for v in backend.bounds)
            feature = {
                "type": "Feature",
                "bbox": [west, south, east, north],
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[west, south], [east, south], [east, north], [west, north], [west, south]]
                    ],
                },
                "properties": backend.info(quadkeys=quadkeys).model_dump(mode="json"),
            }
            return _json(feature, etag)

    def tileset(request: Request, backend: Any, tms_id: str, with_limits: bool) -> dict:
        """OGC API Tiles tileset description of the mosaic in one TMS (titiler's shape)."""
        tms = get_tms(tms_id)
        minzoom, maxzoom = _document_zooms(backend, tms, TileJSONParams())
        self_url = str(request.url_for(route_name("tileset"), **_tileset_params(request, tms_id)))
        template = tile_url(request, tms_id, None, 1, cache_version(backend))
        west, south, east, north = (float(v) for v in backend.bounds)
        description: dict[str, Any] = {
            "title": f"{backend.mosaic_def.name or 'mosaic'} tileset tiled using {tms_id}",
            "dataType": "map",
            "crs": wmts.crs_uri(tms),
            "boundingBox": {
                "lowerLeft": [west, south],
                "upperRight": [east, north],
                "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
            },
            "links": [
                {"href": self_url, "rel": "self", "type": "application/json"},
                {
                    "href": template.replace("%7B", "{").replace("%7D", "}"),
                    "rel": "item",
                    "type": "image/png",
                    "templated": True,
                },
            ],
        }
        if with_limits:
            description["tileMatrixSetLimits"] = wmts.matrix_limits(
                tms, range(minzoom, maxzoom + 1), backend.bounds
            )
        return description

    @router.get("/tiles", name=route_name("tilesets"), summary="Tilesets (OGC API Tiles)")
    def tilesets(request: Request, uri: Uri) -> Any:
        """One tileset per supported TileMatrixSet (titiler's `/tiles`)."""
        from lambda_handler.routes.dependencies import tms_ids

        with open_backend(uri) as backend:
            return _json({"tilesets": [tileset(request, backend, t, False) for t in tms_ids()]})

    @router.get(
        "/tiles/{tileMatrixSetId}", name=route_name("tileset"), summary="Tileset (OGC API Tiles)"
    )
    def tileset_route(request: Request, uri: Uri, tileMatrixSetId: TmsPath) -> Any:  # noqa: N803
        """The tileset of one TileMatrixSet, with its TileMatrixSetLimits."""
        with open_backend(uri) as backend:
            return _json(tileset(request, backend, tileMatrixSetId, True))

    @router.get("/bounds", name=route_name("bounds"), summary="Mosaic bounds")
    def bounds(request: Request, uri: Uri) -> Any:
        """Bounds of the mosaic in its geographic CRS."""
        with open_backend(uri) as backend:
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            info = backend.info()
            return _json({"bounds": list(backend.bounds), "crs": info.crs}, etag)

    # ------------------------------------------------------------------ tiles
    def tile(
        request: Request,
        uri: Uri,
        settings: Settings,
        z: ZPath,
        x: XPath,
        y: YPath,
        tileMatrixSetId: TmsPath,  # noqa: N803 - OGC's name, as titiler
        layer: Annotated[LayerParams, Depends()],
        dataset: Annotated[DatasetParams, Depends()],
        tile_params: Annotated[TileParams, Depends()],
        render: Annotated[RenderParams, Depends()],
        pixel_selection: Annotated[Any, Depends(pixel_selection_dependency)],
        scale: Annotated[int, Field(ge=1, le=4, description="Tile scale (@2x = 512px).")] = 1,
        format: Annotated[ImageFormat | None, Field(description="Output format.")] = None,  # noqa: A002
    ) -> Response:
        """A map tile: the mosaic's assets read, combined by `pixel_selection` and encoded."""
        # The reading stack (rio-tiler, rasterio, numpy) is loaded by the first tile.
        from lambda_handler.reading import STAC_ASSET_TYPES, read_tile

        guard = read_guard(request, settings)
        tms = get_tms(tileMatrixSetId)
        read_options = tile_params.read_options(scale, settings)
        with open_backend(uri, tms) as backend:
            check_tile(backend, x, y, z)
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            layer_options = layer.as_dict()
            if "assets" in layer_options and (
                (backend.mosaic_def.asset_type or "").lower() not in STAC_ASSET_TYPES
            ):
                raise ApiError(
                    422, "assets: only mosaics of STAC items have named assets", field="assets"
                )
            image, used, timings = read_tile(
                backend,
                x,
                y,
                z,
                pixel_selection=pixel_selection,
                threads=settings.threads,
                guard=guard,
                **layer_options,
                **dataset.as_dict(),
                **read_options,
            )
        start = time.perf_counter()
        content, media_type = render_image(
            image,
            output_format=format,
            rescale=render.ranges,
            colormap=render.colormap_value,
            return_mask=render.add_mask,
            color_formula=render.color_formula,
        )
        timings.append(("render", round((time.perf_counter() - start) * 1000, 2)))
        headers = {
            "ETag": etag,
            "Server-Timing": server_timing(timings),
            "X-Assets": ",".join(used)[:4000],
        }
        if image.bounds is not None:
            headers["Content-Bbox"] = ",".join(str(v) for v in image.bounds)
        return Response(content, media_type=media_type, headers=headers)

    for kind, path in TILE_PATHS.items():
        router.add_api_route(
            path,
            _format_required(tile) if "{format}" in path else tile,
            methods=["GET"],
            name=route_name(kind),
            summary="Map tile",
            response_class=Response,
            responses=IMAGE_RESPONSES,
            operation_id=f"{name}_{kind}",
        )

    @router.get(
        "/tiles/{tileMatrixSetId}/{z}/{x}/{y}/assets",
        name=route_name("tile_assets"),
        summary="Assets of a tile",
        responses=NO_ASSET,
    )
    def tile_assets(
        request: Request, uri: Uri, z: ZPath, x: XPath, y: YPath, tileMatrixSetId: TmsPath
    ) -> Any:
        """Assets the index lists for tile (z, x, y) of the TMS."""
        with open_backend(uri, get_tms(tileMatrixSetId)) as backend:
            check_tile(backend, x, y, z)
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            return _json(backend.assets_for_tile(x, y, z), etag)

    # ------------------------------------------------------------------ documents
    def tilejson(
        request: Request,
        uri: Uri,
        params: Annotated[TileJSONParams, Depends()],
        tileMatrixSetId: TmsField = "WebMercatorQuad",  # noqa: N803
    ) -> Any:
        """TileJSON 3.0.0 of the mosaic in a TMS (query parameters go into the tile URL)."""
        tms = get_tms(tileMatrixSetId)
        with open_backend(uri, tms) as backend:
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            mosaic = backend.mosaic_def
            minzoom, maxzoom = _document_zooms(backend, tms, params)
            west, south, east, north = backend.bounds
            document = {
                "tilejson": "3.0.0",
                "name": mosaic.name or "mosaic",
                "version": mosaic.version,
                "scheme": "xyz",
                "tiles": [
                    tile_url(
                        request,
                        tms.id,
                        params.tile_format,
                        params.tile_scale,
                        cache_version(backend),
                    )
                ],
                "minzoom": minzoom,
                "maxzoom": maxzoom,
                "bounds": [west, south, east, north],
                "center": [(west + east) / 2, (south + north) / 2, minzoom],
            }
            if mosaic.description:
                document["description"] = mosaic.description
            if mosaic.attribution:
                document["attribution"] = mosaic.attribution
        return _json(document, etag)

    router.add_api_route(
        "/tilejson.json",
        tilejson,
        methods=["GET"],
        name=route_name("tilejson"),
        summary="TileJSON (TMS as query parameter)",
        operation_id=f"{name}_tilejson",
    )
    router.add_api_route(
        "/{tileMatrixSetId}/tilejson.json",
        tilejson,
        methods=["GET"],
        name=route_name("tilejson_tms"),
        summary="TileJSON (TMS in the path)",
        operation_id=f"{name}_tilejson_tms",
    )

    def wmts_capabilities(
        request: Request,
        uri: Uri,
        params: Annotated[TileJSONParams, Depends()],
        tileMatrixSetId: TmsField = "WebMercatorQuad",  # noqa: N803
    ) -> Response:
        """OGC WMTS 1.0.0 GetCapabilities document (RESTful)."""
        tms = get_tms(tileMatrixSetId)
        with open_backend(uri, tms) as backend:
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            minzoom, maxzoom = _document_zooms(backend, tms, params)
            fmt = params.tile_format or ImageFormat.png
            template = tile_url(request, tms.id, fmt, params.tile_scale, cache_version(backend))
            template = (
                template.replace("{z}", "{TileMatrix}")
                .replace("{x}", "{TileCol}")
                .replace("{y}", "{TileRow}")
                .replace(f"/tiles/{tms.id}/", "/tiles/{TileMatrixSet}/")
            )
            # Every supported TileMatrixSet, the requested one first (titiler's document).
            from lambda_handler.routes.dependencies import tms_ids

            others = []
            for other_id in tms_ids():
                other = get_tms(other_id)
                low = other.minzoom if params.minzoom is None else params.minzoom
                high = other.maxzoom if params.maxzoom is None else params.maxzoom
                others.append((other, min(low, other.maxzoom), min(high, other.maxzoom)))
            body = wmts.capabilities(
                title=backend.mosaic_def.name or "mosaic",
                layer=backend.mosaic_def.name or "mosaic",
                bounds=backend.bounds,
                tms=tms,
                minzoom=minzoom,
                maxzoom=maxzoom,
                media_type=fmt.media_type,
                resource_url=template,
                self_url=str(request.url),
                others=others,
            )
        return Response(body, media_type="application/xml", headers={"ETag": etag})

    for path, kind in (
        ("/WMTSCapabilities.xml", "wmts"),
        ("/{tileMatrixSetId}/WMTSCapabilities.xml", "wmts_tms"),
    ):
        router.add_api_route(
            path,
            wmts_capabilities,
            methods=["GET"],
            name=route_name(kind),
            summary="WMTS capabilities",
            response_class=Response,
            responses={200: {"content": {"application/xml": {}}}},
            operation_id=f"{name}_{kind}",
        )

    # ------------------------------------------------------------------ points and boxes
    @router.get("/point/{lon},{lat}", name=route_name("point"), summary="Values at a point")
    def point(
        request: Request,
        uri: Uri,
        settings: Settings,
        lon: Annotated[float, Path(description="Longitude (or x in coord_crs).")],
        lat: Annotated[float, Path(description="Latitude (or y in coord_crs).")],
        layer: Annotated[LayerParams, Depends()],
        dataset: Annotated[DatasetParams, Depends()],
        coord_crs: CoordCrs = None,
    ) -> Any:
        """Pixel values of every asset at a point."""
        from lambda_handler.reading import read_point

        crs = parse_crs(coord_crs)
        check_coordinates({"lon": lon, "lat": lat}, crs)
        with open_backend(uri) as backend:
            check_point(backend, *_to_geographic(backend, lon, lat, crs))
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            options = {k: v for k, v in layer.as_dict().items() if k != "assets"}
            values = read_point(
                backend,
                lon,
                lat,
                coord_crs=crs or backend.tms.rasterio_geographic_crs,
                threads=settings.threads,
                guard=read_guard(request, settings),
                **options,
                **dataset.as_dict(),
            )
        if not values:
            return Response(status_code=204, headers={"X-Reason": "no asset has data there"})
        assets = [
            {
                "name": name,
                "values": [
                    None if masked else float(value)
                    for value, masked in zip(
                        pt.array.data.tolist(), pt.array.mask.tolist(), strict=True
                    )
                ],
                "band_names": list(pt.band_names),
                "band_descriptions": list(pt.band_descriptions or []),
            }
            for name, pt in values
        ]
        return _json({"coordinates": [lon, lat], "assets": assets}, etag)

    @router.get(
        "/point/{lon},{lat}/assets",
        name=route_name("point_assets"),
        summary="Assets at a point",
        responses=NO_ASSET,
    )
    def point_assets(
        request: Request,
        uri: Uri,
        lon: Annotated[float, Path(description="Longitude (or x in coord_crs).")],
        lat: Annotated[float, Path(description="Latitude (or y in coord_crs).")],
        coord_crs: CoordCrs = None,
    ) -> Any:
        """Assets the index lists at a point."""
        crs = parse_crs(coord_crs)
        check_coordinates({"lon": lon, "lat": lat}, crs)
        with open_backend(uri) as backend:
            check_point(backend, *_to_geographic(backend, lon, lat, crs))
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            return _json(backend.assets_for_point(lon, lat, coord_crs=crs), etag)

    @router.get(
        "/bbox/{minx},{miny},{maxx},{maxy}/assets",
        name=route_name("bbox_assets"),
        summary="Assets in a bounding box",
        responses=NO_ASSET,
    )
    def bbox_assets(
        request: Request,
        uri: Uri,
        minx: Annotated[float, Path(description="West.")],
        miny: Annotated[float, Path(description="South.")],
        maxx: Annotated[float, Path(description="East (west > east crosses the antimeridian).")],
        maxy: Annotated[float, Path(description="North.")],
        coord_crs: CoordCrs = None,
    ) -> Any:
        """Assets the index lists in a bounding box."""
        crs = parse_crs(coord_crs)
        check_coordinates({"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy}, crs)
        if miny > maxy:
            raise ApiError(422, f"miny ({miny}) is greater than maxy ({maxy})", field="miny")
        with open_backend(uri) as backend:
            etag = make_etag(uri, cache_version(backend), request)
            if cached := not_modified(request, etag):
                return cached
            return _json(backend.assets_for_bbox(minx, miny, maxx, maxy, coord_crs=crs), etag)

    # ------------------------------------------------------------------ viewer
    @router.get("/map", name=route_name("map"), summary="Map page", response_class=HTMLResponse)
    def viewer(request: Request, uri: Uri) -> HTMLResponse:
        """A web map of the mosaic (Leaflet served by this app: works offline)."""
        with open_backend(uri) as backend:
            name_ = backend.mosaic_def.name or "mosaic"
        tilejson_url = str(request.url_for(route_name("tilejson"), **request.path_params))
        # Every option (tile_format, rescale, pixel_selection…) goes on to the TileJSON.
        query = forwarded_query(request, set())
        if query:
            tilejson_url += "?" + query
        return HTMLResponse(map_page(request, name_, tilejson_url))

    return router


def _format_required(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint` with `format` typed as a required ImageFormat: in a path (`….{format}`) the
    optional query parameter's `null` would be a lie in the OpenAPI document."""
    signature = inspect.signature(endpoint)
    parameters = [
        param.replace(
            kind=inspect.Parameter.KEYWORD_ONLY,
            **(
                {"annotation": ImageFormat, "default": inspect.Parameter.empty}
                if param.name == "format"
                else {}
            ),
        )
        for param in signature.parameters.values()
    ]

    @functools.wraps(endpoint)
    def wrapped(**kwargs: Any) -> Any:
        return endpoint(**kwargs)

    wrapped.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapped


def _document_zooms(backend: Any, tms: Any, params: TileJSONParams) -> tuple[int, int]:
    """The zooms of a TileJSON/WMTS document: the mosaic's or the query's, within the levels
    the TMS has (the query allows 0-30; some TMSs stop earlier)."""
    minzoom = backend.minzoom if params.minzoom is None else params.minzoom
    maxzoom = backend.maxzoom if params.maxzoom is None else params.maxzoom
    low, high = tms.minzoom, tms.maxzoom
    minzoom, maxzoom = min(max(minzoom, low), high), min(max(maxzoom, low), high)
    return minzoom, max(minzoom, maxzoom)


def _tileset_params(request: Request, tms_id: str) -> dict[str, str]:
    params = {k: v for k, v in request.path_params.items() if k == "mosaic_id"}
    return {**params, "tileMatrixSetId": tms_id}


def _path_names(path: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", path))


def _to_geographic(backend: Any, lon: float, lat: float, crs: Any) -> tuple[float, float]:
    """A point in the mosaic's geographic CRS (for the bounds check)."""
    if crs is None or crs == backend.crs:
        return lon, lat
    from rasterio.warp import transform as transform_coords

    xs, ys = transform_coords(crs, backend.crs, [lon], [lat])
    return xs[0], ys[0]


def read_guard(request: Request, settings: ApiSettings) -> "ReadGuard":
    """The bounds of this request's asset reads (allow-list, GDAL timeouts, deadline)."""
    from lambda_handler.app import asset_gdal_options
    from lambda_handler.reading import ReadGuard

    return ReadGuard(
        allowed_prefixes=settings.allowed_asset_prefixes,
        gdal_options=asset_gdal_options(settings),
        deadline=request.scope.get(DEADLINE_KEY),
        max_expression_length=settings.max_expression_length,
    )


# Coordinates in a CRS without an area of use: generous, but far from what makes PROJ spin.
_FALLBACK_LIMIT = 1e8


@lru_cache(maxsize=64)
def _crs_limits(crs_text: str) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) a coordinate of the CRS may take: its area of use in its own
    units, widened by half its size (points near the area still transform well)."""
    import pyproj

    crs = pyproj.CRS.from_user_input(crs_text)
    area = crs.area_of_use
    fallback = (-_FALLBACK_LIMIT, -_FALLBACK_LIMIT, _FALLBACK_LIMIT, _FALLBACK_LIMIT)
    if area is None:
        return (-540.0, -90.0, 540.0, 90.0) if crs.is_geographic else fallback
    west, south, east, north = area.west, area.south, area.east, area.north
    if west > east:  # the area crosses the antimeridian
        west, east = -180.0, 180.0
    if crs.is_geographic:
        return (west - 360.0, -90.0, east + 360.0, 90.0)
    try:
        to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        xmin, ymin, xmax, ymax = to_crs.transform_bounds(west, south, east, north, densify_pts=21)
    except pyproj.exceptions.ProjError:
        return fallback
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        return fallback
    width, height = (xmax - xmin) / 2, (ymax - ymin) / 2
    return (xmin - width, ymin - height, xmax + width, ymax + height)


def check_coordinates(values: dict[str, float], crs: Any) -> None:
    """422 naming the coordinate unless it is finite and inside the CRS's area of use (default
    CRS: longitude/latitude), checked before anything transforms it: PROJ can spin for minutes
    on huge values, holding the interpreter's lock."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise ApiError(422, f"{name}: {value} is not a finite number", field=name)
    xmin, ymin, xmax, ymax = _crs_limits(crs.to_wkt() if crs is not None else "EPSG:4326")
    where = f"the area of use of {crs}" if crs is not None else "longitude/latitude bounds"
    for name, value in values.items():
        low, high = (xmin, xmax) if name in ("lon", "minx", "maxx") else (ymin, ymax)
        if not low <= value <= high:
            raise ApiError(
                422, f"{name}: {value} is outside {where} ({low:g} to {high:g})", field=name
            )
