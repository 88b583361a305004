"""Generated footprints shared by the benchmarks: realistic, reproducible satellite scenes."""

import math

import numpy as np


def scene_footprints(count: int, seed: int = 42, size_deg: float = 1.0) -> list[dict]:
    """`count` rotated, roughly square scenes (~size_deg wide) spread over North America."""
    rng = np.random.default_rng(seed)
    centers_lon = rng.uniform(-125.0, -65.0, count)
    centers_lat = rng.uniform(25.0, 55.0, count)
    angles = rng.uniform(-0.25, 0.25, count)
    sizes = rng.uniform(0.7, 1.3, count) * size_deg
    features = []
    for i in range(count):
        half = sizes[i] / 2
        cos_a, sin_a = math.cos(angles[i]), math.sin(angles[i])
        corners = []
        for dx, dy in ((-half, half), (-half, -half), (half, -half), (half, half)):
            x = centers_lon[i] + (dx * cos_a - dy * sin_a) / math.cos(math.radians(centers_lat[i]))
            y = centers_lat[i] + dx * sin_a + dy * cos_a
            corners.append([float(x), float(y)])
        corners.append(corners[0])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [corners]},
                "properties": {"path": f"s3://bucket/scenes/scene_{i:05d}.tif"},
            }
        )
    return features
