"""Read endpoints of one mosaic: metadata, tiles, TileJSON, WMTS, points, assets, map page.

`MosaicTilerFactory(path_dependency, name, prefix)` builds them (as titiler's factories do:
one method per group of endpoints, `register_routes()` calls them) for any way of naming a
mosaic: the `/mosaics/{mosaic_id}` form and the allow-listed `/mosaic?url=` form share every
route. Every route gets its mosaic from one dependency (`routes/opened_mosaic.py`): opened,
with its ETag, and a 304 already answered.
"""

import time
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from lambda_handler.api_errors import ApiError
from lambda_handler.rendering import encode_image
from lambda_handler.routes.base_factory import json_answer
from lambda_handler.routes.common import check_point, check_tile, forwarded_query, server_timing
from lambda_handler.routes.coordinates import check_coordinates, to_geographic
from lambda_handler.routes.dependencies import (
    DatasetParams,
    LayerParams,
    RenderParams,
    TileParams,
    get_settings,
    parse_crs,
    pixel_selection_dependency,
)
from lambda_handler.routes.documents import DocumentRoutes
from lambda_handler.routes.opened_mosaic import OpenedMosaic, tms_in_path
from lambda_handler.routes.tile_images import (
    IMAGE_RESPONSES,
    FormatField,
    ScaleField,
    format_required,
    read_guard,
    tile_options,
)
from lambda_handler.routes.tilejson import TILE_PATHS
from lambda_handler.routes.viewer import map_page
from lambda_handler.settings import ApiSettings

# The asset listings answer 204 when the index has no asset there (rio-tiler's NoAssetFound).
NO_ASSET: dict[int | str, dict[str, Any]] = {204: {"description": "No asset there."}}

ZPath = Annotated[int, Path(ge=0, le=30, description="Zoom (TileMatrix identifier).")]
XPath = Annotated[int, Path(ge=0, description="Column of the tile.")]
YPath = Annotated[int, Path(ge=0, description="Row of the tile.")]
CoordCrs = Annotated[
    str | None, Query(description="CRS of the coordinates (default: the TMS's geographic CRS).")
]
Settings = Annotated[ApiSettings, Depends(get_settings)]
Lon = Annotated[float, Path(description="Longitude (or x in coord_crs).")]
Lat = Annotated[float, Path(description="Latitude (or y in coord_crs).")]
Quadkeys = Annotated[bool, Query(description="List the index's quadkeys.")]
Layer = Annotated[LayerParams, Depends()]
Dataset = Annotated[DatasetParams, Depends()]


class MosaicTilerFactory(DocumentRoutes):
    """The read routes of one way of naming a mosaic (`path_dependency` gives its URI)."""

    def register_routes(self) -> None:
        """Every read route, in the order Starlette matches them."""
        self.info()
        self.tilesets()
        self.bounds()
        self.tiles()
        self.tilejson()
        self.wmts()
        self.point()
        self.bbox()
        self.map_viewer()

    # ------------------------------------------------------------------ metadata
    def info(self) -> None:
        """The document's metadata, its info and the info as GeoJSON."""
        Mosaic = Annotated[OpenedMosaic, Depends(self.mosaic())]

        @self.router.get("", name=self.route_name("metadata"), summary="MosaicJSON metadata")
        def metadata(
            mosaic: Mosaic,
            tiles: Annotated[bool, Query(description="Include the quadkey index.")] = False,
        ) -> Any:
            """The MosaicJSON document without its `tiles` (unless `tiles=true`)."""
            backend = mosaic.backend
            document = backend.to_document() if tiles else backend.mosaic_def
            content = document.model_dump(
                exclude=None if tiles else {"tiles"}, exclude_none=True, mode="json"
            )
            return json_answer(content, mosaic.etag)

        @self.router.get("/info", name=self.route_name("info"), summary="Mosaic info")
        def info(mosaic: Mosaic, quadkeys: Quadkeys = False) -> Any:
            """Bounds, CRS, zooms, quadkey zoom, version (and quadkeys on request)."""
            content = mosaic.backend.info(quadkeys=quadkeys).model_dump(mode="json")
            return json_answer(content, mosaic.etag)

        @self.router.get(
            "/info.geojson", name=self.route_name("info_geojson"), summary="Mosaic info (GeoJSON)"
        )
        def info_geojson(mosaic: Mosaic, quadkeys: Quadkeys = False) -> Any:
            """The info as a GeoJSON Feature of the mosaic's bounds (titiler's `/info.geojson`)."""
            backend = mosaic.backend
            west, south, east, north = (float(v) for v in backend.bounds)
            ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
            feature = {
                "type": "Feature",
                "bbox": [west, south, east, north],
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": backend.info(quadkeys=quadkeys).model_dump(mode="json"),
            }
            return json_answer(feature, mosaic.etag)

    def bounds(self) -> None:
        """The mosaic's bounds."""

        @self.router.get("/bounds", name=self.route_name("bounds"), summary="Mosaic bounds")
        def bounds(mosaic: Annotated[OpenedMosaic, Depends(self.mosaic())]) -> Any:
            """Bounds of the mosaic in its geographic CRS."""
            backend = mosaic.backend
            content = {"bounds": list(backend.bounds), "crs": backend.info().crs}
            return json_answer(content, mosaic.etag)

    # ------------------------------------------------------------------ tiles
    def tiles(self) -> None:
        """The map tile (four path variants) and the assets of a tile."""
        Mosaic = Annotated[OpenedMosaic, Depends(self.mosaic(tms_in_path))]

        def tile(
            request: Request,
            mosaic: Mosaic,
            settings: Settings,
            z: ZPath,
            x: XPath,
            y: YPath,
            layer: Layer,
            dataset: Dataset,
            tile_params: Annotated[TileParams, Depends()],
            render: Annotated[RenderParams, Depends()],
            pixel_selection: Annotated[str, Depends(pixel_selection_dependency)],
            scale: ScaleField = 1,
            format: FormatField = None,  # the path's name, as titiler
        ) -> Response:
            """A map tile: the mosaic's assets read, combined by `pixel_selection` and encoded."""
            # The reading stack (rio-tiler, rasterio, numpy) is loaded by the first tile.
            from lambda_handler.tile_pipeline import read_tile_image

            size = tile_params.size(scale, settings)
            backend = mosaic.backend
            check_tile(backend, x, y, z)
            options = tile_options(layer, dataset, tile_params, render, pixel_selection)
            image, used, timings = read_tile_image(
                backend,
                x,
                y,
                z,
                options,
                tilesize=size,
                threads=settings.threads,
                guard=read_guard(request, settings),
            )
            start = time.perf_counter()
            content, media_type = encode_image(
                image,
                output_format=format,
                colormap=render.colormap_value,
                return_mask=render.add_mask,
            )
            timings.append(("render", round((time.perf_counter() - start) * 1000, 2)))
            headers = {
                "ETag": mosaic.etag,
                "Server-Timing": server_timing(timings),
                "X-Assets": ",".join(used)[:4000],
            }
            if image.bounds is not None:
                headers["Content-Bbox"] = ",".join(str(v) for v in image.bounds)
            return Response(content, media_type=media_type, headers=headers)

        for kind, path in TILE_PATHS.items():
            self.router.add_api_route(
                path,
                format_required(tile) if "{format}" in path else tile,
                methods=["GET"],
                name=self.route_name(kind),
                summary="Map tile",
                response_class=Response,
                responses=IMAGE_RESPONSES,
                operation_id=f"{self.name}_{kind}",
            )

        @self.router.get(
            "/tiles/{tileMatrixSetId}/{z}/{x}/{y}/assets",
            name=self.route_name("tile_assets"),
            summary="Assets of a tile",
            responses=NO_ASSET,
        )
        def tile_assets(mosaic: Mosaic, z: ZPath, x: XPath, y: YPath) -> Any:
            """Assets the index lists for tile (z, x, y) of the TMS."""
            check_tile(mosaic.backend, x, y, z)
            return json_answer(mosaic.backend.assets_for_tile(x, y, z), mosaic.etag)

    # ------------------------------------------------------------------ points and boxes
    def point(self) -> None:
        """Values at a point, and the assets there."""
        Mosaic = Annotated[OpenedMosaic, Depends(self.mosaic())]

        @self.router.get(
            "/point/{lon},{lat}", name=self.route_name("point"), summary="Values at a point"
        )
        def point(
            request: Request,
            mosaic: Mosaic,
            settings: Settings,
            lon: Lon,
            lat: Lat,
            layer: Layer,
            dataset: Dataset,
            coord_crs: CoordCrs = None,
        ) -> Any:
            """Pixel values of every asset at a point."""
            from lambda_handler.reading import read_point

            crs = _checked_point(mosaic, lon, lat, coord_crs)
            backend = mosaic.backend
            values = read_point(
                backend,
                lon,
                lat,
                coord_crs=crs or backend.tms.rasterio_geographic_crs,
                threads=settings.threads,
                guard=read_guard(request, settings),
                **{k: v for k, v in layer.as_dict().items() if k != "assets"},
                **dataset.as_dict(),
            )
            if not values:
                return Response(status_code=204, headers={"X-Reason": "no asset has data there"})
            assets = [_point_values(name, pt) for name, pt in values]
            return json_answer({"coordinates": [lon, lat], "assets": assets}, mosaic.etag)

        @self.router.get(
            "/point/{lon},{lat}/assets",
            name=self.route_name("point_assets"),
            summary="Assets at a point",
            responses=NO_ASSET,
        )
        def point_assets(mosaic: Mosaic, lon: Lon, lat: Lat, coord_crs: CoordCrs = None) -> Any:
            """Assets the index lists at a point."""
            crs = _checked_point(mosaic, lon, lat, coord_crs)
            assets = mosaic.backend.assets_for_point(lon, lat, coord_crs=crs)
            return json_answer(assets, mosaic.etag)

    def bbox(self) -> None:
        """The assets in a bounding box."""

        @self.router.get(
            "/bbox/{minx},{miny},{maxx},{maxy}/assets",
            name=self.route_name("bbox_assets"),
            summary="Assets in a bounding box",
            responses=NO_ASSET,
        )
        def bbox_assets(
            mosaic: Annotated[OpenedMosaic, Depends(self.mosaic())],
            minx: Annotated[float, Path(description="West.")],
            miny: Annotated[float, Path(description="South.")],
            maxx: Annotated[
                float, Path(description="East (west > east crosses the antimeridian).")
            ],
            maxy: Annotated[float, Path(description="North.")],
            coord_crs: CoordCrs = None,
        ) -> Any:
            """Assets the index lists in a bounding box."""
            crs = parse_crs(coord_crs)
            check_coordinates({"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy}, crs)
            if miny > maxy:
                raise ApiError(422, f"miny ({miny}) is greater than maxy ({maxy})", field="miny")
            assets = mosaic.backend.assets_for_bbox(minx, miny, maxx, maxy, coord_crs=crs)
            return json_answer(assets, mosaic.etag)

    # ------------------------------------------------------------------ viewer
    def map_viewer(self) -> None:
        """The map page."""

        @self.router.get(
            "/map", name=self.route_name("map"), summary="Map page", response_class=HTMLResponse
        )
        def viewer(
            request: Request, mosaic: Annotated[OpenedMosaic, Depends(self.mosaic())]
        ) -> HTMLResponse:
            """A web map of the mosaic (Leaflet served by this app: works offline)."""
            title = mosaic.backend.mosaic_def.name or "mosaic"
            url = str(request.url_for(self.route_name("tilejson"), **request.path_params))
            # Every option (tile_format, rescale, pixel_selection…) goes on to the TileJSON.
            query = forwarded_query(request, set())
            return HTMLResponse(map_page(request, title, url + ("?" + query if query else "")))


def _checked_point(mosaic: OpenedMosaic, lon: float, lat: float, coord_crs: str | None) -> Any:
    """The CRS of a point (None: the default), after the coordinate checks (before the mosaic
    is opened) and the bounds check."""
    crs = parse_crs(coord_crs)
    check_coordinates({"lon": lon, "lat": lat}, crs)
    backend = mosaic.backend
    check_point(backend, *to_geographic(backend, lon, lat, crs))
    return crs


def _point_values(name: str, point: Any) -> dict[str, Any]:
    """One asset's values at a point (masked values as null)."""
    data, mask = point.array.data.tolist(), point.array.mask.tolist()
    return {
        "name": name,
        "values": [None if masked else float(v) for v, masked in zip(data, mask, strict=True)],
        "band_names": list(point.band_names),
        "band_descriptions": list(point.band_descriptions or []),
    }
