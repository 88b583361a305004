"""Reading tiles and points of a mosaic for the HTTP API.

Three things beyond rio-tiler's `BaseBackend.tile`:
- errors name the asset that could not be read (`AssetReadError`, answered as 424);
- candidates whose extent is known not to touch the tile are skipped before any GDAL open
  (`asset_extents`: the output is unchanged);
- the time spent searching, filtering and reading is returned for `Server-Timing`;
- every asset passes the allow-list before GDAL sees it, options are checked against the
  asset (band numbers, nodata in its data type) so bad input is a 422, each read runs under
  bounded GDAL HTTP timeouts and the request's deadline (`ReadGuard`), and error messages say
  what failed without GDAL's text (local paths, file existence, `/vsicurl/` forms).
"""

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import attr
import numpy
import rasterio
from rasterio.crs import CRS
from rio_tiler.errors import EmptyMosaicError, NoAssetFoundError, TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic.methods.base import MosaicMethodBase
from rio_tiler.mosaic.reader import mosaic_reader
from rio_tiler.utils import inherit_rasterio_env

from lambda_handler.asset_extents import asset_extents, filter_by_extent
from lambda_handler.backends.base import MosaicJSONBackend

# The tile route still imports it from here (the reader choice lives in the backends package).
from lambda_handler.deadline import Deadline
from lambda_handler.errors import MosaicError
from lambda_handler.gdal_errors import GDAL_ERRORS, summarize_gdal_error
from lambda_handler.url_policy import UrlNotAllowed, check_url


class AssetReadError(MosaicError):
    """An asset of the mosaic could not be opened or read (the reason is summarized: GDAL's
    text names local paths and tells whether a file exists)."""

    def __init__(self, asset: str, reason: Any):
        self.asset = asset
        super().__init__(f"could not read asset {asset}: {summarize_gdal_error(reason)}")


class AssetNotAllowedError(MosaicError):
    """A mosaic names an asset outside MOSAIC_API_ALLOWED_ASSET_PREFIXES (answered 403)."""

    def __init__(self, asset: str, reason: str):
        self.asset = asset
        super().__init__(f"the mosaic names a forbidden asset, not read: {reason}")


class InvalidReadOptionError(MosaicError, ValueError):
    """A read option does not fit the asset (band numbers, nodata): a 422 naming the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


_BAND = re.compile(r"\bb(\d+)\b")


def check_read_options(asset: str, count: int, dtype: str, kwargs: dict[str, Any]) -> None:
    """InvalidReadOptionError unless the bands asked for exist and nodata fits the data type."""
    indexes = kwargs.get("indexes")
    if indexes is not None:
        for index in [indexes] if isinstance(indexes, int) else indexes:
            if not 1 <= index <= count:
                raise InvalidReadOptionError(
                    "bidx", f"band {index} does not exist: asset {asset} has {count} band(s)"
                )
    expression = kwargs.get("expression")
    if expression:
        for number in _BAND.findall(expression):
            if not 1 <= int(number) <= count:
                raise InvalidReadOptionError(
                    "expression",
                    f"band b{int(number)} does not exist: asset {asset} has {count} band(s)",
                )
    nodata = kwargs.get("nodata")
    if nodata is not None and numpy.issubdtype(numpy.dtype(dtype), numpy.integer):
        info = numpy.iinfo(numpy.dtype(dtype))
        if not (numpy.isfinite(nodata) and float(nodata).is_integer()) or not (
            info.min <= nodata <= info.max
        ):
            raise InvalidReadOptionError(
                "nodata", f"{nodata} is not a value of the {dtype} data of asset {asset}"
            )


@dataclass
class ReadGuard:
    """What bounds the reads of one request: the asset allow-list, GDAL's HTTP timeouts and
    the request's deadline.

    `check_urls=False` (the default guard of `read_tile`/`read_point`, i.e. the library, the
    CLI and local exports) reads whatever the mosaic names, relative paths included, as
    `MosaicBackend.tile()` does; the API always passes a guard that checks."""

    allowed_prefixes: list[str] = field(default_factory=list)
    gdal_options: dict[str, str] = field(default_factory=dict)
    deadline: Deadline | None = None
    max_expression_length: int | None = None
    check_urls: bool = True

    def check_assets(self, assets: Sequence[str]) -> None:
        """AssetNotAllowedError naming the first asset outside the allow-list."""
        if not self.check_urls:
            return
        for asset in assets:
            try:
                check_url(str(asset), self.allowed_prefixes, "asset",
                          "MOSAIC_API_ALLOWED_ASSET_PREFIXES")  # fmt: skip
            except UrlNotAllowed as err:
                raise AssetNotAllowedError(str(asset), str(err)) from err

    def reader_options(self, backend: MosaicJSONBackend) -> dict[str, Any]:
        """The backend's reader options, plus the allow-list for readers that open further
        URLs themselves (the STAC item reader opens the hrefs of the item's assets)."""
        options = dict(backend.reader_options)
        reader = backend.reader
        if attr.has(reader) and "allowed_asset_prefixes" in attr.fields_dict(reader):
            options["allowed_asset_prefixes"] = self.allowed_prefixes
        return options

    def check_options(self, kwargs: dict[str, Any]) -> None:
        """422 for an expression longer than the settings allow (parsing it would recurse)."""
        expression = kwargs.get("expression")
        if (
            expression
            and self.max_expression_length
            and len(expression) > (self.max_expression_length)
        ):
            raise InvalidReadOptionError(
                "expression",
                f"the expression has {len(expression)} characters, more than "
                f"{self.max_expression_length} (MOSAIC_API_MAX_EXPRESSION_LENGTH)",
            )

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """GDAL options of the reads, the HTTP timeout shortened to the time left."""
        options = dict(self.gdal_options)
        if self.deadline is not None:
            self.deadline.check()
            cap = int(options.get("GDAL_HTTP_TIMEOUT", "30"))
            options["GDAL_HTTP_TIMEOUT"] = str(self.deadline.remaining_whole_seconds(cap))
        with rasterio.Env(**options):
            yield

    def reading(self, asset: str) -> Any:
        """Context of one asset read (deadline checked, asset named in a 504)."""
        if self.deadline is None:
            return contextlib.nullcontext()
        return self.deadline.read(asset)


@attr.s
class AssetReader(Reader):
    """rio-tiler's Reader whose failures name the asset and which records the asset's extent."""

    def __attrs_post_init__(self) -> None:
        """Open the dataset; a GDAL failure becomes AssetReadError naming it."""
        try:
            super().__attrs_post_init__()
        except GDAL_ERRORS as err:
            raise AssetReadError(str(self.input), err) from err
        if self.crs is not None:
            asset_extents.remember(str(self.input), self.crs, self.bounds)

    def _check(self, kwargs: dict[str, Any]) -> None:
        check_read_options(str(self.input), self.dataset.count, self.dataset.dtypes[0], kwargs)

    @contextlib.contextmanager
    def _named_failures(self) -> Iterator[None]:
        """A GDAL failure becomes AssetReadError naming the asset; a RecursionError (rio-tiler
        parses expressions with ast) a 422 on the expression."""
        try:
            yield
        except GDAL_ERRORS as err:
            raise AssetReadError(str(self.input), err) from err
        except RecursionError as err:
            raise InvalidReadOptionError("expression", "the expression is too deep") from err

    def tile(self, *args: Any, **kwargs: Any) -> ImageData:
        """Read a tile; a GDAL failure becomes AssetReadError naming the asset."""
        self._check(kwargs)
        with self._named_failures():
            return super().tile(*args, **kwargs)

    def point(self, *args: Any, **kwargs: Any) -> Any:
        """Read a point; a GDAL failure becomes AssetReadError naming the asset."""
        self._check(kwargs)
        with self._named_failures():
            return super().point(*args, **kwargs)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def read_tile(
    backend: MosaicJSONBackend,
    x: int,
    y: int,
    z: int,
    pixel_selection: type[MosaicMethodBase],
    threads: int,
    guard: ReadGuard | None = None,
    **kwargs: Any,
) -> tuple[ImageData, list[str], list[tuple[str, float]]]:
    """Tile (x, y, z) of the backend's TMS: (image, assets used, timings in ms).

    Raises NoAssetFoundError when no asset covers the tile (also when every candidate turns out
    to lie outside it), AssetReadError when an asset cannot be read, AssetNotAllowedError for
    an asset outside the allow-list, DeadlineExceededError when the request's time is up.
    """
    guard = guard or ReadGuard(check_urls=False)
    guard.check_options(kwargs)
    timings: list[tuple[str, float]] = []
    start = time.perf_counter()
    assets = backend.assets_for_tile(x, y, z)
    timings.append(("search", _ms(start)))
    if not assets:
        raise NoAssetFoundError(f"no asset found for tile {z}-{x}-{y}")

    start = time.perf_counter()
    candidates = filter_by_extent(assets, backend.tms, x, y, z)
    timings.append(("filter", _ms(start)))
    if not candidates:
        raise NoAssetFoundError(f"no asset intersects tile {z}-{x}-{y}")

    guard.check_assets(candidates)
    tms, options, reader = backend.tms, guard.reader_options(backend), backend.reader

    start = time.perf_counter()
    # Seconds spent opening and reading assets, summed over the reader threads (for the
    # Server-Timing breakdown: the rest of the "mosaic" wall time is waiting and merging).
    spent = {"open": 0.0, "read": 0.0}
    spent_lock = threading.Lock()
    with guard.environment():

        @inherit_rasterio_env  # the GDAL options above, in the reader threads too
        def _reader(asset: str, x: int, y: int, z: int, **kw: Any) -> ImageData:
            with guard.reading(str(asset)):
                opened = time.perf_counter()
                with reader(asset, tms=tms, **options) as src:
                    read = time.perf_counter()
                    try:
                        return src.tile(x, y, z, **kw)
                    finally:
                        done = time.perf_counter()
                        with spent_lock:
                            spent["open"] += read - opened
                            spent["read"] += done - read

        image, used = _mosaic(candidates, _reader, x, y, z, pixel_selection, threads, kwargs)
    timings.append(("open", round(spent["open"] * 1000, 2)))
    timings.append(("read", round(spent["read"] * 1000, 2)))
    timings.append(("mosaic", _ms(start)))
    return image, [str(a) for a in used], timings


def _mosaic(
    candidates: list[str],
    reader: Any,
    x: int,
    y: int,
    z: int,
    pixel_selection: type[MosaicMethodBase],
    threads: int,
    kwargs: dict[str, Any],
) -> tuple[ImageData, list[str]]:
    try:
        return mosaic_reader(
            candidates,
            reader,
            x,
            y,
            z,
            pixel_selection=pixel_selection,
            # One candidate needs no thread pool; more threads than candidates are idle.
            threads=min(threads, len(candidates)) if len(candidates) > 1 else 0,
            allowed_exceptions=(TileOutsideBounds,),
            **kwargs,
        )
    except EmptyMosaicError as err:
        raise NoAssetFoundError(f"no data in tile {z}-{x}-{y}") from err


def read_point(
    backend: MosaicJSONBackend,
    lon: float,
    lat: float,
    coord_crs: CRS,
    threads: int,
    guard: ReadGuard | None = None,
    **kwargs: Any,
) -> list[tuple[str, Any]]:
    """Values of every asset at a point ([] when no asset covers it), under the guard."""
    guard = guard or ReadGuard(check_urls=False)
    guard.check_options(kwargs)
    assets = backend.assets_for_point(lon, lat, coord_crs=coord_crs)
    if not assets:
        return []
    guard.check_assets(assets)
    backend.reader_options = guard.reader_options(backend)
    with guard.environment():
        try:
            return backend.point(lon, lat, coord_crs=coord_crs, threads=threads, **kwargs)
        except (NoAssetFoundError, EmptyMosaicError):
            return []
