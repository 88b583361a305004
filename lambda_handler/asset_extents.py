"""Extents of the assets this process has opened, to skip candidates outside a tile.

Extents are remembered per process the first time an asset is opened (`AssetReader`); an asset
whose envelope misses a tile has no data in it, so dropping it before any GDAL open leaves the
output unchanged.
"""

import threading
from collections.abc import Sequence

import numpy
from cachetools import TTLCache
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from lambda_handler.gdal_errors import GDAL_ERRORS


class AssetExtents:
    """Extent (CRS and bounds) of each asset opened by this process, kept for a while, and its
    envelope per TMS."""

    def __init__(self, maxsize: int = 100_000, ttl: float = 3600.0):
        self._lock = threading.Lock()
        self._extents: TTLCache = TTLCache(maxsize=maxsize, ttl=ttl)
        self._envelopes: TTLCache = TTLCache(maxsize=maxsize, ttl=ttl)

    def remember(self, asset: str, crs: CRS, bounds: Sequence[float]) -> None:
        """Record the extent of an asset just opened."""
        with self._lock:
            if self._extents.get(asset) != (crs, tuple(bounds)):
                self._extents[asset] = (crs, tuple(bounds))
                for key in [k for k in self._envelopes if k[0] == asset]:
                    self._envelopes.pop(key, None)

    def get(self, asset: str) -> tuple[CRS, tuple[float, ...]] | None:
        """The recorded extent of `asset`, or None."""
        with self._lock:
            return self._extents.get(asset)

    def envelope(self, asset: str, tms: TileMatrixSet) -> tuple | None:
        """The asset's bounds in the TMS's CRS, or None if unknown."""
        key = (asset, tms.id, tms.rasterio_crs.to_wkt() if not tms.id else "")
        with self._lock:
            if key in self._envelopes:
                return self._envelopes[key]
            extent = self._extents.get(asset)
        if extent is None:
            return None
        envelope = _envelope_in(tms, *extent)
        with self._lock:
            self._envelopes[key] = envelope
        return envelope

    def clear(self) -> None:
        """Forget every extent."""
        with self._lock:
            self._extents.clear()
            self._envelopes.clear()


asset_extents = AssetExtents()


def _envelope_in(tms: TileMatrixSet, crs: CRS, bounds: tuple[float, ...]) -> tuple | None:
    """Bounds of an asset in the TMS's CRS (densified edges), or None when they cannot be known."""
    if crs == tms.rasterio_crs:
        return tuple(bounds)
    try:
        envelope = transform_bounds(crs, tms.rasterio_crs, *bounds, densify_pts=21)
    except (CRSError, *GDAL_ERRORS):
        return None
    # Non-finite values, or west > east (crossing the antimeridian): unknown, keep the asset.
    if not all(numpy.isfinite(envelope)) or envelope[0] > envelope[2]:
        return None
    return tuple(envelope)


def filter_by_extent(assets: list[str], tms: TileMatrixSet, x: int, y: int, z: int) -> list[str]:
    """Drop the assets whose remembered extent does not touch tile (x, y, z).

    The asset's envelope in the TMS's CRS is computed once per asset and TMS, so a tile costs a
    few comparisons per candidate. Dropping only assets whose envelope misses the tile leaves
    every pixel unchanged: such an asset has no data in the tile. Assets never opened by this
    process are kept: their reader decides, as usual.
    """
    west, south, east, north = tms.xy_bounds(Tile(x=x, y=y, z=z))
    kept = []
    for asset in assets:
        envelope = asset_extents.envelope(asset, tms)
        if envelope is None or (
            west < envelope[2]
            and east > envelope[0]
            and south < envelope[3]
            and north > envelope[1]
        ):
            kept.append(asset)
    return kept
