"""Commands on stored mosaics: info, list, delete, to-geojson."""

import json
from typing import Annotated

import typer

from lambda_handler.cli.console import say
from lambda_handler.cli.files import OutputFile, emit_features

MosaicUri = Annotated[str, typer.Argument(help="Backend URI of the mosaic.")]


def info(
    uri: MosaicUri,
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


def list_mosaics(
    store: Annotated[
        str, typer.Argument(help="A store: sqlite:///file.db, dynamodb://region/table.")
    ],
) -> None:
    """List the mosaics a store holds."""
    from lambda_handler.stores import list_mosaics as names_in

    for name in names_in(store):
        typer.echo(name)


def delete(
    uri: MosaicUri,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stored mosaic."""
    from lambda_handler.backends import MosaicBackend

    if not yes and not typer.confirm(f"Delete {uri}?", err=True):
        raise typer.Exit(1)
    with MosaicBackend(uri) as backend:
        backend.delete()
    say(f"deleted {uri}")


def to_geojson(uri: MosaicUri, output: OutputFile = None) -> None:
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
    emit_features(features, output)
