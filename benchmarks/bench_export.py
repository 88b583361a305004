"""Export throughput and the exporter's peak memory, against the local tiler.

Starts the API under uvicorn on 127.0.0.1 (an SQLite store with the generated scenes), then runs
`mosaic-tiler export --endpoint` twice over areas whose tile counts differ 4x (the scenes' extent
at zoom 13, then zoom 14), each in its own process so its peak RSS is its own. Prints tiles/s
and peak RSS for both: the peak must stay under 500 MB and not grow with the area.

Run: `pip install -e .[test]` then `python benchmarks/bench_export.py`.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(argv: list[str]) -> None:
    """Run one export in this process and print its peak RSS."""
    from lambda_handler.cli import app

    started = time.perf_counter()
    try:
        app(argv, standalone_mode=False)
    finally:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"PEAK_RSS_MB {peak_kib / 1024:.1f}")
        print(f"SECONDS {time.perf_counter() - started:.2f}")


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    """The API under uvicorn (bench_tiles' launcher) over an SQLite store of the scenes."""
    from bench_tiles import start_server as start_uvicorn

    from lambda_handler.backends import MosaicBackend
    from lambda_handler.mosaic import from_urls
    from lambda_handler.sample_data import generate_scenes

    scenes = generate_scenes(workdir / "cogs")
    db = workdir / "mosaics.db"
    with MosaicBackend(
        f"sqlite:///{db}:bench", mosaic_def=from_urls(scenes, minzoom=8, maxzoom=15)
    ) as store:
        store.write(overwrite=True)
    env = {"MOSAIC_API_MOSAIC_URI_TEMPLATE": f"sqlite:///{db}:{{mosaic_id}}"}
    return start_uvicorn("lambda_handler.app:create_app", env)


def run_export(base: str, zoom: int, bbox: str, output: Path, concurrency: int) -> dict:
    from lambda_handler.export.plan import plan_export

    tiles = len(plan_export(zoom, bbox=tuple(float(v) for v in bbox.split(","))).tiles)
    argv = ["export", str(output), "--endpoint", base, "--mosaic-id", "bench", "--zoom", str(zoom),
            "--bbox", bbox, "--concurrency", str(concurrency)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, __file__, "--child", *argv], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"export failed: {result.stderr[-2000:]}")
    figures = dict(
        line.split(" ", 1) for line in result.stdout.splitlines() if line.isupper() or " " in line
    )
    seconds = float(figures["SECONDS"])
    return {"tiles": tiles, "seconds": seconds, "rss": float(figures["PEAK_RSS_MB"]),
            "size": output.stat().st_size}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bbox", default="-78.72,44.87,-77.28,45.83", help="the scenes' extent")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, base = start_server(workdir)
        try:
            small = run_export(base, 13, args.bbox, workdir / "z13.tif", args.concurrency)
            large = run_export(base, 14, args.bbox, workdir / "z14.tif", args.concurrency)
        finally:
            server.terminate()
            server.wait()
    for label, run in (("area A (z13)", small), ("area B (z14, 4x tiles)", large)):
        print(
            f"{label}: {run['tiles']} tiles in {run['seconds']:.1f} s = "
            f"{run['tiles'] / run['seconds']:.1f} tiles/s, peak RSS {run['rss']:.0f} MB, "
            f"COG {run['size'] / 1e6:.1f} MB"
        )
    growth = large["rss"] / small["rss"]
    print(f"tile ratio {large['tiles'] / small['tiles']:.1f}x, peak RSS ratio {growth:.2f}x")
    ok = max(small["rss"], large["rss"]) < 500 and growth < 1.5
    print(f"peak RSS under 500 MB and flat with the area: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
