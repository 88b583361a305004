"""Dataset footprints: GeoJSON features read from datasets, parsed into shapely geometries,
with antimeridian crossings split in two."""

import json
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import morecantile
import numpy as np
import shapely

from lambda_handler.errors import FootprintReadError, InvalidMosaicError
from lambda_handler.mosaic.model import WEB_MERCATOR_TMS

Feature = dict[str, Any]
Progress = Callable[[int, int], None]


def feature_label(feature: Any, index: int | None = None) -> str:
    """How a feature is named in error messages: its id, else its position."""
    if isinstance(feature, dict) and feature.get("id") is not None:
        return repr(feature["id"])
    return f"#{index}" if index is not None else "(no id)"


def parse_footprints(features: Sequence[Feature]) -> np.ndarray:
    """Shapely geometries of GeoJSON features, antimeridian crossings split in two.

    Raises InvalidMosaicError naming the feature when a geometry is missing or not polygonal.
    """
    texts = []
    for index, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not geometry:
            raise InvalidMosaicError(f"feature {feature_label(feature, index)} has no geometry")
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise InvalidMosaicError(
                f"feature {feature_label(feature, index)} has a {geometry.get('type')} "
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


# ---------------------------------------------------------------------------- from datasets
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
