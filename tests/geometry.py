"""Geometry helpers shared by test modules (tests never import from one another)."""

import math
from typing import Any


def square(lon: float, lat: float, size: float, path: str, angle: float = 0.0) -> dict[str, Any]:
    """A square footprint feature of side `size` degrees centred on (lon, lat), asset `path`.

    `angle` (radians) rotates the square about its centre, so footprints need not be
    aligned with tile edges.
    """
    half = size / 2
    corners = []
    for dx, dy in ((-half, half), (-half, -half), (half, -half), (half, half)):
        x = lon + dx * math.cos(angle) - dy * math.sin(angle)
        y = lat + dx * math.sin(angle) + dy * math.cos(angle)
        corners.append([x, y])
    corners.append(corners[0])
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [corners]},
        "properties": {"path": path},
    }


def inset_box(
    west: float, south: float, east: float, north: float, inset: float, path: str
) -> dict[str, Any]:
    """A rectangular footprint feature `inset` degrees inside a bounding box, asset `path`."""
    x0, y0, x1, y1 = west + inset, north - inset, east - inset, south + inset
    return {
        "type": "Feature",
        "properties": {"path": path},
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x0, y1], [x1, y1], [x1, y0], [x0, y0], [x0, y1]]],
        },
    }
