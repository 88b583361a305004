"""The STAC records of the tests and the benchmark: constant-valued COGs on disk and STAC 1.0
items and collections pointing at them, plus the 13-item test catalog with what each item's
pixels and footprint are (so tests can predict search results and pixel values).
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.transform import from_bounds

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def write_cog(path: Path, bounds: Sequence[float], value: int, resolution: float = 0.004) -> str:
    """A one-band uint8 EPSG:4326 COG of constant `value` (nodata 0) covering `bounds`;
    returns its file:// URL."""
    west, south, east, north = bounds
    width = max(1, round((east - west) / resolution))
    height = max(1, round((north - south) / resolution))
    profile = {
        "driver": "COG",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": from_bounds(west, south, east, north, width, height),
        "nodata": 0,
        "compress": "DEFLATE",
        "blocksize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, height, width), value, dtype="uint8"))
    return path.as_uri()  # absolute with a scheme: pystac keeps it, GDAL opens it


def polygon(west: float, south: float, east: float, north: float) -> list[list[list[float]]]:
    """GeoJSON Polygon coordinates of a box (counter-clockwise)."""
    return [[[west, south], [east, south], [east, north], [west, north], [west, south]]]


def make_item(
    collection: str,
    item_id: str,
    geometry: dict,
    bbox: Sequence[float],
    properties: dict,
    assets: dict[str, str],
) -> dict:
    """A STAC 1.0 item whose assets are local COG paths."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": list(bbox),
        "properties": properties,
        "assets": {
            name: {"href": href, "type": COG_TYPE, "roles": ["data"]}
            for name, href in assets.items()
        },
        "links": [],
    }


def make_collection(collection: str, description: str) -> dict:
    """A STAC 1.0 collection covering the world."""
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection,
        "description": description,
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


QUERYABLES = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "type": "object",
    "title": "Queryables of the test catalogs",
    "properties": {
        "eo:cloud_cover": {"title": "Cloud cover", "type": "number", "minimum": 0, "maximum": 100}
    },
}
TEST_COLLECTION = "lmt-test"
# Cloud cover of the test items, by index: varied, all different.
TEST_CLOUD_COVER = [5, 55, 15, 65, 25, 75, 35, 85, 45, 95, 20, 70, 50]


def expected_value(index: int, asset: str) -> int:
    """Pixel value of an asset of test item `index`: B01 -> 10 + index, B02 -> 100 + index."""
    return (10 if asset == "B01" else 100) + index


def write_test_catalog(directory: Path) -> tuple[dict, list[dict]]:
    """The test collection: 13 items with assets B01/B02 (constant COGs).

    Items 0-9 are 0.5° squares on a 5x2 grid with 0.1° overlaps (west 10 + 0.4*col, south
    45 + 0.4*row); items 10 and 11 are MultiPolygons of two 0.2° squares 1° apart; item 12
    crosses the antimeridian (a MultiPolygon split at ±180). Datetimes rise with the index.
    """
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(13):
        if index < 10:
            west, south = 10.0 + 0.4 * (index % 5), 45.0 + 0.4 * (index // 5)
            parts = [(west, south, west + 0.5, south + 0.5)]
            cog_bounds = parts[0]
        elif index < 12:
            south = 45.0 if index == 10 else 45.6
            parts = [(12.5, south, 12.7, south + 0.2), (13.5, south, 13.7, south + 0.2)]
            cog_bounds = (12.5, south, 13.7, south + 0.2)
        else:
            parts = [(179.6, -16.2, 180.0, -15.8), (-180.0, -16.2, -179.6, -15.8)]
            cog_bounds = parts[0]
        if len(parts) == 1:
            geometry = {"type": "Polygon", "coordinates": polygon(*parts[0])}
            bbox = parts[0]
        else:
            geometry = {"type": "MultiPolygon", "coordinates": [polygon(*p) for p in parts]}
            bbox = (179.6, -16.2, -179.6, -15.8) if index == 12 else cog_bounds
        assets = {
            name: write_cog(
                directory / f"item{index:02d}_{name}.tif", cog_bounds, expected_value(index, name)
            )
            for name in ("B01", "B02")
        }
        properties = {
            "datetime": f"2024-01-{index + 1:02d}T10:00:00Z",
            "eo:cloud_cover": TEST_CLOUD_COVER[index],
        }
        items.append(
            make_item(TEST_COLLECTION, f"item-{index:02d}", geometry, bbox, properties, assets)
        )
    return make_collection(TEST_COLLECTION, "lambda-mosaic-tiler test items"), items


def items_intersecting(items: Sequence[dict], geometry: Any) -> list[str]:
    """Ids of the items whose footprint intersects a shapely geometry (antimeridian parts as
    they are: the test item across it is stored split at ±180)."""
    return [
        item["id"]
        for item in items
        if shapely.geometry.shape(item["geometry"]).intersects(geometry)
    ]


def write_ndjson(path: Path, records: Sequence[dict]) -> Path:
    """One JSON document per line (what `pypgstac load` reads)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
