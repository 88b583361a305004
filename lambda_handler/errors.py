"""Typed errors of the package.

Every failure the package knows about has its own class so callers (the CLI, the HTTP API) can
map it to an exit code or a status code in one place, with the message intact.
"""

from typing import Any

from pydantic import ValidationError

__all__ = [
    "BackendNotAvailableError",
    "brief_message",
    "FootprintReadError",
    "InvalidMosaicDocumentError",
    "InvalidMosaicError",
    "InvalidMosaicNameError",
    "ListingNotSupportedError",
    "MosaicAuthError",
    "MosaicChangedError",
    "MosaicConflictError",
    "MosaicError",
    "MosaicExistsError",
    "MosaicNotFoundError",
    "MosaicPreconditionError",
    "MosaicWriteError",
    "MultipleDataTypeError",
    "NonQuadtreeTMSError",
    "NoAssetFoundError",  # noqa: F822 - provided lazily by __getattr__ below
    "ReadOnlyBackendError",
    "UnsupportedURIError",
]


def brief_message(err: Exception, limit: int = 300) -> str:
    """The first line of an error's text (client libraries append whole response dumps)."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def _rebuild_error(cls: type, args: tuple, state: dict) -> BaseException:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class MosaicError(Exception):
    """Base class of every mosaic error."""

    def __reduce__(self) -> tuple:
        # Errors cross process boundaries (the export's worker processes): rebuild them from
        # their message and attributes, whatever their __init__ takes (the default pickling
        # calls __init__(*args) and fails, which breaks the whole worker pool).
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))


class InvalidMosaicError(MosaicError, ValueError):
    """A MosaicJSON document (or a part of it) is not valid."""


class InvalidMosaicDocumentError(InvalidMosaicError, ValidationError):
    """A MosaicJSON document failed the model's validation. Also a pydantic `ValidationError`
    (as cogeo-mosaic raises there), keeping pydantic's `errors()`; its text is one line per
    problem, naming the field. Build it with `wrap`."""

    __reduce__ = ValidationError.__reduce__  # pydantic's own pickling (errors() kept)

    _message: str = ""

    @classmethod
    def wrap(cls, message: str, error: ValidationError) -> "InvalidMosaicError":
        """This error for `error` with the text `message` (a plain InvalidMosaicError if
        pydantic cannot rebuild the error's details)."""
        details: list[Any] = [
            {k: item[k] for k in ("type", "loc", "input", "ctx") if k in item}
            for item in error.errors()
        ]
        try:
            wrapped = cls.from_exception_data(error.title, details)
        except Exception:  # an error type pydantic cannot rebuild: keep the message
            return InvalidMosaicError(message)
        wrapped._message = message
        return wrapped

    def __str__(self) -> str:
        return self._message


class NonQuadtreeTMSError(InvalidMosaicError, AssertionError):
    """The TileMatrixSet is not a quadtree (quadkeys need one). Also an AssertionError, as
    cogeo-mosaic's builder raises there."""


class InvalidMosaicNameError(MosaicError, ValueError):
    """A mosaic name or id contains characters a store cannot accept safely."""


class MosaicNotFoundError(MosaicError):
    """The mosaic (or the store holding it) does not exist."""


class MosaicExistsError(MosaicError):
    """The mosaic already exists and overwriting was not asked for."""


class MosaicAuthError(MosaicError):
    """The store refused access (401/403, access denied)."""


class MosaicWriteError(MosaicError):
    """A write to the store failed; the previous mosaic is left as it was."""


class MosaicConflictError(MosaicWriteError):
    """A concurrent writer changed (or holds) the mosaic and this write was refused after its
    retries: nothing of it was stored, the other writer's change is intact. Retrying later is
    safe."""


class MosaicChangedError(MosaicConflictError):
    """A conditional write found the stored copy changed since it was read (its ETag or
    generation moved on): nothing was stored. Updates re-read, re-merge and retry on it."""


class MosaicPreconditionError(MosaicWriteError):
    """The caller's precondition (an HTTP `If-Match` ETag) no longer holds: the mosaic changed
    since the caller read it, so the write was refused and nothing was stored."""


class UnsupportedURIError(MosaicError, ValueError):
    """The URI scheme is not one the dispatcher knows."""


class BackendNotAvailableError(MosaicError):
    """The scheme is known but its backend (or its optional dependency) is missing."""


class ReadOnlyBackendError(MosaicError, NotImplementedError):
    """The backend can only read (HTTP, STAC)."""


class FootprintReadError(MosaicError):
    """One or more datasets could not be opened to read their footprint."""

    def __init__(self, failures: dict[str, str]):
        self.failures = failures
        details = "; ".join(f"{path}: {reason}" for path, reason in failures.items())
        super().__init__(f"Could not read {len(failures)} dataset(s): {details}")


class ListingNotSupportedError(MosaicError):
    """The store cannot list the mosaics it holds."""


class MultipleDataTypeError(MosaicError, ValueError):
    """The datasets of one mosaic must share one data type."""


def __getattr__(name: str) -> Any:
    # rio-tiler's NoAssetFoundError is re-exported lazily: importing the package's errors must
    # not import rio-tiler (and rasterio, numpy behind it) on the Lambda cold-start path.
    if name == "NoAssetFoundError":
        from rio_tiler.errors import NoAssetFoundError

        return NoAssetFoundError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
