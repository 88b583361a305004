"""ASGI middlewares: gzip for text answers only, default Cache-Control on cacheable answers,
and the guards of issue 16: HEAD as GET, body size limit, per-request deadline, JSON 500s,
split CORS for reads and writes, trusted host for public links.

Starlette's GZipMiddleware compresses every content type (images included, which only costs CPU:
PNG/JPEG/WEBP are compressed already), hence this small one.
"""

import asyncio
import gzip
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lambda_handler.deadline import DEADLINE_KEY, Deadline

logger = logging.getLogger(__name__)

COMPRESSIBLE = (
    "application/json",
    "application/geo+json",
    "application/xml",
    "application/vnd.oai.openapi",
    "text/",
    "application/javascript",
)


class TextGZipMiddleware:
    """Gzip JSON, XML, HTML, CSS and JavaScript answers when the client accepts it."""

    def __init__(self, app: ASGIApp, minimum_size: int = 500, level: int = 6):
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer compressible answers, then send them gzipped."""
        if scope["type"] != "http" or "gzip" not in Headers(scope=scope).get("accept-encoding", ""):
            await self.app(scope, receive, send)
            return

        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False

        async def wrapped(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"])
                media = headers.get("content-type", "")
                if headers.get("content-encoding") or not media.startswith(COMPRESSIBLE):
                    passthrough = True
                    await send(message)
                else:
                    start = message
                return
            if passthrough or message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = MutableHeaders(raw=start["headers"])
            headers.add_vary_header("Accept-Encoding")
            if len(body) >= self.minimum_size:
                body = gzip.compress(body, compresslevel=self.level)
                headers["Content-Encoding"] = "gzip"
                headers["Content-Length"] = str(len(body))
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, wrapped)


class CacheControlMiddleware:
    """Add the settings' Cache-Control to successful GET answers that set none themselves."""

    def __init__(self, app: ASGIApp, cache_control: str | None):
        self.app = app
        self.cache_control = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set the header on 200/204/304 answers to GET and HEAD."""
        if (
            scope["type"] != "http"
            or not self.cache_control
            or scope.get("method") not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 204, 304):
                headers = MutableHeaders(raw=message["headers"])
                if "cache-control" not in headers:
                    headers["Cache-Control"] = self.cache_control
            await send(message)

        await self.app(scope, receive, wrapped)


# ---------------------------------------------------------------------------- robustness
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_BACKGROUND: set[asyncio.Task] = set()


async def send_json_error(
    send: Send, status: int, detail: object, headers: dict[str, str] | None = None
) -> None:
    """Send a whole JSON error answer `{"detail": detail}` (no-store)."""
    body = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class HeadAsGetMiddleware:
    """Answer HEAD like GET, without the body (routes are declared for GET only)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run HEAD requests as GET and drop the body bytes (headers, length included, stay)."""
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`, read as they stream in: the app never sees
    (and memory never holds) more than `max_bytes` of a body."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, send: Send) -> Any:
        return send_json_error(
            send,
            413,
            f"the request body is larger than {self.max_bytes:,} bytes (MOSAIC_API_MAX_BODY_BYTES)",
        )

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when the request is over (client gone, or 413 sent)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check Content-Length, then read the body up to the limit before calling the app."""
        if scope["type"] != "http" or scope.get("method") not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await send_json_error(send, 400, f"invalid Content-Length {length[:40]!r}")
                return
            if int(length) > self.max_bytes:
                await self._too_large(send)
                return
        body = await self._read_body(receive, send)
        if body is None:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class DeadlineMiddleware:
    """Give each request a Deadline (lambda_handler.deadline); past it, answer 504 naming the
    assets still being read, and leave the work to finish (or fail) in the background.

    A stuck request then holds neither the client nor its connection, and the server keeps
    answering others. The abandoned work cannot be killed (threads); the reads it has not
    started are skipped (`Deadline.check`) and GDAL's HTTP timeouts bound the others.
    """

    def __init__(self, app: ASGIApp, timeout: float):
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request as a task and wait for it at most `timeout` seconds."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = Deadline(self.timeout)
        scope[DEADLINE_KEY] = deadline
        started = abandoned = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if abandoned:
                return  # the client already has its 504
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded))
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if task in done or started:
            await task  # finished, or already answering (a streamed body): let it complete
            return
        abandoned = True
        _BACKGROUND.add(task)
        task.add_done_callback(_forget)
        logger.warning("%s %s: %s", scope.get("method"), scope.get("path"), deadline.message())
        await send_json_error(send, 504, deadline.message())


def _forget(task: asyncio.Task) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.warning("abandoned request failed later: %r", task.exception())


class ErrorJSONMiddleware:
    """Answer an unexpected exception with a JSON 500 (CORS headers are added outside) and
    keep the connection usable: the error is logged, not re-raised to the server."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Catch what the routes did not map."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as error:
            if started:
                raise  # half an answer is out: only closing the connection is honest
            logger.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=error)
            await send_json_error(
                send, 500, f"internal error ({type(error).__name__}); it has been logged"
            )


# ---------------------------------------------------------------------------- CORS and hosts
class SplitCORSMiddleware:
    """CORS with one policy for reads (GET/HEAD) and another for writes (POST, PUT, PATCH,
    DELETE): write routes are callable from browsers only on `write_origins`."""

    def __init__(
        self,
        app: ASGIApp,
        read_origins: list[str],
        write_origins: list[str],
        expose_headers: list[str],
    ):
        self.app = app
        self.read = CORSMiddleware(
            app,
            allow_origins=read_origins,
            allow_methods=["GET", "HEAD", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=expose_headers,
        )
        self.write = CORSMiddleware(
            app,
            allow_origins=write_origins,
            allow_methods=[*WRITE_METHODS, "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-api-key", "if-match"],
            expose_headers=expose_headers,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pick the policy from the method (or, for a preflight, the method asked for)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        if method == "OPTIONS":
            method = Headers(scope=scope).get("access-control-request-method", "").upper()
        policy = self.write if method in WRITE_METHODS else self.read
        await policy(scope, receive, send)


class PublicHostMiddleware:
    """Links built from the request (TileJSON, WMTS, map page, Location) use a trusted host:
    the configured public URL, else the Host header when allow-listed, else the server's own
    address. An attacker's Host header never reaches a cached answer."""

    def __init__(self, app: ASGIApp, public_url: str | None, allowed_hosts: list[str]):
        self.app = app
        self.public = urlsplit(public_url) if public_url else None
        self.allowed = {h.lower() for h in allowed_hosts}

    def _host(self, scope: Scope) -> tuple[str | None, str | None]:
        """(scheme or None to keep, host value or None to drop the header)."""
        if self.public is not None:
            return self.public.scheme, self.public.netloc
        host = Headers(scope=scope).get("host")
        if host is not None and ("*" in self.allowed or host.lower() in self.allowed):
            return None, host
        server = scope.get("server")
        if not server:
            return None, None
        name, port = server
        default = {"http": 80, "https": 443}.get(scope.get("scheme", "http"))
        return None, name if port in (None, default) else f"{name}:{port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the Host header (and the scheme for a public URL) before the app runs."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scheme, host = self._host(scope)
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"host"]
        if host is not None:
            headers.append((b"host", host.encode("latin-1")))
        scope = {**scope, "headers": headers}
        if scheme:
            scope["scheme"] = scheme
        await self.app(scope, receive, send)
