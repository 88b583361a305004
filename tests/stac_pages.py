"""A small HTTP server replaying the two real `/search` pages of `../shared/fixtures` with
next links of several kinds (GET, POST, merge, loops, errors, redirects) for the STAC client's
paging tests.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.processes import LOOPBACK


class FixturePagesServer:
    """Replays the two real `/search` pages on 127.0.0.1 with next links of several kinds.

    `/{variant}/search`: page 1 on the first POST, page 2 when asked with `page=2` (POST body
    or GET query), an empty page 3. Variants:
    - `post`: POST next links carrying the full body; page 2 links to page 3 (empty: stops).
    - `merge`: POST next links with `merge: true` and only `{"page": n}` in the body.
    - `get`: GET next links (`?page=2`); page 2 has no next link.
    - `nocontext`: as `post`, without `context`, `numberMatched` and `numberReturned`.
    - `noself` / `nolinks`: items without their `self` link / without any link.
    - `fail2`: page 2 answers HTTP 500; `badjson`: page 1 is not JSON; `nogeom`: one item of
      page 1 has no geometry; `loop`: page 1 links to itself; `status{code}`: answers `code`;
      `redirect` / `sameredirect`: 307 to `post` on another origin (localhost) / on this one;
      `offsite`: as `post`, its next link on another origin (localhost).
    Every request is recorded in `requests` as (method, path, query, body).
    """

    def __init__(self, fixtures: Path):
        self.pages = [
            json.loads((fixtures / name).read_text())
            for name in ("stac_p1.geojson", "stac_p2.geojson")
        ]
        self.requests: list[tuple[str, str, dict, dict | None]] = []
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def search_url(self, variant: str) -> str:
        """The search endpoint of a variant."""
        return f"{self.base_url}/{variant}/search"

    def start(self) -> "FixturePagesServer":
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def page(self, variant: str, number: int, body: dict | None) -> tuple[int, Any]:
        """(status, payload) of page `number` of a variant."""
        failure = self._failure(variant, number)
        if failure is not None:
            return failure
        if number > 2:
            return 200, {"type": "FeatureCollection", "features": [], "links": []}
        page = json.loads(json.dumps(self.pages[number - 1]))
        page["links"] = self._next_links(variant, number, body)
        _degrade(page, variant, number)
        return 200, page

    @staticmethod
    def _failure(variant: str, number: int) -> tuple[int, Any] | None:
        """The error answer of the failing variants, None where the page is served."""
        if variant.startswith("status"):
            code = int(variant.removeprefix("status"))
            return code, {"code": "TestError", "description": f"the server says no ({code})"}
        if variant == "fail2" and number == 2:
            return 500, {"code": "InternalError", "description": "database went away on page 2"}
        if variant == "badjson":
            return 200, "{not json"
        return None

    def _next_links(self, variant: str, number: int, body: dict | None) -> list[dict]:
        """The `next` links of page `number` in a variant's style."""
        href = self.search_url(variant)
        if variant == "get":
            return [{"rel": "next", "href": f"{href}?page=2&limit=10"}] if number == 1 else []
        if variant == "merge":
            return [
                {"rel": "next", "method": "POST", "href": href, "merge": True,
                 "body": {"page": number + 1}}
            ]  # fmt: skip
        if variant == "loop":
            return [{"rel": "next", "method": "POST", "href": href, "body": dict(body or {})}]
        next_body = {**(body or {}), "page": number + 1}
        if variant == "offsite":
            href = href.replace(LOOPBACK, "localhost", 1)
        return [{"rel": "next", "method": "POST", "href": href, "body": next_body}]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: dict | None) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                server.requests.append((self.command, parts.path, query, body))
                segments = parts.path.strip("/").split("/")
                if len(segments) != 2 or segments[1] != "search":
                    self._send(404, {"code": "NotFound", "description": f"no route {parts.path}"})
                    return
                number = int((body or {}).get("page") or query.get("page", ["1"])[0])
                if segments[0] in ("redirect", "sameredirect"):
                    host = "localhost" if segments[0] == "redirect" else LOOPBACK
                    port = server._server.server_address[1]
                    self.send_response(307)
                    self.send_header("Location", f"http://{host}:{port}/post/search")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, payload = server.page(segments[0], number, body)
                self._send(status, payload)

            def _send(self, status: int, payload: Any) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload)
                raw = data.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/geo+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                self._answer(json.loads(raw) if raw else {})

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows failures, not access logs."""

        return Handler


def _degrade(page: dict, variant: str, number: int) -> None:
    """Take out of a page what the `nocontext`, `noself`, `nolinks` and `nogeom` variants lack."""
    if variant == "nocontext":
        for key in ("context", "numberMatched", "numberReturned"):
            page.pop(key, None)
    for item in page["features"]:
        if variant == "noself":
            item["links"] = [x for x in item["links"] if x["rel"] != "self"]
        elif variant == "nolinks":
            item["links"] = []
    if variant == "nogeom" and number == 1:
        page["features"][3]["geometry"] = None
