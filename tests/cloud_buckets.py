"""Fresh buckets and containers on the object-store stand-ins (moto or s3rver, the GCS emulator,
azurite), and a recorder of the requests the GCS client sends, for the test modules of those
stores (tests never import from one another). Each helper points the client libraries, and GDAL,
at its stand-in through `monkeypatch`, so the environment is restored after the test."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lambda_handler.backends.azure import azure_client, parse_azure_uri
from lambda_handler.backends.gcs import gcs_client

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
