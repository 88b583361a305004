"""A mosaic's zooms in another TileMatrixSet: the zooms of the request TMS whose resolutions
match the mosaic's (WebMercatorQuad 4-9 is about WorldCRS84Quad 3-8)."""

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from morecantile import TileMatrixSet


@lru_cache(maxsize=64)
def _meters_per_unit(crs_wkt: str) -> float:
    import pyproj
    from morecantile.utils import meters_per_unit

    return meters_per_unit(pyproj.CRS.from_user_input(crs_wkt))


def _equivalent_zoom(
    source: "TileMatrixSet", zoom: int, target: "TileMatrixSet", upper: bool
) -> int:
    resolution_m = source.matrix(zoom).cellSize * _meters_per_unit(source.rasterio_crs.to_wkt())
    return target.zoom_for_res(
        resolution_m / _meters_per_unit(target.rasterio_crs.to_wkt()),
        zoom_level_strategy="upper" if upper else "lower",
    )


def zoom_range(
    mosaic_tms: "TileMatrixSet", minzoom: int, maxzoom: int, tms: "TileMatrixSet"
) -> tuple[int, int]:
    """Zooms of `tms` matching the mosaic's zooms (by resolution); the same in the same TMS,
    and all of `tms`'s zooms when the resolutions cannot be compared."""
    if mosaic_tms.id == tms.id and mosaic_tms == tms:
        return minzoom, maxzoom
    import pyproj

    try:
        low = _equivalent_zoom(mosaic_tms, minzoom, tms, upper=False)
        high = _equivalent_zoom(mosaic_tms, maxzoom, tms, upper=True)
    except (ValueError, pyproj.exceptions.ProjError):
        return tms.minzoom, tms.maxzoom
    return min(low, high), max(low, high)
