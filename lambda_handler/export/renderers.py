"""Where tiles are rendered: worker processes on this machine, or a tiler endpoint over HTTP."""

import io
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

from lambda_handler.export.job import (
    DEFAULT_ENDPOINT_CONCURRENCY,
    ExportRun,
    ExportSource,
    ExportTiles,
)
from lambda_handler.tile_pipeline import TileOptions, read_tile_image

# A rendered tile: (data, mask), or None when the tile has no data.
TileResult = tuple[np.ndarray, np.ndarray | None] | None


class PermanentTileError(Exception):
    """A tile that must not be retried (4xx other than 429, invalid answer)."""


class RetryableTileError(Exception):
    """A tile worth retrying (timeout, dropped connection, 429, 5xx)."""


def check_zoom(zoom: int, minzoom: int | None, maxzoom: int | None) -> None:
    """An export zoom outside the mosaic's zooms would give nothing but empty tiles."""
    from lambda_handler.export.plan import ExportError

    if minzoom is not None and maxzoom is not None and not minzoom <= zoom <= maxzoom:
        raise ExportError(f"zoom {zoom} is outside the mosaic's zooms ({minzoom}-{maxzoom})")


# ---------------------------------------------------------------------------- local
_worker_backend: Any = None


def _init_worker(uri: str) -> None:
    global _worker_backend  # one backend per worker process, opened once (explicit cache)
    import signal

    from lambda_handler.backends import MosaicBackend

    # Ctrl-C reaches the whole process group: the parent stops the export and reports it once;
    # workers finish their tile instead of each printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    _worker_backend = MosaicBackend(uri)


def render_tile_arrays(
    backend: Any, x: int, y: int, z: int, tile_size: int, options: TileOptions
) -> TileResult:
    """One tile read and post-processed by the tile route's pipeline (the pixels the route's
    `.npy` answer holds): (data, mask), or None when the tile has no data."""
    from rio_tiler.errors import EmptyMosaicError, NoAssetFoundError, TileOutsideBounds

    try:
        image, _, _ = read_tile_image(backend, x, y, z, options, tilesize=tile_size)
    except (NoAssetFoundError, EmptyMosaicError, TileOutsideBounds):
        return None
    mask = np.asarray(image.mask, dtype="uint8")
    if not mask.any():
        return None
    return np.asarray(image.data), mask


def _render_in_worker(x: int, y: int, z: int, tile_size: int, options: TileOptions) -> TileResult:
    return render_tile_arrays(_worker_backend, x, y, z, tile_size, options)


def _start_workers_ignoring_sigint(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start every worker now, with SIGINT ignored while they are created: a new interpreter
    keeps an inherited SIG_IGN, so a Ctrl-C during a worker's start-up cannot print a traceback
    from it (the initializer covers the rest). A spawn pool starts one worker per submit."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may change signal handlers; workers start lazily then
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for _ in range(workers):
            pool.submit(os.getpid)
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class LocalRenderer:
    """Renders tiles from a backend URI in a pool of worker processes (single-machine mode)."""

    uri: str
    options: TileOptions
    workers: int

    def executor(self) -> Executor:
        """A process pool whose workers each open the mosaic once."""
        import multiprocessing

        # "spawn": GDAL and threads do not survive fork() reliably.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.uri,),
        )
        _start_workers_ignoring_sigint(pool, self.workers)
        return pool

    def submit(self, pool: Executor, x: int, y: int, z: int, tile_size: int):
        """Schedule one tile."""
        return pool.submit(_render_in_worker, x, y, z, tile_size, self.options)

    def check(self, zoom: int) -> None:
        """Fail early, with a clear message, when the mosaic is unreadable or lacks the zoom."""
        from lambda_handler.backends import MosaicBackend

        with MosaicBackend(self.uri) as backend:
            check_zoom(zoom, backend.minzoom, backend.maxzoom)

    def close(self) -> None:
        """Nothing to release: the worker pool ends with the run."""


# ---------------------------------------------------------------------------- endpoint
@dataclass
class EndpointRenderer:
    """Requests tiles as `.npy` from a tiler (a deployed batch Function URL or any tiler URL)."""

    endpoint: str
    mosaic_id: str
    options: TileOptions
    workers: int
    timeout: float = 60.0
    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 20.0
    sign: Callable[[str, str, dict[str, str]], dict[str, str]] | None = None
    on_request: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        import httpx

        self._client = httpx.Client(
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=self.workers, max_keepalive_connections=self.workers
            ),
        )

    def tile_url(self, x: int, y: int, z: int, scale: int) -> str:
        """URL of one tile, with the options as query parameters."""
        from urllib.parse import urlencode

        base = self.endpoint.rstrip("/")
        mosaic = quote(self.mosaic_id, safe="")
        suffix = f"@{scale}x" if scale > 1 else ""
        query = urlencode(self.options.query() + [("return_mask", "true")])
        return f"{base}/mosaics/{mosaic}/tiles/WebMercatorQuad/{z}/{x}/{y}{suffix}.npy?{query}"

    def executor(self) -> Executor:
        """Threads: the work is waiting on the network."""
        return ThreadPoolExecutor(max_workers=self.workers)

    def submit(self, pool: Executor, x: int, y: int, z: int, tile_size: int):
        """Schedule one tile."""
        scale = tile_size // 256
        return pool.submit(self.fetch_with_retries, x, y, z, scale)

    def _fetch_once(self, url: str) -> TileResult:
        import httpx

        headers = {"Accept": "application/x-binary"}
        if self.sign:
            headers = self.sign("GET", url, headers)
        if self.on_request:
            self.on_request()
        try:
            response = self._client.get(url, headers=headers)
        except (httpx.TimeoutException, httpx.TransportError) as err:
            raise RetryableTileError(f"{type(err).__name__}: {err}") from err
        status = response.status_code
        if status == 204 or status == 404:
            return None  # no asset / outside the mosaic: nodata, not an error
        if status == 429 or status >= 500:
            raise RetryableTileError(f"HTTP {status}: {response.text[:200]}")
        if status != 200:
            raise PermanentTileError(f"HTTP {status}: {response.text[:300]}")
        try:
            array = np.load(io.BytesIO(response.content), allow_pickle=False)
        except ValueError as err:
            # A truncated body (connection dropped mid-answer) is worth another try.
            raise RetryableTileError(
                f"unreadable .npy answer ({len(response.content)} bytes)"
            ) from err
        data, mask = array[:-1], array[-1].astype("uint8")
        if not mask.any():
            return None
        return data, mask

    def fetch_with_retries(self, x: int, y: int, z: int, scale: int) -> TileResult:
        """One tile, retried with exponential backoff and full jitter on transient failures."""
        url = self.tile_url(x, y, z, scale)
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._fetch_once(url)
            except RetryableTileError as err:
                if attempt == self.max_attempts:
                    raise RetryableTileError(f"gave up after {attempt} attempts: {err}") from err
                delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
                time.sleep(random.uniform(0, delay))
        raise AssertionError("unreachable")

    def check(self, zoom: int) -> None:
        """Fail early, with a clear message, when the mosaic is unknown or lacks the zoom."""
        import httpx

        from lambda_handler.export.plan import ExportError

        url = f"{self.endpoint.rstrip('/')}/mosaics/{quote(self.mosaic_id, safe='')}"
        headers = {"Accept": "application/json"}
        if self.sign:
            headers = self.sign("GET", url, headers)
        try:
            # The first request may meet a cold function (imports, route building): give it
            # more than a tile's timeout, which is tuned for warm renders.
            response = self._client.get(url, headers=headers, timeout=max(self.timeout, 30.0))
        except httpx.HTTPError as err:
            raise ExportError(f"cannot reach {url}: {err}") from err
        if response.status_code == 404:
            raise ExportError(f"mosaic {self.mosaic_id!r} not found at {self.endpoint}")
        if response.status_code != 200:
            raise ExportError(f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
        metadata = response.json()
        check_zoom(zoom, metadata.get("minzoom"), metadata.get("maxzoom"))

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def make_renderer(
    source: ExportSource, tiles: ExportTiles, run: ExportRun
) -> LocalRenderer | EndpointRenderer:
    """The renderer of a source: worker processes for a URI, HTTP requests for an endpoint."""
    import os

    if source.uri is not None:
        return LocalRenderer(
            uri=source.uri, options=tiles.options, workers=run.concurrency or os.cpu_count() or 1
        )
    return EndpointRenderer(
        endpoint=str(source.endpoint),
        mosaic_id=str(source.mosaic_id),
        options=tiles.options,
        workers=run.concurrency or DEFAULT_ENDPOINT_CONCURRENCY,
        max_attempts=run.max_attempts,
        sign=source.sign,
        on_request=run.on_request,
        timeout=source.request_timeout,
        backoff_base=run.backoff_base,
    )
