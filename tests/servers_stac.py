"""A real STAC API for the tests and the benchmark: PostgreSQL + PostGIS + pgstac, served by
stac-fastapi-pgstac under uvicorn, all on 127.0.0.1; plus a small HTTP server replaying the two
real `/search` pages of `../shared/fixtures` with GET/POST next links.

The start/stop functions work without pytest (`benchmarks/bench_stac.py` uses them); the pytest
fixtures at the end wrap them.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_bounds

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------- catalog
def write_cog(path: Path, bounds: Sequence[float], value: int, resolution: float = 0.004) -> str:
    """A one-band uint8 EPSG:4326 COG of constant `value` (nodata 0) covering `bounds`;
    returns its file:// URL."""
    west, south, east, north = bounds
    width = max(1, round((east - west) / resolution))
    height = max(1, round((north - south) / resolution))
    profile = {
        "driver": "COG",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": from_bounds(west, south, east, north, width, height),
        "nodata": 0,
        "compress": "DEFLATE",
        "blocksize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, height, width), value, dtype="uint8"))
    return path.as_uri()  # absolute with a scheme: pystac keeps it, GDAL opens it


def polygon(west: float, south: float, east: float, north: float) -> list[list[list[float]]]:
    """GeoJSON Polygon coordinates of a box (counter-clockwise)."""
    return [[[west, south], [east, south], [east, north], [west, north], [west, south]]]


def make_item(
    collection: str,
    item_id: str,
    geometry: dict,
    bbox: Sequence[float],
    properties: dict,
    assets: dict[str, str],
) -> dict:
    """A STAC 1.0 item whose assets are local COG paths."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": list(bbox),
        "properties": properties,
        "assets": {
            name: {"href": href, "type": COG_TYPE, "roles": ["data"]}
            for name, href in assets.items()
        },
        "links": [],
    }


def make_collection(collection: str, description: str) -> dict:
    """A STAC 1.0 collection covering the world."""
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection,
        "description": description,
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


QUERYABLES = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "type": "object",
    "title": "Queryables of the test catalogs",
    "properties": {
        "eo:cloud_cover": {"title": "Cloud cover", "type": "number", "minimum": 0, "maximum": 100}
    },
}
TEST_COLLECTION = "lmt-test"
# Cloud cover of the test items, by index: varied, all different.
TEST_CLOUD_COVER = [5, 55, 15, 65, 25, 75, 35, 85, 45, 95, 20, 70, 50]


def expected_value(index: int, asset: str) -> int:
    """Pixel value of an asset of test item `index`: B01 -> 10 + index, B02 -> 100 + index."""
    return (10 if asset == "B01" else 100) + index


def write_test_catalog(directory: Path) -> tuple[dict, list[dict]]:
    """The test collection: 13 items with assets B01/B02 (constant COGs).

    Items 0-9 are 0.5° squares on a 5x2 grid with 0.1° overlaps (west 10 + 0.4*col, south
    45 + 0.4*row); items 10 and 11 are MultiPolygons of two 0.2° squares 1° apart; item 12
    crosses the antimeridian (a MultiPolygon split at ±180). Datetimes rise with the index.
    """
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(13):
        if index < 10:
            west, south = 10.0 + 0.4 * (index % 5), 45.0 + 0.4 * (index // 5)
            parts = [(west, south, west + 0.5, south + 0.5)]
            cog_bounds = parts[0]
        elif index < 12:
            south = 45.0 if index == 10 else 45.6
            parts = [(12.5, south, 12.7, south + 0.2), (13.5, south, 13.7, south + 0.2)]
            cog_bounds = (12.5, south, 13.7, south + 0.2)
        else:
            parts = [(179.6, -16.2, 180.0, -15.8), (-180.0, -16.2, -179.6, -15.8)]
            cog_bounds = parts[0]
        if len(parts) == 1:
            geometry = {"type": "Polygon", "coordinates": polygon(*parts[0])}
            bbox = parts[0]
        else:
            geometry = {"type": "MultiPolygon", "coordinates": [polygon(*p) for p in parts]}
            bbox = (179.6, -16.2, -179.6, -15.8) if index == 12 else cog_bounds
        assets = {
            name: write_cog(
                directory / f"item{index:02d}_{name}.tif", cog_bounds, expected_value(index, name)
            )
            for name in ("B01", "B02")
        }
        properties = {
            "datetime": f"2024-01-{index + 1:02d}T10:00:00Z",
            "eo:cloud_cover": TEST_CLOUD_COVER[index],
        }
        items.append(
            make_item(TEST_COLLECTION, f"item-{index:02d}", geometry, bbox, properties, assets)
        )
    return make_collection(TEST_COLLECTION, "lambda-mosaic-tiler test items"), items


def items_intersecting(items: Sequence[dict], geometry: Any) -> list[str]:
    """Ids of the items whose footprint intersects a shapely geometry (antimeridian parts as
    they are: the test item across it is stored split at ±180)."""
    return [
        item["id"]
        for item in items
        if shapely.geometry.shape(item["geometry"]).intersects(geometry)
    ]


def write_ndjson(path: Path, records: Sequence[dict]) -> Path:
    """One JSON document per line (what `pypgstac load` reads)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------------------- servers
def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} server exited ({process.returncode}): {_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s: {_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as another user, run the command directly.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], env: dict | None = None, cwd: Path | None = None) -> None:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}): {result.stdout}{result.stderr}"
        )


@dataclass
class StacStack:
    """PostgreSQL + pgstac + stac-fastapi-pgstac on 127.0.0.1."""

    workdir: Path
    pg_port: int
    password: str = "stac-test-password"
    api_port: int = 0
    api_process: subprocess.Popen | None = None
    started: list[str] = field(default_factory=list)

    @property
    def pg_data(self) -> Path:
        """PostgreSQL data directory."""
        return self.workdir / "data"

    @property
    def pg_env(self) -> dict[str, str]:
        """Environment for libpq clients (pypgstac) and stac-fastapi-pgstac."""
        return {
            **os.environ,
            "PGHOST": HOST,
            "PGPORT": str(self.pg_port),
            "PGUSER": "postgres",
            "PGPASSWORD": self.password,
            "PGDATABASE": "postgres",
        }

    @property
    def root_url(self) -> str:
        """Landing page of the STAC API."""
        return f"http://{HOST}:{self.api_port}"

    @property
    def search_url(self) -> str:
        """The `/search` endpoint."""
        return f"{self.root_url}/search"

    def start_postgres(self) -> None:
        """initdb + pg_ctl start (as the postgres user when we are root)."""
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        password_file = self.workdir / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        _run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.pg_data),
                    "-U",
                    "postgres",
                    f"--pwfile={password_file}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        )
        options = (
            f"-c listen_addresses={HOST} -c port={self.pg_port} -c fsync=off "
            f"-c full_page_writes=off -c synchronous_commit=off "
            f"-c unix_socket_directories={self.workdir}"
        )
        _run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-o",
                    options,
                    "-l",
                    str(self.workdir / "postgres.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        )
        self.started.append("postgres")

    def pypgstac(self, *args: str) -> None:
        """Run the `pypgstac` command against the database."""
        _run([sys.executable, "-m", "pypgstac.pypgstac", *args], env=self.pg_env, cwd=self.workdir)

    def migrate(self) -> None:
        """Install the pgstac schema."""
        self.pypgstac("migrate")

    def load(self, collections: Sequence[dict], items: Sequence[dict]) -> None:
        """Load the queryables, collections then items (`pypgstac load … --method
        insert_ignore`)."""
        name = f"load{len(self.started)}"
        # Without a numeric queryable, pgstac sorts eo:cloud_cover as text ("5" after "45").
        queryables_file = self.workdir / f"{name}_queryables.json"
        queryables_file.write_text(json.dumps(QUERYABLES))
        collections_file = write_ndjson(self.workdir / f"{name}_collections.ndjson", collections)
        items_file = write_ndjson(self.workdir / f"{name}_items.ndjson", items)
        self.pypgstac("load_queryables", str(queryables_file))
        self.pypgstac("load", "collections", str(collections_file), "--method", "insert_ignore")
        self.pypgstac("load", "items", str(items_file), "--method", "insert_ignore")
        self.started.append(name)

    def start_api(self) -> None:
        """Serve stac-fastapi-pgstac with uvicorn on a free port."""
        self.api_port = free_port()
        log = self.workdir / "api.log"
        env = {**self.pg_env, "ENABLE_TRANSACTIONS_EXTENSIONS": "false"}
        with log.open("w") as out:
            self.api_process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "stac_fastapi.pgstac.app:create_app",
                    "--factory",
                    "--host",
                    HOST,
                    "--port",
                    str(self.api_port),
                    "--log-level",
                    "warning",
                ],
                env=env,
                cwd=self.workdir,  # no stray .env file is read
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_http(f"{self.root_url}/_mgmt/ping", self.api_process, log)

    def stop(self) -> None:
        """Stop uvicorn and PostgreSQL, remove the data."""
        if self.api_process is not None and self.api_process.poll() is None:
            self.api_process.terminate()
            try:
                self.api_process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.api_process.kill()
                self.api_process.wait()
        if "postgres" in self.started:
            with contextlib.suppress(RuntimeError):
                _run(
                    _as_postgres(
                        [
                            str(PG_BIN / "pg_ctl"),
                            "-D",
                            str(self.pg_data),
                            "-m",
                            "fast",
                            "-w",
                            "stop",
                        ]
                    )
                )
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_stac_stack(collections: Sequence[dict], items: Sequence[dict]) -> StacStack:
    """Start PostgreSQL, migrate pgstac, load the records and serve the API. Call `.stop()`."""
    # A directory of its own under /tmp: the postgres user must be able to reach it.
    stack = StacStack(workdir=Path(tempfile.mkdtemp(prefix="lmt-pgstac-")), pg_port=free_port())
    try:
        stack.start_postgres()
        stack.migrate()
        stack.load(collections, items)
        stack.start_api()
    except BaseException:
        stack.stop()
        raise
    return stack


# ---------------------------------------------------------------------------- fixture pages
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
        self._server = ThreadingHTTPServer((HOST, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{HOST}:{self._server.server_address[1]}"

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
        if variant.startswith("status"):
            code = int(variant.removeprefix("status"))
            return code, {"code": "TestError", "description": f"the server says no ({code})"}
        if variant == "fail2" and number == 2:
            return 500, {"code": "InternalError", "description": "database went away on page 2"}
        if variant == "badjson":
            return 200, "{not json"
        if number > 2:
            return 200, {"type": "FeatureCollection", "features": [], "links": []}
        page = json.loads(json.dumps(self.pages[number - 1]))
        href = self.search_url(variant)
        if variant == "get":
            links = [{"rel": "next", "href": f"{href}?page=2&limit=10"}] if number == 1 else []
        elif variant == "merge":
            links = [{"rel": "next", "method": "POST", "href": href, "merge": True}]
            links[0]["body"] = {"page": number + 1}
        elif variant == "loop":
            links = [{"rel": "next", "method": "POST", "href": href, "body": dict(body or {})}]
        else:
            next_body = {**(body or {}), "page": number + 1}
            if variant == "offsite":
                href = href.replace(HOST, "localhost", 1)
            links = [{"rel": "next", "method": "POST", "href": href, "body": next_body}]
        page["links"] = links
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
        return 200, page

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
                    host = "localhost" if segments[0] == "redirect" else HOST
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

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._answer(None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                self._answer(json.loads(raw) if raw else {})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet: pytest shows failures, not access logs."""

        return Handler


# ---------------------------------------------------------------------------- fixtures
try:
    import pytest
except ImportError:  # used as a plain module by the benchmark
    pytest = None

if pytest is not None:

    @dataclass
    class StacApi:
        """The running test STAC API and what was loaded into it."""

        stack: StacStack
        collection: dict
        items: list[dict]

        @property
        def search_url(self) -> str:
            """`http://127.0.0.1:PORT/search`."""
            return self.stack.search_url

        def item_url(self, index: int) -> str:
            """URL of test item `index` as the API links it."""
            return f"{self.stack.root_url}/collections/{TEST_COLLECTION}/items/item-{index:02d}"

    @pytest.fixture(scope="session")
    def stac_api(tmp_path_factory) -> Iterator[StacApi]:
        """stac-fastapi-pgstac over PostgreSQL/PostGIS holding the 13 test items."""
        collection, items = write_test_catalog(tmp_path_factory.mktemp("stac_cogs"))
        stack = start_stac_stack([collection], items)
        try:
            yield StacApi(stack, collection, items)
        finally:
            stack.stop()

    @pytest.fixture(scope="session")
    def stac_fixture_server(shared_fixtures) -> Iterator[FixturePagesServer]:
        """The two real `/search` pages replayed on 127.0.0.1 (skips without the fixtures)."""
        server = FixturePagesServer(shared_fixtures).start()
        try:
            yield server
        finally:
            server.stop()
