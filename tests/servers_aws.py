"""Fixtures starting the AWS stand-ins on 127.0.0.1, and a fault-injecting HTTP proxy.

Session servers (each on a free port, waited for until it answers, stopped at the end):
- `moto_server`: moto server (PyPI), S3 and DynamoDB in one process, in memory.
- `dynalite_server`: dynalite (npm, `tests/node`), a second, independent DynamoDB.
- `s3rver_server`: s3rver (npm), a second S3 (credentials S3RVER/S3RVER; it ignores
  `If-None-Match` on PutObject).

Parametrized views: `dynamodb_server` (moto, dynalite) and `s3_server` (moto, s3rver) run a test
once per implementation. `dynamodb_env` / `s3_env` point boto3 at the server through the standard
AWS variables for one test; `gdal_s3_env` does the same for GDAL (which ignores
`AWS_ENDPOINT_URL`). `fault_proxy` builds real HTTP proxies in front of a server that answer
chosen requests with errors (throttling, 5xx, unprocessed items, dropped connections).
"""

import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

NODE_BIN = Path(__file__).resolve().parent / "node" / "node_modules" / ".bin"
START_TIMEOUT = 60.0
REGION = "us-east-1"


@dataclass
class AwsServer:
    """A running AWS stand-in (moto, dynalite or s3rver)."""

    name: str
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = REGION
    process: subprocess.Popen | None = field(default=None, repr=False)
    command: list[str] = field(default_factory=list, repr=False)
    log: Path | None = field(default=None, repr=False)

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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start the same command again on the same port (after stop/kill)."""
        self.process = _launch(self.command, self.log)
        _wait_until_answering(self)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def _wait_until_answering(server: AwsServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n"
                f"{server.log.read_text()[-2000:]}"
            )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=1.0)
            connection.request("GET", "/")
            connection.getresponse().read()  # any HTTP answer (even 4xx) means it serves
            connection.close()
            return
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer within {START_TIMEOUT} s")


def start_server(
    name: str,
    command: Callable[[int], list[str]],
    directory: Path,
    access_key: str = "testing",
    secret_key: str = "testing",
) -> AwsServer:
    """Start `command(port)` on a free port and wait until it answers HTTP."""
    port = free_port()
    log = directory / f"{name}.log"
    args = command(port)
    server = AwsServer(
        name,
        f"http://127.0.0.1:{port}",
        access_key=access_key,
        secret_key=secret_key,
        process=_launch(args, log),
        command=args,
        log=log,
    )
    _wait_until_answering(server)
    return server


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


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[AwsServer]:
    """moto server (S3 + DynamoDB, in memory) on a free port of 127.0.0.1."""
    server = start_server("moto", moto_command, tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dynalite_server(tmp_path_factory) -> Iterator[AwsServer]:
    """dynalite (DynamoDB) on a free port of 127.0.0.1, data in a temporary directory."""
    directory = tmp_path_factory.mktemp("dynalite")
    server = start_server("dynalite", dynalite_command(directory / "db"), directory)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_dynalite(tmp_path) -> Iterator[AwsServer]:
    """A dynalite of the test's own, to kill and restart (its data on disk survives)."""
    server = start_server("dynalite-private", dynalite_command(tmp_path / "db"), tmp_path)
    try:
        yield server
    finally:
        server.stop()


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
    try:
        yield server
    finally:
        server.stop()


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


# ---------------------------------------------------------------------- fault-injecting proxy
@dataclass
class ProxiedRequest:
    """What the proxy saw of one request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def operation(self) -> str:
        """The DynamoDB operation (`X-Amz-Target` suffix), else 'METHOD path'."""
        target = self.headers.get("x-amz-target", "")
        return target.rsplit(".", 1)[-1] if target else f"{self.method} {self.path}"

    def json(self) -> dict:
        """The body as JSON (DynamoDB requests)."""
        return json.loads(self.body or b"{}")


@dataclass
class Reply:
    """An answer the proxy gives instead of forwarding."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def dynamodb_error(cls, status: int, error_type: str, message: str = "injected") -> "Reply":
        """A DynamoDB JSON error answer (e.g. 400 ThrottlingException, 500 InternalServerError)."""
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{error_type}", "message": message}
        )
        return cls(status, body.encode(), {"Content-Type": "application/x-amz-json-1.0"})

    @classmethod
    def dynamodb_ok(cls, payload: dict) -> "Reply":
        """A DynamoDB 200 answer with a JSON payload."""
        return cls(
            200, json.dumps(payload).encode(), {"Content-Type": "application/x-amz-json-1.0"}
        )


DROP = object()  # a policy result: close the connection without answering
# A policy result: forward the request (the server applies it), then close the connection
# without answering: the client cannot know whether its request happened.
DROP_AFTER = object()

Policy = Callable[[int, ProxiedRequest], "Reply | object | None"]


class FaultProxy:
    """A real HTTP proxy on 127.0.0.1 in front of `upstream`.

    For each request, `policy(index, request)` returns None (forward it), a `Reply` (answer that
    instead), `DROP` (close the connection) or `DROP_AFTER` (forward it, then close the connection
    instead of answering). Every request is recorded in `requests`. A policy may sleep to slow a
    request down (each connection has its own thread).
    """

    def __init__(self, upstream: str, policy: Policy):
        self.upstream = upstream.removeprefix("http://")
        self.policy = policy
        self.requests: list[ProxiedRequest] = []
        self.injected = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = ProxiedRequest(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with proxy._lock:
                    index = len(proxy.requests)
                    proxy.requests.append(request)
                decision = proxy.policy(index, request)
                if decision is DROP:
                    with proxy._lock:
                        proxy.injected += 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(decision, Reply):
                    with proxy._lock:
                        proxy.injected += 1
                    self._answer(decision.status, decision.headers, decision.body)
                    return
                upstream = http.client.HTTPConnection(*proxy._host_port(), timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
                    answer = upstream.getresponse()
                    payload = answer.read()
                    if decision is DROP_AFTER:
                        with proxy._lock:
                            proxy.injected += 1
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    headers = {
                        k: v
                        for k, v in answer.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")
                    }
                    self._answer(answer.status, headers, payload)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _host_port(self) -> tuple[str, int]:
        host, port = self.upstream.rsplit(":", 1)
        return host, int(port)

    def operations(self) -> list[str]:
        """The operations seen, in order."""
        with self._lock:
            return [r.operation for r in self.requests]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str, Policy], FaultProxy]]:
    """Factory: `fault_proxy(upstream_endpoint, policy)` starts a FaultProxy, closed at the end."""
    proxies: list[FaultProxy] = []

    def start(upstream: str, policy: Policy) -> FaultProxy:
        proxy = FaultProxy(upstream, policy)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()
