"""File backend: a whole MosaicJSON document on the local disk (`.json` or `.json.gz`)."""

import os
import tempfile
from pathlib import Path
from typing import ClassVar

import attr

from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.backends.compression import decode_document, encode_document
from lambda_handler.errors import (
    MosaicAuthError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.model import MosaicJSON


def path_from_uri(uri: str) -> str:
    """Local path of a `file://` URI or a bare path."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


@attr.s
class FileBackend(MosaicJSONBackend):
    """A MosaicJSON document in a local file; writes are atomic (temporary file + rename)."""

    _backend_name: ClassVar[str] = "file"

    @property
    def path(self) -> Path:
        """The document's path."""
        return Path(path_from_uri(self.input))

    def _read(self) -> MosaicJSON:
        try:
            body = self.path.read_bytes()
        except FileNotFoundError as err:
            raise MosaicNotFoundError(f"mosaic file not found: {self.path}") from err
        except IsADirectoryError as err:
            raise MosaicNotFoundError(f"{self.path} is a directory, not a mosaic file") from err
        except PermissionError as err:
            raise MosaicAuthError(f"permission denied reading {self.path}") from err
        return decode_document(body, str(self.path))

    def write(self, overwrite: bool = False) -> None:
        """Write the document; a crash mid-write leaves the previous file untouched."""
        path = self.path
        body = encode_document(self.mosaic_def, str(path))
        if not path.parent.exists():
            raise MosaicNotFoundError(f"directory does not exist: {path.parent}")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                # link() fails if the target exists: an atomic "create only".
                try:
                    os.link(tmp, path)
                except FileExistsError as err:
                    raise MosaicExistsError(
                        f"mosaic file already exists: {path} (use overwrite=True)"
                    ) from err
        except PermissionError as err:
            raise MosaicAuthError(f"permission denied writing {path}") from err
        except OSError as err:
            raise MosaicWriteError(f"could not write {path}: {err}") from err
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._invalidate()

    def delete(self) -> None:
        """Remove the file."""
        try:
            self.path.unlink()
        except FileNotFoundError as err:
            raise MosaicNotFoundError(f"mosaic file not found: {self.path}") from err
        finally:
            self._invalidate()
