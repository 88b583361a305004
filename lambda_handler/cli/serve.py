"""Commands that run the tiler API locally: serve, demo."""

from pathlib import Path
from typing import Annotated

import typer

from lambda_handler.cli.errors import CliError

Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="Port.")]


def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
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


def demo(
    host: Host = "127.0.0.1",
    port: Port = 8000,
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
