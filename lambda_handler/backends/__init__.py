"""`MosaicBackend(uri, **kwargs)`: the backend for a URI, chosen by its scheme.

Importing this module is cheap (no rio-tiler, rasterio or numpy): the HTTP API imports it at
startup to validate mosaic ids, and a backend module is imported only when a URI needs it.
"""

import importlib
import re
from typing import TYPE_CHECKING, Any

from lambda_handler.errors import (
    BackendNotAvailableError,
    InvalidMosaicNameError,
    UnsupportedURIError,
)

if TYPE_CHECKING:
    from lambda_handler.backends.base import MosaicJSONBackend

# Letters, digits, '-', '_', '.'; not starting with '.', so '.', '..' and hidden names are out.
# Anchored with \Z (and matched with fullmatch): '$' accepts a trailing newline ("evil\n").
MOSAIC_NAME_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]{0,254}\Z")


def validate_mosaic_name(name: str) -> str:
    """Return `name` if it is a safe mosaic name, else raise InvalidMosaicNameError."""
    if not isinstance(name, str) or not MOSAIC_NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidMosaicNameError(
            f"invalid mosaic name {name!r}: use 1-255 letters, digits, '-', '_' or '.', "
            "not starting with '.' and without '..' or '/'"
        )
    return name


# scheme prefix -> (module, class, human name). Modules are imported on first use so a tile
# request never pays for backends (and client libraries) it does not use.
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "dynamodb://": ("lambda_handler.backends.dynamodb", "DynamoDBBackend", "DynamoDB"),
    "s3://": ("lambda_handler.backends.s3", "S3Backend", "S3"),
    "gs://": ("lambda_handler.backends.gcs", "GCSBackend", "Google Cloud Storage"),
    "az://": ("lambda_handler.backends.azure", "AzureBackend", "Azure Blob Storage"),
    "sqlite:///": ("lambda_handler.backends.sqlite", "SQLiteBackend", "SQLite"),
    "stac+http://": ("lambda_handler.backends.stac", "StacBackend", "STAC"),
    "stac+https://": ("lambda_handler.backends.stac", "StacBackend", "STAC"),
    "http://": ("lambda_handler.backends.http", "HttpBackend", "HTTP"),
    "https://": ("lambda_handler.backends.http", "HttpBackend", "HTTP"),
    "file://": ("lambda_handler.backends.file", "FileBackend", "file"),
}

SUPPORTED_SCHEMES = [*_BACKENDS, "a local path", ":memory:"]


def _load(module_name: str, class_name: str, label: str) -> "type[MosaicJSONBackend]":
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise BackendNotAvailableError(
                f"the {label} backend ({module_name}) is not available in this version"
            ) from err
        raise BackendNotAvailableError(
            f"the {label} backend needs the missing package {err.name!r}"
        ) from err
    return getattr(module, class_name)


def backend_class(uri: str | None) -> "type[MosaicJSONBackend]":
    """The backend class serving `uri` (raises UnsupportedURIError for unknown schemes)."""
    if uri is None or uri == ":memory:":
        from lambda_handler.backends.memory import MemoryBackend

        return MemoryBackend
    if not isinstance(uri, str) or not uri:
        raise UnsupportedURIError(f"invalid mosaic URI: {uri!r}")
    lowered = uri.lower()
    for prefix, (module_name, class_name, label) in _BACKENDS.items():
        if lowered.startswith(prefix):
            return _load(module_name, class_name, label)
    if "://" in uri:
        raise UnsupportedURIError(
            f"unsupported mosaic URI scheme {uri.split('://')[0] + '://'!r} in {uri!r}; "
            "supported: " + ", ".join(SUPPORTED_SCHEMES)
        )
    from lambda_handler.backends.file import FileBackend

    return FileBackend


def MosaicBackend(uri: str | None, *args: Any, **kwargs: Any) -> "MosaicJSONBackend":
    """Open the mosaic at `uri` (or prepare to write `mosaic_def` there).

    Call forms are cogeo-mosaic 9.x's: further positional arguments follow the backend's
    attribute order (`mosaic_def, tms, minzoom, maxzoom, reader, reader_options`; for STAC
    `query, minzoom, maxzoom, tms, …`), and `None`/`":memory:"` opens the in-memory backend
    with `mosaic_def` as its first argument: `MosaicBackend(":memory:", mosaic_def=m)` or
    `MosaicBackend(None, m)`.
    """
    cls = backend_class(uri)
    if uri is None or uri == ":memory:":
        return cls(*args, **kwargs)
    return cls(uri, *args, **kwargs)


# Backend classes under their own and cogeo-mosaic's names, imported on first access.
_CLASSES: dict[str, tuple[str, str]] = {
    "MosaicJSONBackend": ("lambda_handler.backends.base", "MosaicJSONBackend"),
    "BaseBackend": ("lambda_handler.backends.recipe", "BaseBackend"),
    "MemoryBackend": ("lambda_handler.backends.memory", "MemoryBackend"),
    "FileBackend": ("lambda_handler.backends.file", "FileBackend"),
    "S3Backend": ("lambda_handler.backends.s3", "S3Backend"),
    "GCSBackend": ("lambda_handler.backends.gcs", "GCSBackend"),
    "AzureBackend": ("lambda_handler.backends.azure", "AzureBackend"),
    "ABSBackend": ("lambda_handler.backends.azure", "AzureBackend"),
    "DynamoDBBackend": ("lambda_handler.backends.dynamodb", "DynamoDBBackend"),
    "SQLiteBackend": ("lambda_handler.backends.sqlite", "SQLiteBackend"),
    "StacBackend": ("lambda_handler.backends.stac", "StacBackend"),
    "STACBackend": ("lambda_handler.backends.stac", "StacBackend"),
    "HttpBackend": ("lambda_handler.backends.http", "HttpBackend"),
}


def __getattr__(name: str) -> Any:
    # Backend modules pull rio-tiler, rasterio, numpy and client libraries: loaded when asked.
    if name in _CLASSES:
        module_name, class_name = _CLASSES[name]
        return getattr(importlib.import_module(module_name), class_name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MOSAIC_NAME_RE",
    "SUPPORTED_SCHEMES",
    "ABSBackend",
    "AzureBackend",
    "DynamoDBBackend",
    "FileBackend",
    "GCSBackend",
    "HttpBackend",
    "MemoryBackend",
    "MosaicBackend",
    "MosaicJSONBackend",
    "S3Backend",
    "SQLiteBackend",
    "STACBackend",
    "StacBackend",
    "backend_class",
    "validate_mosaic_name",
]
