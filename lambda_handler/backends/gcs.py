"""Google Cloud Storage backend: a whole MosaicJSON document at `gs://{bucket}/{key}`.

The client library is the optional extra `gcs` (`pip install lambda-mosaic-tiler[gcs]`): it is
imported on first use, so the package (and the Lambda bundle) does not need it unless a `gs://`
mosaic is opened. Credentials are Google's application default credentials; without any, the
client reads anonymously (public buckets). `STORAGE_EMULATOR_HOST` points the client at an
emulator, as Google's library does by itself.

Concurrent updates: an update reads the document and its generation, merges, and uploads with
`ifGenerationMatch=<that generation>`; a writer that lost the race gets 412, re-reads, re-merges
and retries (bounded, then MosaicConflictError). gcp-storage-emulator ignores preconditions, so
the tests check the request carries it. The protocol and the error table are
`object_store.py`'s; this module holds GCS's vocabulary.
"""

import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import attr

from lambda_handler.backends.compression import revision_of
from lambda_handler.backends.object_store import Failure, ObjectStoreBackend, StoredObject
from lambda_handler.errors import BackendNotAvailableError, InvalidMosaicError, brief_message
from lambda_handler.settings import cloud_storage_settings

if TYPE_CHECKING:  # the library is optional: only type checkers import it here
    from google.cloud.storage import Blob, Client

SCHEME = "gs://"
EXTRA_HINT = 'pip install "lambda-mosaic-tiler[gcs]"'
# Bucket names: lowercase letters, digits, '-', '_', '.'; start and end with a letter or digit.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


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
class GCSBackend(ObjectStoreBackend):
    """A MosaicJSON document in a GCS object; `.gz` names are stored gzip-compressed.

    `write(overwrite=False)` sends `ifGenerationMatch=0`, so GCS itself refuses to replace an
    object that exists, even when two writers race.
    """

    _backend_name: ClassVar[str] = "Google Cloud Storage"
    _container_label: ClassVar[str] = "GCS bucket"
    _condition_name: ClassVar[str] = "ifGenerationMatch"
    _credentials_hint: ClassVar[str] = (
        "check the application default credentials (or MOSAIC_CLOUD_GCS_ANONYMOUS for public "
        "buckets)"
    )

    def _locate(self) -> tuple[str, str]:
        """Check the URI and the client library before anything is read."""
        location = parse_gcs_uri(self.input)
        _import_storage()
        return location.bucket, location.key

    def _blob(self) -> "Blob":
        return gcs_client().bucket(self.container).blob(self.key)

    # ------------------------------------------------------------------ primitives
    def _get_object(self) -> StoredObject:
        """The bytes, their generation, and a digest of them as the store revision."""
        blob = self._blob()
        timeout = cloud_storage_settings().timeout
        body = blob.download_as_bytes(timeout=timeout)
        # The download's headers carry the generation; servers that omit them are asked.
        if blob.generation is None:
            blob.reload(timeout=timeout)
        generation = int(blob.generation) if blob.generation is not None else None
        return StoredObject(body, generation, revision_of(body))

    def _put_object(
        self, body: bytes, content_type: str, *, if_absent: bool, if_match: Any
    ) -> str | None:
        # Create only (0: no live object), or replace only the generation a read-modify-write
        # started from, or (None) replace whatever is there.
        self._blob().upload_from_string(
            body,
            content_type=content_type,
            if_generation_match=0 if if_absent else if_match,
            timeout=cloud_storage_settings().timeout,
        )
        return revision_of(body)

    def _object_exists(self) -> bool:
        return self._blob().exists(timeout=cloud_storage_settings().timeout)

    def _delete_object(self, *, if_match: Any) -> None:
        self._blob().delete(if_generation_match=if_match, timeout=cloud_storage_settings().timeout)

    def _list_object_keys(self, prefix: str) -> list[str]:
        blobs = gcs_client().list_blobs(
            self.container, prefix=prefix or None, timeout=cloud_storage_settings().timeout
        )
        return [blob.name for blob in blobs]

    def _classify(self, err: Exception) -> tuple[Failure, str] | None:
        from google.api_core import exceptions as api
        from google.auth.exceptions import GoogleAuthError
        from requests import RequestException

        failures: tuple[tuple[Any, Failure], ...] = (
            (api.PreconditionFailed, Failure.PRECONDITION_FAILED),
            # GCS's 404 does not say whether the bucket or the object is missing.
            (api.NotFound, Failure.NOT_FOUND),
            (api.Forbidden | api.Unauthorized | GoogleAuthError, Failure.ACCESS_DENIED),
            (api.GoogleAPICallError | RequestException, Failure.FAILED),
        )
        for error_types, failure in failures:
            if isinstance(err, error_types):
                return failure, brief_message(err)
        return None

    def _container_exists(self) -> bool | None:
        try:
            return (
                gcs_client().bucket(self.container).exists(timeout=cloud_storage_settings().timeout)
            )
        except Exception:  # e.g. no right to see the bucket: name the object only
            return None
