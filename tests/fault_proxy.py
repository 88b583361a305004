"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a server, for tests of retries.

`fault_proxy` builds real HTTP proxies in front of a server that answer chosen requests with
errors (throttling, 5xx, unprocessed items, dropped connections) and record every request.
"""

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.processes import LOOPBACK


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


class ProxyHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests as its `proxy`'s policy says."""

    protocol_version = "HTTP/1.1"
    proxy: "FaultProxy"

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
        decision = self.proxy.decide(request)
        if decision is DROP:
            self._drop()
        elif isinstance(decision, Reply):
            self.proxy.count_injection()
            self._answer(decision.status, decision.headers, decision.body)
        else:
            status, headers, payload = self._forward(body)
            if decision is DROP_AFTER:
                self._drop()
            else:
                self._answer(status, headers, payload)

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        upstream = http.client.HTTPConnection(*self.proxy.host_port(), timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        headers = {
            k: v
            for k, v in answer.getheaders()
            if k.lower() not in ("transfer-encoding", "connection", "content-length")
        }
        return answer.status, headers, payload

    def _drop(self) -> None:
        """Close the connection without answering."""
        self.proxy.count_injection()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


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
        # A handler class of this proxy's own: http.server makes one handler per request.
        handler = type("Handler", (ProxyHandler,), {"proxy": self})
        self.server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def host_port(self) -> tuple[str, int]:
        """The upstream's host and port."""
        host, port = self.upstream.rsplit(":", 1)
        return host, int(port)

    def decide(self, request: ProxiedRequest) -> "Reply | object | None":
        """Record a request and return what the policy says to do with it."""
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
        return self.policy(index, request)

    def count_injection(self) -> None:
        """Count one request answered by the policy instead of the upstream."""
        with self._lock:
            self.injected += 1

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
