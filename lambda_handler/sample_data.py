"""Small, realistic COGs for the demo, the tests and the benchmarks.

Scenes are UTM-projected (zones 17N and 18N, straddling their boundary), overlap one another,
carry a nodata collar like real satellite scenes, and have pixel values that encode the scene,
band and position, so a test can tell which scene a mosaic pixel came from.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin


@dataclass(frozen=True)
class Scene:
    """One generated scene."""

    name: str
    epsg: int
    center_lon: float
    center_lat: float
    size: int = 256
    resolution: float = 200.0


SCENES = (
    Scene("scene_a", 32617, -78.40, 45.20),
    Scene("scene_b", 32618, -77.90, 45.35),
    Scene("scene_c", 32618, -78.15, 45.60),
    Scene("scene_d", 32618, -77.60, 45.10),
)

VARIANTS = {
    # name: (dtype, band count, nodata, scale of values)
    "uint8": ("uint8", 3, 0, 1),
    "uint16": ("uint16", 3, 0, 100),
    "uint16_4band": ("uint16", 4, 0, 100),
}


def scene_value(scene_index: int, band: int, scale: int = 1) -> int:
    """Base value of a scene's band (band is 1-based): scene 0 band 1 -> 41."""
    return ((scene_index + 1) * 40 + band) * scale


def scene_array(
    scene_index: int, size: int, count: int, dtype: str, nodata: int, scale: int
) -> np.ndarray:
    """Pixels: scene/band base value plus a gentle gradient, nodata in one corner triangle."""
    rows, cols = np.mgrid[0:size, 0:size]
    gradient = (cols // max(1, size // 8)).astype(np.int64)
    data = np.empty((count, size, size), dtype=dtype)
    for band in range(1, count + 1):
        data[band - 1] = scene_value(scene_index, band, scale) + gradient * scale
    collar = rows + cols < size // 4  # like the slanted edge of a real scene
    data[:, collar] = nodata
    return data


def write_scene(path: Path, scene_index: int, scene: Scene, variant: str = "uint8") -> Path:
    """Write one scene as a COG (GDAL's COG driver: tiled, with overviews)."""
    dtype, count, nodata, scale = VARIANTS[variant]
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{scene.epsg}", always_xy=True)
    cx, cy = to_utm.transform(scene.center_lon, scene.center_lat)
    half = scene.size * scene.resolution / 2
    transform = from_origin(cx - half, cy + half, scene.resolution, scene.resolution)
    data = scene_array(scene_index, scene.size, count, dtype, nodata, scale)
    profile = {
        "driver": "COG",
        "width": scene.size,
        "height": scene.size,
        "count": count,
        "dtype": dtype,
        "crs": f"EPSG:{scene.epsg}",
        "transform": transform,
        "nodata": nodata,
        "blocksize": 128,
        "compress": "DEFLATE",
        "overview_resampling": "nearest",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def generate_scenes(directory: Path | str, variant: str = "uint8") -> list[str]:
    """Write every scene of `variant` into `directory`; return their paths in scene order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, scene in enumerate(SCENES):
        path = directory / f"{scene.name}_{variant}.tif"
        if not path.exists():
            write_scene(path, index, scene, variant)
        paths.append(str(path))
    return paths
