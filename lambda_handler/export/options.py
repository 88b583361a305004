"""Tile options of an export, applied the same way locally and sent to an endpoint."""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TileOptions:
    """What each tile is rendered with (titiler's query parameter names)."""

    assets: tuple[str, ...] = ()
    bidx: tuple[int, ...] = ()
    expression: str | None = None
    pixel_selection: str = "first"
    rescale: tuple[tuple[float, float], ...] = ()
    color_formula: str | None = None
    nodata: float | None = None
    resampling: str | None = None

    def query(self) -> list[tuple[str, str]]:
        """Query parameters for a tiler endpoint."""
        params: list[tuple[str, str]] = [("pixel_selection", self.pixel_selection)]
        params += [("assets", a) for a in self.assets]
        params += [("bidx", str(b)) for b in self.bidx]
        params += [("rescale", f"{lo},{hi}") for lo, hi in self.rescale]
        for name in ("expression", "color_formula", "nodata", "resampling"):
            value = getattr(self, name)
            if value is not None:
                params.append((name, str(value)))
        return params

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (fingerprints, pickling to worker processes)."""
        return asdict(self)


def render_locally(backend: Any, x: int, y: int, z: int, tile_size: int, options: TileOptions):
    """Render one tile in this process: (data, mask) or None when the tile is empty."""
    from rio_tiler.errors import EmptyMosaicError, NoAssetFoundError, TileOutsideBounds
    from rio_tiler.mosaic.methods import PixelSelectionMethod

    kwargs: dict[str, Any] = {
        "tilesize": tile_size,
        "pixel_selection": PixelSelectionMethod[options.pixel_selection].value(),
    }
    if options.assets:
        kwargs["assets"] = list(options.assets)
    if options.bidx:
        kwargs["indexes"] = list(options.bidx)
    if options.expression:
        kwargs["expression"] = options.expression
    if options.nodata is not None:
        kwargs["nodata"] = options.nodata
    if options.resampling:
        kwargs["resampling_method"] = options.resampling
    try:
        image, _ = backend.tile(x, y, z, **kwargs)
    except (NoAssetFoundError, EmptyMosaicError, TileOutsideBounds):
        return None
    if options.rescale:
        image.rescale(in_range=[tuple(r) for r in options.rescale])
    if options.color_formula:
        image.apply_color_formula(options.color_formula)
    mask = np.asarray(image.mask, dtype="uint8")
    if not mask.any():
        return None
    return np.asarray(image.data), mask
