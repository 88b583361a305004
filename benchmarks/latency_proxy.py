"""A reverse proxy on 127.0.0.1 that delays every request and counts them, for benchmarks.

It stands between the servers under test and the storage stand-ins (moto server for S3 and
DynamoDB) to make each round trip cost what a cloud round trip costs (first byte 20-50 ms),
and counts requests by kind (S3 or DynamoDB, told apart by DynamoDB's `X-Amz-Target` header)
so a benchmark can report requests per tile.
"""

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class LatencyProxy:
    """Forward every request to `upstream` (http://host:port) after `delay_ms` milliseconds."""

    def __init__(self, upstream: str, delay_ms: float = 20.0):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.delay = delay_ms / 1000
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as GDAL and boto3 use it

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _forward(self) -> None:
                proxy._forward(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """http://127.0.0.1:PORT of the proxy."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "LatencyProxy":
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def counts(self) -> Counter:
        """Requests so far by kind ('s3', 'dynamodb')."""
        with self._lock:
            return Counter(self._counts)

    def _connection(self) -> http.client.HTTPConnection:
        # One upstream connection per proxy thread (a thread serves one client connection).
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(
                self.upstream_host, self.upstream_port, timeout=60
            )
            self._local.connection = connection
        return connection

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        kind = "dynamodb" if handler.headers.get("X-Amz-Target") else "s3"
        with self._lock:
            self._counts[kind] += 1
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        time.sleep(self.delay)  # the round trip a cloud service adds
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(handler.command, handler.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                handler.send_header(key, value)
        # A HEAD answer carries the object's length (GDAL reads the file size from it).
        length_header = response.getheader("Content-Length") if handler.command == "HEAD" else None
        handler.send_header("Content-Length", length_header or str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
