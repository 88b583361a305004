"""Which tiles an export needs and where each lands in the output raster."""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import morecantile
import shapely
from affine import Affine

from lambda_handler.errors import MosaicError

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
BASE_TILE_SIZE = 256


class ExportError(MosaicError):
    """An export cannot be planned or completed."""


@dataclass(frozen=True)
class ExportPlan:
    """The tiles of an export (WebMercatorQuad) and the grid of its output raster."""

    zoom: int
    tile_scale: int
    min_x: int
    min_y: int
    max_x: int
    max_y: int
    tiles: tuple[tuple[int, int], ...]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def tile_size(self) -> int:
        """Pixels per tile side."""
        return BASE_TILE_SIZE * self.tile_scale

    @property
    def width(self) -> int:
        """Output width in pixels."""
        return (self.max_x - self.min_x + 1) * self.tile_size

    @property
    def height(self) -> int:
        """Output height in pixels."""
        return (self.max_y - self.min_y + 1) * self.tile_size

    @property
    def transform(self) -> Affine:
        """Affine transform of the output raster in EPSG:3857."""
        left, _, _, top = WEB_MERCATOR.xy_bounds(self.min_x, self.min_y, self.zoom)
        _, bottom, right, _ = WEB_MERCATOR.xy_bounds(self.max_x, self.max_y, self.zoom)
        return Affine(
            (right - left) / self.width, 0.0, left, 0.0, -(top - bottom) / self.height, top
        )

    def window(self, x: int, y: int) -> tuple[int, int]:
        """(column offset, row offset) of tile (x, y) in the output raster."""
        return (x - self.min_x) * self.tile_size, (y - self.min_y) * self.tile_size

    def fingerprint(self) -> str:
        """Identity of the job: resuming is only allowed for the same fingerprint."""
        spec = {
            "zoom": self.zoom,
            "tile_scale": self.tile_scale,
            "tiles": [self.min_x, self.min_y, self.max_x, self.max_y],
            "count": len(self.tiles),
            "options": self.options,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def area_geometry(bbox: tuple[float, float, float, float] | None, geojson: dict | None):
    """The export area as a shapely geometry (lon/lat) from a bbox or GeoJSON."""
    if (bbox is None) == (geojson is None):
        raise ExportError("give exactly one area: a bbox or a GeoJSON geometry")
    if bbox is not None:
        west, south, east, north = bbox
        if west >= east or south >= north:
            raise ExportError(f"invalid bbox {list(bbox)}: expected west < east and south < north")
        return shapely.box(west, south, east, north)
    if geojson.get("type") == "FeatureCollection":
        geoms = [shapely.geometry.shape(f["geometry"]) for f in geojson.get("features", [])]
    elif geojson.get("type") == "Feature":
        geoms = [shapely.geometry.shape(geojson["geometry"])]
    else:
        geoms = [shapely.geometry.shape(geojson)]
    if not geoms:
        raise ExportError("the GeoJSON area has no geometry")
    return shapely.union_all(geoms)


def zoom_for_resolution(resolution: float) -> int:
    """The WebMercatorQuad zoom whose pixels are at least as fine as `resolution` metres."""
    return WEB_MERCATOR.zoom_for_res(resolution, zoom_level_strategy="upper")


def plan_export(
    zoom: int,
    bbox: tuple[float, float, float, float] | None = None,
    geojson: dict | None = None,
    tile_scale: int = 1,
    options: dict[str, Any] | None = None,
) -> ExportPlan:
    """Plan an export: every tile at `zoom` that intersects the area."""
    if not 0 <= zoom <= 24:
        raise ExportError(f"zoom {zoom} is out of range (0-24)")
    if tile_scale not in (1, 2, 3, 4):
        raise ExportError(f"tile_scale must be 1, 2, 3 or 4, got {tile_scale}")
    area = area_geometry(bbox, geojson)
    west, south, east, north = area.bounds
    shapely.prepare(area)
    tiles = []
    for tile in WEB_MERCATOR.tiles(west, south, east, north, [zoom], truncate=True):
        if area.intersects(shapely.box(*WEB_MERCATOR.bounds(tile))):
            tiles.append((tile.x, tile.y))
    if not tiles:
        raise ExportError("the area covers no tile")
    xs = [t[0] for t in tiles]
    ys = [t[1] for t in tiles]
    return ExportPlan(
        zoom=zoom,
        tile_scale=tile_scale,
        min_x=min(xs),
        min_y=min(ys),
        max_x=max(xs),
        max_y=max(ys),
        tiles=tuple(sorted(tiles)),
        options=dict(options or {}),
    )
