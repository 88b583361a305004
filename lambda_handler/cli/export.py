"""The `export` command: an area of a mosaic as one Cloud-Optimized GeoTIFF."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lambda_handler.cli.console import say
from lambda_handler.cli.errors import CliError, CliInterrupted

if TYPE_CHECKING:
    from lambda_handler.export import ExportReport
    from lambda_handler.export.job import Signer

# How many failed tiles are listed one by one before the summary line.
_LISTED_FAILURES = 20


def export(
    output: Annotated[Path, typer.Argument(help="Output COG path.")],
    uri: Annotated[
        str | None, typer.Option(help="Backend URI: render tiles here, in worker processes.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Tiler or batch Function URL rendering the tiles.")
    ] = None,
    mosaic_id: Annotated[str | None, typer.Option(help="Mosaic id on the endpoint.")] = None,
    bbox: Annotated[
        str | None, typer.Option(help="Area as west,south,east,north (degrees).")
    ] = None,
    geojson: Annotated[Path | None, typer.Option(help="Area as a GeoJSON file.")] = None,
    zoom: Annotated[int | None, typer.Option(help="Zoom of the tiles.")] = None,
    resolution: Annotated[
        float | None, typer.Option(help="Target resolution in metres (instead of --zoom).")
    ] = None,
    tile_scale: Annotated[int, typer.Option(help="Tiles of 256 x scale pixels (1-4).")] = 1,
    assets: Annotated[list[str] | None, typer.Option("--assets", help="Assets (STAC).")] = None,
    bidx: Annotated[list[int] | None, typer.Option("--bidx", help="Band indexes.")] = None,
    expression: Annotated[str | None, typer.Option(help="Band math expression.")] = None,
    pixel_selection: Annotated[str, typer.Option(help="Pixel selection method.")] = "first",
    rescale: Annotated[
        list[str] | None, typer.Option("--rescale", help="min,max per band (repeat).")
    ] = None,
    color_formula: Annotated[str | None, typer.Option(help="rio-color formula.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Tiles in flight (default: CPUs, or 50 for endpoints).")
    ] = None,
    sigv4: Annotated[
        bool | None,
        typer.Option(
            "--sigv4/--no-sigv4",
            help="Sign requests with AWS SigV4 (default: for *.on.aws Function URLs).",
        ),
    ] = None,
    cog_profile: Annotated[str, typer.Option(help="rio-cogeo profile.")] = "deflate",
    keep_tiles: Annotated[
        bool, typer.Option(help="Keep the rendered tiles after assembly.")
    ] = False,
    max_attempts: Annotated[int, typer.Option(help="Attempts per tile on transient errors.")] = 6,
    allow_partial: Annotated[
        bool, typer.Option(help="Assemble even if some tiles failed (left as nodata).")
    ] = False,
) -> None:
    """Export an area of a mosaic as one Cloud-Optimized GeoTIFF (resumable)."""
    from lambda_handler.export import (
        ExportOutput,
        ExportRun,
        ExportSource,
        ExportTiles,
        RichProgress,
        TileOptions,
        export_mosaic,
    )

    zoom = _zoom(zoom, resolution)
    area_bbox = _parse_bbox(bbox) if bbox else None
    area_geojson = _read_area(geojson) if geojson else None
    tile_options = TileOptions(
        assets=tuple(assets or ()),
        bidx=tuple(bidx or ()),
        expression=expression,
        pixel_selection=pixel_selection,
        rescale=_rescale_ranges(rescale or []),
        color_formula=color_formula,
    )
    source = ExportSource(
        uri=uri, endpoint=endpoint, mosaic_id=mosaic_id, sign=_signer(endpoint, sigv4)
    )
    run = ExportRun(
        concurrency=concurrency,
        max_attempts=max_attempts,
        allow_partial=allow_partial,
        progress=RichProgress(),
    )
    with _interrupt_keeps_tiles(output):
        report = export_mosaic(
            ExportOutput(output, cog_profile=cog_profile, keep_tiles=keep_tiles),
            zoom,
            bbox=area_bbox,
            geojson=area_geojson,
            source=source,
            tiles=ExportTiles(options=tile_options, scale=tile_scale),
            run=run,
        )
    _report(report, zoom, output)


# ---------------------------------------------------------------------------- options
def _zoom(zoom: int | None, resolution: float | None) -> int:
    """The zoom asked for, or the one matching a resolution in metres."""
    from lambda_handler.export.plan import zoom_for_resolution

    if (zoom is None) == (resolution is None):
        raise CliError("give exactly one of --zoom or --resolution")
    return zoom if zoom is not None else zoom_for_resolution(resolution)


def _parse_bbox(text: str) -> tuple[float, float, float, float]:
    """`west,south,east,north` in degrees."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise CliError(f"invalid --bbox {text!r}: expected four numbers") from err
    if len(values) != 4:
        raise CliError(f"invalid --bbox {text!r}: expected west,south,east,north")
    return values


def _read_area(path: Path) -> dict[str, Any]:
    """A GeoJSON area from a file."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CliError(f"cannot read GeoJSON area {path}: {err}") from err


def _rescale_ranges(texts: list[str]) -> tuple[tuple[float, float], ...]:
    """One (min, max) range per `--rescale` option, parsed as the API's `rescale`."""
    from lambda_handler.rendering import parse_rescale

    ranges = []
    for text in texts:
        try:
            ranges.append(parse_rescale(text))
        except ValueError as err:
            raise CliError(f"invalid --rescale: {err}") from err
    return tuple(ranges)


def _signer(endpoint: str | None, sigv4: bool | None) -> "Signer | None":
    """A SigV4 request signer when asked for, or by default for AWS Function URLs."""
    if not endpoint or not (sigv4 or (sigv4 is None and ".on.aws" in endpoint)):
        return None
    from lambda_handler.export.sigv4 import signer_for

    return signer_for(endpoint)


# ---------------------------------------------------------------------------- outcome
@contextmanager
def _interrupt_keeps_tiles(output: Path) -> Iterator[None]:
    """Ctrl-C during an export: one line saying the finished tiles are kept for a rerun."""
    try:
        yield
    except KeyboardInterrupt:
        raise CliInterrupted(
            f"interrupted: finished tiles are kept in {output}.tiles/; "
            "run the same command again to render only the missing ones"
        ) from None


def _report(report: "ExportReport", zoom: int, output: Path) -> None:
    """Summarise the run; failed tiles (listed, then counted) make it an error."""
    say(
        f"{report.tiles} tiles: {report.rendered} rendered ({report.empty} empty), "
        f"{report.reused} kept from an earlier run, {len(report.failed)} failed; "
        f"{report.tiles_per_second:.1f} tiles/s"
    )
    if report.failed:
        for (x, y), reason in sorted(report.failed.items())[:_LISTED_FAILURES]:
            say(f"  failed {zoom}/{x}/{y}: {reason}")
        raise CliError(
            f"{len(report.failed)} tile(s) failed for good; finished tiles are kept in "
            f"{output}.tiles/: run the same command again to retry only those"
        )
    say(f"wrote {output}")
