"""Google Cloud Storage backend: a whole MosaicJSON document at `gs://{bucket}/{key}`.

The client library is the optional extra `gcs` (`pip install lambda-mosaic-tiler[gcs]`): it is
imported on first use, so the package (and the Lambda bundle) does not need it unless a `gs://`
mosaic is opened. Credentials are Google's application default credentials; without any, the
client reads anonymously (public buckets). `STORAGE_EMULATOR_HOST` points the client at an
emulator, as Google's library does by itself.

Concurrent updates: an update reads the document and its generation, merges, and uploads with
`ifGenerationMatch=<that generation>`; a writer that lost the race gets 412, re-reads, re-merges
and retries (bounded, then MosaicConflictError). gcp-storage-emulator ignores preconditions, so
the tests check the request carries it.
"""

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import attr

from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.backends.compression import decode_document, encode_document, is_gzip_name
from lambda_handler.errors import (
    BackendNotAvailableError,
    InvalidMosaicError,
    MosaicAuthError,
    MosaicChangedError,
    MosaicError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
    brief_message,
)
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.settings import cloud_storage_settings

if TYPE_CHECKING:  # the library is optional: only type checkers import it here
    from google.cloud.storage import Blob, Client

SCHEME = "gs://"
EXTRA_HINT = 'pip install "lambda-mosaic-tiler[gcs]"'
# Bucket names: lowercase letters, digits, '-', '_', '.'; start and end with a letter or digit.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def _digest(body: bytes) -> str:
    return hashlib.sha1(body, usedforsecurity=False).hexdigest()[:20]


@dataclass(frozen=True)
class GCSLocation:
    """Bucket and object name of a `gs://` URI."""

    bucket: str
    key: str


def parse_gcs_uri(uri: str) -> GCSLocation:
    """Split `gs://{bucket}/{key}`; the key is everything after the first '/' after the bucket."""
    if not uri.lower().startswith(SCHEME):
        raise InvalidMosaicError(f"not a Google Cloud Storage URI: {uri!r}")
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not BUCKET_RE.match(bucket):
        raise InvalidMosaicError(
            f"invalid GCS bucket name {bucket!r} in {uri!r}: expected gs://{{bucket}}/{{key}}"
        )
    if not key or key.endswith("/"):
        raise InvalidMosaicError(
            f"GCS URI {uri!r} names no object: expected gs://{{bucket}}/{{key}}"
        )
    return GCSLocation(bucket, key)


def _import_storage() -> Any:
    """`google.cloud.storage`, or BackendNotAvailableError naming the extra."""
    try:
        from google.cloud import storage
    except ImportError as err:
        raise BackendNotAvailableError(
            f"gs:// mosaics need the Google Cloud Storage client library ({err}): {EXTRA_HINT}"
        ) from err
    return storage


# One client per process and configuration: building one costs a credentials lookup, and a
# client holds a connection pool that later requests reuse (cogeo-mosaic rebuilds it per open).
_clients: dict[tuple[Any, ...], "Client"] = {}
_clients_lock = threading.Lock()


def gcs_client() -> "Client":
    """The process's GCS client for the current emulator/credential settings."""
    storage = _import_storage()
    settings = cloud_storage_settings()
    key = (os.environ.get("STORAGE_EMULATOR_HOST"), settings.gcs_anonymous, settings.gcs_project)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(
                storage, settings.gcs_anonymous, settings.gcs_project
            )
        return client


def _new_client(storage: Any, anonymous: bool, project: str | None) -> "Client":
    from google.auth.exceptions import DefaultCredentialsError

    if anonymous:
        return storage.Client.create_anonymous_client()
    try:
        return storage.Client(project=project)
    except DefaultCredentialsError:
        # No application default credentials: public buckets are still readable anonymously;
        # anything else answers 401/403, reported as MosaicAuthError.
        return storage.Client.create_anonymous_client()


@attr.s
class GCSBackend(MosaicJSONBackend):
    """A MosaicJSON document in a GCS object; `.gz` names are stored gzip-compressed.

    `write(overwrite=False)` sends `ifGenerationMatch=0`, so GCS itself refuses to replace an
    object that exists, even when two writers race.
    """

    _backend_name: ClassVar[str] = "Google Cloud Storage"
    location: GCSLocation = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        """Check the URI and the client library before anything is read."""
        self.location = parse_gcs_uri(self.input)
        _import_storage()
        super().__attrs_post_init__()

    def _blob(self) -> "Blob":
        where = self.location
        return gcs_client().bucket(where.bucket).blob(where.key)

    def _read(self) -> MosaicJSON:
        return self._read_for_write()[0]

    def _read_for_write(self) -> tuple[MosaicJSON, int | None]:
        """The document (store revision: a digest of its bytes) and its generation."""
        where = self.location
        blob = self._blob()
        timeout = cloud_storage_settings().timeout
        try:
            body = blob.download_as_bytes(timeout=timeout)
            # The download's headers carry the generation; servers that omit them are asked.
            if blob.generation is None:
                blob.reload(timeout=timeout)
        except Exception as err:
            raise self._translate(err, "read") from err
        generation = int(blob.generation) if blob.generation is not None else None
        document = decode_document(body, where.key)
        return document.with_store_revision(_digest(body)), generation

    def write(self, overwrite: bool = False) -> None:
        """Upload the document in one request; GCS makes it visible only once complete."""
        where = self.location
        body = encode_document(self.mosaic_def, where.key)
        blob = self._blob()
        if not overwrite:
            # The precondition below is what makes create-only atomic on GCS; this check first
            # keeps it for stores that ignore preconditions (gcp-storage-emulator does, measured)
            # and costs one metadata request on a rare operation.
            try:
                exists = blob.exists(timeout=cloud_storage_settings().timeout)
            except Exception as err:
                raise self._translate(err, "write") from err
            if exists:
                raise MosaicExistsError(f"mosaic already exists: {self.input} (use overwrite=True)")
        # Create only (0: no live object), or replace only the generation a read-modify-write
        # started from, or replace whatever is there.
        generation = self._expected_token if overwrite else 0
        try:
            blob.upload_from_string(
                body,
                content_type="application/gzip" if is_gzip_name(where.key) else "application/json",
                if_generation_match=generation,
                timeout=cloud_storage_settings().timeout,
            )
        except Exception as err:
            raise self._translate(err, "write" if not overwrite else "replace") from err
        finally:
            self._invalidate()
        self.mosaic_def.with_store_revision(_digest(body))

    def delete(self) -> None:
        """Delete the object."""
        try:
            self._blob().delete(
                if_generation_match=self._expected_token,
                timeout=cloud_storage_settings().timeout,
            )
        except Exception as err:
            raise self._translate(err, "delete") from err
        finally:
            self._invalidate()

    def _translate(self, err: Exception, action: str) -> Exception:
        """A typed error for a failed request (the original is chained by the caller)."""
        from google.api_core import exceptions as api
        from google.auth.exceptions import GoogleAuthError
        from requests import RequestException

        failed = MosaicWriteError if action in ("write", "replace", "delete") else MosaicError
        if isinstance(err, api.PreconditionFailed) and action == "write":
            return MosaicExistsError(f"mosaic already exists: {self.input} (use overwrite=True)")
        if isinstance(err, api.PreconditionFailed) and action in ("replace", "delete"):
            return MosaicChangedError(
                f"mosaic {self.input} changed since it was read (ifGenerationMatch refused the "
                f"{action})"
            )
        if isinstance(err, api.NotFound):
            return MosaicNotFoundError(self._not_found_message())
        if isinstance(err, api.Forbidden | api.Unauthorized | GoogleAuthError):
            return MosaicAuthError(
                f"access denied to {self.input} ({action}): {brief_message(err)}; check the "
                "application default credentials (or MOSAIC_CLOUD_GCS_ANONYMOUS for public buckets)"
            )
        if isinstance(err, api.GoogleAPICallError | RequestException):
            return failed(f"could not {action} {self.input}: {brief_message(err)}")
        return err

    def _not_found_message(self) -> str:
        where = self.location
        try:
            bucket_exists = (
                gcs_client().bucket(where.bucket).exists(timeout=cloud_storage_settings().timeout)
            )
        except Exception:  # e.g. no right to see the bucket: name the object only
            return f"mosaic not found: {self.input}"
        if not bucket_exists:
            return f"GCS bucket not found: {where.bucket!r} (for {self.input})"
        return f"mosaic not found: object {where.key!r} does not exist in bucket {where.bucket!r}"
