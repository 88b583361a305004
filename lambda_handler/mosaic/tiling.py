"""Vectorized tile arithmetic for quadtree TileMatrixSets.

morecantile answers one tile at a time; building an index for thousands of footprints needs the
same arithmetic on numpy arrays. Everything here matches morecantile's scalar results.
"""

from dataclasses import dataclass
from functools import lru_cache

import morecantile
import numpy as np
import pyproj


@dataclass(frozen=True)
class MatrixGrid:
    """The grid of one zoom level of a quadtree TMS, in the TMS CRS."""

    origin_x: float
    origin_y: float
    tile_span_x: float
    tile_span_y: float
    width: int
    height: int
    top_left: bool

    def tile_indices(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column/row of the tiles holding points (TMS CRS), clamped into the matrix."""
        with np.errstate(invalid="ignore"):
            cols = np.floor((xs - self.origin_x) / self.tile_span_x)
            offset = (self.origin_y - ys) if self.top_left else (ys - self.origin_y)
            rows = np.floor(offset / self.tile_span_y)
        cols = np.clip(np.nan_to_num(cols, nan=0.0), 0, self.width - 1).astype(np.int64)
        rows = np.clip(np.nan_to_num(rows, nan=0.0), 0, self.height - 1).astype(np.int64)
        return cols, rows

    def xy_bounds(
        self, cols: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(left, bottom, right, top) of tiles in the TMS CRS."""
        left = self.origin_x + cols * self.tile_span_x
        right = self.origin_x + (cols + 1) * self.tile_span_x
        if self.top_left:
            top = self.origin_y - rows * self.tile_span_y
            bottom = self.origin_y - (rows + 1) * self.tile_span_y
        else:
            bottom = self.origin_y + rows * self.tile_span_y
            top = self.origin_y + (rows + 1) * self.tile_span_y
        return left, bottom, right, top


def matrix_grid(tms: morecantile.TileMatrixSet, zoom: int) -> MatrixGrid:
    """The grid of `tms` at `zoom`."""
    matrix = tms.matrix(zoom)
    origin_x, origin_y = tms._matrix_origin(matrix)
    return MatrixGrid(
        origin_x=float(origin_x),
        origin_y=float(origin_y),
        tile_span_x=float(matrix.cellSize * matrix.tileWidth),
        tile_span_y=float(matrix.cellSize * matrix.tileHeight),
        width=int(matrix.matrixWidth),
        height=int(matrix.matrixHeight),
        top_left=matrix.cornerOfOrigin == "topLeft",
    )


@lru_cache(maxsize=32)
def _transformers(tms_id: str, tms_json: str) -> tuple[pyproj.Transformer, pyproj.Transformer]:
    tms = morecantile.TileMatrixSet.model_validate_json(tms_json)
    projected = tms.crs._pyproj_crs
    geographic = tms.geographic_crs
    to_tms = pyproj.Transformer.from_crs(geographic, projected, always_xy=True)
    to_geo = pyproj.Transformer.from_crs(projected, geographic, always_xy=True)
    return to_tms, to_geo


def transformers(tms: morecantile.TileMatrixSet) -> tuple[pyproj.Transformer, pyproj.Transformer]:
    """(geographic -> TMS CRS, TMS CRS -> geographic) transformers, cached per TMS."""
    return _transformers(tms.id, tms.model_dump_json())


def quadkeys(cols: np.ndarray, rows: np.ndarray, zoom: int) -> list[str]:
    """Quadkeys of many tiles at one zoom."""
    cols = np.asarray(cols, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if zoom == 0:
        return [""] * len(cols)
    shifts = np.arange(zoom - 1, -1, -1, dtype=np.int64)
    digits = ((cols[:, None] >> shifts) & 1) + 2 * ((rows[:, None] >> shifts) & 1)
    chars = np.ascontiguousarray((digits + ord("0")).astype(np.uint8))
    return chars.view(f"S{zoom}").ravel().astype(str).tolist()


def quadkey_to_tile(quadkey: str) -> tuple[int, int, int]:
    """(x, y, z) of a quadkey (the inverse of `quadkeys`)."""
    x = y = 0
    for digit in quadkey:
        value = ord(digit) - 48
        x = (x << 1) | (value & 1)
        y = (y << 1) | (value >> 1)
    return x, y, len(quadkey)


def tile_quadkey(x: int, y: int, z: int) -> str:
    """Quadkey of one tile."""
    return "".join(str(((x >> i) & 1) + 2 * ((y >> i) & 1)) for i in range(z - 1, -1, -1))
