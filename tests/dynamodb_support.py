"""Helpers and fixtures of the DynamoDB test modules (tests/test_dynamodb*.py): documents,
raw items, request counting, writer processes and the mixed-version checker. A pytest plugin
(tests/conftest.py) for the `table` and `aws_tuning` fixtures."""

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lambda_handler import cache
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import (
    OVERVIEW_SUFFIX,
    DynamoDBBackend,
    dynamodb_client,
)
from lambda_handler.errors import (
    MosaicConflictError,
)
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.mosaic.tiling import tile_quadkey
from lambda_handler.settings import aws_settings
from tests.geometry import inset_box
from tests.servers_aws import REGION, unique_name
from tests.waiting import Deadline


# ---------------------------------------------------------------------- helpers
def block(x0: int, y0: int, size: int, zoom: int, tag: str = "a") -> dict[str, list[str]]:
    """`size` x `size` quadkeys from (x0, y0) at `zoom`, each with its own and a shared asset."""
    tiles = {}
    for x in range(x0, x0 + size):
        for y in range(y0, y0 + size):
            tiles[tile_quadkey(x, y, zoom)] = [f"s3://b/{tag}/{x}_{y}.tif", f"s3://b/{tag}/all.tif"]
    return tiles


def document(
    tiles: dict[str, list[str]], quadkey_zoom: int = 8, minzoom: int | None = None, **extra
) -> MosaicJSON:
    return MosaicJSON(
        mosaicjson="0.0.3",
        minzoom=max(0, quadkey_zoom - 6) if minzoom is None else minzoom,
        maxzoom=quadkey_zoom + 4,
        quadkey_zoom=quadkey_zoom,
        bounds=(-180.0, -85.0, 180.0, 85.0),
        tiles=tiles,
        **extra,
    )


def raw_items(server, table: str, mosaic: str) -> dict[str, dict]:
    """Every item of a partition, read with a plain client (quadkey -> item)."""
    client = server.client("dynamodb")
    items, params = {}, {}
    paging = Deadline(60, f"the last Query page of partition {mosaic!r}")
    while True:
        paging.check(f"{len(items)} items so far")
        page = client.query(
            TableName=table,
            KeyConditionExpression="mosaicId = :m",
            ExpressionAttributeValues={":m": {"S": mosaic}},
            ConsistentRead=True,
            **params,
        )
        items.update({item["quadkey"]["S"]: item for item in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return items
        params = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def query_path(tiles: dict[str, list[str]], prefix: str) -> list[str]:
    """What the Query path answers for a prefix: its children's assets in quadkey order, first
    occurrence kept (computed here from the document, independently of the backend)."""
    children = sorted(qk for qk in tiles if qk.startswith(prefix))
    return list(dict.fromkeys(a for qk in children for a in tiles[qk]))


def expected_overviews(
    tiles: dict[str, list[str]], quadkey_zoom: int, minzoom: int = 2
) -> dict[str, list[str]]:
    """Every overview a fresh write must store: each prefix of zoom minzoom .. quadkey_zoom - 3
    (`document` gives a quadkey_zoom-8 mosaic minzoom 2)."""
    prefixes = {qk[:zoom] for qk in tiles for zoom in range(minzoom, quadkey_zoom - 2)}
    return {prefix: query_path(tiles, prefix) for prefix in prefixes}


def stored_overviews(server, table: str, mosaic: str) -> dict[str, list[str] | None]:
    """The overview partition read with a plain client: prefix -> assets (None: a marker)."""
    found = {}
    for key, item in raw_items(server, table, mosaic + OVERVIEW_SUFFIX).items():
        if key != "info":
            assets = item.get("assets")
            found[key.partition(":")[2]] = [a["S"] for a in assets["L"]] if assets else None
    return found


def random_tiles(seed: int, count: int, zoom: int = 8, tag: str = "r") -> dict[str, list[str]]:
    """`count` scattered quadkeys with overlapping assets (order and de-duplication matter)."""
    rng = random.Random(seed)
    side = 1 << zoom
    tiles = {}
    while len(tiles) < count:
        x, y = rng.randrange(side // 4, side // 2), rng.randrange(side // 4, 3 * side // 4)
        assets = [f"s3://b/{tag}/{x // 3}_{y // 3}.tif"]
        if rng.random() < 0.4:
            assets.insert(0, f"s3://b/{tag}/wide_{x // 7}_{y // 5}.tif")
        if rng.random() < 0.1:
            assets.append(f"s3://b/{tag}/only_{x}_{y}.tif")
        tiles[tile_quadkey(x, y, zoom)] = assets
    return tiles


def inside_feature(uri: str, x0: int, y0: int, zoom: int, path: str, size: int = 1) -> dict:
    """A footprint strictly inside the `size` x `size` quadkeys from (x0, y0): no neighbour."""
    with MosaicBackend(uri) as backend:
        west, _, _, north = backend.mosaic_tms.bounds(x0, y0, zoom)
        _, south, east, _ = backend.mosaic_tms.bounds(x0 + size - 1, y0 + size - 1, zoom)
    return inset_box(west, south, east, north, 0.01, path)


@contextmanager
def counting(backend: DynamoDBBackend | None = None) -> Iterator[Counter]:
    """Count the DynamoDB operations the backend's client sends (a botocore event hook); without
    a backend, the operations of the process-wide client (e.g. opening a mosaic)."""
    calls: Counter = Counter()

    def hook(model, **kwargs) -> None:
        calls[model.name] += 1

    client = backend.client if backend else dynamodb_client(REGION)
    events = client.meta.events
    events.register("before-call.dynamodb", hook)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", hook)


@pytest.fixture
def table(dynamodb_env) -> str:
    """A fresh mosaic table on the current DynamoDB stand-in."""
    name = unique_name("mosaics")
    assert DynamoDBBackend.create_table(name) is True
    return name


@pytest.fixture
def aws_tuning(monkeypatch):
    """Set MOSAIC_AWS_* settings for one test."""

    def apply(**values) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"MOSAIC_AWS_{name.upper()}", str(value))
        aws_settings.cache_clear()

    yield apply
    aws_settings.cache_clear()


def write(uri: str, doc: MosaicJSON, overwrite: bool = False) -> None:
    with MosaicBackend(uri, mosaic_def=doc) as backend:
        backend.write(overwrite=overwrite)


def read_tiles(uri: str) -> dict[str, list[str]]:
    cache.clear_all()
    with MosaicBackend(uri) as backend:
        return backend.to_document().tiles


# ---------------------------------------------------------------------- never a mixed mosaic
# The versions written by the tests below: every quadkey changes, some disappear, some appear.
OLD = block(0, 0, 24, 8, "old")
NEW = block(4, 4, 24, 8, "new")


def sample_tiles() -> list[tuple[int, int, int]]:
    """Tiles over both versions at every zoom the mosaic serves below and at its quadkey zoom
    (overview items at 2-5, the Query at 6-7, one item at 8)."""
    tiles = []
    for zoom in range(2, 9):
        side = 28 >> (8 - zoom)
        step = max(1, side // 3)
        tiles += [(x, y, zoom) for x in range(0, side + 1, step) for y in range(0, side + 1, step)]
    return tiles


def expected_assets(tiles: dict[str, list[str]], x: int, y: int, z: int) -> list[str]:
    """What a tile reads in one version (computed from the document)."""
    if z >= 8:
        return list(tiles.get(tile_quadkey(x >> (z - 8), y >> (z - 8), 8), []))
    return query_path(tiles, tile_quadkey(x, y, z))


class MixChecker:
    """Reads tiles and a bbox from a thread, over and over, while a writer works elsewhere:
    through fresh opens (no cache) and through one backend opened before the write (cached
    metadata that goes stale). Records every answer that is neither entirely `old` nor
    entirely `new`."""

    def __init__(self, uri: str, old: dict[str, list[str]], new: dict[str, list[str]]):
        self.uri = uri
        self.old, self.new = old, new
        self.expected = {
            tile: (expected_assets(old, *tile), expected_assets(new, *tile))
            for tile in sample_tiles()
        }
        self.reads = 0
        self.mixed: list[tuple] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._long_lived = MosaicBackend(uri)

    def _check(self, backend: DynamoDBBackend, tile: tuple[int, int, int]) -> None:
        assets = backend.get_assets(*tile)
        self.reads += 1
        if assets not in self.expected[tile]:
            self.mixed.append((tile, assets))

    def _check_bbox(self, backend: DynamoDBBackend) -> None:
        # the 256 quadkeys of tile (1, 1, 4): three BatchGetItem requests
        west, south, east, north = backend.mosaic_tms.bounds(1, 1, 4)
        inset = 1e-6
        assets = backend.assets_for_bbox(west + inset, south + inset, east - inset, north - inset)
        self.reads += 1
        if assets not in self.expected[(1, 1, 4)] and sorted(assets) not in [
            sorted(e) for e in self.expected[(1, 1, 4)]
        ]:
            self.mixed.append(("bbox", assets))

    def _run(self) -> None:
        tiles = list(self.expected)
        rng = random.Random(0)
        while not self._stop.is_set():
            try:
                cache.clear_all()
                fresh = MosaicBackend(self.uri)
                for tile in rng.sample(tiles, 6):
                    self._check(fresh, tile)
                self._check_bbox(fresh)
                # the backend opened before the write resolves with its old generation
                for tile in rng.sample([t for t in tiles if t[2] < 8], 6):
                    self._check(self._long_lived, tile)
            except Exception as err:  # recorded and asserted on
                self.errors.append(f"{type(err).__name__}: {err}")
                time.sleep(0.05)

    def __enter__(self) -> "MixChecker":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def sweep(self) -> None:
        """Read every zoom-6 and zoom-7 tile of the area once (fresh and long-lived backend)."""
        cache.clear_all()
        fresh = MosaicBackend(self.uri)
        for zoom in (6, 7):
            side = 28 >> (8 - zoom)
            for x in range(side + 1):
                for y in range(side + 1):
                    tile = (x, y, zoom)
                    self.expected.setdefault(
                        tile,
                        (expected_assets(self.old, *tile), expected_assets(self.new, *tile)),
                    )
                    self._check(fresh, tile)
                    self._check(self._long_lived, tile)

    def assert_never_mixed(self) -> None:
        """At least some reads happened, none failed, none mixed."""
        assert not self.errors, self.errors[:3]
        assert not self.mixed, self.mixed[:3]
        assert self.reads >= 10, self.reads


def run_worker(*args: str, env: dict[str, str], timeout: float = 300) -> tuple[int, str, str]:
    """Run `python -m tests.dynamodb_workers ARGS` with the current environment plus `env`."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tests.dynamodb_workers", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    return result.returncode, result.stdout, result.stderr


def start_worker(*args: str, env: dict[str, str]):
    """Start `python -m tests.dynamodb_workers ARGS` (to be killed)."""
    import os
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "tests.dynamodb_workers", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )


def worker_env(endpoint: str, **settings) -> dict[str, str]:
    """A writer process's environment: its DynamoDB endpoint, a short lease, few retries."""
    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "MOSAIC_AWS_WRITE_LOCK_SECONDS": "5",
        "MOSAIC_AWS_MAX_ATTEMPTS": "2",
        "MOSAIC_AWS_WRITE_THREADS": "2",
    }
    env.update({f"MOSAIC_AWS_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def document_file(tmp_path, tiles: dict[str, list[str]], name: str) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(document(tiles, name=name).to_json())
    return str(path)


def write_when_free(uri: str, doc: MosaicJSON, overwrite: bool = True) -> float:
    """Write as soon as the writer lock allows; returns the seconds waited (fails after 60)."""
    started = time.monotonic()
    unlocked = Deadline(60, f"the writer lock of {uri} to be free")
    while True:
        try:
            write(uri, doc, overwrite=overwrite)
            return time.monotonic() - started
        except MosaicConflictError:
            unlocked.check()
            time.sleep(0.2)


def staged_items(server, table: str, mosaic: str) -> list[dict]:
    return [i for i in raw_items(server, table, mosaic).values() if "next_gen" in i]


def assert_layout_readable(server, table: str, mosaic: str, *versions: dict) -> None:
    """What cogeo-mosaic reads (`item.get('assets', [])` per quadkey) is a list of strings on
    every item, each some version's value of that quadkey (it may lag, it never breaks)."""
    for quadkey, item in raw_items(server, table, mosaic).items():
        if quadkey == "-1":
            continue
        assets = [a["S"] for a in item.get("assets", {"L": []})["L"]]
        assert assets in [v.get(quadkey, []) for v in versions], quadkey


def proxied_env(monkeypatch, proxy) -> None:
    """Send this process's DynamoDB requests through a fault proxy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint)


def overwrite_while_reading(uri: str, tmp_path, endpoint: str) -> tuple[MixChecker, int, str]:
    """Overwrite OLD with NEW in a writer process talking to `endpoint` while a MixChecker
    reads (reads go on for a second after the writer is gone): the checker, the writer's
    exit code and its stderr."""
    with MixChecker(uri, OLD, NEW) as checker:
        code, _, stderr = run_worker(
            "write",
            uri,
            document_file(tmp_path, NEW, "new"),
            "--overwrite",
            env=worker_env(endpoint),
        )
        time.sleep(1.0)  # and reads go on after the writer is gone
    return checker, code, stderr
