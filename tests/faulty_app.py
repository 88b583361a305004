"""The API behind a fault-injecting middleware, for export tests (run under uvicorn).

A fraction of tile requests fail on their first attempt: HTTP 500, HTTP 429, an answer slower
than the client's timeout, or a connection dropped after the headers. `/_requests` reports how
many tile answers were served successfully, per tile path.
"""

import asyncio
import hashlib
import os
from collections import Counter

from lambda_handler.app import create_app

FAULTS = ("500", "429", "timeout", "drop")


class FaultInjector:
    """ASGI middleware: deterministic faults on first attempts of some tile requests."""

    def __init__(self, app, rate: float, delay: float):
        self.app = app
        self.rate = rate
        self.delay = delay
        self.attempts: Counter[str] = Counter()
        self.served: Counter[str] = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/_requests":
            return await self._report(send)
        if "/tiles/" not in path:
            return await self.app(scope, receive, send)
        self.attempts[path] += 1
        digest = int(hashlib.sha256(path.encode()).hexdigest(), 16)
        if self.attempts[path] == 1 and (digest % 1000) < self.rate * 1000:
            fault = FAULTS[digest % len(FAULTS)]
            if fault in ("500", "429"):
                return await self._plain(send, int(fault), b"injected fault")
            if fault == "timeout":
                await asyncio.sleep(self.delay)
                return await self._plain(send, 200, b"too late")
            # drop: headers go out, then the connection dies mid-body
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1000")],
                }
            )
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ConnectionError("injected dropped connection")

        status = {}

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, tracking_send)
        if status.get("code") in (200, 204):
            self.served[path] += 1

    async def _plain(self, send, status: int, body: bytes):
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _report(self, send):
        import json

        body = json.dumps(
            {
                "served": sum(self.served.values()),
                "attempts": sum(self.attempts.values()),
                "paths": self.served,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_faulty_app():
    """The app wrapped in the fault injector (rate and delay from FAULT_RATE, FAULT_DELAY)."""
    return FaultInjector(
        create_app(),
        rate=float(os.environ.get("FAULT_RATE", "0.3")),
        delay=float(os.environ.get("FAULT_DELAY", "3")),
    )
