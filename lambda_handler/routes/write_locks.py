"""One lock per mosaic for the writes of this process, and the HTTP `If-Match` precondition.

The stores arbitrate writers of different processes (SQLite transactions, file locks,
conditional object writes); the lock here keeps the writes of one mosaic within one process
(the threads of a server) in a queue, so they wait for each other instead of spending the
stores' retries on each other. Locks are dropped once no request holds or waits for them.
"""

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from starlette.requests import Request

from lambda_handler.errors import MosaicPreconditionError
from lambda_handler.routes.common import mosaic_etag

if TYPE_CHECKING:
    from lambda_handler.backends.base import MosaicJSONBackend


class _MosaicLock:
    """A lock that can be weakly referenced (threading.Lock cannot)."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()


_locks: "weakref.WeakValueDictionary[str, _MosaicLock]" = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


@contextmanager
def mosaic_write_lock(uri: str) -> Iterator[None]:
    """Hold the process's write lock of the mosaic at `uri`."""
    with _registry_lock:
        holder = _locks.get(uri)
        if holder is None:
            holder = _locks[uri] = _MosaicLock()
    with holder.lock:
        yield


def if_match_precondition(
    request: Request, uri: str
) -> "Callable[[MosaicJSONBackend], None] | None":
    """The request's `If-Match` as a store precondition (None without the header): the
    mosaic's current ETag (the one `GET` of this path answers) must be among the listed ones,
    or `*` (any stored mosaic). Checked by the store on the copy it is about to change."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    return if_match_check(header, uri, request.url.path)


def if_match_check(header: str, uri: str, path: str) -> "Callable[[MosaicJSONBackend], None]":
    """The precondition of an `If-Match` header value sent to `path` (also checked by
    asynchronous write jobs, which run after the request)."""
    wanted = {tag.strip() for tag in header.split(",") if tag.strip()}

    def check(backend: "MosaicJSONBackend") -> None:
        if "*" in wanted:
            return
        current = mosaic_etag(uri, backend.revision, path)
        if current not in wanted:
            raise MosaicPreconditionError(
                f"If-Match {header.strip()[:200]} does not match the mosaic's current ETag "
                f"{current}: it was changed since that ETag was read; nothing was written "
                f"(GET {path} for the current ETag, then retry)"
            )

    return check
