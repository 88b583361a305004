"""The `mosaic-tiler` command (typer).

Where things are: `app` registers the commands and turns errors into one line (`main` is the
console script); `build` create/upload/update/footprint; `store` info/list/delete/to-geojson;
`export` the export command; `serve` serve/demo; `files` URL lists, GeoJSON input and
results; `console` messages and progress on stderr; `errors` the CLI's own errors.
"""

from lambda_handler.cli.app import app, main

__all__ = ["app", "main"]
