"""HTTP(S) backend against a real HTTP server on 127.0.0.1."""

import functools
import gzip
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.http import HttpBackend
from lambda_handler.errors import (
    InvalidMosaicError,
    MosaicAuthError,
    MosaicError,
    MosaicNotFoundError,
    ReadOnlyBackendError,
)
from lambda_handler.mosaic import from_features
from tests.geometry import square


class Handler(SimpleHTTPRequestHandler):
    """Static files, plus a few paths answering with errors."""

    def do_GET(self):
        if self.path.startswith("/forbidden"):
            self.send_error(403, "Forbidden")
        elif self.path.startswith("/broken"):
            self.send_error(500, "database on fire")
        else:
            super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def mosaic():
    return from_features([square(1, 1, 2, "a.tif"), square(2, 2, 2, "b.tif")], 5, 9, quadkey_zoom=6)


def test_reads_json_and_gzip(web_root, mosaic):
    root, base = web_root
    (root / "m.json").write_text(mosaic.to_json())
    (root / "m.json.gz").write_bytes(gzip.compress(mosaic.to_json().encode()))
    for name in ("m.json", "m.json.gz"):
        backend = MosaicBackend(f"{base}/{name}")
        assert isinstance(backend, HttpBackend)
        assert backend.to_document().tiles == mosaic.tiles
        assert set(backend.assets_for_point(1.5, 1.5)) == {"a.tif", "b.tif"}


def test_read_only(web_root, mosaic):
    root, base = web_root
    (root / "ro.json").write_text(mosaic.to_json())
    backend = MosaicBackend(f"{base}/ro.json")
    with pytest.raises(ReadOnlyBackendError, match="read-only"):
        backend.write(overwrite=True)
    with pytest.raises(NotImplementedError):
        backend.delete()
    with pytest.raises(ReadOnlyBackendError):
        backend.update([square(1, 1, 1, "c.tif")])


def test_http_errors_are_typed(web_root):
    root, base = web_root
    (root / "bad.json").write_text("<html>not json</html>")
    with pytest.raises(MosaicNotFoundError, match="404"):
        MosaicBackend(f"{base}/missing.json")
    with pytest.raises(MosaicAuthError, match="403"):
        MosaicBackend(f"{base}/forbidden.json")
    with pytest.raises(MosaicError, match="500"):
        MosaicBackend(f"{base}/broken.json")
    with pytest.raises(InvalidMosaicError, match="not valid JSON"):
        MosaicBackend(f"{base}/bad.json")


def test_unreachable_server_is_a_clear_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MosaicError, match=f"could not fetch http://127.0.0.1:{port}/m.json"):
        MosaicBackend(f"http://127.0.0.1:{port}/m.json")
