"""Encoding tiles as images: formats, rescaling, colormaps, masks.

`ImageFormat` and `RenderError` are used by the API at startup: numpy, rasterio and rio-tiler
are imported by the functions that encode, on the first tile.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lambda_handler.errors import MosaicError

if TYPE_CHECKING:
    from rio_tiler.models import ImageData


class RenderError(MosaicError, ValueError):
    """The image cannot be encoded as asked (answered as 422 naming the parameter)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class ImageFormat(StrEnum):
    """Output formats of tiles."""

    png = "png"
    jpeg = "jpeg"
    jpg = "jpg"
    webp = "webp"
    tif = "tif"
    npy = "npy"

    @property
    def driver(self) -> str:
        """GDAL driver (or rio-tiler pseudo-driver) writing this format."""
        return _DRIVERS[self.value]

    @property
    def media_type(self) -> str:
        """MIME type of the format."""
        return _MEDIA_TYPES[self.value]


_DRIVERS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "webp": "WEBP",
    "tif": "GTIFF",
    "npy": "NPY",
}
_MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "tif": "image/tiff; application=geotiff",
    "npy": "application/x-binary",
}
# Formats able to carry a mask: the default format is png when a tile has holes, else jpeg
# (titiler's rule: the smallest format that does not lose the mask).
_GDAL_OPTIONS: dict[str, dict[str, Any]] = {
    # zlevel 1: a 256 px tile encodes in less than half the time of level 6 (titiler's)
    # for ~13 % more bytes; the pixels are the same (benchmarks/bench_tiles_deployed.py).
    "PNG": {"zlevel": 1},
    "JPEG": {"quality": 85},
    "WEBP": {"quality": 85},
    "GTIFF": {"compress": "deflate"},
}


def default_format(image: ImageData) -> ImageFormat:
    """png when the tile has masked pixels, jpeg otherwise."""
    import numpy

    return ImageFormat.png if numpy.ma.getmaskarray(image.array).any() else ImageFormat.jpeg


def parse_rescale(text: str) -> tuple[float, float]:
    """One `min,max` input range of `rescale` (brackets allowed, as titiler's `[0,2000]`).

    The API's `rescale` parameter and the CLI's `--rescale` option both parse with this, so
    they accept the same ranges. Raises ValueError saying what is wrong with `text`."""
    parts = text.strip("[]").split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError as err:
        raise ValueError(f"expected 'min,max', got {text!r}") from err
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"range must be finite, got {text!r}")
    return low, high


def adjust_image(
    image: ImageData,
    rescale: Sequence[tuple[float, float]] | None = None,
    color_formula: str | None = None,
) -> ImageData:
    """Rescale, then apply the color formula, in place (and return `image`).

    The pixel post-processing of a tile, apart from its encoding: the tile route and the
    export's local workers both call it, so an exported tile holds the route's pixels."""
    if rescale:
        if len(rescale) not in (1, image.count):
            raise RenderError(
                "rescale",
                f"rescale has {len(rescale)} ranges for {image.count} band(s): give one "
                "'min,max' range, or one per band",
            )
        image.rescale(in_range=[tuple(r) for r in rescale])
    if color_formula:
        try:
            image.apply_color_formula(color_formula)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise RenderError("color_formula", f"cannot apply {color_formula!r}: {err}") from err
    return image


def encode_image(
    image: ImageData,
    output_format: ImageFormat | None = None,
    colormap: Any = None,
    return_mask: bool = True,
) -> tuple[bytes, str]:
    """Encode an (adjusted) image: (body, media type); RenderError names the faulty parameter.

    An automatic format is 8-bit (see `_to_8bit`); a colormap needs one band; PNG, JPEG and
    WEBP hold at most 4 bands."""
    from rasterio.errors import RasterioError
    from rio_tiler.errors import InvalidDatatypeWarning, RioTilerError

    fmt = output_format or default_format(image)
    if output_format is None and colormap is None:
        _to_8bit(image)
    _check_encodable(image, fmt, colormap)
    try:
        with warnings.catch_warnings():
            # rio-tiler rescales data the format cannot hold and says so: that is expected here.
            warnings.simplefilter("ignore", InvalidDatatypeWarning)
            body = image.render(
                add_mask=return_mask,
                img_format=fmt.driver,
                colormap=colormap,
                **_GDAL_OPTIONS.get(fmt.driver, {}),
            )
    except (RioTilerError, RasterioError, ValueError, TypeError) as err:
        raise RenderError("format", f"cannot encode the tile as {fmt.value}: {err}") from err
    return body, fmt.media_type


def _to_8bit(image: ImageData) -> None:
    """As titiler: an automatic format (PNG or JPEG, by the mask) is always 8-bit, so a tile
    does not change type with its mask; values are scaled from the dataset statistics, else
    the data type's range."""
    if str(image.data.dtype) == "uint8":
        return
    from rasterio.dtypes import dtype_ranges

    ranges = image.dataset_statistics or [dtype_ranges[str(image.data.dtype)]]
    image.rescale(in_range=ranges)


def _check_encodable(image: ImageData, fmt: ImageFormat, colormap: Any) -> None:
    if colormap is not None and image.count != 1:
        raise RenderError(
            "colormap",
            f"a colormap applies to 1-band images, this one has {image.count} bands: "
            "select one band with bidx or expression",
        )
    if fmt.driver in ("JPEG", "WEBP", "PNG") and image.count > 4:
        raise RenderError(
            "format",
            f"{fmt.value} holds at most 4 bands, this image has {image.count}: "
            "select bands with bidx or expression",
        )
