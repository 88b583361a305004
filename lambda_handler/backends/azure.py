"""Azure Blob Storage backend: a whole MosaicJSON document in a blob.

URIs: `az://{account}.blob.core.windows.net/{container}/{key}` (cogeo-mosaic's form; any
`{account}.blob.{cloud suffix}` host works), or `az://{container}/{key}` with the account taken
from the connection string or `AZURE_STORAGE_ACCOUNT` (the form GDAL and rasterio use for assets).

The client libraries are the optional extra `azure` (`pip install lambda-mosaic-tiler[azure]`),
imported on first use. Credentials: `AZURE_STORAGE_CONNECTION_STRING` when it is for the URI's
account (its `BlobEndpoint=` also points at an emulator such as azurite), otherwise
`DefaultAzureCredential` (environment, workload/managed identity, Azure CLI, …).

Concurrent updates: an update reads the blob and its ETag, merges, and uploads with
`If-Match: <that ETag>` (azurite honours it); a writer that lost the race gets 412, re-reads,
re-merges and retries (bounded, then MosaicConflictError). The protocol and the error table are
`object_store.py`'s; this module holds Azure's vocabulary.
"""

import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import attr

from lambda_handler.backends.object_store import (
    Failure,
    ObjectStoreBackend,
    StoredObject,
    etag_revision,
)
from lambda_handler.errors import BackendNotAvailableError, InvalidMosaicError, brief_message
from lambda_handler.settings import cloud_storage_settings

if TYPE_CHECKING:  # the libraries are optional: only type checkers import them here
    from azure.storage.blob import BlobClient, BlobServiceClient

SCHEME = "az://"
EXTRA_HINT = 'pip install "lambda-mosaic-tiler[azure]"'
ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
# 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit;
# `$root` and `$web` are the two special containers.
CONTAINER_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}|\$root|\$web)$")


@dataclass(frozen=True)
class AzureLocation:
    """Account, endpoint host (None: from the connection string), container and blob name."""

    account: str | None
    host: str | None
    container: str
    key: str


def parse_azure_uri(uri: str) -> AzureLocation:
    """Split an `az://` URI; the key is everything after the first '/' after the container."""
    if not uri.lower().startswith(SCHEME):
        raise InvalidMosaicError(f"not an Azure Blob URI: {uri!r}")
    usage = "expected az://{account}.blob.core.windows.net/{container}/{key}"
    first, _, rest = uri[len(SCHEME) :].partition("/")
    if "." in first:  # container names cannot hold dots: this is an account host
        host = first.lower()
        account, _, suffix = host.partition(".")
        if not ACCOUNT_RE.match(account) or not suffix.startswith("blob."):
            raise InvalidMosaicError(f"invalid Azure account host {first!r} in {uri!r}: {usage}")
        container, _, key = rest.partition("/")
    else:
        account, host, container, key = None, None, first, rest
    if not CONTAINER_RE.match(container):
        raise InvalidMosaicError(f"invalid Azure container name {container!r} in {uri!r}: {usage}")
    if not key or key.endswith("/"):
        raise InvalidMosaicError(f"Azure URI {uri!r} names no blob: {usage}")
    return AzureLocation(account, host, container, key)


def _import_blob() -> Any:
    """`azure.storage.blob`, or BackendNotAvailableError naming the extra."""
    try:
        from azure.storage import blob
    except ImportError as err:
        raise BackendNotAvailableError(
            f"az:// mosaics need the Azure Blob Storage client library ({err}): {EXTRA_HINT}"
        ) from err
    return blob


def _connection_string_account(connection_string: str) -> str | None:
    for part in connection_string.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip().lower() == "accountname":
            return value.strip()
    return None


# One client per process and account: each holds a connection pool that later requests reuse,
# and DefaultAzureCredential caches its tokens (cogeo-mosaic rebuilds both per open).
_clients: dict[tuple[Any, ...], "BlobServiceClient"] = {}
_credential: Any = None
_clients_lock = threading.Lock()


def azure_client(location: AzureLocation) -> "BlobServiceClient":
    """The process's client for the account of `location`."""
    blob = _import_blob()
    connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or None
    cs_account = _connection_string_account(connection_string) if connection_string else None
    use_connection_string = connection_string is not None and (
        location.account is None or cs_account is None or cs_account == location.account
    )
    timeout = cloud_storage_settings().timeout
    options = {"connection_timeout": timeout, "read_timeout": timeout}
    if use_connection_string:
        key: tuple[Any, ...] = ("connection-string", connection_string, timeout)
    else:
        account = location.account or os.environ.get("AZURE_STORAGE_ACCOUNT")
        if not account:
            raise InvalidMosaicError(
                f"no Azure storage account for az://{location.container}/{location.key}: use "
                "az://{account}.blob.core.windows.net/{container}/{key}, or set "
                "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT"
            )
        url = f"https://{location.host or account + '.blob.core.windows.net'}"
        key = ("credential", url, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if use_connection_string:
                client = blob.BlobServiceClient.from_connection_string(connection_string, **options)
            else:
                client = blob.BlobServiceClient(key[1], credential=_default_credential(), **options)
            _clients[key] = client
        return client


def _default_credential() -> Any:
    global _credential  # the one process-wide credential (it caches tokens)
    if _credential is None:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as err:
            raise BackendNotAvailableError(
                f"az:// mosaics without AZURE_STORAGE_CONNECTION_STRING need azure-identity "
                f"({err}): {EXTRA_HINT}"
            ) from err
        _credential = DefaultAzureCredential()
    return _credential


@attr.s
class AzureBackend(ObjectStoreBackend):
    """A MosaicJSON document in an Azure blob; `.gz` names are stored gzip-compressed.

    `write(overwrite=False)` uploads with `If-None-Match: *`, so the service itself refuses to
    replace a blob that exists, even when two writers race.
    """

    _backend_name: ClassVar[str] = "Azure Blob Storage"
    _container_label: ClassVar[str] = "Azure container"
    _container_noun: ClassVar[str] = "container"
    _object_noun: ClassVar[str] = "blob"
    _credentials_hint: ClassVar[str] = (
        "check AZURE_STORAGE_CONNECTION_STRING or the DefaultAzureCredential sources"
    )
    # The service (azurite too) honours If-None-Match: no look first.
    _create_checks_first: ClassVar[bool] = False
    location: AzureLocation = attr.ib(init=False)

    def _locate(self) -> tuple[str, str]:
        """Check the URI and the client library before anything is read."""
        self.location = parse_azure_uri(self.input)
        _import_blob()
        return self.location.container, self.location.key

    def _blob(self) -> "BlobClient":
        return azure_client(self.location).get_blob_client(self.container, self.key)

    @staticmethod
    def _match(if_match: Any) -> dict[str, Any]:
        """Keyword arguments making a request conditional on an ETag (none without one)."""
        if not if_match:
            return {}
        from azure.core import MatchConditions

        return {"etag": if_match, "match_condition": MatchConditions.IfNotModified}

    # ------------------------------------------------------------------ primitives
    def _get_object(self) -> StoredObject:
        download = self._blob().download_blob()
        body = download.readall()
        etag = download.properties.etag
        return StoredObject(body, etag, etag_revision(etag))

    def _put_object(
        self, body: bytes, content_type: str, *, if_absent: bool, if_match: Any
    ) -> str | None:
        content_settings = _import_blob().ContentSettings(content_type=content_type)
        # overwrite=False makes the SDK send If-None-Match: * (checked by the service).
        result = self._blob().upload_blob(
            body,
            overwrite=not if_absent,
            content_settings=content_settings,
            **self._match(if_match),
        )
        return etag_revision((result or {}).get("etag"))

    def _object_exists(self) -> bool:
        return self._blob().exists()

    def _delete_object(self, *, if_match: Any) -> None:
        self._blob().delete_blob(**self._match(if_match))

    def _list_object_keys(self, prefix: str) -> list[str]:
        container = azure_client(self.location).get_container_client(self.container)
        return list(container.list_blob_names(name_starts_with=prefix or None))

    def _classify(self, err: Exception) -> tuple[Failure, str] | None:
        from azure.core import exceptions as azure_errors

        if not isinstance(err, azure_errors.AzureError):
            return None
        status = getattr(err, "status_code", None)
        failure = Failure.FAILED
        if isinstance(err, azure_errors.ResourceExistsError | azure_errors.ResourceModifiedError):
            failure = Failure.PRECONDITION_FAILED  # 409 BlobAlreadyExists, 412 ConditionNotMet
        elif status == 412:
            failure = Failure.PRECONDITION_FAILED
        elif isinstance(err, azure_errors.ResourceNotFoundError) or status == 404:
            container_missing = getattr(err, "error_code", None) == "ContainerNotFound"
            failure = Failure.CONTAINER_NOT_FOUND if container_missing else Failure.OBJECT_NOT_FOUND
        elif isinstance(err, azure_errors.ClientAuthenticationError) or status in (401, 403):
            failure = Failure.ACCESS_DENIED
        return failure, brief_message(err)


# cogeo-mosaic's name for this backend.
ABSBackend = AzureBackend
