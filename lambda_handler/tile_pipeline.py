"""One pipeline for reading and rendering a tile: the tile route, the batch handler (it runs the
API app) and the export's local workers all call `read_tile_image`.

`TileOptions` is the one set of tile parameters, under titiler's query names; `query()` gives
exactly the query parameters the tile route accepts for them (the export's endpoint mode sends
those), and `read_tile_image` reads the tile through `reading.read_tile` and applies the route's
pixel post-processing (`rendering.adjust_image`: rescale, then color formula). Encoding stays
with the caller (`rendering.encode_image`): the route encodes, the export keeps the arrays.

How the tile route calls it (its query dependencies already parsed):

    options = TileOptions(assets=..., bidx=..., expression=..., pixel_selection=...,
                          nodata=..., unscale=..., resampling=..., reproject=...,
                          buffer=..., padding=..., rescale=..., color_formula=...)
    image, used, timings = read_tile_image(backend, x, y, z, options, tilesize=size,
                                           threads=settings.threads, guard=guard)
    body, media_type = encode_image(image, output_format=format, colormap=colormap,
                                    return_mask=add_mask)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rio_tiler.models import ImageData
    from rio_tiler.mosaic.methods.base import MosaicMethodBase

    from lambda_handler.backends.base import MosaicJSONBackend
    from lambda_handler.reading import ReadGuard

# Reader threads per tile when the caller has no setting for it (rio-tiler's own default).
DEFAULT_THREADS = 10

# Field -> the tile route's query parameter, for the fields sent as one `name=value` each
# (None values are left out: the route's default applies).
_SCALAR_PARAMETERS = (
    "expression",
    "nodata",
    "unscale",
    "resampling",
    "reproject",
    "buffer",
    "padding",
    "color_formula",
)
# Field -> rio-tiler reader keyword, for the read options passed on when set.
_READER_KEYWORDS = {
    "nodata": "nodata",
    "unscale": "unscale",
    "resampling": "resampling_method",
    "reproject": "reproject_method",
    "buffer": "buffer",
    "padding": "padding",
}


@dataclass(frozen=True)
class TileOptions:
    """What a tile is read and rendered with, under the tile route's query parameter names.

    Attributes:
        assets: asset names (mosaics of STAC items only).
        bidx: band indexes (1-based); exclusive with `expression`.
        expression: rio-tiler band math, e.g. `b1/b2`.
        pixel_selection: rio-tiler mosaic method name (`first`, `highest`, `median`…).
        nodata: nodata value overriding the assets'.
        unscale: apply the assets' internal scale/offset.
        resampling: RasterIO resampling of the read; `reproject`: warp resampling.
        buffer/padding: pixels added around the tile / read around it.
        rescale: `(min, max)` input range, one for every band or one per band.
        color_formula: rio-color formula applied after rescale.
    """

    assets: tuple[str, ...] = ()
    bidx: tuple[int, ...] = ()
    expression: str | None = None
    pixel_selection: str = "first"
    nodata: float | None = None
    unscale: bool | None = None
    resampling: str | None = None
    reproject: str | None = None
    buffer: float | None = None
    padding: int | None = None
    rescale: tuple[tuple[float, float], ...] = ()
    color_formula: str | None = None

    def query(self) -> list[tuple[str, str]]:
        """The tile route's query parameters for these options (repeated names for lists)."""
        params: list[tuple[str, str]] = [("pixel_selection", self.pixel_selection)]
        params += [("assets", a) for a in self.assets]
        params += [("bidx", str(b)) for b in self.bidx]
        params += [("rescale", f"{lo},{hi}") for lo, hi in self.rescale]
        for name in _SCALAR_PARAMETERS:
            value = getattr(self, name)
            if value is not None:
                params.append((name, _query_value(value)))
        return params

    def reader_options(self) -> dict[str, Any]:
        """rio-tiler reader keyword arguments (the read half; rescale and color formula are
        applied to the read image)."""
        out: dict[str, Any] = {}
        if self.assets:
            out["assets"] = list(self.assets)
        if self.bidx:
            out["indexes"] = list(self.bidx)
        if self.expression:
            out["expression"] = self.expression
        for name, keyword in _READER_KEYWORDS.items():
            value = getattr(self, name)
            if value is not None:
                out[keyword] = value
        return out

    def pixel_selection_method(self) -> type[MosaicMethodBase]:
        """The rio-tiler mosaic method class (a fresh instance is made per tile)."""
        from rio_tiler.mosaic.methods import PixelSelectionMethod

        return PixelSelectionMethod[self.pixel_selection].value

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (fingerprints of an export's tile store)."""
        return asdict(self)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_assets_option(backend: MosaicJSONBackend, options: TileOptions) -> None:
    """InvalidReadOptionError (422 on `assets`) when asset names are asked of a mosaic whose
    assets are not STAC items."""
    from lambda_handler.backends.readers import is_stac_mosaic
    from lambda_handler.reading import InvalidReadOptionError

    if options.assets and not is_stac_mosaic(backend.mosaic_def):
        raise InvalidReadOptionError("assets", "only mosaics of STAC items have named assets")


def read_tile_image(
    backend: MosaicJSONBackend,
    x: int,
    y: int,
    z: int,
    options: TileOptions,
    tilesize: int = 256,
    threads: int = DEFAULT_THREADS,
    guard: ReadGuard | None = None,
) -> tuple[ImageData, list[str], list[tuple[str, float]]]:
    """Tile (x, y, z) of the backend's TMS read with `options` and post-processed as the tile
    route does: (image, assets used, timings in ms). The image is ready for `encode_image`.

    Raises what `reading.read_tile` raises (NoAssetFoundError when nothing covers the tile…),
    InvalidReadOptionError for `assets` on a COG mosaic, RenderError for a rescale or color
    formula that does not fit the image."""
    from lambda_handler.reading import read_tile
    from lambda_handler.rendering import adjust_image

    check_assets_option(backend, options)
    image, used, timings = read_tile(
        backend,
        x,
        y,
        z,
        pixel_selection=options.pixel_selection_method(),
        threads=threads,
        guard=guard,
        tilesize=tilesize,
        **options.reader_options(),
    )
    adjust_image(image, rescale=options.rescale, color_formula=options.color_formula)
    return image, used, timings
