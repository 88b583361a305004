"""Exports through a real tiler (uvicorn on 127.0.0.1) that fails a fraction of requests."""

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import rasterio

from lambda_handler.export import ExportRun, ExportTiles, TileOptions, export_mosaic, plan_export
from lambda_handler.export.plan import ExportError
from tests.conftest import PROJECT_ROOT
from tests.servers_api import _write, uvicorn_server
from tests.waiting import Deadline

MOSAIC = "export-scenes"
AREA = (-78.55, 45.0, -77.5, 45.7)
ZOOM = 11


@pytest.fixture(scope="module")
def faulty_server(api_store, sample_cogs, tmp_path_factory):
    """The API behind the fault injector: 30% of tiles fail once (500/429/timeout/drop)."""
    _write(api_store.uri(MOSAIC), sample_cogs, minzoom=8, maxzoom=12)
    env = {**os.environ, **api_store.env(), "FAULT_RATE": "0.3", "FAULT_DELAY": "3"}
    log = tmp_path_factory.mktemp("faulty") / "uvicorn.log"
    with uvicorn_server("tests.faulty_app:create_faulty_app", env, log, cwd=PROJECT_ROOT) as base:
        yield base


def served(base: str) -> dict:
    return httpx.get(base + "/_requests").json()


def read_all(path):
    with rasterio.open(path) as src:
        return src.read(), src.dataset_mask(), src.transform


def test_export_through_faults_gives_identical_pixels(faulty_server, api_store, tmp_path):
    before = served(faulty_server)
    remote = export_mosaic(
        tmp_path / "remote.tif", ZOOM, bbox=AREA, endpoint=faulty_server, mosaic_id=MOSAIC,
        request_timeout=1.5, run=ExportRun(concurrency=4, backoff_base=0.05, seed=1),
    )  # fmt: skip
    assert remote.assembled and not remote.failed
    after = served(faulty_server)
    tiles = len(plan_export(ZOOM, bbox=AREA).tiles)
    assert after["served"] - before["served"] == tiles, "each tile served once"
    assert after["attempts"] - before["attempts"] > tiles, "faults were injected and retried"

    local = export_mosaic(
        tmp_path / "local.tif",
        ZOOM,
        bbox=AREA,
        uri=api_store.uri(MOSAIC),
        run=ExportRun(concurrency=2),
    )
    assert local.assembled
    remote_data, remote_mask, remote_transform = read_all(tmp_path / "remote.tif")
    local_data, local_mask, local_transform = read_all(tmp_path / "local.tif")
    assert remote_transform == local_transform
    assert np.array_equal(remote_mask, local_mask)
    assert remote_mask.any()
    assert np.array_equal(remote_data[:, remote_mask > 0], local_data[:, local_mask > 0])


def test_unknown_mosaic_and_zoom_fail_early(faulty_server, tmp_path):
    with pytest.raises(ExportError, match="not found"):
        export_mosaic(tmp_path / "x.tif", ZOOM, bbox=AREA, endpoint=faulty_server, mosaic_id="nope")
    with pytest.raises(ExportError, match="outside the mosaic's zooms"):
        export_mosaic(tmp_path / "x.tif", 15, bbox=AREA, endpoint=faulty_server, mosaic_id=MOSAIC)


def test_permanent_errors_are_reported_not_retried(faulty_server, tmp_path):
    report = export_mosaic(
        tmp_path / "bad.tif", ZOOM, bbox=AREA, endpoint=faulty_server, mosaic_id=MOSAIC,
        request_timeout=1.5, tiles=ExportTiles(TileOptions(pixel_selection="no-such-method")),
        run=ExportRun(concurrency=4, backoff_base=0.05),
    )  # fmt: skip
    assert not report.assembled
    assert len(report.failed) == report.tiles
    assert all("HTTP 422" in reason for reason in report.failed.values())
    assert (tmp_path / "bad.tif.tiles").exists() and not (tmp_path / "bad.tif").exists()


def test_killed_export_resumes_without_rerendering(faulty_server, tmp_path):
    output = tmp_path / "killed.tif"
    tiles_dir = tmp_path / "killed.tif.tiles"
    command = [
        sys.executable, "-m", "lambda_handler.cli", "export", str(output),
        "--endpoint", faulty_server, "--mosaic-id", MOSAIC, "--zoom", str(ZOOM + 1),
        "--bbox", ",".join(str(v) for v in AREA), "--concurrency", "2",
    ]  # fmt: skip
    total = len(plan_export(ZOOM + 1, bbox=AREA).tiles)
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(list(tiles_dir.glob(f"{ZOOM + 1}-*"))) < total // 3:
        assert process.poll() is None, "the export finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    kept = len(list(tiles_dir.glob(f"{ZOOM + 1}-*")))
    assert 0 < kept < total
    assert not output.exists()

    # Requests of the killed run may still be finishing on the server: wait until it is idle.
    before = served(faulty_server)
    idle = Deadline(60, "the server to finish the requests of the killed export")
    while True:
        idle.check(f"last count {before}")
        time.sleep(0.5)
        settled = served(faulty_server)
        if settled == before:
            break
        before = settled
    rerun = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = served(faulty_server)
    assert after["served"] - before["served"] == total - kept, (
        "only the missing tiles are requested"
    )
    assert f"{kept} kept from an earlier run" in " ".join(rerun.stderr.split())
    with rasterio.open(output) as src:
        assert src.dataset_mask().any()
