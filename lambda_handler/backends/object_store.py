"""Object stores (S3, GCS, Azure Blob): a whole MosaicJSON document in one object.

The three stores speak one protocol; only their vocabulary differs. This base holds the protocol
once, as cogeo-mosaic's backends share `_get_object/_put_object/_head_object`:

- reading is one get of the object and the token naming that copy (ETag, GCS generation);
- creating is a put-if-absent, refused by the store when an object is there;
- replacing inside a read-modify-write is a put-if-match on the token read, and a conditional
  delete sends it too, so a concurrent writer is detected (MosaicChangedError) and the guarded
  write is re-read, re-merged and retried (see `updates.py`);
- every store error becomes a typed error through one table (`ERROR_TABLE`).

A store module supplies the primitives (`_get_object`, `_put_object`, `_object_exists`,
`_delete_object`, `_list_object_keys`), `_classify` (its error codes -> `Failure`) and the
words of its messages (bucket or container, object or blob, its precondition's name).
"""

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import attr

from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.backends.compression import decode_document, encode_document, is_gzip_name
from lambda_handler.errors import (
    MosaicAuthError,
    MosaicChangedError,
    MosaicError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.model import MosaicJSON


class Failure(enum.Enum):
    """What a store error means. Stores report the first six; `PRECONDITION_FAILED` becomes
    EXISTS or CHANGED (by what was sent), `NOT_FOUND` becomes CONTAINER_NOT_FOUND or
    OBJECT_NOT_FOUND where the store can tell which."""

    PRECONDITION_FAILED = "precondition failed"
    NOT_FOUND = "not found (object or container)"
    CONTAINER_NOT_FOUND = "container not found"
    OBJECT_NOT_FOUND = "object not found"
    ACCESS_DENIED = "access denied"
    FAILED = "failed"
    EXISTS = "exists"
    CHANGED = "changed"


# The one table from store errors to the package's errors. Messages are formatted with the
# fields of `ObjectStoreBackend._message_fields`. FAILED reads raise MosaicError instead.
ERROR_TABLE: dict[Failure, tuple[type[MosaicError], str]] = {
    Failure.EXISTS: (MosaicExistsError, "mosaic already exists: {uri} (use overwrite=True)"),
    Failure.CHANGED: (
        MosaicChangedError,
        "mosaic {uri} changed since it was read ({condition} refused the {action})",
    ),
    Failure.CONTAINER_NOT_FOUND: (
        MosaicNotFoundError,
        "{container_label} not found: {container!r} (for {uri})",
    ),
    Failure.OBJECT_NOT_FOUND: (
        MosaicNotFoundError,
        "mosaic not found: {object_noun} {key!r} does not exist in {container_noun} {container!r}",
    ),
    Failure.NOT_FOUND: (MosaicNotFoundError, "mosaic not found: {uri}"),
    Failure.ACCESS_DENIED: (MosaicAuthError, "access denied to {uri} ({action}): {detail}; {hint}"),
    Failure.FAILED: (MosaicWriteError, "could not {action} {uri}: {detail}"),
}

# Actions that change nothing: their plain failures are MosaicError, not MosaicWriteError.
READ_ACTIONS = frozenset({"read", "list"})


@dataclass(frozen=True)
class StoredObject:
    """One read of an object: its bytes, the token a conditional put or delete names to mean
    "this copy" (ETag, GCS generation), and the revision HTTP ETags are made from."""

    body: bytes
    token: Any
    revision: str | None


def etag_revision(etag: str | None) -> str | None:
    """The revision of an object from its ETag (without the quotes HTTP puts around it)."""
    return etag.strip('"') if etag else None


def content_type_of(key: str) -> str:
    """The Content-Type a document is stored with. No Content-Encoding for `.gz`: HTTP clients
    would inflate it behind the reader's back."""
    return "application/gzip" if is_gzip_name(key) else "application/json"


@attr.s
class ObjectStoreBackend(MosaicJSONBackend):
    """A MosaicJSON document in one object of a bucket (or container); `.gz` keys are stored
    gzip-compressed. Subclasses supply the primitives and their vocabulary."""

    container: str = attr.ib(init=False)  # the bucket (S3, GCS) or container (Azure)
    key: str = attr.ib(init=False)

    # The words of the store's messages.
    _container_label: ClassVar[str] = "bucket"  # e.g. "S3 bucket", "Azure container"
    _container_noun: ClassVar[str] = "bucket"
    _object_noun: ClassVar[str] = "object"
    _condition_name: ClassVar[str] = "If-Match"  # what carries the token of a conditional put
    _credentials_hint: ClassVar[str] = "check the credentials"
    # Whether create-only writes look first: where a server may ignore the put-if-absent
    # precondition (s3rver, gcp-storage-emulator), an existing document is still refused.
    _create_checks_first: ClassVar[bool] = True
    # Whether deleting a missing object is an error of the store (S3's DeleteObject is not).
    _delete_reports_missing: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        """Parse the URI (and check the client library), then read the document."""
        self.container, self.key = self._locate()
        super().__attrs_post_init__()

    # ------------------------------------------------------------------ primitives (override)
    def _locate(self) -> tuple[str, str]:
        """(container, key) of `self.input`; InvalidMosaicError for a malformed URI."""
        raise NotImplementedError

    def _get_object(self) -> StoredObject:
        """Download the object."""
        raise NotImplementedError

    def _put_object(
        self, body: bytes, content_type: str, *, if_absent: bool, if_match: Any
    ) -> str | None:
        """Upload the object (only where none is, with `if_absent`; only over the copy of token
        `if_match`, when given); returns the revision of the stored copy."""
        raise NotImplementedError

    def _object_exists(self) -> bool:
        """Whether the object exists (a metadata request)."""
        raise NotImplementedError

    def _delete_object(self, *, if_match: Any) -> None:
        """Delete the object (only the copy of token `if_match`, when given)."""
        raise NotImplementedError

    def _list_object_keys(self, prefix: str) -> list[str]:
        """Keys of the container's objects starting with `prefix`."""
        raise NotImplementedError

    def _classify(self, err: Exception) -> tuple[Failure, str] | None:
        """What a store error means and a one-line detail; None for errors not of the store."""
        raise NotImplementedError

    def _container_exists(self) -> bool | None:
        """Whether the container exists, for stores whose "not found" does not say what is
        missing; None when it cannot be told."""
        return None

    # ------------------------------------------------------------------ the protocol
    def _read(self) -> MosaicJSON:
        return self._read_for_write()[0]

    def _read_for_write(self) -> tuple[MosaicJSON, Any]:
        """The document (with its store revision) and the token of the copy read."""
        with self._translated("read"):
            stored = self._get_object()
        document = decode_document(stored.body, self.input)
        return document.with_store_revision(stored.revision), stored.token

    def write(self, overwrite: bool = False) -> None:
        """Upload the document in one request: readers see the old or the new one, never a mix.
        Create-only unless `overwrite`; inside a read-modify-write, a replace is conditional
        on the copy read."""
        body = encode_document(self.mosaic_def, self.key)
        if_match = self._expected_token if overwrite else None
        try:
            with self._translated("replace" if overwrite else "write", if_match):
                if not overwrite and self._create_checks_first and self._object_exists():
                    raise self._error(Failure.EXISTS, "write")
                revision = self._put_object(
                    body, content_type_of(self.key), if_absent=not overwrite, if_match=if_match
                )
        finally:
            self._invalidate()
        self.mosaic_def.with_store_revision(revision)

    def delete(self) -> None:
        """Delete the object (MosaicNotFoundError if it does not exist); inside a guarded
        write, only the copy read."""
        if_match = self._expected_token
        try:
            with self._translated("delete", if_match):
                if not self._delete_reports_missing and not self._object_exists():
                    raise self._error(Failure.NOT_FOUND, "delete")
                self._delete_object(if_match=if_match)
        finally:
            self._invalidate()

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys of the objects in this mosaic's container starting with `prefix`, sorted."""
        with self._translated("list"):
            return sorted(self._list_object_keys(prefix))

    # ------------------------------------------------------------------ errors
    @contextmanager
    def _translated(self, action: str, if_match: Any = None) -> Iterator[None]:
        """Raise the typed error of a store error met while doing `action` (`if_match`: the
        token a conditional request sent); other errors pass unchanged."""
        try:
            yield
        except Exception as err:
            found = self._classify(err)
            if found is None:
                raise
            failure, detail = found
            raise self._error(self._refine(failure, action, if_match), action, detail) from err

    def _refine(self, failure: Failure, action: str, if_match: Any) -> Failure:
        """The meaning of a store's answer in the request that got it."""
        if failure is Failure.PRECONDITION_FAILED:
            if action == "write":  # a create-only put
                return Failure.EXISTS
            # A conditional replace or delete; Azure's SDK also makes chunked reads conditional.
            if if_match is not None or action == "read":
                return Failure.CHANGED
            return Failure.FAILED
        if failure is Failure.NOT_FOUND:
            exists = self._container_exists()
            if exists is not None:
                return Failure.OBJECT_NOT_FOUND if exists else Failure.CONTAINER_NOT_FOUND
        return failure

    def _error(self, failure: Failure, action: str, detail: str = "") -> MosaicError:
        """The package's error for `failure` while doing `action`, from `ERROR_TABLE`."""
        error_type, template = ERROR_TABLE[failure]
        if failure is Failure.FAILED and action in READ_ACTIONS:
            error_type = MosaicError
        return error_type(template.format(**self._message_fields(action, detail)))

    def _message_fields(self, action: str, detail: str) -> dict[str, str]:
        return {
            "uri": self.input,
            "container": self.container,
            "key": self.key,
            "container_label": self._container_label,
            "container_noun": self._container_noun,
            "object_noun": self._object_noun,
            "condition": self._condition_name,
            "hint": self._credentials_hint,
            "action": action,
            "detail": detail,
        }
