"""Concurrent writers of one mosaic, in real processes: who was acknowledged, what was kept.

Used by tests/test_concurrent_writes.py and benchmarks/bench_lost_updates.py. Each writer process
opens the mosaic and calls `update()` `updates` times, each time with one new asset of its own
over the same quadkeys (so every update conflicts with the others'), and reports per asset
whether the update was acknowledged or refused (and with which error). `verify` then reads the
stored mosaic: every acknowledged asset must be there and the version must count every
acknowledged update.
"""

import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.geometry import square

# Every writer's assets cover this square: all of them land in the same quadkeys.
AREA = (10.0, 10.0, 1.0)  # lon, lat, size in degrees
MINZOOM, MAXZOOM = 6, 8
START_VERSION = (1, 0, 0)


# Assets are URLs (the API refuses relative names); nothing reads them.
ASSET_ROOT = "s3://lost-updates/"
BASE_ASSET = ASSET_ROOT + "base.tif"


def asset_name(writer: int, index: int) -> str:
    """The asset the `index`-th update of `writer` adds."""
    return f"{ASSET_ROOT}w{writer:02d}-u{index:03d}.tif"


def initial_document() -> Any:
    """The mosaic every run starts from: one asset, version 1.0.0."""
    from lambda_handler.mosaic.builder import from_features

    lon, lat, size = AREA
    return from_features([square(lon, lat, size, BASE_ASSET)], MINZOOM, MAXZOOM)


def create_mosaic(uri: str) -> None:
    """Store the initial mosaic at `uri` (replacing any)."""
    from lambda_handler.backends import MosaicBackend

    with MosaicBackend(uri, mosaic_def=initial_document()) as backend:
        backend.write(overwrite=True)


Outcome = tuple[str, str]  # (asset, "ok" or the error's class name and message)


def _update_writer(uri: str, writer: int, updates: int, start: Any, results: Any) -> None:
    """Process body: wait for the start signal, then update `updates` times."""
    from lambda_handler.backends import MosaicBackend
    from lambda_handler.errors import MosaicError

    outcomes: list[Outcome] = []
    lon, lat, size = AREA
    if not start.wait(timeout=300):
        raise TimeoutError("the start signal never came")
    for index in range(updates):
        asset = asset_name(writer, index)
        try:
            with MosaicBackend(uri) as backend:
                backend.update([square(lon, lat, size, asset)])
            outcomes.append((asset, "ok"))
        except MosaicError as err:
            outcomes.append((asset, f"{type(err).__name__}: {err}"))
        except Exception as err:  # reported to the test, which fails on it
            outcomes.append((asset, f"UNEXPECTED {type(err).__name__}: {err}"))
    results.put((writer, outcomes))


def _http_writer(
    base: str, mosaic_id: str, key: str, etag: str | None, writer: int, start: Any, results: Any
) -> None:
    """Process body: one PATCH adding one asset through the HTTP API (with `If-Match: etag`
    when given: all writers then hold the same ETag)."""
    import httpx

    lon, lat, size = AREA
    asset = asset_name(writer, 0)
    headers = {"X-API-Key": key} | ({"If-Match": etag} if etag else {})
    if not start.wait(timeout=300):
        raise TimeoutError("the start signal never came")
    try:
        response = httpx.patch(
            f"{base}/mosaics/{mosaic_id}",
            json={"features": [square(lon, lat, size, asset)]},
            headers=headers,
            timeout=120,
        )
        status = response.status_code
        outcome = "ok" if status == 200 else f"HTTP {status}: {response.text[:300]}"
    except Exception as err:
        outcome = f"UNEXPECTED {type(err).__name__}: {err}"
    results.put((writer, [(asset, outcome)]))


def _run(target: Callable[..., None], args_for: Callable[[int], tuple], writers: int) -> list:
    # spawn: the parent holds threads (HTTP clients, servers' pipes) that fork would copy.
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*args_for(w), start, results)) for w in range(writers)
    ]
    for process in processes:
        process.start()
    # Let every process import the package before the race starts (spawn costs a second).
    time.sleep(float(os.environ.get("LOST_UPDATES_WARMUP", "3")))
    start.set()
    collected = [results.get(timeout=900) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return collected


@dataclass
class RunResult:
    """What a run of concurrent writers left: acknowledged, refused, lost."""

    store: str
    writers: int
    updates: int
    acknowledged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    unexpected: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    stored_assets: set[str] = field(default_factory=set)
    version: str = ""
    expected_version: str = ""
    seconds: float = 0.0

    @property
    def row(self) -> str:
        """One line of the lost-update table."""
        return (
            f"| {self.store} | {self.writers} x {self.updates} | {len(self.acknowledged)} | "
            f"{len(self.refused)} | {len(self.lost)} | {self.version} "
            f"(expected {self.expected_version}) | {self.seconds:.1f} s |"
        )


def _collect(result: RunResult, collected: list) -> None:
    for _, outcomes in collected:
        for asset, outcome in outcomes:
            if outcome == "ok":
                result.acknowledged.append(asset)
            elif outcome.startswith("UNEXPECTED"):
                result.unexpected[asset] = outcome
            else:
                result.refused[asset] = outcome


def verify(uri: str, result: RunResult) -> RunResult:
    """Read the stored mosaic: which acknowledged assets are missing, which version it has."""
    from lambda_handler import cache
    from lambda_handler.backends import MosaicBackend

    cache.clear_all()
    with MosaicBackend(uri) as backend:
        document = backend.to_document()
    result.stored_assets = {a for assets in document.tiles.values() for a in assets}
    result.lost = sorted(set(result.acknowledged) - result.stored_assets)
    result.version = document.version
    major, minor, patch = START_VERSION
    result.expected_version = f"{major}.{minor}.{patch + len(result.acknowledged)}"
    return result


def run_update_writers(uri: str, store: str, writers: int, updates: int) -> RunResult:
    """Create the mosaic, race `writers` processes of `updates` updates each, verify."""
    create_mosaic(uri)
    began = time.monotonic()
    collected = _run(_update_writer, lambda w: (uri, w, updates), writers)
    result = RunResult(store, writers, updates, seconds=time.monotonic() - began)
    _collect(result, collected)
    return verify(uri, result)


def run_http_writers(base: str, mosaic_id: str, uri: str, key: str, writers: int) -> RunResult:
    """Create the mosaic at `uri`, race `writers` processes each sending one PATCH to the API
    at `base`, verify through the store."""
    create_mosaic(uri)
    began = time.monotonic()
    collected = _run(_http_writer, lambda w: (base, mosaic_id, key, None, w), writers)
    result = RunResult("HTTP API PATCH", writers, 1, seconds=time.monotonic() - began)
    _collect(result, collected)
    return verify(uri, result)


def run_conditional_http_writers(
    base: str, mosaic_id: str, uri: str, key: str, writers: int
) -> RunResult:
    """Create the mosaic, read its ETag, race `writers` processes each sending one PATCH with
    `If-Match: <that ETag>`, verify through the store."""
    import httpx

    create_mosaic(uri)
    etag = httpx.get(f"{base}/mosaics/{mosaic_id}", timeout=60).headers["ETag"]
    began = time.monotonic()
    collected = _run(_http_writer, lambda w: (base, mosaic_id, key, etag, w), writers)
    result = RunResult("HTTP API PATCH If-Match", writers, 1, seconds=time.monotonic() - began)
    _collect(result, collected)
    return verify(uri, result)
