"""Build MosaicJSON documents from footprints (vectorized) or from dataset URLs."""

import json
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import morecantile
import numpy as np
import shapely

from lambda_handler.errors import (
    FootprintReadError,
    InvalidMosaicError,
    MultipleDataTypeError,
    NonQuadtreeTMSError,
)
from lambda_handler.mosaic.model import CURRENT_SPEC_VERSION, WEB_MERCATOR_TMS, MosaicJSON
from lambda_handler.mosaic.tiling import matrix_grid, quadkey_to_tile, quadkeys, transformers

Feature = dict[str, Any]
Accessor = Callable[[Feature], str]
Progress = Callable[[int, int], None]
# cogeo-mosaic's per-tile hook: (tile, features, geometries, **options) -> kept features.
AssetFilter = Callable[..., Sequence[Feature]]


def default_accessor(feature: Feature) -> str:
    """The asset of a feature: its `properties.path` (as cogeo-mosaic)."""
    try:
        return feature["properties"]["path"]
    except (KeyError, TypeError) as err:
        raise InvalidMosaicError(
            f"feature {_feature_label(feature)} has no 'properties.path': pass an accessor"
        ) from err


def _feature_label(feature: Any, index: int | None = None) -> str:
    if isinstance(feature, dict) and feature.get("id") is not None:
        return repr(feature["id"])
    return f"#{index}" if index is not None else "(no id)"


# ---------------------------------------------------------------------------- geometries
def parse_footprints(features: Sequence[Feature]) -> np.ndarray:
    """Shapely geometries of GeoJSON features, antimeridian crossings split in two.

    Raises InvalidMosaicError naming the feature when a geometry is missing or not polygonal.
    """
    texts = []
    for index, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not geometry:
            raise InvalidMosaicError(f"feature {_feature_label(feature, index)} has no geometry")
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise InvalidMosaicError(
                f"feature {_feature_label(feature, index)} has a {geometry.get('type')} "
                "geometry: footprints must be Polygon or MultiPolygon"
            )
        texts.append(json.dumps(geometry))
    try:
        geoms = shapely.from_geojson(texts, on_invalid="raise")
    except shapely.errors.GEOSException as err:
        raise InvalidMosaicError(f"invalid footprint geometry: {err}") from err
    return split_antimeridian(geoms)


def split_antimeridian(geoms: np.ndarray) -> np.ndarray:
    """Split footprints that cross the antimeridian into parts on either side of it.

    Two encodings exist in the wild: longitudes running past ±180 (e.g. 179 → 181), and
    longitudes wrapping (179 → -179), which makes a footprint look wider than half the world.
    Both are normalised to a MultiPolygon inside [-180, 180].
    """
    bounds = shapely.bounds(geoms)
    wrapped = (bounds[:, 2] - bounds[:, 0]) > 180.0
    outside = (bounds[:, 0] < -180.0) | (bounds[:, 2] > 180.0)
    todo = np.flatnonzero(wrapped | outside)
    if not len(todo):
        return geoms
    geoms = geoms.copy()
    for index in todo:
        geom = geoms[index]
        if wrapped[index]:
            geom = shapely.transform(
                geom,
                lambda xy: np.column_stack(
                    [np.where(xy[:, 0] < 0, xy[:, 0] + 360, xy[:, 0]), xy[:, 1]]
                ),
            )
        parts = []
        for shift in (-360.0, 0.0, 360.0):
            window = shapely.clip_by_rect(geom, -180.0 - shift, -90.0, 180.0 - shift, 90.0)
            if not shapely.is_empty(window) and shapely.area(window) > 0:
                parts.append(shapely.affinity.translate(window, xoff=shift))
        geoms[index] = shapely.union_all(parts) if parts else geom
    return geoms


# ---------------------------------------------------------------------------- index
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


def _strip_prefix(assets: list[str], prefix: str | None) -> list[str]:
    if not prefix:
        return assets
    return [a[len(prefix) :] if a.startswith(prefix) else a for a in assets]


def from_features(
    features: Sequence[Feature],
    minzoom: int,
    maxzoom: int,
    quadkey_zoom: int | None = None,
    accessor: Accessor = default_accessor,
    tilematrixset: morecantile.TileMatrixSet | None = None,
    minimum_tile_cover: float | None = None,
    tile_cover_sort: bool = False,
    maximum_items_per_tile: int | None = None,
    asset_prefix: str | None = None,
    asset_type: str | None = None,
    data_type: str | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    layers: dict[str, Any] | None = None,
    name: str | None = None,
    description: str | None = None,
    attribution: str | None = None,
    version: str = CURRENT_SPEC_VERSION,
    max_tiles: int | None = None,
    asset_filter: AssetFilter | None = None,
    quiet: bool = True,
    **unknown: Any,
) -> MosaicJSON:
    """Build a MosaicJSON document from GeoJSON features (Polygon or MultiPolygon footprints).

    Same arguments and result as cogeo-mosaic's `MosaicJSON.from_features`, computed with
    vectorized shapely/numpy operations instead of one tile at a time. `asset_filter` is
    cogeo-mosaic's hook, `f(tile, features, geoms, **options) -> features`, called per quadkey
    with the features intersecting it (in order); with one, other keyword arguments go to it as
    cogeo-mosaic does. `quiet` is accepted for its signature: the builder prints nothing.
    """
    if asset_filter is not None and asset_filter is not default_filter:
        unknown.update(
            (k, v)
            for k, v in (
                ("minimum_tile_cover", minimum_tile_cover),
                ("tile_cover_sort", tile_cover_sort),
                ("maximum_items_per_tile", maximum_items_per_tile),
            )
            if v
        )
        return _from_features_filtered(
            list(features),
            minzoom,
            maxzoom,
            asset_filter,
            unknown,
            quadkey_zoom=quadkey_zoom,
            accessor=accessor,
            tilematrixset=tilematrixset,
            asset_prefix=asset_prefix,
            asset_type=asset_type,
            data_type=data_type,
            colormap=colormap,
            layers=layers,
            name=name,
            description=description,
            attribution=attribution,
            version=version,
            max_tiles=max_tiles,
        )
    if unknown:
        raise TypeError(f"unexpected builder option(s): {', '.join(sorted(unknown))}")
    features = list(features)
    if not features:
        raise InvalidMosaicError("no features: a mosaic needs at least one footprint")
    tms = tilematrixset or WEB_MERCATOR_TMS
    if not tms.is_quadtree:
        raise NonQuadtreeTMSError(f"TileMatrixSet {tms.id!r} is not a quadtree")
    if minzoom > maxzoom:
        raise InvalidMosaicError(f"minzoom ({minzoom}) is greater than maxzoom ({maxzoom})")
    zoom = minzoom if quadkey_zoom is None else quadkey_zoom
    if not minzoom <= zoom <= maxzoom:
        raise InvalidMosaicError(
            f"quadkey_zoom ({zoom}) must lie between minzoom ({minzoom}) and maxzoom ({maxzoom})"
        )

    geoms = parse_footprints(features)
    assets = _strip_prefix([accessor(feature) for feature in features], asset_prefix)
    tiles = build_index(
        geoms,
        assets,
        tms,
        zoom,
        minimum_tile_cover=minimum_tile_cover,
        tile_cover_sort=tile_cover_sort,
        maximum_items_per_tile=maximum_items_per_tile,
        max_tiles=max_tiles,
    )
    west, south, east, north = (float(v) for v in shapely.total_bounds(geoms))
    document: dict[str, Any] = {
        "mosaicjson": version,
        "name": name,
        "description": description,
        "attribution": attribution,
        "version": "1.0.0",
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "quadkey_zoom": zoom,
        "bounds": (west, south, east, north),
        "center": ((west + east) / 2, (south + north) / 2, minzoom),
        "tiles": tiles,
        "tilematrixset": tilematrixset,
        "asset_type": asset_type,
        "asset_prefix": asset_prefix,
        "data_type": data_type,
        "colormap": colormap,
        "layers": layers,
    }
    return MosaicJSON.model_validate({k: v for k, v in document.items() if v is not None})


def default_filter(
    tile: morecantile.Tile,
    dataset: Sequence[Feature],
    geoms: Sequence[Any],
    minimum_tile_cover: float | None = None,
    tile_cover_sort: bool = False,
    maximum_items_per_tile: int | None = None,
) -> list[Feature]:
    """cogeo-mosaic's default per-tile filter, for code that passes or wraps it. The builder
    applies these options vectorized; this per-tile form is used only with a custom filter.
    Coverage is measured on the tile's WebMercatorQuad footprint, as cogeo-mosaic does."""
    indices = list(range(len(dataset)))
    if minimum_tile_cover or tile_cover_sort:
        tile_geom = shapely.geometry.shape(WEB_MERCATOR_TMS.feature(tile)["geometry"])
        cover = [
            float(shapely.area(shapely.intersection(tile_geom, g)) / shapely.area(tile_geom))
            for g in geoms
        ]
        if minimum_tile_cover:
            if not 0 <= minimum_tile_cover <= 1:
                raise InvalidMosaicError(
                    f"minimum_tile_cover must lie between 0 and 1, got {minimum_tile_cover}"
                )
            indices = [i for i in indices if cover[i] > minimum_tile_cover]
        if tile_cover_sort:
            indices = [i for _, i in sorted(((cover[i], i) for i in indices), reverse=True)]
    if maximum_items_per_tile:
        indices = indices[:maximum_items_per_tile]
    return [dataset[i] for i in indices]


def _from_features_filtered(
    features: list[Feature],
    minzoom: int,
    maxzoom: int,
    asset_filter: AssetFilter,
    filter_options: dict[str, Any],
    accessor: Accessor,
    asset_prefix: str | None,
    **options: Any,
) -> MosaicJSON:
    """Build with a caller's per-tile filter: index footprint numbers, then filter each tile."""
    if not features:
        raise InvalidMosaicError("no features: a mosaic needs at least one footprint")
    geoms = parse_footprints(features)
    numbered = from_features(
        [
            {"type": "Feature", "geometry": f.get("geometry"), "properties": {"path": str(i)}}
            for i, f in enumerate(features)
        ],
        minzoom,
        maxzoom,
        **options,
    )
    tiles: dict[str, list[str]] = {}
    for quadkey, numbers in numbered.tiles.items():
        indices = [int(n) for n in numbers]
        x, y, z = quadkey_to_tile(quadkey)
        kept = asset_filter(
            morecantile.Tile(x, y, z),
            tuple(features[i] for i in indices),
            tuple(geoms[i] for i in indices),
            **filter_options,
        )
        if kept:
            tiles[quadkey] = _strip_prefix([accessor(f) for f in kept], asset_prefix)
    update: dict[str, Any] = {"tiles": tiles}
    if asset_prefix:
        update["asset_prefix"] = asset_prefix
    return MosaicJSON.model_validate({**numbered.model_dump(exclude_none=True), **update})


# ---------------------------------------------------------------------------- from URLs
def dataset_footprint(url: str, tms: morecantile.TileMatrixSet = WEB_MERCATOR_TMS) -> Feature:
    """A GeoJSON feature with the geographic footprint and properties of one dataset."""
    from rio_tiler.io import Reader

    with Reader(url, tms=tms) as src:
        west, south, east, north = src.get_geographic_bounds(tms.rasterio_geographic_crs)
        if west > east:  # crosses the antimeridian: keep it continuous, the builder splits it
            east += 360.0
        return {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[west, north], [west, south], [east, south], [east, north], [west, north]]
                ],
            },
            "properties": {
                "path": url,
                "bounds": [west, south, east, north],
                "minzoom": src.minzoom,
                "maxzoom": src.maxzoom,
                "datatype": src.dataset.meta["dtype"],
                "count": src.dataset.count,
            },
        }


def get_footprints(
    urls: Sequence[str],
    tms: morecantile.TileMatrixSet | None = None,
    max_threads: int = 16,
    skip_errors: bool = False,
    progress: Progress | None = None,
) -> list[Feature]:
    """Footprints of datasets read in parallel threads, in the order of `urls`.

    A dataset that cannot be read raises FootprintReadError naming every failed URL, unless
    `skip_errors` is set: then each is logged as a warning and left out.
    """
    tms = tms or WEB_MERCATOR_TMS
    results: dict[int, Feature] = {}
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, max_threads)) as pool:
        futures = {pool.submit(dataset_footprint, url, tms): i for i, url in enumerate(urls)}
        for done, future in enumerate(as_completed(futures), start=1):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as err:  # every reader failure is reported by name below
                failures[urls[index]] = str(err) or type(err).__name__
            if progress:
                progress(done, len(futures))
    if failures:
        if not skip_errors:
            raise FootprintReadError(failures)
        # One warning per dataset (not also a log record: a CLI would show it twice); GDAL's
        # reasons often start with the path again.
        for url, reason in failures.items():
            reason = reason.removeprefix(f"{url}: ").removeprefix(f"'{url}' ")
            warnings.warn(f"skipped unreadable dataset {url}: {reason}", stacklevel=2)
    return [results[i] for i in sorted(results)]


def from_urls(
    urls: Sequence[str],
    minzoom: int | None = None,
    maxzoom: int | None = None,
    max_threads: int | None = None,
    tilematrixset: morecantile.TileMatrixSet | None = None,
    skip_errors: bool = False,
    progress: Progress | None = None,
    quiet: bool = True,
    **kwargs: Any,
) -> MosaicJSON:
    """Build a MosaicJSON document from dataset URLs (footprints read in parallel threads).

    `quiet` is accepted for cogeo-mosaic's signature (nothing is printed); other keyword
    arguments go to `from_features` (`asset_filter`, `quadkey_zoom`, …)."""
    from lambda_handler.settings import build_settings

    urls = list(urls)
    if not urls:
        raise InvalidMosaicError("no dataset URLs given")
    features = get_footprints(
        urls,
        tms=tilematrixset,
        max_threads=max_threads or build_settings().footprint_threads,
        skip_errors=skip_errors,
        progress=progress,
    )
    if not features:
        raise FootprintReadError({"*": "no dataset could be read"})
    datatypes = {f["properties"]["datatype"] for f in features}
    if len(datatypes) > 1:
        raise MultipleDataTypeError(
            f"datasets have different data types ({', '.join(sorted(datatypes))}): "
            "a mosaic needs one"
        )
    if minzoom is None:
        minzoom = max(f["properties"]["minzoom"] for f in features)
    if maxzoom is None:
        maxzoom = max(f["properties"]["maxzoom"] for f in features)
    kwargs.setdefault("data_type", datatypes.pop())
    return from_features(features, minzoom, maxzoom, tilematrixset=tilematrixset, **kwargs)
