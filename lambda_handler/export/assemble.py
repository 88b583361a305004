"""Turn kept tiles into one COG: a tiled GeoTIFF written window by window, then rio-cogeo."""

import os
from pathlib import Path
from typing import Any

import numpy as np

from lambda_handler.export.plan import ExportError, ExportPlan
from lambda_handler.export.store import TileStore


def _first_tile(plan: ExportPlan, store: TileStore) -> tuple[np.ndarray, np.ndarray | None]:
    for x, y in plan.tiles:
        tile = store.load(x, y)
        if tile is not None:
            return tile
    raise ExportError("every tile of the area is empty: the mosaic has no data there")


def write_mosaic_tiff(plan: ExportPlan, store: TileStore, path: Path) -> None:
    """Write every kept tile into a tiled GeoTIFF with an internal mask.

    Only one tile is in memory at a time, whatever the size of the output.
    """
    import rasterio
    from rasterio.windows import Window

    sample, _ = _first_tile(plan, store)
    count, dtype = sample.shape[0], sample.dtype
    size = plan.tile_size
    profile = {
        "driver": "GTiff",
        "width": plan.width,
        "height": plan.height,
        "count": count,
        "dtype": dtype,
        "crs": "EPSG:3857",
        "transform": plan.transform,
        "tiled": True,
        "blockxsize": min(512, size) if size % 512 == 0 else 256,
        "blockysize": min(512, size) if size % 512 == 0 else 256,
        "compress": "DEFLATE",
        "BIGTIFF": "IF_SAFER",
    }
    empty_mask = np.zeros((size, size), dtype="uint8")
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, "w", **profile) as dst,
    ):
        for x, y in plan.tiles:
            col, row = plan.window(x, y)
            window = Window(col, row, size, size)
            tile = store.load(x, y)
            if tile is None:
                dst.write_mask(empty_mask, window=window)
                continue
            data, mask = tile
            if data.shape != (count, size, size) or data.dtype != dtype:
                raise ExportError(
                    f"tile {plan.zoom}/{x}/{y} has shape {data.shape} {data.dtype}, expected "
                    f"{(count, size, size)} {dtype}: tiles of one export must match"
                )
            dst.write(data, window=window)
            dst.write_mask(
                mask if mask is not None else np.full((size, size), 255, "uint8"), window=window
            )
        # Tiles outside the area but inside the output rectangle stay masked.
        planned = set(plan.tiles)
        for x in range(plan.min_x, plan.max_x + 1):
            for y in range(plan.min_y, plan.max_y + 1):
                if (x, y) not in planned:
                    col, row = plan.window(x, y)
                    dst.write_mask(empty_mask, window=Window(col, row, size, size))


def _cog_profile(profile: str) -> Any:
    """rio-cogeo's options of `profile`; ExportError if rio-cogeo is missing or the profile
    unknown."""
    try:
        from rio_cogeo.profiles import cog_profiles
    except ImportError as err:
        raise ExportError(
            "exports need rio-cogeo: pip install 'lambda-mosaic-tiler[export]'"
        ) from err
    if profile not in cog_profiles:
        raise ExportError(
            f"unknown COG profile {profile!r}: one of {', '.join(sorted(cog_profiles))}"
        )
    return cog_profiles.get(profile)


def check_output(output: Path, profile: str = "deflate") -> None:
    """Fail before any tile is rendered if the COG could not be written at the end: rio-cogeo
    missing, an unknown profile, or an output path that is a folder or not writable."""
    _cog_profile(profile)
    if output.is_dir():
        raise ExportError(f"output is a directory, not a file name: {output}")
    if not output.parent.is_dir():
        raise ExportError(f"output directory does not exist: {output.parent}")
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise ExportError(f"output directory is not writable: {output.parent}")
    if output.exists() and not os.access(output, os.W_OK):
        raise ExportError(f"output file is not writable: {output}")


def to_cog(source: Path, output: Path, profile: str = "deflate") -> None:
    """Translate a GeoTIFF into a Cloud-Optimized GeoTIFF with overviews (rio-cogeo)."""
    cog_options = _cog_profile(profile)
    from rio_cogeo.cogeo import cog_translate

    tmp = output.with_name(f".{output.name}.part")
    cog_translate(
        str(source),
        str(tmp),
        cog_options,
        overview_resampling="nearest",
        use_cog_driver=False,
        quiet=True,
        in_memory=False,
    )
    os.replace(tmp, output)


# GDAL's block cache defaults to 5% of the machine's memory and counts in the exporter's RSS:
# writing a large raster fills it with dirty blocks. A small fixed cache keeps memory flat.
GDAL_CACHE_MB = 64


def assemble(plan: ExportPlan, store: TileStore, output: Path, profile: str = "deflate") -> None:
    """Kept tiles -> COG at `output` (written atomically)."""
    import rasterio

    staging = output.with_name(f".{output.name}.staging.tif")
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            write_mosaic_tiff(plan, store, staging)
            to_cog(staging, output, profile)
    finally:
        if staging.exists():
            staging.unlink()
