"""Cold import of the Lambda entry point vs a titiler.mosaic + cogeo-mosaic app, same bundler.

Both assets are built by `cdk.bundling.build_asset` (pinned manylinux wheels for CPython 3.12,
pruned, 3.12 bytecode); the peer's requirements are resolved by pip for the same platform. Each
import runs in a fresh `env -i python3.12 -S` with the asset and a boto3 "runtime" directory on
sys.path and the variables Lambda sets (`AWS_LAMBDA_FUNCTION_NAME`, `_HANDLER`), so both build
their FastAPI app at import, as in Lambda's init phase.

    python3 benchmarks/bench_coldstart.py [--runs 7] [--breakdown 15]

Prints the median import time of each, the ratio (target <= 0.5x) and the unzipped/zipped sizes
of both assets (target: ours smaller); `--breakdown N` adds the N costliest imports of ours
(`python -X importtime`, cumulative, top two levels) and whether the geospatial stack was loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cdk.bundling import (  # noqa: E402
    BundleSpec,
    cache_root,
    cached_asset,
    find_python,
)

PEER_REQUIREMENTS = ["titiler.mosaic==2.4.0", "cogeo-mosaic==9.2.0", "mangum==0.22.0"]
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3"}
PEER_APP = '''"""titiler.mosaic + cogeo-mosaic app, as its docs deploy it on Lambda."""
from cogeo_mosaic.backends import MosaicBackend
from fastapi import FastAPI
from mangum import Mangum
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.mosaic.errors import MOSAIC_STATUS_CODES
from titiler.mosaic.factory import MosaicTilerFactory

app = FastAPI(title="titiler.mosaic")
mosaic = MosaicTilerFactory(backend=MosaicBackend, router_prefix="/mosaicjson")
app.include_router(mosaic.router, prefix="/mosaicjson")
add_exception_handlers(app, DEFAULT_STATUS_CODES)
add_exception_handlers(app, MOSAIC_STATUS_CODES)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


handler = Mangum(app, lifespan="off")
'''
IMPORT = (
    "import time, importlib; t = time.perf_counter(); importlib.import_module('{module}'); "
    "print(time.perf_counter() - t)"
)


def peer_requirements(spec: BundleSpec, path: Path) -> Path:
    """Pin the peer's dependencies for the Lambda platform (pip's resolver, no install)."""
    if path.is_file():
        return path
    report = path.with_suffix(".report.json")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed"]
    cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12"]
    for platform in spec.platforms:
        cmd += ["--platform", platform]
    cmd += ["--target", str(path.parent / "unused"), "--report", str(report), *PEER_REQUIREMENTS]
    subprocess.run(cmd, check=True)
    pins = sorted(
        f"{item['metadata']['name']}=={item['metadata']['version']}"
        for item in json.loads(report.read_text())["install"]
        if item["metadata"]["name"].lower() not in RUNTIME_PROVIDED
    )
    path.write_text("\n".join(pins) + "\n")
    return path


def runtime_dir(spec: BundleSpec) -> Path:
    """boto3 for CPython 3.12 (Lambda's runtime provides it), shared by both assets."""
    target = cache_root() / "bench-runtime"
    if not (target / ".complete").is_file():
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target"]
        cmd += [str(target), "--only-binary=:all:", "--implementation", "cp"]
        cmd += ["--python-version", "3.12"]
        for platform in spec.platforms:
            cmd += ["--platform", platform]
        subprocess.run([*cmd, "boto3==1.43.11", "botocore==1.43.11"], check=True)
        (target / ".complete").write_text("ok")
    return target


def lambda_env(asset: Path, runtime: Path, handler: str) -> dict[str, str]:
    """The environment of a cold start: only the asset and the runtime's boto3 on sys.path."""
    return {
        "PYTHONPATH": f"{asset}{os.pathsep}{runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "_HANDLER": handler,
        "AWS_REGION": "us-east-1",
        "LANG": "C.UTF-8",
        # The bundler keeps one PROJ database (rasterio's): point pyproj at it, as the
        # handler does by itself.
        "PROJ_DATA": str(asset / "rasterio" / "proj_data"),
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": "dynamodb:///mosaics:{mosaic_id}",
    }


def import_seconds(python: str, asset: Path, runtime: Path, module: str, handler: str) -> float:
    """One cold import in a fresh interpreter."""
    env = lambda_env(asset, runtime, handler)
    out = subprocess.run(
        [
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            python,
            "-S",
            "-c",
            IMPORT.format(module=module),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=asset,
    )
    return float(out.stdout.strip().splitlines()[-1])


HEAVY = ("rasterio", "numpy", "rio_tiler", "morecantile", "pyproj", "shapely", "boto3")


def import_breakdown(python: str, asset: Path, runtime: Path, count: int) -> None:
    """Print the costliest imports of a cold `lambda_handler.handler` import (importtime)."""
    env = lambda_env(asset, runtime, "lambda_handler.handler.handler")
    code = f"import sys, lambda_handler.handler; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), python, "-S", "-X", "importtime"]
        + ["-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=asset,
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 2:
            rows.append((int(total), int(own), depth, name.strip()))
    print(f"lambda_handler.handler imports (cumulative ms, self ms; {count} costliest, 2 levels):")
    for total, own, depth, name in sorted(rows, key=lambda row: -row[0])[:count]:
        print(f"  {total / 1000:7.1f} {own / 1000:7.1f}  {'  ' * depth}{name}")
    print(f"geospatial stack loaded at cold start: {out.stdout.strip()} (expected: [])")


def sizes(asset: Path) -> tuple[int, int]:
    """(unzipped, zipped) bytes of an asset directory."""
    unzipped = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "asset.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(asset.rglob("*")):
                if path.is_file():
                    zipped.write(path, path.relative_to(asset))
        return unzipped, archive.stat().st_size


def main() -> None:
    """Build both assets (cached), time the imports, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--breakdown", type=int, default=0, metavar="N")
    args = parser.parse_args()
    python = find_python("3.12")
    spec = BundleSpec()
    ours = cached_asset(spec).path
    peer_dir = cache_root() / "bench-peer"
    (peer_dir / "peer_app").mkdir(parents=True, exist_ok=True)
    (peer_dir / "peer_app" / "__init__.py").write_text(PEER_APP)
    peer_spec = BundleSpec(
        requirements=peer_requirements(spec, peer_dir / "requirements.txt"),
        package_dir=peer_dir / "peer_app",
    )
    peer = cached_asset(peer_spec).path
    runtime = runtime_dir(spec)

    results = {}
    for name, asset, module, handler in (
        ("lambda_handler", ours, "lambda_handler.handler", "lambda_handler.handler.handler"),
        ("titiler.mosaic", peer, "peer_app", "peer_app.handler"),
    ):
        import_seconds(python, asset, runtime, module, handler)  # page cache warm-up
        times = [import_seconds(python, asset, runtime, module, handler) for _ in range(args.runs)]
        results[name] = (statistics.median(times), sizes(asset))
        print(
            f"{name:16} import median {results[name][0] * 1000:7.0f} ms "
            f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, n={args.runs})"
        )
    ratio = results["lambda_handler"][0] / results["titiler.mosaic"][0]
    print(f"cold-import ratio lambda_handler / titiler.mosaic: {ratio:.2f}x (target <= 0.5x)")
    for name, (_, (unzipped, zipped)) in results.items():
        print(f"{name:16} asset {unzipped / 1e6:6.1f} MB unzipped, {zipped / 1e6:6.1f} MB zipped")
    if args.breakdown:
        import_breakdown(python, ours, runtime, args.breakdown)


if __name__ == "__main__":
    main()
