"""Session fixtures starting the Google Cloud Storage and Azure Blob stand-ins on 127.0.0.1.

- gcp-storage-emulator (PyPI), in memory. It ignores page sizes and preconditions
  (`ifGenerationMatch`), both measured.
- azurite's blob service (npm, `tests/node`), its files in a temporary directory.

Each fixture picks a free port, waits until the server answers HTTP, and stops it at the end.
"""

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import LOOPBACK, ServerProcess, free_port, serving

NODE_DIR = Path(__file__).resolve().parent / "node"
AZURITE_BIN = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
# azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


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


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[GCSEmulator]:
    """gcp-storage-emulator on a free port of 127.0.0.1, in memory."""
    directory = tmp_path_factory.mktemp("gcs-emulator")
    port = free_port()
    program = shutil.which("gcp-storage-emulator")
    args = [program] if program else [sys.executable, "-m", "gcp_storage_emulator"]
    command = [*args, "start", "--host", LOOPBACK, "--port", str(port), "--in-memory"]
    endpoint = f"http://{LOOPBACK}:{port}"
    server = ServerProcess("gcp-storage-emulator", command, directory / "server.log", cwd=directory)
    with serving(server, endpoint + "/"):
        yield GCSEmulator(endpoint)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    """azurite's blob service on a free port of 127.0.0.1, data in a temporary directory."""
    node = shutil.which("node")
    if node is None or not AZURITE_BIN.exists():
        raise RuntimeError(f"azurite needs node and `npm ci --prefix {NODE_DIR}` ({AZURITE_BIN})")
    directory = tmp_path_factory.mktemp("azurite")
    port = free_port()
    command = [
        node, str(AZURITE_BIN), "--blobHost", LOOPBACK, "--blobPort", str(port),
        "--location", str(directory / "data"),
        "--skipApiVersionCheck", "--loose", "--disableTelemetry",
    ]  # fmt: skip
    # Without AZURITE_ACCOUNTS azurite serves its well-known development account.
    env = {k: v for k, v in os.environ.items() if k != "AZURITE_ACCOUNTS"}
    server = ServerProcess("azurite", command, directory / "server.log", cwd=directory, env=env)
    with serving(server, f"http://{LOOPBACK}:{port}/"):
        yield Azurite(f"http://{LOOPBACK}:{port}/{AZURITE_ACCOUNT}")
