"""The Lambda assets bench_coldstart.py compares: the peer's (titiler.mosaic + cogeo-mosaic +
mangum, pinned for CPython 3.12 on Lambda's platform) and a stand-in of Lambda's runtime
directory (boto3, snapshot-restore-py), both built by the same bundler code path as ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cdk.bundling import BundleSpec, cache_root, cached_asset

PEER_REQUIREMENTS = ["titiler.mosaic==2.4.0", "cogeo-mosaic==9.2.0", "mangum==0.22.0"]
# What Lambda's Python runtime provides outside the asset (not bundled by either).
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3"}
RUNTIME_REQUIREMENTS = ("boto3==1.43.11", "botocore==1.43.11", "snapshot-restore-py==1.0.0")
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
# Runs in the asset: import the entry point (Lambda's init), then answer the events on stdin.


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


def peer_asset(spec: BundleSpec) -> Path:
    """The peer's asset, built by the same bundler code path as ours (cached)."""
    peer_dir = cache_root() / "bench-peer"
    (peer_dir / "peer_app").mkdir(parents=True, exist_ok=True)
    (peer_dir / "peer_app" / "__init__.py").write_text(PEER_APP)
    peer_spec = BundleSpec(
        requirements=peer_requirements(spec, peer_dir / "requirements.txt"),
        package_dir=peer_dir / "peer_app",
    )
    return cached_asset(peer_spec).path


def runtime_dir(spec: BundleSpec) -> Path:
    """A stand-in of Lambda's runtime directory for CPython 3.12, shared by both assets."""
    target = cache_root() / "bench-runtime-2"
    if not (target / ".complete").is_file():
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target"]
        cmd += [str(target), "--only-binary=:all:", "--implementation", "cp"]
        cmd += ["--python-version", "3.12"]
        for platform in spec.platforms:
            cmd += ["--platform", platform]
        subprocess.run([*cmd, *RUNTIME_REQUIREMENTS], check=True)
        (target / ".complete").write_text("ok")
    return target
