"""Run an export: fan tiles out, keep each finished tile, assemble the COG."""

import os
import random
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambda_handler.export.assemble import assemble, check_output
from lambda_handler.export.options import TileOptions
from lambda_handler.export.plan import ExportError, ExportPlan, plan_export
from lambda_handler.export.renderers import EndpointRenderer, LocalRenderer
from lambda_handler.export.store import TileStore

DEFAULT_ENDPOINT_CONCURRENCY = 50  # well under a Lambda account's default 1,000


@dataclass
class ExportReport:
    """What an export did."""

    output: Path
    tiles: int
    rendered: int = 0
    reused: int = 0
    empty: int = 0
    failed: dict[tuple[int, int], str] = field(default_factory=dict)
    seconds: float = 0.0
    assembled: bool = False

    @property
    def tiles_per_second(self) -> float:
        """Rendered tiles per second of rendering."""
        return self.rendered / self.seconds if self.seconds else 0.0


class ProgressSink:
    """Progress callbacks; the CLI shows them with rich, the Python API may ignore them."""

    def start(self, total: int, already_done: int) -> None:  # noqa: D102
        pass

    def advance(self, failed: bool) -> None:  # noqa: D102
        pass

    def stop(self) -> None:  # noqa: D102
        pass


class RichProgress(ProgressSink):
    """A rich progress bar: tiles done/failed, throughput and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("Tiles"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:.1f} tiles/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._failed = 0
        self._done = 0
        self._started = time.perf_counter()

    def start(self, total: int, already_done: int) -> None:  # noqa: D102
        self._progress.start()
        self._task = self._progress.add_task(
            "export", total=total, completed=already_done, failed=0, rate=0.0
        )
        self._started = time.perf_counter()

    def advance(self, failed: bool) -> None:  # noqa: D102
        self._done += 1
        self._failed += int(failed)
        rate = self._done / max(1e-9, time.perf_counter() - self._started)
        self._progress.update(self._task, advance=1, failed=self._failed, rate=rate)

    def stop(self) -> None:  # noqa: D102
        self._progress.stop()


def export_mosaic(
    output: str | Path,
    zoom: int,
    bbox: tuple[float, float, float, float] | None = None,
    geojson: dict | None = None,
    uri: str | None = None,
    endpoint: str | None = None,
    mosaic_id: str | None = None,
    tile_scale: int = 1,
    options: TileOptions | None = None,
    concurrency: int | None = None,
    sign: Callable[[str, str, dict[str, str]], dict[str, str]] | None = None,
    progress: ProgressSink | None = None,
    cog_profile: str = "deflate",
    keep_tiles: bool = False,
    max_attempts: int = 6,
    seed: int | None = None,
    on_request: Callable[[], None] | None = None,
    allow_partial: bool = False,
    request_timeout: float = 60.0,
    backoff_base: float = 0.5,
) -> ExportReport:
    """Export an area of a mosaic as one COG.

    Tiles render in worker processes from `uri` (single machine) or are requested from
    `endpoint` for `mosaic_id` (a batch Function URL or any tiler). Finished tiles are kept in
    `{output}.tiles/`; running the same export again renders only the missing ones.
    """
    options = options or TileOptions()
    if (uri is None) == (endpoint is None):
        raise ExportError("give either a backend URI (local rendering) or an endpoint")
    if endpoint is not None and not mosaic_id:
        raise ExportError("an endpoint export needs the mosaic id")
    source = {"uri": uri} if uri else {"endpoint": endpoint, "mosaic_id": mosaic_id}
    plan: ExportPlan = plan_export(
        zoom,
        bbox=bbox,
        geojson=geojson,
        tile_scale=tile_scale,
        options={**options.as_dict(), **source},
    )
    output = Path(output)
    check_output(output, cog_profile)
    if uri is not None:
        renderer: LocalRenderer | EndpointRenderer = LocalRenderer(
            uri=uri, options=options, workers=concurrency or os.cpu_count() or 1
        )
    else:
        renderer = EndpointRenderer(
            endpoint=endpoint,
            mosaic_id=mosaic_id,
            options=options,
            workers=concurrency or DEFAULT_ENDPOINT_CONCURRENCY,
            max_attempts=max_attempts,
            sign=sign,
            on_request=on_request,
            timeout=request_timeout,
            backoff_base=backoff_base,
        )
    try:
        renderer.check(zoom)
    except BaseException:
        if isinstance(renderer, EndpointRenderer):
            renderer.close()
        raise
    # Only once the source answers: a failed check must not leave a tile store behind.
    store = TileStore(output.with_name(output.name + ".tiles"), plan)
    done = store.done()
    todo = [tile for tile in plan.tiles if tile not in done]
    random.Random(seed).shuffle(todo)  # spread load over the mosaic, as the notebook does
    report = ExportReport(output=output, tiles=len(plan.tiles), reused=len(done))
    progress = progress or ProgressSink()
    started = time.perf_counter()
    if todo:
        _render_all(plan, store, renderer, todo, report, progress)
    report.seconds = time.perf_counter() - started
    if isinstance(renderer, EndpointRenderer):
        renderer.close()

    if report.failed and not allow_partial:
        return report
    assemble(plan, store, output, cog_profile)
    report.assembled = True
    if not keep_tiles:
        store.remove()
    return report


def _render_all(
    plan: ExportPlan,
    store: TileStore,
    renderer: LocalRenderer | EndpointRenderer,
    todo: list[tuple[int, int]],
    report: ExportReport,
    progress: ProgressSink,
) -> None:
    """Keep at most a few tiles per worker in flight, so memory stays bounded."""
    in_flight_limit = max(2, renderer.workers * 2)
    queue = iter(todo)
    pending: dict[Future, tuple[int, int]] = {}
    progress.start(len(plan.tiles), report.reused)
    pool = renderer.executor()
    try:
        while True:
            while len(pending) < in_flight_limit:
                tile = next(queue, None)
                if tile is None:
                    break
                pending[renderer.submit(pool, tile[0], tile[1], plan.zoom, plan.tile_size)] = tile
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                x, y = pending.pop(future)
                try:
                    result: Any = future.result()
                except Exception as err:  # recorded per tile and reported at the end
                    report.failed[(x, y)] = f"{type(err).__name__}: {err}"
                    progress.advance(failed=True)
                    continue
                if result is None:
                    store.save(x, y, None, None)
                    report.empty += 1
                else:
                    store.save(x, y, *result)
                report.rendered += 1
                progress.advance(failed=False)
    finally:
        # On Ctrl-C or a crash, drop what has not started: everything finished is on disk.
        pool.shutdown(wait=True, cancel_futures=True)
        progress.stop()
