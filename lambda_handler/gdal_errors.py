"""What GDAL raises, and what of it a client may learn."""

import re
from typing import Any

from rasterio.errors import RasterioError

try:  # GDAL errors raised outside rasterio's own hierarchy
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - rasterio always ships it
    CPLE_BaseError = RasterioError

# What GDAL raises when a dataset is missing, unreadable or corrupt.
GDAL_ERRORS: tuple[type[BaseException], ...] = (RasterioError, CPLE_BaseError)


_HTTP_CODE = re.compile(r"HTTP response code: (\d{3})")


def summarize_gdal_error(reason: Any) -> str:
    """What a client may learn of a GDAL failure: an HTTP status, a timeout, or that the asset
    is not a readable raster (the same words whether a local file is missing or not)."""
    text = str(reason)
    if match := _HTTP_CODE.search(text):
        return f"HTTP {match.group(1)}"
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    return "not a readable raster"
