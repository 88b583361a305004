"""Run an export: fan tiles out, keep each finished tile, assemble the COG."""

import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambda_handler.export.assemble import assemble, check_output
from lambda_handler.export.job import ExportOutput, ExportRun, ExportSource, ExportTiles
from lambda_handler.export.plan import ExportError, ExportPlan, plan_export
from lambda_handler.export.progress import ProgressSink
from lambda_handler.export.renderers import EndpointRenderer, LocalRenderer, make_renderer
from lambda_handler.export.store import TileStore


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


def export_mosaic(
    output: str | Path | ExportOutput,
    zoom: int,
    bbox: tuple[float, float, float, float] | None = None,
    geojson: dict | None = None,
    source: ExportSource | None = None,
    tiles: ExportTiles | None = None,
    run: ExportRun | None = None,
    **source_fields: Any,
) -> ExportReport:
    """Export an area (`bbox` or `geojson`, lon/lat) of a mosaic at `zoom` as one COG.

    Tiles render in worker processes from a backend URI (single machine) or are requested from
    a tiler endpoint (a batch Function URL or any tiler): `source=ExportSource(...)`, or its
    fields as keywords (`uri=...`, or `endpoint=..., mosaic_id=...`). `output` is a path or
    an `ExportOutput`. Finished tiles are kept in `{output}.tiles/`; running the same export
    again renders only the missing ones.
    """
    source = _source(source, source_fields)
    tiles = tiles or ExportTiles()
    run = run or ExportRun()
    if not isinstance(output, ExportOutput):
        output = ExportOutput(Path(output))
    plan: ExportPlan = plan_export(
        zoom,
        bbox=bbox,
        geojson=geojson,
        tile_scale=tiles.scale,
        options={**tiles.options.as_dict(), **source.identity()},
    )
    check_output(output.path, output.cog_profile)
    with closing(make_renderer(source, tiles, run)) as renderer:
        renderer.check(zoom)
        # Only once the source answers: a failed check must not leave a tile store behind.
        store = TileStore(output.path.with_name(output.path.name + ".tiles"), plan)
        report = _render_missing(plan, store, renderer, run, output.path)
    if report.failed and not run.allow_partial:
        return report
    assemble(plan, store, output.path, output.cog_profile)
    report.assembled = True
    if not output.keep_tiles:
        store.remove()
    return report


def _source(source: ExportSource | None, fields: dict[str, Any]) -> ExportSource:
    """The source given as an object or as keywords (README's `export_mosaic(..., uri=...)`)."""
    if source is not None and fields:
        raise ExportError(f"give the source as `source` or as keywords, not both: {list(fields)}")
    return source if source is not None else ExportSource(**fields)


def _render_missing(
    plan: ExportPlan,
    store: TileStore,
    renderer: LocalRenderer | EndpointRenderer,
    run: ExportRun,
    output: Path,
) -> ExportReport:
    """Render the tiles the store lacks, in a shuffled order; the report counts them."""
    done = store.done()
    todo = [tile for tile in plan.tiles if tile not in done]
    random.Random(run.seed).shuffle(todo)  # spread load over the mosaic, as the notebook does
    report = ExportReport(output=output, tiles=len(plan.tiles), reused=len(done))
    started = time.perf_counter()
    if todo:
        _render_all(plan, store, renderer, todo, report, run.progress or ProgressSink())
    report.seconds = time.perf_counter() - started
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
