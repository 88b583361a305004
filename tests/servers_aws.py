"""Fixtures starting the AWS stand-ins on 127.0.0.1.

Session servers (each on a free port, waited for until it answers, stopped at the end):
- `moto_server`: moto server (PyPI), S3 and DynamoDB in one process, in memory.
- `dynalite_server`: dynalite (npm, `tests/node`), a second, independent DynamoDB.
- `s3rver_server`: s3rver (npm), a second S3 (credentials S3RVER/S3RVER; it ignores
  `If-None-Match` on PutObject).

Parametrized views: `dynamodb_server` (moto, dynalite) and `s3_server` (moto, s3rver) run a test
once per implementation. `dynamodb_env` / `s3_env` point boto3 at the server through the standard
AWS variables for one test; `gdal_s3_env` does the same for GDAL (which ignores
`AWS_ENDPOINT_URL`). The fault-injecting proxy in front of them is `tests/fault_proxy.py`.
"""

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.processes import LOOPBACK, ServerProcess, free_port

NODE_BIN = Path(__file__).resolve().parent / "node" / "node_modules" / ".bin"
REGION = "us-east-1"


@dataclass
class AwsServer:
    """A running AWS stand-in (moto, dynalite or s3rver)."""

    name: str
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = REGION
    process: ServerProcess | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.endpoint.rsplit(":", 1)[1])

    def boto3_env(self, service: str | None = None) -> dict[str, str]:
        """Variables pointing boto3 (and this package) at the server; `service` ('dynamodb',
        's3') sets only that service's endpoint, so two servers can serve two services."""
        variable = f"AWS_ENDPOINT_URL_{service.upper()}" if service else "AWS_ENDPOINT_URL"
        return {
            variable: self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def gdal_env(self) -> dict[str, str]:
        """GDAL options reading `s3://` / `/vsis3/` from the server (GDAL ignores
        AWS_ENDPOINT_URL; it needs a host:port endpoint, plain HTTP and path-style URLs)."""
        return {
            "AWS_S3_ENDPOINT": self.endpoint.removeprefix("http://"),
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_NO_SIGN_REQUEST": "NO",
        }

    def client(self, service: str) -> "boto3.client":
        """A fresh boto3 client of the server (for setting up and inspecting, not the code
        under test)."""
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def stop(self) -> None:
        """Stop the process (kill after 10 s)."""
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()

    def restart(self) -> None:
        """Start the same command again on the same port (after stop/kill)."""
        self.process.start()
        self.process.wait_until_answering(self.endpoint + "/")


def start_server(
    name: str,
    command: Callable[[int], list[str]],
    directory: Path,
    access_key: str = "testing",
    secret_key: str = "testing",
) -> AwsServer:
    """Start `command(port)` on a free port and wait until it answers HTTP."""
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    process = ServerProcess(name, command(port), directory / f"{name}.log").start()
    process.wait_until_answering(endpoint + "/")  # any answer (even 4xx) means it serves
    return AwsServer(name, endpoint, access_key=access_key, secret_key=secret_key, process=process)


def moto_command(port: int) -> list[str]:
    """moto server's command line."""
    return [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)]


def dynalite_command(directory: Path) -> Callable[[int], list[str]]:
    """dynalite's command line, its LevelDB files in `directory` (they survive a kill)."""

    def command(port: int) -> list[str]:
        return [
            "node",
            str(NODE_BIN / "dynalite"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--path",
            str(directory),
            "--createTableMs",
            "0",
        ]

    return command


def s3rver_command(directory: Path) -> Callable[[int], list[str]]:
    """s3rver's command line (`--openssl-legacy-provider`: paginated listing on Node 20)."""

    def command(port: int) -> list[str]:
        return [
            "node",
            "--openssl-legacy-provider",
            str(NODE_BIN / "s3rver"),
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--directory",
            str(directory),
            "--silent",
        ]

    return command


def stopped_at_end(server: AwsServer) -> Iterator[AwsServer]:
    """Yield a started server to a fixture's test(s), then stop it."""
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[AwsServer]:
    """moto server (S3 + DynamoDB, in memory) on a free port of 127.0.0.1."""
    server = start_server("moto", moto_command, tmp_path_factory.mktemp("moto"))
    yield from stopped_at_end(server)


@pytest.fixture(scope="session")
def dynalite_server(tmp_path_factory) -> Iterator[AwsServer]:
    """dynalite (DynamoDB) on a free port of 127.0.0.1, data in a temporary directory."""
    directory = tmp_path_factory.mktemp("dynalite")
    server = start_server("dynalite", dynalite_command(directory / "db"), directory)
    yield from stopped_at_end(server)


@pytest.fixture
def private_dynalite(tmp_path) -> Iterator[AwsServer]:
    """A dynalite of the test's own, to kill and restart (its data on disk survives)."""
    server = start_server("dynalite-private", dynalite_command(tmp_path / "db"), tmp_path)
    yield from stopped_at_end(server)


@pytest.fixture(scope="session")
def s3rver_server(tmp_path_factory) -> Iterator[AwsServer]:
    """s3rver (S3) on a free port of 127.0.0.1, objects in a temporary directory."""
    directory = tmp_path_factory.mktemp("s3rver")
    server = start_server(
        "s3rver",
        s3rver_command(directory / "data"),
        directory,
        access_key="S3RVER",
        secret_key="S3RVER",
    )
    yield from stopped_at_end(server)


@pytest.fixture(params=["moto", "dynalite"])
def dynamodb_server(request) -> AwsServer:
    """Each DynamoDB stand-in in turn (moto, dynalite)."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(params=["moto", "s3rver"])
def s3_server(request) -> AwsServer:
    """Each S3 stand-in in turn (moto, s3rver)."""
    return request.getfixturevalue(f"{request.param}_server")


def _apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def dynamodb_env(dynamodb_server, monkeypatch) -> AwsServer:
    """Point boto3 (`AWS_ENDPOINT_URL_DYNAMODB`, credentials, region) at `dynamodb_server`."""
    _apply_env(monkeypatch, dynamodb_server.boto3_env("dynamodb"))
    return dynamodb_server


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> AwsServer:
    """Point boto3 (`AWS_ENDPOINT_URL_S3`, credentials, region) at `s3_server`."""
    _apply_env(monkeypatch, s3_server.boto3_env("s3"))
    return s3_server


@pytest.fixture
def gdal_s3_env(s3_server, monkeypatch) -> AwsServer:
    """Point GDAL (rasterio, rio-tiler) at `s3_server`: `s3://` COG URLs read from it."""
    for name, value in s3_server.gdal_env().items():
        monkeypatch.setenv(name, value)
    return s3_server


def unique_name(prefix: str) -> str:
    """A fresh table, bucket or mosaic name (session servers are shared between tests)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
