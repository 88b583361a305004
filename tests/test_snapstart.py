"""Init does the work once (warm-up tile from the shipped COG, no network), and the SnapStart
hooks replace per-environment state after a (simulated) restore.

The init tests import the handler in a fresh interpreter made to look like Lambda's init phase.
The hook test runs in the real asset (`env -i python3.12 -S`, the runtime's boto3 and
snapshot-restore-py beside it): it calls the registered before-snapshot hooks, then forks, which
copies the process as a snapshot restore does, and runs the registered after-restore hooks in
the copies; copies that skip them are the control.
"""

import json
import os
import subprocess
import sys

import pytest

from cdk.bundling import BundleSpec, cached_asset, find_python
from tests.conftest import PROJECT_ROOT
from tests.lambda_support import lambda_runtime_dir

LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "test-snapstart",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
    "_HANDLER": "lambda_handler.handler.handler",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "init-key",
    "AWS_SECRET_ACCESS_KEY": "init-secret",
    "MOSAIC_API_MOSAIC_URI_TEMPLATE": "dynamodb:///mosaics:{mosaic_id}",
}
HEALTHZ = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/healthz",
    "rawQueryString": "",
    "headers": {"host": "example.com"},
    "requestContext": {
        "http": {"method": "GET", "path": "/healthz", "sourceIp": "127.0.0.1"},
        "stage": "$default",
    },
    "isBase64Encoded": False,
}

INIT = """
import json, socket, sys
attempts = []


def refuse(self, address):
    attempts.append(str(address))
    raise OSError("the test allows no network at init")


socket.socket.connect = refuse
from pathlib import Path
from lambda_handler import snapstart
if "--missing-cog" in sys.argv:
    snapstart.WARMUP_COG = Path("/nonexistent/warmup.tif")
import lambda_handler.handler as handler
from lambda_handler import cache
from lambda_handler.routes.deferred import DeferredRoutes

app = handler._api_function.adapter._mangum.app
out = {
    "timings": snapstart.timings,
    "attempts": attempts,
    "loaded": [m for m in ("rasterio", "rio_tiler", "numpy", "morecantile") if m in sys.modules],
    "deferred_built": [r.built for r in app.router.routes if isinstance(r, DeferredRoutes)],
    "template": app.state.settings.mosaic_uri_template,
    "cached": len(cache.metadata_cache) + len(cache.assets_cache),
    "healthz": handler.handler(json.loads(sys.argv[1]))["statusCode"],
    "clients": len(sys.modules["lambda_handler.backends.aws"]._clients)
    if "lambda_handler.backends.aws" in sys.modules
    else 0,
}
print(json.dumps(out))
"""


def init_in_lambda(*args: str, **extra_env: str) -> tuple[dict, str]:
    """Import the handler as Lambda's init would; what it did, and its stderr (the logs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOSAIC_", "_HANDLER"))}
    env.update({**LAMBDA_ENV, **extra_env, "PYTHONPATH": str(PROJECT_ROOT)})
    done = subprocess.run(
        [sys.executable, "-c", INIT, json.dumps(HEALTHZ), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_init_renders_the_warm_up_tile_without_network():
    out, logs = init_in_lambda()
    assert out["attempts"] == []
    assert out["timings"]["warm_up"] > 0 and out["timings"]["first_tile"] > 0
    # The DynamoDB store's client is built (no network: the connection waits for a request).
    assert out["timings"]["store_client"] > 0 and out["clients"] == 1
    assert out["loaded"] == ["rasterio", "rio_tiler", "numpy", "morecantile"]
    # Only the `/mosaics/{mosaic_id}/...` routes a tile request uses were built.
    assert out["deferred_built"] == [False, True, False]
    # The real settings are back and nothing of the warm-up mosaic stays cached.
    assert out["template"] == LAMBDA_ENV["MOSAIC_API_MOSAIC_URI_TEMPLATE"]
    assert out["cached"] == 0
    assert out["healthz"] == 200
    assert "warm-up (tile): app" in logs


def test_on_demand_init_imports_the_tile_path_without_rendering():
    out, _ = init_in_lambda(AWS_LAMBDA_INITIALIZATION_TYPE="on-demand")
    assert out["attempts"] == []
    assert "first_tile" not in out["timings"] and out["timings"]["imports"] > 0
    assert out["loaded"] == ["rasterio", "rio_tiler", "numpy", "morecantile"]
    assert out["deferred_built"] == [False, True, False]
    assert out["clients"] == 1
    assert out["healthz"] == 200


def test_warm_up_can_be_turned_off():
    out, _ = init_in_lambda(MOSAIC_LAMBDA_WARM_UP="off")
    assert out["timings"] == {}
    assert out["loaded"] == []
    assert out["deferred_built"] == [False, False, False]
    assert out["healthz"] == 200


def test_a_failed_warm_up_is_logged_and_the_function_still_serves():
    out, logs = init_in_lambda("--missing-cog")
    assert out["timings"] == {}
    assert out["healthz"] == 200
    (line,) = [json.loads(x) for x in logs.splitlines() if "init warm-up failed" in x]
    assert line["level"] == "ERROR"
    assert "WarmUpError: the warm-up tile answered" in line["exception"]


def test_warm_up_tile_is_the_cog_centre():
    import morecantile

    from lambda_handler import snapstart

    tile = morecantile.tms.get("WebMercatorQuad").tile(-75.0, 45.0, snapstart.WARMUP_TILE[0])
    assert (tile.z, tile.x, tile.y) == snapstart.WARMUP_TILE
    assert snapstart.WARMUP_COG.stat().st_size < 16_384
    document = json.loads(snapstart.WARMUP_MOSAIC.read_text())
    assert document["minzoom"] <= tile.z <= document["maxzoom"]


# ---------------------------------------------------------------------------- SnapStart hooks
SNAPSHOT = """
import json, os, random, sys
import lambda_handler.handler as handler
import snapshot_restore_py as registry
from lambda_handler import cache, snapstart
from lambda_handler.backends import aws

out = {
    "before": [f.__qualname__ for f, _, _ in registry.get_before_snapshot()],
    "after": [f.__qualname__ for f, _, _ in registry.get_after_restore()],
    "warm_up": snapstart.timings.get("warm_up", 0),
}
aws.client("dynamodb")
for hook, args, kwargs in registry.get_before_snapshot():
    hook(*args, **kwargs)
out["clients_after_before_hooks"] = len(aws._clients)
# State an environment holds when its snapshot is taken (made after the hook on purpose: the
# after-restore hook must not rely on the before-snapshot one).
snapshot_client = aws.client("dynamodb")
cache.metadata_cache.get_or_compute("dynamodb:///mosaics:m", "meta", lambda: {"stale": True})


import numpy.random

random_state, numpy_state = random.getstate(), numpy.random.get_state()


def restored(run_hooks):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        # fork reseeds `random` in the child (os.register_at_fork); a restored snapshot does
        # not: put back the state the snapshot holds.
        random.setstate(random_state)
        numpy.random.set_state(numpy_state)
        if run_hooks:
            for hook, args, kwargs in registry.get_after_restore():
                hook(*args, **kwargs)
        client = aws.client("dynamodb")
        state = {
            "random": random.random(),
            "numpy": float(numpy.random.random()),
            "same_client": client is snapshot_client,
            "cached": len(cache.metadata_cache),
            "restores": snapstart.restores,
            "healthz": handler.handler(json.loads(sys.argv[1]))["statusCode"],
            "gdal_cleared": snapstart.clear_gdal_network_state(),
        }
        os.write(write, json.dumps(state).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.waitpid(pid, 0)
    return json.loads(data)


out["hooked"] = [restored(True), restored(True)]
out["control"] = [restored(False), restored(False)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bundle() -> tuple[str, str]:
    """(python3.12, PYTHONPATH of the asset and the runtime stand-in)."""
    asset = cached_asset(BundleSpec()).path
    return find_python("3.12"), f"{asset}{os.pathsep}{lambda_runtime_dir()}"


def run_in_bundle(python: str, env: dict[str, str], script: str, event: dict) -> dict:
    """Run `script` with `event` as its argument under python3.12 in only `env` (as Lambda
    does: no site, no inherited variables); the JSON its last output line holds."""
    done = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), python, "-S", "-c", script]
        + [json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hooks_around_a_simulated_snapshot(bundle):
    python, path = bundle
    env = {**LAMBDA_ENV, "PYTHONPATH": path, "LANG": "C.UTF-8"}
    out = run_in_bundle(python, env, SNAPSHOT, HEALTHZ)
    # Init warmed up and registered the hooks with the runtime's registry.
    assert out["before"] == ["before_snapshot"] and out["after"] == ["after_restore"]
    assert out["warm_up"] > 0
    assert out["clients_after_before_hooks"] == 0
    hooked, control = out["hooked"], out["control"]
    # Without the hooks, environments restored from one snapshot share its random sequence,
    # its boto3 client and its cache entries; with them, none of that.
    for generator in ("random", "numpy"):
        assert control[0][generator] == control[1][generator]
        assert hooked[0][generator] != hooked[1][generator]
    assert all(c["same_client"] and c["cached"] == 1 and c["restores"] == 0 for c in control)
    for state in hooked:
        assert not state["same_client"]
        assert state["cached"] == 0
        assert state["restores"] == 1
        assert state["gdal_cleared"] is True  # libgdal found in the asset's rasterio.libs
        assert state["healthz"] == 200


def test_clients_built_after_a_restore_reuse_the_parsed_models(monkeypatch):
    import botocore.loaders

    from lambda_handler.backends import aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "before")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    aws.clear_clients()
    first = aws.client("s3")
    read: list[str] = []
    original = botocore.loaders.JSONFileLoader.load_file

    def recording(self, file_path):
        read.append(str(file_path))
        return original(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", recording)
    paths = list(aws._loader.search_paths)
    aws.clear_clients()  # what the after-restore hook does
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "after")  # the restored environment's identity
    second = aws.client("s3")
    assert second is not first
    assert second._request_signer._credentials.access_key == "after"
    # No model or endpoint file was read again: the shared loader had them parsed.
    assert read == []
    assert aws._loader.search_paths == paths  # boto3's data directory is not appended again
    aws.clear_clients()


RESTORED_TILE = """
import json, sys
import lambda_handler.handler as handler
import snapshot_restore_py as registry

for hook, args, kwargs in registry.get_before_snapshot():
    hook(*args, **kwargs)
for hook, args, kwargs in registry.get_after_restore():
    hook(*args, **kwargs)
before = set(sys.modules)
response = handler.handler(json.loads(sys.argv[1]))
print(json.dumps({"status": response["statusCode"], "imported": sorted(set(sys.modules) - before)}))
"""


def test_after_a_restore_the_first_tile_imports_nothing(bundle, sample_cogs, tmp_path):
    from lambda_handler.mosaic.builder import from_urls
    from tests.lambda_support import OVERLAP, http_api_event, tile_path

    document = from_urls(sample_cogs, minzoom=7, maxzoom=12)
    (tmp_path / "scenes.json").write_text(document.model_dump_json(exclude_none=True))
    python, path = bundle
    env = {
        **LAMBDA_ENV,
        "PYTHONPATH": path,
        "LANG": "C.UTF-8",
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"file://{tmp_path}/{{mosaic_id}}.json",
    }
    event = http_api_event(tile_path("scenes", *OVERLAP, 10))
    out = run_in_bundle(python, env, RESTORED_TILE, event)
    assert out["status"] == 200
    # Init imported the whole tile path: the first request after a restore imports nothing.
    assert out["imported"] == []
