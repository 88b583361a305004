"""The `mosaic-tiler` command."""

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from lambda_handler.errors import MosaicError, MosaicExistsError

app = typer.Typer(
    name="mosaic-tiler",
    help="Build, store, inspect and serve MosaicJSON mosaics of Cloud-Optimized GeoTIFFs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True)


class CliError(Exception):
    """A user error worth one line and exit code 1."""

    exit_code = 1


class CliInterrupted(CliError):
    """Ctrl-C, reported in one line with the shell's code for SIGINT."""

    exit_code = 130


# ---------------------------------------------------------------------------- helpers
def say(message: str, style: str | None = None) -> None:
    """Print one message on stderr exactly as written.

    Messages carry paths, URIs and install commands such as `pip install "pkg[gcs]"`: rich
    markup would eat the brackets (or fail on `[/b]`), so the text never goes through it.
    """
    stderr.print(Text(message, style=style or ""), highlight=False, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (the default format adds the source file and line)."""
    say(f"warning: {message}", style="yellow")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        # Not on a terminal (a pipe, a log): no bar, and no stray blank line when it ends.
        disable=not stderr.is_terminal,
    )


def _read_lines(path: Path) -> list[str]:
    source = sys.stdin if str(path) == "-" else path.open()
    with source:
        return [line.strip() for line in source if line.strip() and not line.startswith("#")]


def _read_features(path: Path) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(f"{path} is not valid JSON: {err}") from err
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return list(data.get("features") or [])
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    if isinstance(data, list):
        return data
    raise CliError(f"{path} is not a GeoJSON FeatureCollection, Feature or list of features")


def _urls(urls: list[str] | None, urls_file: Path | None) -> list[str]:
    collected = list(urls or [])
    if urls_file:
        collected += _read_lines(urls_file)
    return collected


def _property_accessor(name: str):
    def accessor(feature: dict[str, Any]) -> str:
        try:
            return str(feature["properties"][name])
        except (KeyError, TypeError) as err:
            raise CliError(f"feature {feature.get('id', '')!r} has no property {name!r}") from err

    return accessor


def _build(
    urls: list[str],
    footprints: Path | None,
    minzoom: int | None,
    maxzoom: int | None,
    options: dict[str, Any],
    threads: int | None,
    skip_errors: bool,
):
    from lambda_handler.mosaic import from_features, from_urls

    if footprints:
        features = _read_features(footprints)
        if minzoom is None or maxzoom is None:
            raise CliError("--minzoom and --maxzoom are required with --footprints")
        return from_features(features, minzoom, maxzoom, **options)
    if not urls:
        raise CliError("give COG paths/URLs, --urls-file or --footprints")
    with _progress() as progress, _skip_errors_hint(skip_errors):
        task = progress.add_task("Reading footprints", total=len(urls))
        return from_urls(
            urls,
            minzoom=minzoom,
            maxzoom=maxzoom,
            max_threads=threads,
            skip_errors=skip_errors,
            progress=lambda done, total: progress.update(task, completed=done),
            **options,
        )


def _read_footprints(
    urls: list[str], threads: int | None, skip_errors: bool
) -> list[dict[str, Any]]:
    """Footprints of COGs, read in threads behind a progress bar."""
    from lambda_handler.mosaic import get_footprints

    if not urls:
        raise CliError("give COG paths/URLs, --urls-file or --footprints")
    with _progress() as progress, _skip_errors_hint(skip_errors):
        task = progress.add_task("Reading footprints", total=len(urls))
        return get_footprints(
            urls,
            max_threads=threads or 16,
            skip_errors=skip_errors,
            progress=lambda done, total: progress.update(task, completed=done),
        )


@contextmanager
def _skip_errors_hint(skip_errors: bool) -> Iterator[None]:
    """Unreadable COGs: name the flag that leaves them out (the library names its keyword)."""
    from lambda_handler.errors import FootprintReadError

    try:
        yield
    except FootprintReadError as err:
        if skip_errors:  # every one was skipped, each named by a warning line already
            raise CliError("no COG could be read: nothing to build a mosaic from") from err
        raise CliError(f"{err} (--skip-errors leaves unreadable COGs out)") from err


def _emit(text: str, output: Path | None) -> None:
    """Write to a file, or to stdout without one."""
    if output:
        output.write_text(text)
    else:
        typer.echo(text)


def _write(document, uri: str, overwrite: bool) -> None:
    from lambda_handler.backends import MosaicBackend

    try:
        with MosaicBackend(uri, mosaic_def=document) as backend:
            backend.write(overwrite=overwrite)
    except MosaicExistsError as err:
        # The library's message names its keyword argument; the CLI user needs the flag.
        raise CliError(f"{uri} already exists: add --overwrite to replace it") from err


# ---------------------------------------------------------------------------- options
UrlsArg = Annotated[list[str] | None, typer.Argument(help="COG paths or URLs.", show_default=False)]
UrlsFile = Annotated[
    Path | None,
    typer.Option("--urls-file", "-l", help="File with one COG path/URL per line ('-': stdin)."),
]
Footprints = Annotated[
    Path | None,
    typer.Option("--footprints", help="GeoJSON file of footprints instead of COGs ('-': stdin)."),
]
PathProperty = Annotated[
    str, typer.Option("--property", help="Footprint property holding the asset path.")
]
MinZoom = Annotated[int | None, typer.Option(help="Mosaic minzoom (default: from the COGs).")]
MaxZoom = Annotated[int | None, typer.Option(help="Mosaic maxzoom (default: from the COGs).")]
QuadkeyZoom = Annotated[
    int | None, typer.Option(help="Zoom of the quadkey index (default: minzoom).")
]
MinTileCover = Annotated[
    float | None, typer.Option(help="Drop assets covering less than this fraction of a quadkey.")
]
TileCoverSort = Annotated[
    bool, typer.Option(help="Sort assets by how much of the quadkey they cover.")
]
MaxItems = Annotated[int | None, typer.Option(help="Keep at most this many assets per quadkey.")]
Threads = Annotated[int | None, typer.Option(help="Threads reading footprints.")]
SkipErrors = Annotated[
    bool,
    typer.Option("--skip-errors", help="Leave out unreadable COGs (warned) instead of failing."),
]


def _builder_options(
    quadkey_zoom: int | None,
    min_tile_cover: float | None,
    tile_cover_sort: bool,
    max_items_per_tile: int | None,
    prop: str,
    name: str | None = None,
    asset_prefix: str | None = None,
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "quadkey_zoom": quadkey_zoom,
        "minimum_tile_cover": min_tile_cover,
        "tile_cover_sort": tile_cover_sort,
        "maximum_items_per_tile": max_items_per_tile,
        "name": name,
        "asset_prefix": asset_prefix,
    }
    if prop != "path":
        options["accessor"] = _property_accessor(prop)
    return {k: v for k, v in options.items() if v is not None and v is not False}


# ---------------------------------------------------------------------------- commands
@app.command()
def create(
    urls: UrlsArg = None,
    urls_file: UrlsFile = None,
    footprints: Footprints = None,
    prop: PathProperty = "path",
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Backend URI to write to (default: stdout)."),
    ] = None,
    minzoom: MinZoom = None,
    maxzoom: MaxZoom = None,
    quadkey_zoom: QuadkeyZoom = None,
    min_tile_cover: MinTileCover = None,
    tile_cover_sort: TileCoverSort = False,
    max_items_per_tile: MaxItems = None,
    name: Annotated[str | None, typer.Option(help="Mosaic name.")] = None,
    asset_prefix: Annotated[str | None, typer.Option(help="Prefix stripped from assets.")] = None,
    threads: Threads = None,
    skip_errors: SkipErrors = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing mosaic.")] = False,
) -> None:
    """Create a MosaicJSON from COGs or footprints; print it or write it to a backend URI."""
    options = _builder_options(
        quadkey_zoom, min_tile_cover, tile_cover_sort, max_items_per_tile, prop, name, asset_prefix
    )
    document = _build(
        _urls(urls, urls_file), footprints, minzoom, maxzoom, options, threads, skip_errors
    )
    if output:
        _write(document, output, overwrite)
        say(f"wrote {len(document.tiles)} quadkeys to {output}")
    else:
        typer.echo(document.to_json())


@app.command()
def upload(
    document: Annotated[
        Path, typer.Argument(help="MosaicJSON file (.json or .json.gz; '-': stdin).")
    ],
    uri: Annotated[str, typer.Argument(help="Backend URI to write to.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing mosaic.")] = False,
) -> None:
    """Store a MosaicJSON document in any backend."""
    from lambda_handler.backends.compression import decode_document

    try:
        body = sys.stdin.buffer.read() if str(document) == "-" else document.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {document}: {err.strerror or err}") from err
    mosaic = decode_document(body, str(document))
    _write(mosaic, uri, overwrite)
    say(f"wrote {len(mosaic.tiles)} quadkeys to {uri}")


@app.command()
def info(
    uri: Annotated[str, typer.Argument(help="Backend URI of the mosaic.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quadkeys: Annotated[bool, typer.Option(help="List the quadkeys too.")] = False,
) -> None:
    """Show a mosaic's metadata."""
    from lambda_handler.backends import MosaicBackend

    with MosaicBackend(uri) as backend:
        details = backend.info(quadkeys=quadkeys).model_dump()
        details.update(
            {
                "mosaicjson": backend.mosaic_def.mosaicjson,
                "center": backend.mosaic_def.center,
                "data_type": backend.mosaic_def.data_type,
                "asset_prefix": backend.mosaic_def.asset_prefix,
            }
        )
    if as_json:
        typer.echo(json.dumps(details))
        return
    for key, value in details.items():
        if key == "quadkeys" and not quadkeys:
            continue
        typer.echo(f"{key}: {value}")


@app.command()
def update(
    uri: Annotated[str, typer.Argument(help="Backend URI of the mosaic to update.")],
    urls: UrlsArg = None,
    urls_file: UrlsFile = None,
    footprints: Footprints = None,
    prop: PathProperty = "path",
    add_last: Annotated[
        bool, typer.Option("--add-last", help="Append new assets after existing ones.")
    ] = False,
    min_tile_cover: MinTileCover = None,
    tile_cover_sort: TileCoverSort = False,
    max_items_per_tile: MaxItems = None,
    threads: Threads = None,
    skip_errors: SkipErrors = False,
) -> None:
    """Add COGs (or footprints) to a stored mosaic."""
    from lambda_handler.backends import MosaicBackend

    options = _builder_options(None, min_tile_cover, tile_cover_sort, max_items_per_tile, prop)
    if footprints:
        features = _read_features(footprints)
    else:
        features = _read_footprints(_urls(urls, urls_file), threads, skip_errors)
    with MosaicBackend(uri) as backend:
        backend.update(features, add_first=not add_last, **options)
        say(f"updated {uri}: version {backend.mosaic_def.version}")


@app.command()
def footprint(
    urls: UrlsArg = None,
    urls_file: UrlsFile = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
    threads: Threads = None,
    skip_errors: SkipErrors = False,
) -> None:
    """Write the footprints of COGs as a GeoJSON FeatureCollection."""
    features = _read_footprints(_urls(urls, urls_file), threads, skip_errors)
    _emit(json.dumps({"type": "FeatureCollection", "features": features}), output)


@app.command("list")
def list_mosaics(
    store: Annotated[
        str, typer.Argument(help="A store: sqlite:///file.db, dynamodb://region/table.")
    ],
) -> None:
    """List the mosaics a store holds."""
    from lambda_handler.stores import list_mosaics

    for name in list_mosaics(store):
        typer.echo(name)


@app.command()
def delete(
    uri: Annotated[str, typer.Argument(help="Backend URI of the mosaic.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stored mosaic."""
    from lambda_handler.backends import MosaicBackend

    if not yes and not typer.confirm(f"Delete {uri}?", err=True):
        raise typer.Exit(1)
    with MosaicBackend(uri) as backend:
        backend.delete()
    say(f"deleted {uri}")


@app.command("to-geojson")
def to_geojson(
    uri: Annotated[str, typer.Argument(help="Backend URI of the mosaic.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
) -> None:
    """Write the quadkey index as GeoJSON: one feature per quadkey with its assets."""
    from lambda_handler.backends import MosaicBackend
    from lambda_handler.mosaic.tiling import quadkey_to_tile

    with MosaicBackend(uri) as backend:
        document = backend.to_document()
    tms = document.tms
    features = []
    for quadkey, assets in sorted(document.tiles.items()):
        feature = tms.feature(quadkey_to_tile(quadkey), precision=6)
        feature["properties"] = {"quadkey": quadkey, "assets": assets, "count": len(assets)}
        features.append(feature)
    _emit(json.dumps({"type": "FeatureCollection", "features": features}), output)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    store: Annotated[
        str | None,
        typer.Option(help="Mosaic URI template, e.g. sqlite:///./mosaics.db:{mosaic_id}."),
    ] = None,
) -> None:
    """Run the tiler API locally (uvicorn)."""
    from lambda_handler.server import PortUnavailableError
    from lambda_handler.server import serve as run

    try:
        run(host=host, port=port, store=store)
    except PortUnavailableError as err:
        raise CliError(str(err)) from None


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workdir: Annotated[Path, typer.Option(help="Where the demo COGs and store go.")] = Path("demo"),
    cogs: Annotated[
        list[Path] | None,
        typer.Option("--cogs", help="Serve these COGs instead of generated ones (repeat)."),
    ] = None,
) -> None:
    """Create a demo mosaic and serve it with its map page."""
    from lambda_handler.server import PortUnavailableError
    from lambda_handler.server import demo as run

    try:
        run(host=host, port=port, workdir=workdir, cogs=[str(c) for c in cogs or []])
    except (PortUnavailableError, FileNotFoundError) as err:
        raise CliError(str(err)) from None


@app.command()
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
    from lambda_handler.export import export_mosaic
    from lambda_handler.export.options import TileOptions
    from lambda_handler.export.plan import zoom_for_resolution
    from lambda_handler.export.runner import RichProgress

    if (zoom is None) == (resolution is None):
        raise CliError("give exactly one of --zoom or --resolution")
    if zoom is None:
        zoom = zoom_for_resolution(resolution)
    area_bbox = None
    if bbox:
        try:
            area_bbox = tuple(float(v) for v in bbox.split(","))
        except ValueError as err:
            raise CliError(f"invalid --bbox {bbox!r}: expected four numbers") from err
        if len(area_bbox) != 4:
            raise CliError(f"invalid --bbox {bbox!r}: expected west,south,east,north")
    area_geojson = None
    if geojson:
        try:
            area_geojson = json.loads(geojson.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CliError(f"cannot read GeoJSON area {geojson}: {err}") from err
    ranges = []
    for item in rescale or []:
        try:
            low, high = (float(v) for v in item.split(","))
        except ValueError as err:
            raise CliError(f"invalid --rescale {item!r}: expected min,max") from err
        ranges.append((low, high))
    options = TileOptions(
        assets=tuple(assets or ()),
        bidx=tuple(bidx or ()),
        expression=expression,
        pixel_selection=pixel_selection,
        rescale=tuple(ranges),
        color_formula=color_formula,
    )
    sign = None
    if endpoint and (sigv4 or (sigv4 is None and ".on.aws" in endpoint)):
        from lambda_handler.export.sigv4 import signer_for

        sign = signer_for(endpoint)
    try:
        report = export_mosaic(
            output,
            zoom,
            bbox=area_bbox,
            geojson=area_geojson,
            uri=uri,
            endpoint=endpoint,
            mosaic_id=mosaic_id,
            tile_scale=tile_scale,
            options=options,
            concurrency=concurrency,
            sign=sign,
            progress=RichProgress(),
            cog_profile=cog_profile,
            keep_tiles=keep_tiles,
            max_attempts=max_attempts,
            allow_partial=allow_partial,
        )
    except KeyboardInterrupt:
        raise CliInterrupted(
            f"interrupted: finished tiles are kept in {output}.tiles/; "
            "run the same command again to render only the missing ones"
        ) from None
    say(
        f"{report.tiles} tiles: {report.rendered} rendered ({report.empty} empty), "
        f"{report.reused} kept from an earlier run, {len(report.failed)} failed; "
        f"{report.tiles_per_second:.1f} tiles/s"
    )
    if report.failed:
        for (x, y), reason in sorted(report.failed.items())[:20]:
            say(f"  failed {zoom}/{x}/{y}: {reason}")
        raise CliError(
            f"{len(report.failed)} tile(s) failed for good; finished tiles are kept in "
            f"{output}.tiles/: run the same command again to retry only those"
        )
    say(f"wrote {output}")


def _error(message: str) -> None:
    stderr.print(Text("Error: ", style="red") + Text(message), highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: one clear line and a non-zero exit code on errors, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        app()
    except CliInterrupted as err:
        say(str(err))
        sys.exit(err.exit_code)
    except (MosaicError, CliError) as err:
        _error(str(err))
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
    except Exception as err:  # anything else: still one line and a non-zero exit code
        if _interrupted(err):
            say("interrupted")
            sys.exit(130)
        _error(f"{type(err).__name__}: {err}")
        sys.exit(1)


def _interrupted(err: BaseException) -> bool:
    """Ctrl-C turned into another error on its way up (numpy makes an interrupted import an
    ImportError, for one)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


if __name__ == "__main__":
    main()
