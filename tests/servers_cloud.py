"""Session fixtures starting the Google Cloud Storage and Azure Blob stand-ins on 127.0.0.1.

- gcp-storage-emulator (PyPI), in memory. It ignores page sizes and preconditions
  (`ifGenerationMatch`), both measured.
- azurite's blob service (npm, `tests/node`), its files in a temporary directory.

Each fixture picks a free port, waits until the server answers HTTP, and stops it at the end.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
AZURITE_BIN = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
# azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class GCSEmulator:
    """A running gcp-storage-emulator."""

    endpoint: str  # http://127.0.0.1:PORT (STORAGE_EMULATOR_HOST)

    @property
    def gdal_env(self) -> dict[str, str]:
        """GDAL options that make /vsigs/ (and rasterio's gs://) read from the emulator."""
        return {"CPL_GS_ENDPOINT": self.endpoint + "/", "GS_NO_SIGN_REQUEST": "YES"}


@dataclass(frozen=True)
class Azurite:
    """A running azurite blob service."""

    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        """AZURE_STORAGE_CONNECTION_STRING for the SDK and for GDAL's /vsiaz/."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.endpoint};"
        )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_answering(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            httpx.get(url, timeout=1.0)  # any HTTP answer (even 4xx) means it is serving
            return
        except httpx.TransportError:
            time.sleep(0.1)
    _stop(process)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT} s:\n{log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[GCSEmulator]:
    """gcp-storage-emulator on a free port of 127.0.0.1, in memory."""
    directory = tmp_path_factory.mktemp("gcs-emulator")
    port = free_port()
    command = shutil.which("gcp-storage-emulator")
    args = [command] if command else [sys.executable, "-m", "gcp_storage_emulator"]
    log = directory / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*args, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(endpoint + "/", process, log)
        yield GCSEmulator(endpoint)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    """azurite's blob service on a free port of 127.0.0.1, data in a temporary directory."""
    node = shutil.which("node")
    if node is None or not AZURITE_BIN.exists():
        raise RuntimeError(f"azurite needs node and `npm ci --prefix {NODE_DIR}` ({AZURITE_BIN})")
    directory = tmp_path_factory.mktemp("azurite")
    port = free_port()
    log = directory / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                node,
                str(AZURITE_BIN),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                str(directory / "data"),
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
            ],
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Without AZURITE_ACCOUNTS azurite serves its well-known development account.
            env={k: v for k, v in os.environ.items() if k != "AZURITE_ACCOUNTS"},
        )
    try:
        _wait_until_answering(f"http://127.0.0.1:{port}/", process, log)
        yield Azurite(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        _stop(process)
