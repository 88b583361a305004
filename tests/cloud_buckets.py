"""The object-store stand-ins (moto or s3rver, the GCS emulator, azurite) as test modules use
them (tests never import from one another): fresh buckets and containers, a recorder of the
requests the GCS client sends, and `ObjectStore`, one interface over the three stores' own client
libraries for the shared suite (tests/test_object_stores.py). Each helper points the client
libraries, and GDAL, at its stand-in through `monkeypatch`, so the environment is restored after
the test."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest

from lambda_handler.backends.azure import AzureBackend, azure_client, parse_azure_uri
from lambda_handler.backends.gcs import GCSBackend, gcs_client
from lambda_handler.backends.s3 import S3Backend
from lambda_handler.mosaic.model import MosaicJSON
from tests.fault_proxy import Reply

AZURE_HOST = "devstoreaccount1.blob.core.windows.net"


def fresh_name(prefix: str) -> str:
    """A bucket or container name no other test uses (the servers live for the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_s3_bucket(server: Any, monkeypatch: pytest.MonkeyPatch, prefix: str = "mosaics") -> str:
    """boto3 and GDAL pointed at an S3 stand-in (moto or s3rver); a fresh bucket on it."""
    for variable in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in {**server.boto3_env("s3"), **server.gdal_env()}.items():
        monkeypatch.setenv(variable, value)
    name = fresh_name(prefix)
    server.client("s3").create_bucket(Bucket=name)
    return name


def new_gcs_bucket(emulator: Any, monkeypatch: pytest.MonkeyPatch, prefix: str = "mosaics") -> str:
    """The client library and GDAL pointed at gcp-storage-emulator; a fresh bucket on it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    for variable, value in emulator.gdal_env.items():
        monkeypatch.setenv(variable, value)
    name = fresh_name(prefix)
    gcs_client().create_bucket(name)
    return name


def azure_service() -> Any:
    """The process's azurite client (for the account of the connection string)."""
    return azure_client(parse_azure_uri(f"az://{AZURE_HOST}/any/thing.json"))


def new_azure_container(
    azurite: Any, monkeypatch: pytest.MonkeyPatch, prefix: str = "mosaics"
) -> str:
    """The SDK and GDAL pointed at azurite (one connection string); a fresh container on it."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    name = fresh_name(prefix)
    azure_service().create_container(name)
    return name


@contextmanager
def gcs_requests() -> Iterator[list[tuple[str, str]]]:
    """(method, URL) of every request the process's GCS client sends inside the block, as the
    server received them (gcp-storage-emulator ignores preconditions, so tests check that the
    requests carry them)."""
    sent: list[tuple[str, str]] = []

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        sent.append((response.request.method, response.request.url))

    session = gcs_client()._http
    session.hooks["response"].append(record)
    try:
        yield sent
    finally:
        session.hooks["response"].remove(record)


def uploads(sent: list[tuple[str, str]]) -> list[str]:
    """The URLs of the uploads among recorded GCS requests."""
    return [url for method, url in sent if method == "POST" and "/upload/" in url]


class ObjectStore:
    """One store of the suite: a fresh bucket (or container) on its stand-in, and its client."""

    name: ClassVar[str]
    backend_class: ClassVar[type]
    container_noun: ClassVar[str] = "bucket"
    # Whether the stand-in refuses a create-only put over an object created concurrently
    # (s3rver ignores If-None-Match, gcp-storage-emulator ignores ifGenerationMatch).
    atomic_create: ClassVar[bool] = False

    def __init__(self, monkeypatch: pytest.MonkeyPatch, container: str):
        self.monkeypatch = monkeypatch
        self.container = container

    def uri(self, key: str, container: str | None = None) -> str:
        """The mosaic URI of `key` (in another container, when given)."""
        raise NotImplementedError

    def asset_url(self, key: str) -> str:
        """The URL GDAL reads an uploaded COG from."""
        raise NotImplementedError

    def put(self, key: str, body: bytes) -> None:
        raise NotImplementedError

    def stored_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def keys(self) -> list[str]:
        """Every key of the container, sorted."""
        raise NotImplementedError

    def refuse_credentials(self, fault_proxy: Any) -> None:
        """From now on the store refuses this process's requests (401/403)."""
        raise NotImplementedError

    def before_create_race(self, mosaic: MosaicJSON) -> None:
        """Work to do before writers race to create a mosaic."""


class S3Store(ObjectStore):
    """A bucket on moto or s3rver; GDAL reads `s3://` from the same server."""

    backend_class = S3Backend

    def __init__(self, monkeypatch: pytest.MonkeyPatch, server: Any):
        super().__init__(monkeypatch, new_s3_bucket(server, monkeypatch))
        self.name = server.name
        self.server = server
        self.client = server.client("s3")

    def uri(self, key: str, container: str | None = None) -> str:
        return f"s3://{container or self.container}/{key}"

    asset_url = uri

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.container, Key=key, Body=body)

    def stored_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.container, Key=key)["Body"].read()

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.container).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def refuse_credentials(self, fault_proxy: Any) -> None:
        body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        proxy = fault_proxy(
            self.server.endpoint,
            lambda i, r: Reply(403, body, {"Content-Type": "application/xml"}),
        )
        self.monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)

    def before_create_race(self, mosaic: MosaicJSON) -> None:
        # Probe the server's If-None-Match support before the race, not during it.
        S3Backend(self.uri("probe.json"), mosaic_def=mosaic).conditional_put_supported()


class GCSStore(ObjectStore):
    """A bucket on gcp-storage-emulator, for the client library and for GDAL."""

    name = "gcs"
    backend_class = GCSBackend

    def __init__(self, monkeypatch: pytest.MonkeyPatch, emulator: Any):
        super().__init__(monkeypatch, new_gcs_bucket(emulator, monkeypatch))
        self.emulator = emulator

    def uri(self, key: str, container: str | None = None) -> str:
        return f"gs://{container or self.container}/{key}"

    asset_url = uri

    def put(self, key: str, body: bytes) -> None:
        gcs_client().bucket(self.container).blob(key).upload_from_string(body)

    def stored_bytes(self, key: str) -> bytes:
        return gcs_client().bucket(self.container).blob(key).download_as_bytes()

    def keys(self) -> list[str]:
        return sorted(blob.name for blob in gcs_client().list_blobs(self.container))

    def refuse_credentials(self, fault_proxy: Any) -> None:
        body = json.dumps({"error": {"code": 403, "message": "Access denied."}}).encode()
        proxy = fault_proxy(
            self.emulator.endpoint,
            lambda i, r: Reply(403, body, {"Content-Type": "application/json"}),
        )
        self.monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)


class AzureStore(ObjectStore):
    """A container on azurite; one connection string serves the SDK and GDAL."""

    name = "azure"
    backend_class = AzureBackend
    container_noun = "container"
    atomic_create = True

    def __init__(self, monkeypatch: pytest.MonkeyPatch, azurite: Any):
        super().__init__(monkeypatch, new_azure_container(azurite, monkeypatch))
        self.azurite = azurite

    def uri(self, key: str, container: str | None = None) -> str:
        return f"az://{AZURE_HOST}/{container or self.container}/{key}"

    def asset_url(self, key: str) -> str:
        return f"az://{self.container}/{key}"  # GDAL's short form

    def put(self, key: str, body: bytes) -> None:
        azure_service().get_blob_client(self.container, key).upload_blob(body)

    def stored_bytes(self, key: str) -> bytes:
        return azure_service().get_blob_client(self.container, key).download_blob().readall()

    def keys(self) -> list[str]:
        return sorted(azure_service().get_container_client(self.container).list_blob_names())

    def refuse_credentials(self, fault_proxy: Any) -> None:
        wrong = self.azurite.connection_string.replace(self.azurite.key, "A" * 86 + "==")
        self.monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
