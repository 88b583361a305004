"""Cold start as users pay it: init + first tile, ours vs titiler.mosaic + cogeo-mosaic + mangum.

Both Lambda assets are built by `cdk.bundling` (pinned manylinux wheels for CPython 3.12, pruned,
3.12 bytecode); the peer's requirements are resolved by pip for the same platform. Each run is a
fresh `env -i python3.12 -S` with the asset and a stand-in of Lambda's runtime directory (boto3,
snapshot-restore-py) on sys.path and the variables Lambda sets (`AWS_LAMBDA_FUNCTION_NAME`,
`_HANDLER`), so each does at import what it does in Lambda's init phase. The run then answers
API Gateway events for PNG tiles of the same mosaic of generated COGs, stored as local files or
on the S3 stand-in (a moto server on 127.0.0.1: mosaic document and COGs). Each tile of a run
reads its own mosaic over its own copy of the COGs, so a warm tile finds the process warm but
no document, asset list or COG header cached, exactly like the first; which tile comes first
rotates between runs.

    python3 benchmarks/bench_coldstart.py [--runs 7] [--stores file,s3] [--importtime 20]

Ours runs twice: as an on-demand cold start (`AWS_LAMBDA_INITIALIZATION_TYPE=on-demand`: init
imports the tile path, no warm-up tile) and as SnapStart leaves it (`snap-start`: init renders
the warm-up tile; then the registered before-snapshot hooks run, and the after-restore hooks run
timed, as a restore runs them before the first invoke; Lambda's own restore of the microVM is not
measurable here). Prints, per store, the medians of: init, its warm-up part, the restore hooks,
first tile (restore hooks included), init + first tile, a warm tile, first / warm, and the
process CPU time of init + first tile (steadier than wall time on a shared machine); then the
on-demand cold start ours / peer, wall and CPU (target <= 0.5x), and SnapStart's first tile /
warm tile (target <= 1.2x). `--warm-up-off-row` adds ours with `MOSAIC_LAMBDA_WARM_UP=off`;
`--importtime N` lists the N costliest imports of our init (`python -X importtime`) and the big
packages it loads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coldstart_assets import peer_asset, runtime_dir  # noqa: E402
from coldstart_data import TILE_ZOOM, make_mosaics, start_moto, tile_set  # noqa: E402
from coldstart_floor import FLOOR_HANDLER  # noqa: E402

from cdk.bundling import BundleSpec, cached_asset, find_python  # noqa: E402

DRIVER = """
import base64, importlib, json, os, sys, time
started, cpu = time.perf_counter(), time.process_time()
module_name, _, name = os.environ["_HANDLER"].rpartition(".")
entry = getattr(importlib.import_module(module_name), name)
init, init_cpu = time.perf_counter() - started, time.process_time() - cpu
restore = 0.0
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
    # The snapshot: before-snapshot hooks, then (timed) what a restore runs before the first
    # invoke: the after-restore hooks.
    import snapshot_restore_py as registry
    for hook, args, kwargs in registry.get_before_snapshot():
        hook(*args, **kwargs)
    started = time.perf_counter()
    for hook, args, kwargs in registry.get_after_restore():
        hook(*args, **kwargs)
    restore = time.perf_counter() - started
tiles, tiles_cpu, statuses = [], [], []
for event in json.load(sys.stdin):
    started, cpu = time.perf_counter(), time.process_time()
    response = entry(event, None)
    tiles.append(time.perf_counter() - started)
    tiles_cpu.append(time.process_time() - cpu)
    body = response.get("body") or ""
    png = base64.b64decode(body)[:8] if response.get("isBase64Encoded") else b""
    statuses.append(response["statusCode"] if png == b"\\x89PNG\\r\\n\\x1a\\n" else body[:300])
warm = sys.modules.get("lambda_handler.snapstart")
print(json.dumps({"init": init, "tiles": tiles, "init_cpu": init_cpu, "tiles_cpu": tiles_cpu,
                  "restore": restore,
                  "statuses": statuses, "warm_up": dict(warm.timings) if warm else {}}))
"""
ON_DEMAND = "lambda_handler, on-demand"
SNAPSTART = "lambda_handler, SnapStart"
PEER = "titiler.mosaic"
# Init + first tile that no tiler computing the same pixels with the same stack goes below.
FLOOR = "floor: FastAPI + rio-tiler"
BARE_FLOOR = "floor: rio-tiler, no FastAPI"
HEAVY = (
    "rasterio",
    "numpy",
    "rio_tiler",
    "morecantile",
    "pyproj",
    "shapely",
    "boto3",
    "httpx",
    "pystac",
    "numexpr",
    "jinja2",
    "color_operations",
)


# ---------------------------------------------------------------------------- runs
def http_event(path: str, query: str = "") -> dict:
    """An API Gateway HTTP API event (payload 2.0), as the warm-up builds its own."""
    from lambda_handler.snapstart import get_event

    return get_event(path, "abc123.execute-api.us-east-1.amazonaws.com", query, "bench")


def events(app: str, location: str, order: list[int]) -> list[dict]:
    """The events of `app` for tiles `order` (indexes into `tile_set()`): tile i of mosaic i
    ("ours": by id; "peer": `?url=`)."""
    from urllib.parse import urlencode

    tiles = tile_set()
    found = []
    for index in order:
        z, x, y = tiles[index]
        if app == "peer":
            query = urlencode({"url": location.replace("{i}", str(index))})
            found.append(http_event(f"/mosaicjson/tiles/WebMercatorQuad/{z}/{x}/{y}.png", query))
        else:
            path = f"/mosaics/mosaic{index}/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
            found.append(http_event(path))
    return found


def gdal_defaults() -> dict[str, str]:
    """The GDAL variables our handler applies by itself; the peer's stack would set them in the
    function's environment (titiler's deployment does), so it gets them too."""
    from lambda_handler.settings import LambdaSettings

    return LambdaSettings().gdal_environment()


def run_once(
    python: str,
    asset: Path,
    runtime: Path,
    handler: str,
    env: dict[str, str],
    payload: list[dict],
    flags: tuple[str, ...] = (),
    extra_path: str = "",
) -> dict:
    """One fresh process: import (init), then the events; the timings."""
    full = {
        "PYTHONPATH": os.pathsep.join(p for p in (extra_path, str(asset), str(runtime)) if p),
        "LAMBDA_TASK_ROOT": str(asset),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1536",
        "_HANDLER": handler,
        "AWS_REGION": "us-east-1",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        **env,
    }
    done = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in full.items()), python, "-S", *flags]
        + ["-c", DRIVER],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=asset,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{handler} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    bad = [s for s in result["statuses"] if s != 200]
    if bad:
        raise RuntimeError(f"{handler}: a tile did not answer 200 PNG: {bad[0]}")
    result["stderr"] = done.stderr
    return result


def measure(python: str, runtime: Path, configs: dict[str, dict], runs: int) -> dict[str, dict]:
    """Medians over `runs` fresh processes of each config, interleaved (machine noise hits all
    alike), after one untimed run of each (page cache).

    A config: {"asset", "handler", "env", "app", "location"}.
    """
    tiles = list(range(len(tile_set())))

    def run(config: dict, order: list[int]) -> dict:
        payload = events(config["app"], config["location"], order)
        return run_once(
            python,
            config["asset"],
            runtime,
            config["handler"],
            config["env"],
            payload,
            extra_path=config.get("path", ""),
        )

    for config in configs.values():
        run(config, tiles)
    samples: dict[str, dict[str, list[float]]] = {
        name: {
            key: []
            for key in (
                "init",
                "warm_up",
                "restore",
                "first",
                "total",
                "warm",
                "total_cpu",
                "first_cpu",
                "warm_cpu",
            )
        }
        for name in configs
    }
    for index in range(runs):
        order = tiles[index % len(tiles) :] + tiles[: index % len(tiles)]
        for name, config in configs.items():
            result = run(config, order)
            sample = samples[name]
            sample["init"].append(result["init"])
            sample["warm_up"].append(result["warm_up"].get("warm_up", 0.0))
            sample["restore"].append(result["restore"])
            sample["first"].append(result["tiles"][0])
            sample["total"].append(result["init"] + result["tiles"][0])
            # Under SnapStart the first invoke waits for the restore hooks too.
            sample["first"][-1] += result["restore"]
            sample["warm"].append(statistics.median(result["tiles"][1:]))
            sample["total_cpu"].append(result["init_cpu"] + result["tiles_cpu"][0])
            sample["first_cpu"].append(result["tiles_cpu"][0])
            sample["warm_cpu"].append(statistics.median(result["tiles_cpu"][1:]))
    return {
        name: {key: statistics.median(values) for key, values in sample.items()}
        for name, sample in samples.items()
    }


def importtime(python: str, asset: Path, runtime: Path, env: dict, count: int) -> None:
    """The costliest imports of our init (warm-up on), cumulative, and the big packages."""
    driver_env = {**env, "MOSAIC_API_MOSAIC_URI_TEMPLATE": "dynamodb:///mosaics:{mosaic_id}"}
    result = run_once(
        python,
        asset,
        runtime,
        "lambda_handler.handler.handler",
        driver_env,
        [],
        flags=("-X", "importtime"),
    )
    rows = []
    for line in result["stderr"].splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((int(total), int(own), depth, name.strip()))
    print(f"\nour init's imports (cumulative ms, self ms; {count} costliest at depth <= 3):")
    for total, own, depth, name in sorted((r for r in rows if r[2] <= 3), key=lambda r: -r[0])[
        :count
    ]:
        print(f"  {total / 1000:7.1f} {own / 1000:7.1f}  {'  ' * depth}{name}")
    top = {}
    for total, _, _, name in rows:
        package = name.split(".")[0]
        if package in HEAVY or name == package:
            top[package] = max(top.get(package, 0), total)
    loaded = sorted((p for p in top if p in HEAVY), key=lambda p: -top[p])
    print(
        "big packages loaded by init: " + ", ".join(f"{p} {top[p] / 1000:.0f} ms" for p in loaded)
    )


def main() -> None:
    """Build both assets (cached), start the S3 stand-in, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--stores", default="file,s3")
    parser.add_argument("--importtime", type=int, default=0, metavar="N")
    parser.add_argument(
        "--warm-up-off-row",
        action="store_true",
        help="also run ours with MOSAIC_LAMBDA_WARM_UP=off",
    )
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    python = find_python("3.12")
    spec = BundleSpec()
    ours = cached_asset(spec).path
    peer = peer_asset(spec)
    runtime = runtime_dir(spec)

    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        directory = Path(tmp)
        floor = str(directory / "floor")
        Path(floor).mkdir()
        (Path(floor) / "floor_app.py").write_text(FLOOR_HANDLER)
        server, s3_env = start_moto(directory) if "s3" in stores else (None, {})
        try:
            locations = make_mosaics(
                directory,
                {"endpoint": s3_env["AWS_ENDPOINT_URL"]} if server else None,
                len(tile_set()),
            )
            gdal = gdal_defaults()
            print(f"median of {args.runs} fresh processes; tiles z{TILE_ZOOM} PNG, 256 px")
            header = (
                f"{'':30} {'init':>6} {'(warm-up)':>9} {'restore':>7} {'1st tile':>8} "
                f"{'total':>6} {'warm':>6} {'1st/warm':>9} {'total CPU':>9}"
            )
            for store in stores:
                where = locations[store]
                env_store = s3_env if store == "s3" else {}
                ours_env = {**env_store, "MOSAIC_API_MOSAIC_URI_TEMPLATE": where["ours"]}
                # The bundler keeps one PROJ database: the peer's stack would point at it.
                proj = next(
                    d
                    for d in (
                        peer / "rasterio" / "proj_data",
                        peer / "pyproj" / "proj_dir" / "share" / "proj",
                    )
                    if (d / "proj.db").is_file()
                )
                ours_config = {
                    "asset": ours,
                    "handler": "lambda_handler.handler.handler",
                    "app": "ours",
                    "location": where["ours"],
                }
                configs = {
                    ON_DEMAND: {
                        **ours_config,
                        "env": {**ours_env, "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"},
                    },
                    SNAPSTART: {
                        **ours_config,
                        "env": {**ours_env, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"},
                    },
                }
                if args.warm_up_off_row:
                    configs["lambda_handler, warm-up off"] = {
                        **ours_config,
                        "env": {**ours_env, "MOSAIC_LAMBDA_WARM_UP": "off"},
                    }
                configs[PEER] = {
                    "asset": peer,
                    "handler": "peer_app.handler",
                    "env": {**gdal, **env_store, "PROJ_DATA": str(proj)},
                    "app": "peer",
                    "location": where["peer"],
                }
                configs[FLOOR] = {**configs[PEER], "handler": "floor_app.handler", "path": floor}
                configs[BARE_FLOOR] = {
                    **configs[FLOOR],
                    "env": {**configs[FLOOR]["env"], "FLOOR_FASTAPI": "0"},
                }
                rows = measure(python, runtime, configs, args.runs)
                label = "on the S3 stand-in" if store == "s3" else "on local files"
                print(f"\n[{store}] mosaics and COGs {label} (ms)")
                print(header)
                for name, row in rows.items():
                    print(
                        f"{name:30} {row['init'] * 1000:6.0f} {row['warm_up'] * 1000:9.0f} "
                        f"{row['restore'] * 1000:7.0f} {row['first'] * 1000:8.0f} "
                        f"{row['total'] * 1000:6.0f} {row['warm'] * 1000:6.0f} "
                        f"{row['first'] / row['warm']:8.2f}x {row['total_cpu'] * 1000:9.0f}"
                    )
                ratio = rows[ON_DEMAND]["total"] / rows[PEER]["total"]
                cpu_ratio = rows[ON_DEMAND]["total_cpu"] / rows[PEER]["total_cpu"]
                print(
                    f"cold start without SnapStart, init + first tile, ours / peer: {ratio:.2f}x "
                    f"wall, {cpu_ratio:.2f}x CPU (target <= 0.5x)"
                )
                for name in (FLOOR, BARE_FLOOR):
                    print(
                        f"{name} / peer: {rows[name]['total'] / rows[PEER]['total']:.2f}x wall, "
                        f"ours / it: {rows[ON_DEMAND]['total'] / rows[name]['total']:.2f}x"
                    )
                restored = rows[SNAPSTART]["first"] / rows[SNAPSTART]["warm"]
                restored_cpu = rows[SNAPSTART]["first_cpu"] / rows[SNAPSTART]["warm_cpu"]
                print(
                    "SnapStart: restore hooks + first tile / warm tile: "
                    f"{restored:.2f}x wall, first / warm tile {restored_cpu:.2f}x CPU "
                    "(target <= 1.2x)"
                )
            if args.importtime:
                importtime(python, ours, runtime, {}, args.importtime)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
