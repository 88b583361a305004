"""Dynamic STAC backend: no document at all, the STAC API is asked for each tile, point or bbox.

```python
with DynamicStacBackend(url, query=query, stac_api_options={"max_items": 5},
                        minzoom=8, maxzoom=12) as mosaic:
    mosaic.assets_for_tile(x, y, z)
    img, assets_used = mosaic.tile(x, y, z, assets="B01", tilesize=128, threads=0)
    values = mosaic.point(lon, lat, assets="B01")
```
Searches are cached per geometry (TTL), so a map view does not ask again for the same area.
"""

from collections.abc import Callable
from typing import Any

import attr
import shapely
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.warp import transform as transform_coords
from rasterio.warp import transform_bounds
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.io import BaseReader, MultiBaseReader
from rio_tiler.mosaic.backend import BaseBackend, MosaicInfo
from rio_tiler.types import BBox
from rio_tiler.utils import CRS_to_uri

from lambda_handler.errors import ReadOnlyBackendError
from lambda_handler.stac.client import api_options, cached_search, search_url
from lambda_handler.stac.items import Accessor, item_assets, make_accessor, remember_items
from lambda_handler.stac.reader import SearchedItemReader

# Half-size (degrees) of the polygon searched around a point: some APIs accept only polygons.
POINT_BUFFER = 1e-6


@attr.s
class DynamicStacBackend(BaseBackend):
    """Assets of each request found by a STAC API search intersecting its geometry.

    Attributes:
        input: the search endpoint (`https://host/search`; a `stac+` prefix is accepted).
        query: the search body; its own `bbox`/`intersects` further limit every search.
        minzoom/maxzoom: zooms served (default: the TMS's).
        stac_api_options: `max_items` (bounds the work per request), `limit`, `next_link_key`.
        accessor: item -> asset given to the reader (callable or asset name; default the item
            URL, read with rio-tiler's STAC reader so `assets=`/`expression=` work per item).
    """

    query: dict = attr.ib(factory=dict)
    minzoom: int = attr.ib(default=None)
    maxzoom: int = attr.ib(default=None)
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    reader: type[BaseReader] | type[MultiBaseReader] = attr.ib(default=SearchedItemReader)
    reader_options: dict = attr.ib(factory=dict)
    stac_api_options: dict = attr.ib(factory=dict)
    accessor: Accessor | str | None = attr.ib(default=None)

    bounds: BBox = attr.ib(init=False, default=(-180.0, -90.0, 180.0, 90.0))
    crs: CRS = attr.ib(init=False, default=WGS84_CRS)

    def __attrs_post_init__(self) -> None:
        """Check options; take the zoom range from the TMS when not given."""
        self.stac_api_options = api_options(self.stac_api_options)
        self.query = dict(self.query or {})
        self._url = search_url(self.input)
        self._accessor: Callable[[dict], str] = make_accessor(self.accessor)
        self._area = self._query_area()
        if self.minzoom is None:
            self.minzoom = self.tms.minzoom
        if self.maxzoom is None:
            self.maxzoom = self.tms.maxzoom

    def _query_area(self) -> shapely.Geometry | None:
        """The query's own spatial filter as a geometry (None when it has none)."""
        area = None
        if self.query.get("bbox"):
            area = _bbox_geometry(*self.query["bbox"][:2], *self.query["bbox"][-2:])
        if self.query.get("intersects"):
            shape = shapely.geometry.shape(self.query["intersects"])
            area = shape if area is None else shapely.intersection(area, shape)
        return area

    # ------------------------------------------------------------------ searches
    def search_assets(self, geometry: shapely.Geometry, reverse: bool = False) -> list[str]:
        """Assets of the items intersecting `geometry` (WGS84), in the API's order (its sort)."""
        if self._area is not None:
            # Both the request and the query limit the search: ask for their intersection.
            geometry = _searchable(shapely.intersection(geometry, self._area))
            if geometry is None:
                return []
        body = {k: v for k, v in self.query.items() if k not in ("bbox", "intersects")}
        body["intersects"] = shapely.geometry.mapping(geometry)
        items = cached_search(self._url, body, **self.stac_api_options)
        values = item_assets(items, self._accessor, self._url)
        remember_items(items, values, self.query)
        assets = list(dict.fromkeys(values))  # an item listed twice is read once
        return list(reversed(assets)) if reverse else assets

    def assets_for_tile(
        self, x: int, y: int, z: int, reverse: bool = False, **kwargs: Any
    ) -> list[str]:
        """Assets of the items intersecting a tile of the TMS."""
        west, south, east, north = self.tms.bounds(x, y, z)
        geographic = self.tms.rasterio_geographic_crs
        if geographic != WGS84_CRS:
            west, south, east, north = transform_bounds(
                geographic, WGS84_CRS, west, south, east, north
            )
        return self.search_assets(_bbox_geometry(west, south, east, north), reverse=reverse)

    def assets_for_point(
        self,
        lng: float,
        lat: float,
        coord_crs: CRS | None = None,
        reverse: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Assets of the items under a point (a tiny polygon around it)."""
        coord_crs = coord_crs or self.tms.rasterio_geographic_crs
        if coord_crs != WGS84_CRS:
            xs, ys = transform_coords(coord_crs, WGS84_CRS, [lng], [lat])
            lng, lat = xs[0], ys[0]
        box = shapely.box(
            lng - POINT_BUFFER, lat - POINT_BUFFER, lng + POINT_BUFFER, lat + POINT_BUFFER
        )
        return self.search_assets(box, reverse=reverse)

    def assets_for_bbox(
        self,
        xmin: float,
        ymin: float,
        xmax: float,
        ymax: float,
        coord_crs: CRS | None = None,
        reverse: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Assets of the items intersecting a bbox (xmin > xmax crosses the antimeridian)."""
        coord_crs = coord_crs or self.tms.rasterio_geographic_crs
        if coord_crs != WGS84_CRS:
            xmin, ymin, xmax, ymax = transform_bounds(coord_crs, WGS84_CRS, xmin, ymin, xmax, ymax)
        return self.search_assets(_bbox_geometry(xmin, ymin, xmax, ymax), reverse=reverse)

    # ------------------------------------------------------------------ description
    def info(self) -> MosaicInfo:  # type: ignore[override]
        """Bounds of the query's area (the world without one)."""
        bounds = self.bounds if self._area is None else tuple(shapely.bounds(self._area))
        return MosaicInfo(bounds=bounds, crs=CRS_to_uri(self.crs) or self.crs.to_wkt())

    def write(self, overwrite: bool = False) -> None:
        """A dynamic mosaic has no document to write."""
        raise ReadOnlyBackendError("the dynamic STAC backend has no document to write")


def _searchable(geometry: shapely.Geometry) -> shapely.Geometry | None:
    """A GeoJSON-searchable form of an intersection: None when empty; from a mixed collection
    (areas plus edges that only touch) the parts of the highest dimension."""
    if geometry.is_empty:
        return None
    if geometry.geom_type != "GeometryCollection":
        return geometry
    parts = list(geometry.geoms)
    top = max(shapely.get_dimensions(part) for part in parts)
    return shapely.union_all([part for part in parts if shapely.get_dimensions(part) == top])


def _bbox_geometry(west: float, south: float, east: float, north: float) -> shapely.Geometry:
    """A box, split in two when it crosses the antimeridian (west > east)."""
    if west > east:
        return shapely.MultiPolygon(
            [shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)]
        )
    return shapely.box(west, south, east, north)
