"""ASGI middlewares: gzip for text answers only, default Cache-Control on cacheable answers.

Starlette's GZipMiddleware compresses every content type (images included, which only costs CPU:
PNG/JPEG/WEBP are compressed already), hence this small one.
"""

import gzip

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
