"""Build MosaicJSON documents from footprints (vectorized) or from dataset URLs.

Footprints are read and parsed in `footprints.py`, indexed by quadkey in `index.py`; this module
assembles the document with cogeo-mosaic's arguments.
"""

from collections.abc import Callable, Sequence
from typing import Any

import morecantile
import shapely

from lambda_handler.errors import (
    FootprintReadError,
    InvalidMosaicError,
    MultipleDataTypeError,
    NonQuadtreeTMSError,
)
from lambda_handler.mosaic.footprints import (
    Feature,
    Progress,
    feature_label,
    get_footprints,
    parse_footprints,
)

# Imported from here by tests and benchmarks written before footprints.py existed.
from lambda_handler.mosaic.footprints import dataset_footprint as dataset_footprint
from lambda_handler.mosaic.index import build_index
from lambda_handler.mosaic.model import CURRENT_SPEC_VERSION, WEB_MERCATOR_TMS, MosaicJSON
from lambda_handler.mosaic.tiling import quadkey_to_tile

Accessor = Callable[[Feature], str]
# cogeo-mosaic's per-tile hook: (tile, features, geometries, **options) -> kept features.
AssetFilter = Callable[..., Sequence[Feature]]


def default_accessor(feature: Feature) -> str:
    """The asset of a feature: its `properties.path` (as cogeo-mosaic)."""
    try:
        return feature["properties"]["path"]
    except (KeyError, TypeError) as err:
        raise InvalidMosaicError(
            f"feature {feature_label(feature)} has no 'properties.path': pass an accessor"
        ) from err


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
