"""The quadkey index: which footprints each tile of the quadkey zoom lists, computed on arrays
(cogeo-mosaic's rule, without its one-tile-at-a-time loop)."""

import warnings
from collections.abc import Sequence

import morecantile
import numpy as np
import shapely

from lambda_handler.errors import InvalidMosaicError
from lambda_handler.mosaic.model import WEB_MERCATOR_TMS
from lambda_handler.mosaic.tiling import matrix_grid, quadkeys, transformers


def _candidate_tiles(
    geoms: np.ndarray, tms: morecantile.TileMatrixSet, zoom: int, max_tiles: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(geometry index, col, row) of every tile of each footprint's bounding box; more than
    `max_tiles` of them is refused before they are allocated (a high zoom costs gigabytes)."""
    grid = matrix_grid(tms, zoom)
    to_tms, _ = transformers(tms)
    bounds = shapely.bounds(geoms)
    west, south, east, north = bounds.T
    left, top = to_tms.transform(west, north)
    right, bottom = to_tms.transform(east, south)
    col_min, row_a = grid.tile_indices(np.asarray(left), np.asarray(top))
    col_max, row_b = grid.tile_indices(np.asarray(right), np.asarray(bottom))
    row_min, row_max = np.minimum(row_a, row_b), np.maximum(row_a, row_b)
    widths = col_max - col_min + 1
    heights = row_max - row_min + 1
    counts = widths * heights
    if max_tiles is not None and int(counts.sum()) > max_tiles:
        raise InvalidMosaicError(
            f"the index at quadkey zoom {zoom} would need {int(counts.sum()):,} footprint "
            f"tiles, more than the limit of {max_tiles:,}: choose a lower quadkey_zoom"
        )
    geom_index = np.repeat(np.arange(len(geoms)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    offset = np.arange(counts.sum()) - starts
    cols = col_min[geom_index] + offset % widths[geom_index]
    rows = row_min[geom_index] + offset // widths[geom_index]
    return geom_index, cols, rows


def _tile_boxes(
    tms: morecantile.TileMatrixSet, zoom: int, cols: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tile boxes in the TMS CRS and in geographic coordinates."""
    grid = matrix_grid(tms, zoom)
    _, to_geo = transformers(tms)
    left, bottom, right, top = grid.xy_bounds(cols, rows)
    projected = shapely.box(left, bottom, right, top)
    west, north = to_geo.transform(left, top)
    east, south = to_geo.transform(right, bottom)
    geographic = shapely.box(west, south, east, north)
    return projected, geographic


def _mercator_matches(
    geoms: np.ndarray, tms: morecantile.TileMatrixSet, zoom: int, max_tiles: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(geometry index, col, row, geographic tile box) of every footprint/tile match in
    WebMercatorQuad, all on arrays: there a footprint's tiles lie within its bbox's tile range."""
    geom_index, cols, rows = _candidate_tiles(geoms, tms, zoom, max_tiles)
    if not len(geom_index):
        return geom_index, cols, rows, np.empty(0, dtype=object)
    to_tms, _ = transformers(tms)
    projected_geoms = shapely.transform(
        geoms, lambda xy: np.column_stack(to_tms.transform(xy[:, 0], xy[:, 1]))
    )
    shapely.prepare(geoms)
    shapely.prepare(projected_geoms)
    projected_boxes, geographic_boxes = _tile_boxes(tms, zoom, cols, rows)
    tile_key = cols * (1 << zoom) + rows
    burnt = np.unique(tile_key[shapely.intersects(projected_geoms[geom_index], projected_boxes)])
    keep = np.isin(tile_key, burnt, assume_unique=False)
    keep[keep] = shapely.intersects(geoms[geom_index[keep]], geographic_boxes[keep])
    return geom_index[keep], cols[keep], rows[keep], geographic_boxes[keep]


def _generic_matches(
    geoms: np.ndarray, tms: morecantile.TileMatrixSet, zoom: int, max_tiles: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same matches in any quadtree TMS, by cogeo-mosaic's rule (supermorecado's burn):
    the tile range of the footprints' geographic extrema (clamped to the TMS bounds), the
    footprints projected with clamped coordinates and rasterized over it (all touched), then a
    geographic intersection with each burnt tile's densified geographic bounds. In polar or
    local projections a footprint's tiles are not those of its bbox corners, so the mercator
    shortcut would miss tiles; data outside the TMS burns nothing (an empty index)."""
    from rasterio import features as rio_features
    from rasterio.transform import Affine

    empty = (np.empty(0, dtype=np.int64),) * 3 + (np.empty(0, dtype=object),)
    eps = 1.0e-10
    bbox = tms.bbox
    west, south, east, north = (float(v) for v in shapely.total_bounds(geoms))
    west, south = max(west + eps, bbox.left), max(south + eps, bbox.bottom)
    east, north = min(east - eps, bbox.right), min(north - eps, bbox.top)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # morecantile warns for points outside the TMS
        ul, lr = tms.tile(west, north, zoom), tms.tile(east, south, zoom)
    x0, x1 = min(ul.x, lr.x), max(ul.x, lr.x) + 1
    y0, y1 = min(ul.y, lr.y), max(ul.y, lr.y) + 1
    if max_tiles is not None and (x1 - x0) * (y1 - y0) > max_tiles:
        raise InvalidMosaicError(
            f"the index at quadkey zoom {zoom} would need {(x1 - x0) * (y1 - y0):,} footprint "
            f"tiles, more than the limit of {max_tiles:,}: choose a lower quadkey_zoom"
        )
    grid = matrix_grid(tms, zoom)
    left, _, _, top = grid.xy_bounds(np.array([x0]), np.array([y0]))
    _, bottom, right, _ = grid.xy_bounds(np.array([x1 - 1]), np.array([y1 - 1]))
    transform = Affine(
        (right[0] - left[0]) / (x1 - x0), 0, left[0], 0, -(top[0] - bottom[0]) / (y1 - y0), top[0]
    )
    to_tms, to_geo = transformers(tms)

    def project(xy: np.ndarray) -> np.ndarray:
        lng = np.clip(xy[:, 0], bbox.left, bbox.right)
        lat = np.clip(xy[:, 1], bbox.bottom, bbox.top)
        return np.column_stack(to_tms.transform(lng, lat))

    projected = shapely.transform(geoms, project)
    burn = rio_features.rasterize(
        ((shapely.geometry.mapping(g), 1) for g in projected if not shapely.is_empty(g)),
        out_shape=(y1 - y0, x1 - x0),
        transform=transform,
        all_touched=True,
        fill=0,
        dtype="uint8",
    )
    burnt_rows, burnt_cols = np.nonzero(burn)
    if not len(burnt_rows):
        return empty
    burnt_cols, burnt_rows = burnt_cols + x0, burnt_rows + y0
    lefts, bottoms, rights, tops = grid.xy_bounds(burnt_cols, burnt_rows)
    boxes = []
    for b in zip(lefts, bottoms, rights, tops, strict=True):
        w, s, e, n = to_geo.transform_bounds(*b, densify_pts=21)
        boxes.append(shapely.box(min(w, e), min(s, n), max(w, e), max(s, n)))
    tile_boxes = np.asarray(boxes, dtype=object)
    shapely.prepare(geoms)
    tile_index, geom_index = np.nonzero(shapely.intersects(tile_boxes[:, None], geoms[None, :]))
    return (
        geom_index.astype(np.int64),
        burnt_cols[tile_index].astype(np.int64),
        burnt_rows[tile_index].astype(np.int64),
        tile_boxes[tile_index],
    )


def build_index(
    geoms: np.ndarray,
    assets: Sequence[str],
    tms: morecantile.TileMatrixSet,
    zoom: int,
    minimum_tile_cover: float | None = None,
    tile_cover_sort: bool = False,
    maximum_items_per_tile: int | None = None,
    max_tiles: int | None = None,
) -> dict[str, list[str]]:
    """Quadkey -> assets for footprints at `zoom` (`max_tiles`: see `_candidate_tiles`).

    The rule is cogeo-mosaic's, computed on arrays instead of one tile at a time: the tiles of the
    index are those some footprint touches in the TMS projection ("burnt"), and a footprint is
    listed in such a tile when it intersects the tile in geographic coordinates.
    """
    if minimum_tile_cover is not None and not 0 <= minimum_tile_cover <= 1:
        raise InvalidMosaicError(
            f"minimum_tile_cover must lie between 0 and 1, got {minimum_tile_cover}"
        )
    if maximum_items_per_tile is not None and maximum_items_per_tile < 1:
        raise InvalidMosaicError("maximum_items_per_tile must be at least 1")

    if tms.id == WEB_MERCATOR_TMS.id:
        geom_index, cols, rows, geographic_boxes = _mercator_matches(geoms, tms, zoom, max_tiles)
    else:
        geom_index, cols, rows, geographic_boxes = _generic_matches(geoms, tms, zoom, max_tiles)
    if not len(geom_index):
        return {}
    tile_key = cols * (1 << zoom) + rows

    cover = None
    if minimum_tile_cover or tile_cover_sort:
        cover = shapely.area(shapely.intersection(geographic_boxes, geoms[geom_index])) / (
            shapely.area(geographic_boxes)
        )
        if minimum_tile_cover:
            keep = cover > minimum_tile_cover
            geom_index, cols, rows, tile_key, cover = (
                geom_index[keep],
                cols[keep],
                rows[keep],
                tile_key[keep],
                cover[keep],
            )

    # Order: by tile, then by footprint order (or by coverage, largest first, ties by later
    # footprint first, as cogeo-mosaic's reverse sort of (coverage, index) does).
    if tile_cover_sort:
        order = np.lexsort((-geom_index, -cover, tile_key))
    else:
        order = np.lexsort((geom_index, tile_key))
    geom_index, tile_key, cols, rows = geom_index[order], tile_key[order], cols[order], rows[order]

    group_start = np.flatnonzero(np.r_[True, tile_key[1:] != tile_key[:-1]])
    if maximum_items_per_tile:
        rank = np.arange(len(tile_key)) - np.repeat(
            group_start, np.diff(np.r_[group_start, len(tile_key)])
        )
        keep = rank < maximum_items_per_tile
        geom_index, tile_key, cols, rows = geom_index[keep], tile_key[keep], cols[keep], rows[keep]
        group_start = np.flatnonzero(np.r_[True, tile_key[1:] != tile_key[:-1]])

    asset_array = np.asarray(assets, dtype=object)[geom_index]
    keys = quadkeys(cols[group_start], rows[group_start], zoom)
    bounds = np.r_[group_start, len(geom_index)]
    return {key: asset_array[bounds[i] : bounds[i + 1]].tolist() for i, key in enumerate(keys)}
