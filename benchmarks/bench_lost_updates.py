"""Lost updates under concurrent writers, per store (issue 18): the table should show zeros.

N writer processes each call `update()` M times on the same mosaic, every update adding a new
asset of its own to the same quadkeys (tests/lost_updates.py). For each store the script prints
how many updates were acknowledged, how many refused with a typed error, and how many of the
acknowledged ones are missing from the stored mosaic ("lost"), plus the final version against
the one counting every acknowledged update. Stores: SQLite and file (local), S3 and DynamoDB on
moto server, Azure Blob on azurite (when `tests/node` has it), and the HTTP API (`PATCH
/mosaics/{id}` through uvicorn, SQLite behind it). Every server binds 127.0.0.1 only.

    python benchmarks/bench_lost_updates.py            # every store
    python benchmarks/bench_lost_updates.py --stores sqlite,file --scale 0.5
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lost_updates import RunResult, run_http_writers, run_update_writers  # noqa: E402

HEADER = (
    "| store | writers x updates | acknowledged | refused | lost | final version | time |\n"
    "|---|---|---|---|---|---|---|"
)
STORES = ("sqlite", "file", "s3", "dynamodb", "azure", "api")


@contextmanager
def moto(directory: Path) -> Iterator[None]:
    """moto server (S3 + DynamoDB) for boto3 through the standard AWS variables."""
    from tests.servers_aws import moto_command, start_server

    server = start_server("moto", moto_command, directory)
    os.environ.update(server.boto3_env())
    try:
        yield
    finally:
        server.stop()


@contextmanager
def azurite(directory: Path) -> Iterator[bool]:
    """azurite's blob service (npm, tests/node); yields False when it is not installed."""
    from tests.processes import free_port
    from tests.servers_cloud import AZURITE_BIN, Azurite

    node = shutil.which("node")
    if node is None or not AZURITE_BIN.exists():
        yield False
        return
    port = free_port()
    log = (directory / "azurite.log").open("wb")
    process = subprocess.Popen(
        [node, str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(directory / "azurite"), "--skipApiVersionCheck", "--loose",
         "--disableTelemetry"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("azurite did not start") from None
                time.sleep(0.2)
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = Azurite(
            f"http://127.0.0.1:{port}/devstoreaccount1"
        ).connection_string
        yield True
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def run_sqlite(directory: Path, scale: float) -> list[RunResult]:
    uri = f"sqlite:///{directory / 'mosaics.db'}:race"
    return [
        run_update_writers(uri, "SQLite", 2, max(1, int(50 * scale))),
        run_update_writers(uri, "SQLite", 4, max(1, int(50 * scale))),
    ]


def run_file(directory: Path, scale: float) -> list[RunResult]:
    uri = f"file://{directory / 'race.json.gz'}"
    return [run_update_writers(uri, "file", 3, max(1, int(20 * scale)))]


def run_s3(directory: Path, scale: float) -> list[RunResult]:
    from lambda_handler.backends.s3 import s3_client

    bucket = f"race-{uuid.uuid4().hex[:8]}"
    s3_client().create_bucket(Bucket=bucket)
    return [run_update_writers(f"s3://{bucket}/race.json", "S3 (moto)", 3, max(1, int(10 * scale)))]


def run_dynamodb(directory: Path, scale: float) -> list[RunResult]:
    from lambda_handler.backends.dynamodb import DynamoDBBackend

    table = f"race-{uuid.uuid4().hex[:8]}"
    DynamoDBBackend.create_table(table)
    uri = f"dynamodb:///{table}:race"
    return [run_update_writers(uri, "DynamoDB (moto)", 3, max(1, int(10 * scale)))]


def run_azure(directory: Path, scale: float) -> list[RunResult]:
    from lambda_handler.backends.azure import azure_client, parse_azure_uri

    container = f"race-{uuid.uuid4().hex[:8]}"
    azure_client(parse_azure_uri(f"az://{container}/x.json")).create_container(container)
    uri = f"az://devstoreaccount1.blob.core.windows.net/{container}/race.json"
    return [run_update_writers(uri, "Azure (azurite)", 3, max(1, int(10 * scale)))]


def run_api(directory: Path, scale: float) -> list[RunResult]:
    from tests.servers_api import uvicorn_server

    key = "bench-key"
    template = f"sqlite:///{directory / 'api.db'}:{{mosaic_id}}"
    env = {**os.environ, "MOSAIC_API_MOSAIC_URI_TEMPLATE": template, "MOSAIC_API_API_KEY": key}
    with uvicorn_server("lambda_handler.app:create_app", env, directory / "uvicorn.log") as base:
        uri = template.replace("{mosaic_id}", "race")
        return [run_http_writers(base, "race", uri, key, max(2, int(20 * scale)))]


RUNNERS: dict[str, Callable[[Path, float], list[RunResult]]] = {
    "sqlite": run_sqlite,
    "file": run_file,
    "s3": run_s3,
    "dynamodb": run_dynamodb,
    "azure": run_azure,
    "api": run_api,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated subset")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the update counts")
    args = parser.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    unknown = set(stores) - set(STORES)
    if unknown:
        parser.error(f"unknown stores {sorted(unknown)}; choose from {', '.join(STORES)}")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="lost-updates-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        if {"s3", "dynamodb"} & set(stores):
            stack.enter_context(moto(directory))
        azure_ready = "azure" in stores and stack.enter_context(azurite(directory))
        for store in stores:
            if store == "azure" and not azure_ready:
                print("azure: skipped (azurite is not installed under tests/node)")
                continue
            for result in RUNNERS[store](directory, args.scale):
                print(result.row, flush=True)
                for asset, outcome in list(result.unexpected.items())[:3]:
                    print(f"    unexpected: {asset}: {outcome}")
                for outcome in sorted({o.split(":")[0] for o in result.refused.values()}):
                    print(f"    refused with: {outcome}")
                results.append(result)
    print()
    print(HEADER)
    for result in results:
        print(result.row)
    bad = [r for r in results if r.lost or r.unexpected or r.version != r.expected_version]
    print()
    print("lost updates: none" if not bad else f"LOST UPDATES in {len(bad)} run(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
