"""File backend: a whole MosaicJSON document on the local disk (`.json` or `.json.gz`).

Writes are atomic (temporary file + rename). Writers of one document take an OS lock (`flock`
on a hidden `.{name}.lock` file beside it): an update reads, merges and replaces the document
under that lock, so concurrent writers of one host (processes and threads) wait for each other
instead of losing updates. The holder removes the lock file when done; a waiter that then holds
a lock on a removed file sees its inode is no longer the path's and starts again, so no two
writers ever hold "the" lock and no lock file is left behind. The lock is advisory and local: it does not serialize writers on other hosts sharing
the directory over NFS.
"""

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import attr

from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.backends.compression import decode_document, encode_document, revision_of
from lambda_handler.errors import (
    InvalidMosaicNameError,
    MosaicAuthError,
    MosaicConflictError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.settings import write_settings

# Longest suffix/prefix the backend adds to the document's name: the temporary file
# `.{name}.XXXXXXXX.tmp` (mkstemp's 8 random characters), the lock file `.{name}.lock`.
NAME_OVERHEAD = len(".") + len(".XXXXXXXX.tmp")
DEFAULT_NAME_MAX = 255


def path_from_uri(uri: str) -> str:
    """Local path of a `file://` URI or a bare path."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


def name_limit(directory: Path) -> int:
    """Bytes a document's file name may have in `directory` (NAME_MAX less our overhead)."""
    try:
        name_max = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = DEFAULT_NAME_MAX
    return min(name_max, DEFAULT_NAME_MAX) - NAME_OVERHEAD


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open descriptor is still the file at `path`."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


@attr.s
class FileBackend(MosaicJSONBackend):
    """A MosaicJSON document in a local file; writes are atomic (temporary file + rename)."""

    _backend_name: ClassVar[str] = "file"

    def __attrs_post_init__(self) -> None:
        """Check the file name fits the file system (with our temporary and lock names)."""
        self._lock_depth = 0
        self._lock_fd: int | None = None
        path = self.path
        limit = name_limit(path.parent if path.parent.exists() else Path("/"))
        size = len(os.fsencode(path.name))
        if size > limit:
            raise InvalidMosaicNameError(
                f"mosaic file name {path.name[:40]!r}… is {size} bytes long: the file store "
                f"allows at most {limit} bytes per name (the file system's {limit + NAME_OVERHEAD}"
                f" less {NAME_OVERHEAD} for its temporary and lock files); use a shorter id"
            )
        super().__attrs_post_init__()

    @property
    def path(self) -> Path:
        """The document's path."""
        return Path(path_from_uri(self.input))

    @property
    def lock_path(self) -> Path:
        """The hidden lock file beside the document (ids never start with '.')."""
        path = self.path
        return path.with_name(f".{path.name}.lock")

    # ------------------------------------------------------------------ lock
    @contextmanager
    def _write_guard(self) -> Iterator[None]:
        """Hold the document's exclusive lock (re-entrant within this backend)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        fd = self._acquire()
        self._lock_depth = 1
        try:
            yield
        finally:
            self._lock_depth = 0
            # Removed while still held (see the module docstring), then released by closing.
            # Not removable (e.g. a read-only sticky directory): a later writer reuses it.
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
            os.close(fd)

    @staticmethod
    def _open_lock(lock: Path) -> int:
        try:
            return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError as err:
            raise MosaicNotFoundError(f"directory does not exist: {lock.parent}") from err
        except PermissionError as err:
            raise MosaicAuthError(f"permission denied creating the lock file {lock}") from err
        except OSError as err:
            raise MosaicWriteError(f"could not open the lock file {lock}: {err}") from err

    def _acquire(self) -> int:
        lock = self.lock_path
        fd = self._open_lock(lock)
        timeout = write_settings().lock_timeout
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise MosaicWriteError(f"could not lock {lock}: {err}") from err
            else:
                if _same_file(fd, lock):
                    return fd
                # The previous holder removed this file: lock the one at the path now.
                os.close(fd)
                fd = self._open_lock(lock)
                continue
            if time.monotonic() > deadline:
                os.close(fd)
                raise MosaicConflictError(
                    f"mosaic file {self.path} is being written by another writer: its lock "
                    f"{lock} is still held after {timeout:g} s; nothing was written, retry later"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # ------------------------------------------------------------------ storage
    def _read(self) -> MosaicJSON:
        try:
            body = self.path.read_bytes()
        except FileNotFoundError as err:
            raise MosaicNotFoundError(f"mosaic file not found: {self.path}") from err
        except IsADirectoryError as err:
            raise MosaicNotFoundError(f"{self.path} is a directory, not a mosaic file") from err
        except PermissionError as err:
            raise MosaicAuthError(f"permission denied reading {self.path}") from err
        return decode_document(body, str(self.path)).with_store_revision(revision_of(body))

    def write(self, overwrite: bool = False) -> None:
        """Write the document; a crash mid-write leaves the previous file untouched. A replace
        waits for (and never interleaves with) another writer's read-modify-write."""
        path = self.path
        body = encode_document(self.mosaic_def, str(path))
        if not path.parent.exists():
            raise MosaicNotFoundError(f"directory does not exist: {path.parent}")
        try:
            if overwrite:
                with self._write_guard():
                    self._store(body, overwrite=True)
            else:
                self._store(body, overwrite=False)
        finally:
            self._invalidate()
        self.mosaic_def.with_store_revision(revision_of(body))

    def _store(self, body: bytes, overwrite: bool) -> None:
        path = self.path
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    def delete(self) -> None:
        """Remove the file (after any writer holding its lock is done)."""
        try:
            with self._write_guard():
                self.path.unlink()
        except FileNotFoundError as err:
            raise MosaicNotFoundError(f"mosaic file not found: {self.path}") from err
        finally:
            self._invalidate()
