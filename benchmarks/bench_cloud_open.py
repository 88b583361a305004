"""Opening a gs:// / az:// mosaic and looking up one tile: one client per process (ours) against
a client built per open (cogeo-mosaic's GCS backend; for Azure, our backend with a fresh client).

Run: `pip install -e .[bench,gcs,azure,test]` then `python benchmarks/bench_cloud_open.py`.
It starts gcp-storage-emulator (and azurite when `tests/node` is installed) on 127.0.0.1, stores
a mosaic of `--count` footprints, and prints median milliseconds per open and the ratios.
Mosaic caches are disabled on both sides so every open reads the document.
"""

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ["MOSAIC_CACHE_DISABLE"] = "1"
os.environ["COGEO_MOSAIC_CACHE_DISABLE"] = "TRUE"
sys.path.insert(0, str(Path(__file__).parent))

import httpx
from footprints import scene_footprints

from lambda_handler.backends import MosaicBackend
from lambda_handler.mosaic import from_features

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.processes
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def start(args: list[str], url: str, cwd: str) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{args[0]} did not start")


def median_ms(function: Callable[[], object], repeat: int) -> float:
    function()  # warm-up: imports, first connection
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1000


def bench_gcs(document, tile, repeat: int, workdir: str) -> None:
    from cogeo_mosaic.backends import MosaicBackend as PeerBackend
    from google.cloud import storage

    port = free_port()
    process = start(
        ["gcp-storage-emulator", "start", "--host", "127.0.0.1", "--port", str(port), "-M"],
        f"http://127.0.0.1:{port}/",
        workdir,
    )
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        storage.Client().create_bucket("bench")
        uri = "gs://bench/mosaics/bench.json.gz"
        MosaicBackend(uri, mosaic_def=document).write()

        def ours() -> None:
            with MosaicBackend(uri) as backend:
                backend.assets_for_tile(*tile)

        def peer() -> None:
            with PeerBackend(uri) as backend:
                backend.assets_for_tile(*tile)

        ours_ms, peer_ms = median_ms(ours, repeat), median_ms(peer, repeat)
        print(f"gcs open+lookup: ours {ours_ms:.1f} ms, cogeo-mosaic {peer_ms:.1f} ms")
        print(f"gcs ratio (cogeo-mosaic / ours): {peer_ms / ours_ms:.2f}")
    finally:
        process.terminate()
        process.wait()


def bench_azure(document, tile, repeat: int, workdir: str) -> None:
    from azure.storage.blob import BlobServiceClient

    from lambda_handler.backends import azure

    node = shutil.which("node")
    if node is None or not AZURITE_BIN.exists():
        print("azure: skipped (needs node and `npm ci --prefix tests/node`)")
        return
    port = free_port()
    process = start(
        [node, str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
        + ["--location", workdir, "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        f"http://127.0.0.1:{port}/",
        workdir,
    )
    try:
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        BlobServiceClient.from_connection_string(
            os.environ["AZURE_STORAGE_CONNECTION_STRING"]
        ).create_container("bench")
        uri = "az://devstoreaccount1.blob.core.windows.net/bench/mosaics/bench.json.gz"
        MosaicBackend(uri, mosaic_def=document).write()

        def reused() -> None:
            with MosaicBackend(uri) as backend:
                backend.assets_for_tile(*tile)

        def fresh() -> None:
            azure._clients.clear()  # what a client per open costs
            reused()

        reused_ms, fresh_ms = median_ms(reused, repeat), median_ms(fresh, repeat)
        print(f"azure open+lookup: reused client {reused_ms:.1f} ms, new client {fresh_ms:.1f} ms")
        print(f"azure ratio (new client / reused): {fresh_ms / reused_ms:.2f}")
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="footprints in the mosaic")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if importlib.util.find_spec("cogeo_mosaic") is None:
        sys.exit("cogeo-mosaic is not installed: pip install -e .[bench]")

    document = from_features(scene_footprints(args.count), 6, 12, quadkey_zoom=8, name="bench")
    tile = (284, 392, 10)  # somewhere over North America
    print(f"mosaic: {args.count} footprints, {len(document.tiles)} quadkeys, gzip JSON")
    with tempfile.TemporaryDirectory() as workdir:
        bench_gcs(document, tile, args.repeat, workdir)
        bench_azure(document, tile, args.repeat, workdir)


if __name__ == "__main__":
    main()
