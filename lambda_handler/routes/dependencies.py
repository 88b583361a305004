"""Query parameters of the API as small dataclasses (titiler's names and meanings).

Each dataclass is a FastAPI dependency: its fields are query parameters, validation problems
answer 422 naming the parameter.

Nothing here imports rasterio, rio-tiler or morecantile at module level (the Lambda cold start
builds the app without them): the names FastAPI validates (TileMatrixSets, colormaps, pixel
selection and resampling methods) are `Literal` types built from the libraries' data files or
from constants, which tests/test_imports.py checks against the libraries themselves.
"""

import importlib
import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import Field

from lambda_handler.api_errors import ApiError
from lambda_handler.rendering import parse_rescale
from lambda_handler.settings import ApiSettings

if TYPE_CHECKING:
    import morecantile
    from rasterio.crs import CRS


def _data_files(
    package: str, folder: str, suffixes: tuple[str, ...], env_var: str, recursive: bool
) -> list[str]:
    """Paths of the data files a library registers by name (file stem), found without
    importing it.

    Mirrors how morecantile (TileMatrixSets) and rio-tiler (colormaps) find theirs: the
    package's data folder, then the folder named by an environment variable.
    """
    spec = importlib.util.find_spec(package)
    locations = (spec.submodule_search_locations or []) if spec else []
    folders = [os.path.join(location, folder) for location in locations]
    if os.environ.get(env_var):
        folders.append(os.environ[env_var])
    paths = []
    for top in folders:
        # os.walk: a third of pathlib.glob's time for rio-tiler's 200+ colormaps.
        for directory, subdirectories, files in os.walk(top):
            paths += [os.path.join(directory, f) for f in files if f.endswith(suffixes)]
            if not recursive:
                subdirectories.clear()
    return paths


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def tms_ids() -> list[str]:
    """Ids of the TileMatrixSets morecantile knows, in `morecantile.tms.list()`'s order."""
    paths = _data_files("morecantile", "data", (".json",), "TILEMATRIXSET_DIRECTORY", False)
    # morecantile keys the sorted paths (pathlib order) of both folders by stem.
    ordered = sorted(paths, key=lambda p: PurePath(p).parts)
    names = list(dict.fromkeys(_stem(p) for p in ordered))
    return names or importlib.import_module("morecantile").tms.list()


def colormap_names() -> list[str]:
    """Names of rio-tiler's colormaps, sorted (as `sorted(rio_tiler.colormap.cmap.list())`)."""
    paths = _data_files("rio_tiler", "cmap_data", (".npy", ".json"), "COLORMAP_DIRECTORY", True)
    names = {_stem(p) for p in paths}
    return sorted(names or importlib.import_module("rio_tiler.colormap").cmap.list())


# rio_tiler.mosaic.methods.PixelSelectionMethod's names, in its order.
PIXEL_SELECTION_METHODS = (
    "first",
    "highest",
    "lowest",
    "mean",
    "median",
    "stdev",
    "lastbandlow",
    "lastbandhigh",
    "count",
)
# rio_tiler.types.RIOResampling and WarpResampling.
RIO_RESAMPLING_METHODS = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "gauss",
    "rms",
)
WARP_RESAMPLING_METHODS = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "max",
    "min",
    "med",
    "q1",
    "q3",
    "sum",
    "rms",
)

TileMatrixSetId = Literal[tuple(tms_ids())]  # type: ignore[valid-type]
PixelSelectionName = Literal[PIXEL_SELECTION_METHODS]  # type: ignore[valid-type]
ColorMapName = Literal[tuple(colormap_names())]  # type: ignore[valid-type]
RIOResampling = Literal[RIO_RESAMPLING_METHODS]  # type: ignore[valid-type]
WarpResampling = Literal[WARP_RESAMPLING_METHODS]  # type: ignore[valid-type]


def invalid(field_name: str, message: str) -> ApiError:
    """A 422 naming a query parameter."""
    return ApiError(422, f"{field_name}: {message}", field=field_name)


def get_settings(request: Request) -> ApiSettings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_tms(tms_id: str) -> "morecantile.TileMatrixSet":
    """The TileMatrixSet named `tms_id` (validated by the Literal type already)."""
    import morecantile

    return morecantile.tms.get(tms_id)


def parse_crs(value: str | None, field_name: str = "coord_crs") -> "CRS | None":
    """A CRS from user input, or 422 naming the parameter."""
    if value is None:
        return None
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(value)
    except Exception as err:  # rasterio raises CRSError, but odd input can raise others
        raise invalid(field_name, f"invalid CRS {value!r}: {err}") from err


def _given(**options: Any) -> dict[str, Any]:
    """The reader options that were given (empty lists and zeros are not)."""
    return {k: v for k, v in options.items() if v}


@dataclass
class LayerParams:
    """Which bands: band indexes, a band-math expression, or STAC asset names."""

    indexes: Annotated[
        list[Annotated[int, Field(ge=1)]] | None,
        Query(alias="bidx", title="Band indexes", description="Dataset band indexes (1-based)."),
    ] = None
    expression: Annotated[
        str | None,
        Query(description="rio-tiler band math expression, e.g. `b1/b2` or `b1;b2+b3`."),
    ] = None
    assets: Annotated[
        list[str] | None,
        Query(description="Asset names, for mosaics of STAC items only."),
    ] = None

    def __post_init__(self) -> None:
        if self.indexes is not None and any(i < 1 for i in self.indexes):
            raise invalid("bidx", f"band indexes start at 1, got {self.indexes}")
        if self.indexes and self.expression:
            raise invalid("expression", "use either bidx or expression, not both")
        if self.expression is not None and not self.expression.strip():
            raise invalid("expression", "the expression is empty")

    def as_dict(self) -> dict[str, Any]:
        """Reader keyword arguments."""
        return _given(indexes=self.indexes, expression=self.expression, assets=self.assets)


@dataclass
class DatasetParams:
    """How assets are read: nodata override, scale/offset, resampling."""

    nodata: Annotated[
        str | None,
        Query(description="Overwrite the assets' nodata value: a number, `nan`, `inf` or `-inf`."),
    ] = None
    unscale: Annotated[
        bool | None, Query(description="Apply the internal scale/offset. Defaults to false.")
    ] = None
    resampling_method: Annotated[
        RIOResampling | None,
        Query(alias="resampling", description="RasterIO resampling. Defaults to `nearest`."),
    ] = None
    reproject_method: Annotated[
        WarpResampling | None,
        Query(alias="reproject", description="Warp resampling (reprojection). Default nearest."),
    ] = None
    nodata_value: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.nodata is not None:
            try:
                self.nodata_value = float(self.nodata)
            except ValueError as err:
                raise invalid("nodata", f"not a number: {self.nodata!r}") from err

    def as_dict(self) -> dict[str, Any]:
        """Reader keyword arguments."""
        # `is not None`: unscale=false is an answer, not an absence.
        options = {
            "nodata": self.nodata_value,
            "unscale": self.unscale,
            "resampling_method": self.resampling_method,
            "reproject_method": self.reproject_method,
        }
        return {k: v for k, v in options.items() if v is not None}


@dataclass
class TileParams:
    """Tile geometry: size, buffer and padding."""

    tilesize: Annotated[
        int | None, Query(gt=0, description="Tile size in pixels (default 256 × scale).")
    ] = None
    buffer: Annotated[
        float | None,
        Query(
            gt=0,
            description="Pixels added on each side (a multiple of 0.5): the tile grows to "
            "tilesize + 2 × buffer.",
        ),
    ] = None
    padding: Annotated[
        int | None,
        Query(ge=0, description="Pixels read around the tile to avoid resampling artefacts."),
    ] = None

    def __post_init__(self) -> None:
        if self.buffer is not None and (
            not math.isfinite(self.buffer) or (self.buffer * 2) % 1 != 0
        ):
            raise invalid("buffer", f"must be a multiple of 0.5, got {self.buffer}")
        if self.padding is not None and self.padding > 512:
            raise invalid("padding", f"at most 512 pixels, got {self.padding}")

    def size(self, scale: int, settings: ApiSettings) -> int:
        """The tile size at `scale` (buffer and padding go to the reader with the tile's
        options); 422 when the tile would be too large."""
        size = self.tilesize or 256 * scale
        total = size + 2 * (self.buffer or 0)
        if total > settings.max_tile_size:
            raise invalid(
                "tilesize",
                f"tiles are at most {settings.max_tile_size} pixels wide, asked {total:g}",
            )
        return size


@dataclass
class RenderParams:
    """How a tile becomes an image: rescaling, colormap, mask."""

    rescale: Annotated[
        list[str] | None,
        Query(
            description="Comma-delimited `min,max` input range; repeat for several bands.",
            examples=["0,2000"],
        ),
    ] = None
    colormap_name: Annotated[ColorMapName | None, Query(description="Colormap name.")] = None
    colormap: Annotated[
        str | None,
        Query(description='JSON-encoded colormap, e.g. `{"1": [255, 0, 0, 255]}`.'),
    ] = None
    return_mask: Annotated[
        bool | None, Query(description="Add the mask to the image (alpha). Defaults to true.")
    ] = None
    color_formula: Annotated[
        str | None,
        Query(
            description="rio-color formula applied after rescale, e.g. `gamma RGB 3.5, "
            "saturation 1.7, sigmoidal RGB 15 0.35` (titiler's parameter).",
            max_length=1000,
        ),
    ] = None
    # The names of cogeo-mosaic's distributed-processing notebook (an older tiler's): refused
    # with the parameter to use, never silently ignored (the tile would look plausible).
    bands: Annotated[
        str | None, Query(description="Not supported: use `bidx` (repeat it per band).")
    ] = None
    color_ops: Annotated[str | None, Query(description="Not supported: use `color_formula`.")] = (
        None
    )
    expr: Annotated[str | None, Query(description="Not supported: use `expression`.")] = None
    ranges: list[tuple[float, float]] | None = field(init=False, default=None)
    colormap_value: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._refuse_foreign_names()
        if self.color_formula is not None:
            _check_color_formula(self.color_formula)
        if self.rescale:
            self.ranges = []
            for text in self.rescale:
                try:
                    self.ranges.append(parse_rescale(text))
                except ValueError as err:
                    raise invalid("rescale", str(err)) from err
        self.colormap_value = self._colormap()

    def _refuse_foreign_names(self) -> None:
        for name, instead in (
            ("bands", "bidx (repeated: bidx=4&bidx=3&bidx=2)"),
            ("color_ops", "color_formula"),
            ("expr", "expression (bands as b1, b2…)"),
        ):
            if getattr(self, name) is not None:
                raise invalid(name, f"not a parameter of this tiler: use {instead}")

    def _colormap(self) -> Any:
        """The colormap named or given (None: none)."""
        if self.colormap_name and self.colormap:
            raise invalid("colormap", "use either colormap_name or colormap, not both")
        if self.colormap_name:
            from rio_tiler.colormap import cmap

            return cmap.get(self.colormap_name)
        if self.colormap:
            return _parse_colormap(self.colormap)
        return None

    @property
    def add_mask(self) -> bool:
        """Whether the mask goes into the image."""
        return True if self.return_mask is None else self.return_mask


def _check_color_formula(formula: str) -> None:
    from color_operations import parse_operations

    try:
        operations = list(parse_operations(formula))
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise invalid("color_formula", f"invalid formula: {err}") from err
    if not operations:
        raise invalid("color_formula", "the formula has no operation")


def _parse_colormap(text: str) -> Any:
    from rio_tiler.colormap import parse_color

    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return {int(k): parse_color(v) for k, v in value.items()}
        if isinstance(value, list):  # interval colormap: [[[min, max], color], ...]
            return [((float(a), float(b)), parse_color(c)) for (a, b), c in value]
    except Exception as err:  # any malformed JSON/colour is the caller's mistake
        raise invalid("colormap", f"invalid colormap: {err}") from err
    raise invalid("colormap", "expected a JSON object {value: color} or a list of intervals")


def pixel_selection_dependency(
    pixel_selection: Annotated[
        PixelSelectionName, Query(description="Pixel selection method.")
    ] = "first",
) -> str:
    """The name of rio-tiler's mosaic method (`TileOptions.pixel_selection`)."""
    return pixel_selection
