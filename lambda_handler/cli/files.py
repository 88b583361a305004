"""What the CLI reads and writes besides mosaics: URL lists, GeoJSON features, results.

A path of `-` means stdin, so commands can be chained in a shell pipeline.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lambda_handler.cli.errors import CliError

# The option of the commands that print a result or write it to a file.
OutputFile = Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout).")]


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a file (or stdin), without `#` comment lines."""
    source = sys.stdin if str(path) == "-" else path.open()
    with source:
        return [line.strip() for line in source if line.strip() and not line.startswith("#")]


def collect_urls(urls: list[str] | None, urls_file: Path | None) -> list[str]:
    """COG paths/URLs given as arguments, then those listed in `urls_file`."""
    collected = list(urls or [])
    if urls_file:
        collected += read_lines(urls_file)
    return collected


def read_features(path: Path) -> list[dict[str, Any]]:
    """GeoJSON features from a FeatureCollection, a Feature or a list of features."""
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


def emit(text: str, output: Path | None) -> None:
    """Write to a file, or to stdout without one."""
    if output:
        output.write_text(text)
    else:
        typer.echo(text)


def emit_features(features: list[dict[str, Any]], output: Path | None) -> None:
    """Write features as one GeoJSON FeatureCollection (to a file or stdout)."""
    emit(json.dumps({"type": "FeatureCollection", "features": features}), output)
