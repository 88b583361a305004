"""Commands that build mosaics and footprints: create, upload, update, footprint."""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from lambda_handler.cli.console import progress_bar, say
from lambda_handler.cli.errors import CliError
from lambda_handler.cli.files import OutputFile, collect_urls, emit_features, read_features
from lambda_handler.errors import MosaicExistsError

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
Overwrite = Annotated[bool, typer.Option(help="Replace an existing mosaic.")]


# ---------------------------------------------------------------------------- helpers
def _property_accessor(name: str) -> Callable[[dict[str, Any]], str]:
    """Reads a feature's asset path from property `name` (the builder's `accessor`)."""

    def accessor(feature: dict[str, Any]) -> str:
        try:
            return str(feature["properties"][name])
        except (KeyError, TypeError) as err:
            raise CliError(f"feature {feature.get('id', '')!r} has no property {name!r}") from err

    return accessor


def _builder_options(
    quadkey_zoom: int | None,
    min_tile_cover: float | None,
    tile_cover_sort: bool,
    max_items_per_tile: int | None,
    prop: str,
    name: str | None = None,
    asset_prefix: str | None = None,
) -> dict[str, Any]:
    """The builder keywords the user set; unset ones keep the library's defaults."""
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


@contextmanager
def _footprint_reading(urls: list[str], skip_errors: bool) -> Iterator[Callable[[int, int], None]]:
    """Around reading the footprints of `urls`: a progress bar (yields its callback) and
    the CLI's messages for no input and unreadable COGs."""
    if not urls:
        raise CliError("give COG paths/URLs, --urls-file or --footprints")
    with progress_bar() as progress, _skip_errors_hint(skip_errors):
        task = progress.add_task("Reading footprints", total=len(urls))
        yield lambda done, total: progress.update(task, completed=done)


def _read_footprints(
    urls: list[str], threads: int | None, skip_errors: bool
) -> list[dict[str, Any]]:
    """Footprints of COGs, read in threads behind a progress bar."""
    from lambda_handler.mosaic import get_footprints

    with _footprint_reading(urls, skip_errors) as report_progress:
        return get_footprints(
            urls, max_threads=threads or 16, skip_errors=skip_errors, progress=report_progress
        )


def _build(
    urls: list[str],
    footprints: Path | None,
    minzoom: int | None,
    maxzoom: int | None,
    options: dict[str, Any],
    threads: int | None,
    skip_errors: bool,
):
    """A MosaicJSON document from a footprints file, or else from the COGs themselves."""
    from lambda_handler.mosaic import from_features, from_urls

    if footprints:
        features = read_features(footprints)
        if minzoom is None or maxzoom is None:
            raise CliError("--minzoom and --maxzoom are required with --footprints")
        return from_features(features, minzoom, maxzoom, **options)
    with _footprint_reading(urls, skip_errors) as report_progress:
        return from_urls(
            urls,
            minzoom=minzoom,
            maxzoom=maxzoom,
            max_threads=threads,
            skip_errors=skip_errors,
            progress=report_progress,
            **options,
        )


def _write(document, uri: str, overwrite: bool) -> None:
    """Store `document` at `uri`, then say how many quadkeys went there."""
    from lambda_handler.backends import MosaicBackend

    try:
        with MosaicBackend(uri, mosaic_def=document) as backend:
            backend.write(overwrite=overwrite)
    except MosaicExistsError as err:
        # The library's message names its keyword argument; the CLI user needs the flag.
        raise CliError(f"{uri} already exists: add --overwrite to replace it") from err
    say(f"wrote {len(document.tiles)} quadkeys to {uri}")


# ---------------------------------------------------------------------------- commands
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
    overwrite: Overwrite = False,
) -> None:
    """Create a MosaicJSON from COGs or footprints; print it or write it to a backend URI."""
    options = _builder_options(
        quadkey_zoom, min_tile_cover, tile_cover_sort, max_items_per_tile, prop, name, asset_prefix
    )
    document = _build(
        collect_urls(urls, urls_file), footprints, minzoom, maxzoom, options, threads, skip_errors
    )
    if output:
        _write(document, output, overwrite)
    else:
        typer.echo(document.to_json())


def upload(
    document: Annotated[
        Path, typer.Argument(help="MosaicJSON file (.json or .json.gz; '-': stdin).")
    ],
    uri: Annotated[str, typer.Argument(help="Backend URI to write to.")],
    overwrite: Overwrite = False,
) -> None:
    """Store a MosaicJSON document in any backend."""
    from lambda_handler.backends.compression import decode_document

    try:
        body = sys.stdin.buffer.read() if str(document) == "-" else document.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {document}: {err.strerror or err}") from err
    _write(decode_document(body, str(document)), uri, overwrite)


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
        features = read_features(footprints)
    else:
        features = _read_footprints(collect_urls(urls, urls_file), threads, skip_errors)
    with MosaicBackend(uri) as backend:
        backend.update(features, add_first=not add_last, **options)
        say(f"updated {uri}: version {backend.mosaic_def.version}")


def footprint(
    urls: UrlsArg = None,
    urls_file: UrlsFile = None,
    output: OutputFile = None,
    threads: Threads = None,
    skip_errors: SkipErrors = False,
) -> None:
    """Write the footprints of COGs as a GeoJSON FeatureCollection."""
    features = _read_footprints(collect_urls(urls, urls_file), threads, skip_errors)
    emit_features(features, output)
