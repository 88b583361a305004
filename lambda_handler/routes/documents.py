"""Document routes of one mosaic: OGC API Tiles tilesets, TileJSON and WMTS capabilities.

`DocumentRoutes` is the part of the read-route factory (`routes/tiles.py`) that describes the
mosaic's tiles rather than serving them.
"""

from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.responses import Response

from lambda_handler.rendering import ImageFormat
from lambda_handler.routes import wmts
from lambda_handler.routes.base_factory import BaseMosaicFactory, json_answer
from lambda_handler.routes.dependencies import get_tms, tms_ids
from lambda_handler.routes.opened_mosaic import OpenedMosaic, TmsPath, tms_in_path_or_query
from lambda_handler.routes.tilejson import (
    TileJSONParams,
    document_zooms,
    tilejson_document,
    versioned_tile_url,
)


class DocumentRoutes(BaseMosaicFactory):
    """Tilesets, TileJSON and WMTS routes (subclasses register them)."""

    # ------------------------------------------------------------------ OGC API Tiles
    def tileset(self, request: Request, mosaic: OpenedMosaic, tms_id: str, limits: bool) -> dict:
        """OGC API Tiles tileset description of the mosaic in one TMS (titiler's shape)."""
        backend = mosaic.backend
        tms = get_tms(tms_id)
        minzoom, maxzoom = document_zooms(backend, tms, TileJSONParams())
        path_params = {k: v for k, v in request.path_params.items() if k == "mosaic_id"}
        self_url = request.url_for(
            self.route_name("tileset"), **path_params, tileMatrixSetId=tms_id
        )
        template = versioned_tile_url(request, self.name, tms_id, None, 1, mosaic.version)
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
                {"href": str(self_url), "rel": "self", "type": "application/json"},
                {
                    "href": template.replace("%7B", "{").replace("%7D", "}"),
                    "rel": "item",
                    "type": "image/png",
                    "templated": True,
                },
            ],
        }
        if limits:
            description["tileMatrixSetLimits"] = wmts.matrix_limits(
                tms, range(minzoom, maxzoom + 1), backend.bounds
            )
        return description

    def tilesets(self) -> None:
        """`/tiles` (every TileMatrixSet) and `/tiles/{tileMatrixSetId}` (one, with limits)."""
        Mosaic = Annotated[OpenedMosaic, Depends(self.mosaic())]

        @self.router.get(
            "/tiles", name=self.route_name("tilesets"), summary="Tilesets (OGC API Tiles)"
        )
        def tilesets(request: Request, mosaic: Mosaic) -> Any:
            """One tileset per supported TileMatrixSet (titiler's `/tiles`)."""
            return json_answer(
                {"tilesets": [self.tileset(request, mosaic, t, False) for t in tms_ids()]}
            )

        @self.router.get(
            "/tiles/{tileMatrixSetId}",
            name=self.route_name("tileset"),
            summary="Tileset (OGC API Tiles)",
        )
        def tileset(request: Request, mosaic: Mosaic, tileMatrixSetId: TmsPath) -> Any:
            """The tileset of one TileMatrixSet, with its TileMatrixSetLimits."""
            return json_answer(self.tileset(request, mosaic, tileMatrixSetId, True))

    # ------------------------------------------------------------------ documents
    def tilejson(self) -> None:
        """TileJSON, with the TMS in the query or in the path."""

        def tilejson(
            request: Request,
            mosaic: Annotated[OpenedMosaic, Depends(self.mosaic(tms_in_path_or_query))],
            params: Annotated[TileJSONParams, Depends()],
        ) -> Any:
            """TileJSON 3.0.0 of the mosaic in a TMS (query parameters go into the tile URL)."""
            backend = mosaic.backend
            minzoom, maxzoom = document_zooms(backend, backend.tms, params)
            tiles_url = versioned_tile_url(
                request,
                self.name,
                backend.tms.id,
                params.tile_format,
                params.tile_scale,
                mosaic.version,
            )
            document = tilejson_document(
                name=backend.mosaic_def.name or "mosaic",
                version=backend.mosaic_def.version,
                tiles_url=tiles_url,
                minzoom=minzoom,
                maxzoom=maxzoom,
                bounds=backend.bounds,
                description=backend.mosaic_def.description,
                attribution=backend.mosaic_def.attribution,
            )
            return json_answer(document, mosaic.etag)

        for path, kind, summary in (
            ("/tilejson.json", "tilejson", "TileJSON (TMS as query parameter)"),
            ("/{tileMatrixSetId}/tilejson.json", "tilejson_tms", "TileJSON (TMS in the path)"),
        ):
            self.router.add_api_route(
                path,
                tilejson,
                methods=["GET"],
                name=self.route_name(kind),
                summary=summary,
                operation_id=f"{self.name}_{kind}",
            )

    def wmts(self) -> None:
        """WMTS capabilities, with the TMS in the query or in the path."""

        def wmts_capabilities(
            request: Request,
            mosaic: Annotated[OpenedMosaic, Depends(self.mosaic(tms_in_path_or_query))],
            params: Annotated[TileJSONParams, Depends()],
        ) -> Response:
            """OGC WMTS 1.0.0 GetCapabilities document (RESTful)."""
            backend, tms = mosaic.backend, mosaic.backend.tms
            minzoom, maxzoom = document_zooms(backend, tms, params)
            fmt = params.tile_format or ImageFormat.png
            template = versioned_tile_url(
                request, self.name, tms.id, fmt, params.tile_scale, mosaic.version
            )
            body = wmts.capabilities(
                title=backend.mosaic_def.name or "mosaic",
                layer=backend.mosaic_def.name or "mosaic",
                bounds=backend.bounds,
                tms=tms,
                minzoom=minzoom,
                maxzoom=maxzoom,
                media_type=fmt.media_type,
                resource_url=wmts.resource_url(template, tms.id),
                self_url=str(request.url),
                others=_every_tms(params),
            )
            return Response(body, media_type="application/xml", headers={"ETag": mosaic.etag})

        for path, kind in (
            ("/WMTSCapabilities.xml", "wmts"),
            ("/{tileMatrixSetId}/WMTSCapabilities.xml", "wmts_tms"),
        ):
            self.router.add_api_route(
                path,
                wmts_capabilities,
                methods=["GET"],
                name=self.route_name(kind),
                summary="WMTS capabilities",
                response_class=Response,
                responses={200: {"content": {"application/xml": {}}}},
                operation_id=f"{self.name}_{kind}",
            )


def _every_tms(params: TileJSONParams) -> list[tuple[Any, int, int]]:
    """Every supported TileMatrixSet with the document's zooms in it (titiler's WMTS document
    lists them all)."""
    sets = []
    for tms_id in tms_ids():
        tms = get_tms(tms_id)
        low = tms.minzoom if params.minzoom is None else params.minzoom
        high = tms.maxzoom if params.maxzoom is None else params.maxzoom
        sets.append((tms, min(low, tms.maxzoom), min(high, tms.maxzoom)))
    return sets
