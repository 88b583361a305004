"""The real Lambda asset runs as Lambda would run it.

The asset is built once by `cdk.bundling` (cached under ~/.cache/lambda-mosaic-tiler, keyed by
the bundle spec and the package sources). Then Python 3.12 starts with nothing but the asset and
a stand-in of Lambda's `/var/runtime` (boto3 and the runtime client, which Lambda provides) on
`sys.path`: `env -i PYTHONPATH=<asset>:<runtime> python3.12 -S`. The mosaic is in DynamoDB on a
moto server and its COGs in S3 on the same server.
"""

import http.server
import json
import os
import queue
import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from rasterio.io import MemoryFile

from cdk.bundling import BundleSpec, cached_asset, find_python
from lambda_handler.backends import aws
from tests.lambda_support import (
    OVERLAP,
    body_bytes,
    function_url_event,
    http_api_event,
    json_body,
    lambda_runtime_dir,
    noise_cog,
    store_mosaic,
    tile_path,
)
from tests.servers_aws import unique_name

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Runs inside the bundle: invokes the entry point named by _HANDLER for each event on stdin
# and prints the responses, plus where the packages were imported from.
DRIVER = """
import importlib, json, sys
module_name, _, function = __import__("os").environ["_HANDLER"].rpartition(".")
entry = getattr(importlib.import_module(module_name), function)
events = json.load(sys.stdin)
responses = [entry(event, None) for event in events]
import boto3, rasterio, fastapi
print(json.dumps({
    "responses": responses,
    "origins": {m.__name__: m.__file__ for m in (boto3, rasterio, fastapi)},
    "site_loaded": "site" in sys.modules,
    "version": list(sys.version_info[:2]),
}))
"""


@pytest.fixture(scope="module")
def python312() -> str:
    """The Python 3.12 interpreter (Lambda's runtime version)."""
    return find_python("3.12")


@pytest.fixture(scope="module")
def asset() -> Path:
    """The real Lambda asset (built once, then reused)."""
    report = cached_asset(BundleSpec())
    assert report.unzipped_bytes < 262_144_000
    return report.path


@pytest.fixture(scope="module")
def runtime_dir() -> Path:
    """A stand-in of Lambda's /var/runtime: boto3 and awslambdaric for CPython 3.12."""
    return lambda_runtime_dir()


@pytest.fixture(scope="module")
def lambda_env(moto_server, sample_cogs, tmp_path_factory) -> dict:
    """A mosaic in DynamoDB (COGs on S3) and the environment the functions would get."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        for name, value in moto_server.boto3_env().items():
            patch.setenv(name, value)
        aws.clear_clients()
        _, table, mosaic_id = store_mosaic(moto_server, sample_cogs)
        noise, noise_tile = noise_cog(tmp_path_factory.mktemp("noise"))
        store_mosaic(moto_server, [noise], mosaic_id="noise", table=table)
    aws.clear_clients()
    exports = unique_name("exports")
    moto_server.client("s3").create_bucket(Bucket=exports)
    env = {
        **moto_server.boto3_env(),
        **moto_server.gdal_env(),
        "AWS_LAMBDA_FUNCTION_NAME": "mosaic-tiler-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1536",
        "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"dynamodb:///{table}:{{mosaic_id}}",
        "MOSAIC_LAMBDA_EXPORTS_BUCKET": exports,
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
    }
    return {
        "env": env,
        "mosaic_id": mosaic_id,
        "exports": exports,
        "noise_tile": f"/mosaics/noise/tiles/WebMercatorQuad/{noise_tile}.tif",
    }


def run_in_bundle(python312, asset, runtime_dir, lambda_env, entry, events) -> dict:
    """Invoke `entry` for `events` in `env -i PYTHONPATH=<asset>:<runtime> python3.12 -S`."""
    env = {
        **lambda_env["env"],
        "PYTHONPATH": f"{asset}{os.pathsep}{runtime_dir}",
        "LAMBDA_TASK_ROOT": str(asset),
        "_HANDLER": f"lambda_handler.handler.{entry}",
    }
    result = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), python312, "-S", "-c", DRIVER],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=asset,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def handler_events(mosaic_id: str) -> list[dict]:
    """HTTP API events of a health check, a tile, a tile of a missing mosaic and a tile out of
    the zoom range (200, 200, 404, 422), in that order."""
    return [
        http_api_event("/healthz"),
        http_api_event(tile_path(mosaic_id, *OVERLAP, 9)),
        http_api_event(tile_path("no-such-mosaic", *OVERLAP, 9)),
        http_api_event(f"/mosaics/{mosaic_id}/tiles/WebMercatorQuad/99/0/0.png"),
    ]


def test_handler_in_the_bundle(python312, asset, runtime_dir, lambda_env):
    mosaic_id = lambda_env["mosaic_id"]
    events = [
        *handler_events(mosaic_id),
        http_api_event("/openapi.json", headers={"accept-encoding": "gzip"}),
    ]
    out = run_in_bundle(python312, asset, runtime_dir, lambda_env, "handler", events)
    assert out["version"] == [3, 12] and not out["site_loaded"]
    assert out["origins"]["rasterio"].startswith(str(asset))
    assert out["origins"]["fastapi"].startswith(str(asset))
    assert out["origins"]["boto3"].startswith(str(runtime_dir))
    healthz, tile, missing, invalid, openapi = out["responses"]
    assert healthz["statusCode"] == 200 and json_body(healthz)["status"] == "ok"
    assert tile["statusCode"] == 200, tile.get("body")
    assert tile["headers"]["content-type"] == "image/png" and tile["isBase64Encoded"]
    png = body_bytes(tile)
    assert png.startswith(PNG_MAGIC)
    with MemoryFile(png) as memfile, memfile.open() as dataset:
        assert (dataset.read(4) == 255).any()
    assert missing["statusCode"] == 404
    assert invalid["statusCode"] == 422
    assert openapi["headers"]["content-encoding"] == "gzip" and openapi["isBase64Encoded"]
    assert json_body(openapi)["openapi"].startswith("3.")


def test_bytecode_is_python_312(asset):
    """Every module ships its 3.12 bytecode (Lambda cannot write it at cold start)."""
    modules = list((asset / "lambda_handler").rglob("*.py"))
    assert modules
    for module in modules + [asset / "rasterio" / "__init__.py", asset / "fastapi" / "__init__.py"]:
        cached = module.parent / "__pycache__" / f"{module.stem}.cpython-312.pyc"
        assert cached.is_file(), f"no 3.12 bytecode for {module}"
    assert not list(asset.rglob("*.pyi"))
    assert not (asset / "boto3").exists() and not (asset / "botocore").exists()
    assert not (asset / "numpy" / "_core" / "include").exists()
    assert len(list(asset.rglob("proj.db"))) == 1


class RuntimeApi:
    """A Lambda Runtime API on 127.0.0.1 (HTTP/1.1, JSON with Content-Type) serving events."""

    def __init__(self, events: list[dict]):
        self.pending: queue.Queue = queue.Queue()
        for event in events:
            self.pending.put((str(uuid.uuid4()), event))
        self.responses: dict[str, dict] = {}
        self.errors: list[dict] = []
        self.done = threading.Event()
        self.expected = len(events)
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                if not self.path.endswith("/runtime/invocation/next"):
                    return self._send(404, b"{}")
                request_id, event = api.pending.get()  # blocks like Lambda between invokes
                self._send(
                    200,
                    json.dumps(event).encode(),
                    {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": "9999999999999",
                        "Lambda-Runtime-Invoked-Function-Arn": (
                            "arn:aws:lambda:us-east-1:123456789012:function:mosaic-tiler-test"
                        ),
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    },
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.strip("/").split("/")
                if parts[-1] == "response":
                    api.responses[parts[-2]] = json.loads(body)
                else:
                    api.errors.append({"path": self.path, "body": body.decode(errors="replace")})
                self._send(202, b'{"status":"OK"}')
                if len(api.responses) + len(api.errors) >= api.expected:
                    api.done.set()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def test_handler_through_the_runtime_client(python312, asset, runtime_dir, lambda_env):
    mosaic_id = lambda_env["mosaic_id"]
    events = handler_events(mosaic_id)
    api = RuntimeApi(events)
    env = {
        **lambda_env["env"],
        "PYTHONPATH": f"{asset}{os.pathsep}{runtime_dir}",
        "LAMBDA_TASK_ROOT": str(asset),
        "_HANDLER": "lambda_handler.handler.handler",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    }
    command = [python312, "-S", "-m", "awslambdaric", "lambda_handler.handler.handler"]
    process = subprocess.Popen(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command],
        cwd=asset,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        finished = api.done.wait(timeout=180)
    finally:
        process.kill()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
        api.close()
    assert finished, f"the runtime client did not answer every event:\n{output[-3000:]}"
    assert not api.errors, api.errors
    # The client takes one event at a time: responses arrive in event order.
    healthz, tile, missing, invalid = api.responses.values()
    assert healthz["statusCode"] == 200
    assert tile["statusCode"] == 200 and body_bytes(tile).startswith(PNG_MAGIC)
    assert missing["statusCode"] == 404
    assert invalid["statusCode"] == 422
    # Every log line is JSON (through the runtime's own handler); one per invoke.
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [r for r in records if r.get("message") == "request"]
    assert [r["status"] for r in requests] == [200, 200, 404, 422], output[-3000:]
    assert requests[1]["route"] == "/mosaics/{mosaic_id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    assert requests[2]["mosaic"] == "no-such-mosaic"
    assert all(r["requestId"] and r["durationMs"] > 0 for r in requests)
    assert len({r["requestId"] for r in requests}) == 4
    # Libraries' INFO chatter (botocore credentials, mangum's access line) stays out.
    assert not [r for r in records if r["logger"].startswith(("botocore", "mangum"))]


def test_batch_handler_exports_a_large_tiff(python312, asset, runtime_dir, lambda_env):
    event = function_url_event(lambda_env["noise_tile"], {"tilesize": "2048"})
    out = run_in_bundle(python312, asset, runtime_dir, lambda_env, "batch_handler", [event])
    (response,) = out["responses"]
    assert response["statusCode"] == 303, response.get("body")
    location = response["headers"]["location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=3600" in location
    download = httpx.get(location, timeout=60)
    assert download.status_code == 200
    assert len(download.content) > 6_291_456
    with MemoryFile(download.content) as memfile, memfile.open() as dataset:
        assert (dataset.width, dataset.height, dataset.count) == (2048, 2048, 4)  # RGB + mask


LOOP_CHECK = """
import asyncio
from lambda_handler.handler import LambdaAdapter

async def app(scope, receive, send):
    body = str(id(asyncio.get_running_loop())).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})

event = {"version": "2.0", "rawPath": "/", "rawQueryString": "", "headers": {"host": "h"},
         "requestContext": {"http": {"method": "GET", "path": "/", "sourceIp": "127.0.0.1",
                                     "protocol": "HTTP/1.1"}}, "isBase64Encoded": False}
adapter = LambdaAdapter(lambda: app)
seen = set()
for round_ in range(4):
    seen.add(adapter(event)["body"])
    if round_ == 1:
        asyncio.run(asyncio.sleep(0))
assert len(seen) == 1, seen
print("ok")
"""


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_event_loop_reuse_with_the_bundled_mangum(asset, version):
    """mangum (the bundled, pinned version) reuses one loop across invokes on 3.12 and 3.13.

    Only pure-Python modules are imported (mangum, typing_extensions, the handler module), so
    the 3.12 asset also serves 3.13 here; -B keeps 3.13 from writing bytecode into it.
    """
    python = find_python(version)
    result = subprocess.run(
        ["env", "-i", f"PYTHONPATH={asset}", python, "-S", "-B", "-W", "error", "-c", LOOP_CHECK],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
