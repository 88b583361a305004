"""The `mosaic-tiler` typer app, its commands, and the entry point that turns errors into
one line and an exit code."""

import sys
import warnings

import typer

from lambda_handler.cli import build, export, serve, store
from lambda_handler.cli.console import print_error, say, show_warning
from lambda_handler.cli.errors import CliError, CliInterrupted, caused_by_interrupt
from lambda_handler.errors import MosaicError

app = typer.Typer(
    name="mosaic-tiler",
    help="Build, store, inspect and serve MosaicJSON mosaics of Cloud-Optimized GeoTIFFs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Registered here, in the order `--help` lists them.
app.command()(build.create)
app.command()(build.upload)
app.command()(store.info)
app.command()(build.update)
app.command()(build.footprint)
app.command("list")(store.list_mosaics)
app.command()(store.delete)
app.command("to-geojson")(store.to_geojson)
app.command()(serve.serve)
app.command()(serve.demo)
app.command()(export.export)


def main() -> None:
    """Entry point: one clear line and a non-zero exit code on errors, never a traceback."""
    warnings.showwarning = show_warning
    try:
        app()
    except CliInterrupted as err:
        say(str(err))
        sys.exit(err.exit_code)
    except (MosaicError, CliError) as err:
        print_error(str(err))
        sys.exit(1)
    except KeyboardInterrupt:
        _exit_interrupted()
    except Exception as err:  # anything else: still one line and a non-zero exit code
        if caused_by_interrupt(err):
            _exit_interrupted()
        print_error(f"{type(err).__name__}: {err}")
        sys.exit(1)


def _exit_interrupted() -> None:
    """Ctrl-C: one line and the shell's code for SIGINT."""
    say("interrupted")
    sys.exit(130)
