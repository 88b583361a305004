"""rio-tiler's abstract mosaic backend with the defaults cogeo-mosaic's custom-backend recipe
relies on (`lambda_handler.backends.BaseBackend`)."""

import inspect
import itertools
from typing import Any

import attr
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.warp import transform as transform_coords
from rasterio.warp import transform_bounds
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.mosaic.backend import BaseBackend as RioTilerBaseBackend


@attr.s
class BaseBackend(RioTilerBaseBackend):
    """rio-tiler's abstract mosaic backend (what `cogeo_mosaic.backends.base.BaseBackend` is),
    with defaults for what cogeo-mosaic's custom-backend recipe leaves out, so the recipe's
    subclass (attrs fields, own `assets_for_tile`/`assets_for_point`) instantiates as written:
    world bounds in WGS84, and `assets_for_bbox` as the union of `assets_for_tile` over the
    bbox's tiles at the lowest zoom served (at most 64 of them; more is refused)."""

    # Keyword-only here: a recipe's subclass redefines `input` (no default) after the inherited
    # fields, and attrs refuses a mandatory positional field after one with a default.
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS, kw_only=True)

    # Plain class values, not attrs defaults: a recipe's subclass redefines `input` without a
    # default, which attrs refuses after inherited fields with defaults.
    bounds = (-180.0, -90.0, 180.0, 90.0)
    crs = WGS84_CRS

    def point(  # type: ignore[override]
        self,
        lon: float,
        lat: float,
        coord_crs: CRS = WGS84_CRS,
        search_options: dict | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Values at a point from every asset; `assets_for_point(lng, lat)` without
        `coord_crs` (cogeo-mosaic's recipe) is given WGS84 coordinates."""
        parameters = inspect.signature(self.assets_for_point).parameters
        if "coord_crs" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return super().point(
                lon, lat, coord_crs=coord_crs, search_options=search_options, **kwargs
            )
        from rio_tiler.errors import NoAssetFoundError, PointOutsideBounds
        from rio_tiler.tasks import multi_values_list
        from rio_tiler.utils import inherit_rasterio_env

        search_lon, search_lat = lon, lat
        if coord_crs != WGS84_CRS:
            xs, ys = transform_coords(coord_crs, WGS84_CRS, [lon], [lat])
            search_lon, search_lat = xs[0], ys[0]
        assets = self.assets_for_point(search_lon, search_lat, **(search_options or {}))
        if not assets:
            raise NoAssetFoundError(f"No assets found for point ({lon},{lat})")

        @inherit_rasterio_env
        def _reader(asset: Any, lon: float, lat: float, coord_crs: CRS, **options: Any) -> Any:
            with self.reader(asset, **self.reader_options) as src_dst:
                return src_dst.point(lon, lat, coord_crs=coord_crs, **options)

        kwargs.setdefault("allowed_exceptions", (PointOutsideBounds,))
        return [
            (self.asset_name(asset), pt)
            for asset, pt in multi_values_list(assets, _reader, lon, lat, coord_crs, **kwargs)
        ]

    def assets_for_bbox(
        self,
        xmin: float,
        ymin: float,
        xmax: float,
        ymax: float,
        coord_crs: CRS | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Assets of the tiles (lowest served zoom) covering a bbox, without duplicates."""
        geographic = self.tms.rasterio_geographic_crs
        if coord_crs is not None and coord_crs != geographic:
            xmin, ymin, xmax, ymax = transform_bounds(coord_crs, geographic, xmin, ymin, xmax, ymax)
        zoom = self.minzoom if self.minzoom is not None else self.tms.minzoom
        tiles = list(itertools.islice(self.tms.tiles(xmin, ymin, xmax, ymax, [zoom]), 65))
        if len(tiles) > 64:
            raise ValueError(
                f"the bbox covers more than 64 tiles at zoom {zoom}: use a smaller one"
            )
        found = (self.assets_for_tile(t.x, t.y, t.z) for t in tiles)
        return list(dict.fromkeys(itertools.chain.from_iterable(found)))
