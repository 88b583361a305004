"""Coordinates given by a client: checked before PROJ sees them, moved to the mosaic's CRS.

pyproj and rasterio are imported by the first request that gives coordinates.
"""

import math
from functools import lru_cache
from typing import Any

from lambda_handler.api_errors import ApiError

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


def to_geographic(backend: Any, lon: float, lat: float, crs: Any) -> tuple[float, float]:
    """A point in the mosaic's geographic CRS (for the bounds check)."""
    if crs is None or crs == backend.crs:
        return lon, lat
    from rasterio.warp import transform as transform_coords

    xs, ys = transform_coords(crs, backend.crs, [lon], [lat])
    return xs[0], ys[0]
