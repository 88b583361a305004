"""MosaicJSON model and builder.

The names are loaded on first access: importing `lambda_handler.mosaic.model` (every tile
request does) must not import the builder and shapely behind it.
"""

from typing import Any

_EXPORTS = {
    "MosaicJSON": "lambda_handler.mosaic.model",
    "default_accessor": "lambda_handler.mosaic.builder",
    "default_filter": "lambda_handler.mosaic.builder",
    "from_features": "lambda_handler.mosaic.builder",
    "from_urls": "lambda_handler.mosaic.builder",
    "get_footprints": "lambda_handler.mosaic.footprints",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MosaicJSON",
    "default_accessor",
    "default_filter",
    "from_features",
    "from_urls",
    "get_footprints",
]
