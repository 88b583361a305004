"""Asynchronous writes (lambda_handler/jobs.py) and paged DynamoDB listing, through a real
uvicorn server whose mosaic store is a DynamoDB table on moto, and through the Lambda handler."""

import json
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from lambda_handler import jobs
from lambda_handler.backends import MosaicBackend
from lambda_handler.backends.dynamodb import DynamoDBBackend
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.mosaic.tiling import tile_quadkey
from lambda_handler.settings import ApiSettings
from tests.fault_proxy import Reply
from tests.geometry import inset_box
from tests.servers_api import API_KEY, uvicorn_server
from tests.servers_aws import unique_name
from tests.waiting import Deadline

AUTH = {"Authorization": f"Bearer {API_KEY}"}
THRESHOLD = 50  # quadkeys a write may touch within the request


def tiles_document(size: int, tag: str, x0: int = 0, y0: int = 0) -> dict:
    """A MosaicJSON document of `size` x `size` quadkeys at zoom 8."""
    tiles = {
        tile_quadkey(x, y, 8): [f"s3://b/{tag}/{x}_{y}.tif"]
        for x in range(x0, x0 + size)
        for y in range(y0, y0 + size)
    }
    return MosaicJSON(
        mosaicjson="0.0.3", minzoom=4, maxzoom=10, quadkey_zoom=8, tiles=tiles
    ).model_dump(mode="json", exclude_none=True)


def feature_inside(x0: int, y0: int, size: int, path: str) -> dict:
    """A footprint inside the `size` x `size` zoom-8 tiles from (x0, y0)."""
    from lambda_handler.mosaic.model import WEB_MERCATOR_TMS as tms

    west, _, _, north = tms.bounds(x0, y0, 8)
    _, south, east, _ = tms.bounds(x0 + size - 1, y0 + size - 1, 8)
    return inset_box(west, south, east, north, 0.01, path)


@pytest.fixture(scope="module")
def dynamodb_api(moto_server, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(base URL, table) of a uvicorn server storing mosaics in a DynamoDB table on moto, with
    writes over THRESHOLD quadkeys going to jobs."""
    table = unique_name("jobs")
    env = {**os.environ, **moto_server.boto3_env("dynamodb")}
    env.pop("AWS_ENDPOINT_URL", None)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(moto_server.boto3_env("dynamodb"))
    try:
        DynamoDBBackend.create_table(table)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    env.update(
        {
            "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"dynamodb:///{table}:{{mosaic_id}}",
            "MOSAIC_API_API_KEY": API_KEY,
            "MOSAIC_API_SYNC_WRITE_MAX_QUADKEYS": str(THRESHOLD),
        }
    )
    log = tmp_path_factory.mktemp("jobs-server") / "uvicorn.log"
    with uvicorn_server("lambda_handler.app:create_app", env, log) as base:
        yield base, table


def wait_for_job(http: httpx.Client, location: str, timeout: float = 120) -> dict:
    """Poll a job's status URL until it ends; every answer is a valid status."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        answer = http.get(location, headers=AUTH)
        assert answer.status_code == 200, answer.text
        job = answer.json()
        seen.append(job["status"])
        assert job["status"] in ("pending", "running", "succeeded", "failed")
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job still {seen[-1]} after {timeout} s")


def test_large_writes_run_as_jobs(dynamodb_api, moto_server, monkeypatch):
    base, table = dynamodb_api
    with httpx.Client(base_url=base, timeout=60) as http:
        # small: written within the request, as before
        small = http.post("/mosaics", json={"id": "small", "mosaic": tiles_document(5, "s")},
                          headers=AUTH)  # fmt: skip
        assert small.status_code == 201, small.text

        # large create: 202, a status URL, then the mosaic
        body = {"id": "large", "mosaic": tiles_document(10, "one")}
        answer = http.post("/mosaics", json=body, headers=AUTH)
        assert answer.status_code == 202, answer.text
        location = answer.headers["Location"]
        assert location.endswith(f"/mosaics/jobs/{answer.json()['id']}")
        assert answer.json()["operation"] == "create" and answer.json()["quadkeys"] == 100
        job = wait_for_job(http, location)
        assert job["status"] == "succeeded", job
        assert http.get("/mosaics/large").status_code == 200
        # the status needs the write key; unknown jobs are 404
        assert http.get(location).status_code in (401, 403)
        assert http.get(f"/mosaics/jobs/{uuid.uuid4()}", headers=AUTH).status_code == 404

        # large replace
        answer = http.put("/mosaics/large", json={"mosaic": tiles_document(9, "two")},
                          headers=AUTH)  # fmt: skip
        assert answer.status_code == 202, answer.text
        assert wait_for_job(http, answer.headers["Location"])["status"] == "succeeded"

        # large addition (features over 64 quadkeys)
        feature = feature_inside(0, 0, 8, "s3://b/added.tif")
        answer = http.patch("/mosaics/large", json={"features": [feature]}, headers=AUTH)
        assert answer.status_code == 202, answer.text
        job = wait_for_job(http, answer.headers["Location"])
        assert job["status"] == "succeeded" and job["result"]["version"] == "1.0.1", job

        # If-Match is checked by the job, on the copy it is about to change
        etag = http.get("/mosaics/large").headers["ETag"]
        stale = {"If-Match": '"not-the-etag"', **AUTH}
        answer = http.patch("/mosaics/large", json={"features": [feature]}, headers=stale)
        assert answer.status_code == 202, answer.text
        job = wait_for_job(http, answer.headers["Location"])
        assert job["status"] == "failed" and job["error"]["status"] == 412, job
        current = {"If-Match": etag, **AUTH}
        answer = http.patch("/mosaics/large", json={"features": [feature]}, headers=current)
        job = wait_for_job(http, answer.headers["Location"])
        assert job["status"] == "succeeded" and job["result"]["version"] == "1.0.2", job

        # a job that fails says why, with the status code the request would have had
        answer = http.post("/mosaics", json=body, headers=AUTH)
        assert answer.status_code == 202
        job = wait_for_job(http, answer.headers["Location"])
        assert job["status"] == "failed"
        assert job["error"]["status"] == 409 and "already exists" in job["error"]["detail"]

    for name, value in moto_server.boto3_env("dynamodb").items():
        monkeypatch.setenv(name, value)
    with MosaicBackend(f"dynamodb:///{table}:large") as backend:
        stored = backend.to_document().tiles
        assert backend.mosaic_def.version == "1.0.2"
    two = tiles_document(9, "two")["tiles"]
    assert set(stored) == set(two)
    for quadkey, assets in stored.items():
        assert assets[-1] == two[quadkey][0]
        assert assets[:-1] in ([], ["s3://b/added.tif"])
    assert sum(assets[0] == "s3://b/added.tif" for assets in stored.values()) == 64


def test_listing_pages_with_a_token(dynamodb_api):
    """`GET /mosaics` on DynamoDB: bounded pages chained by an opaque token, every id once."""
    base, _ = dynamodb_api
    with httpx.Client(base_url=base, timeout=60) as http:
        for index in range(5):
            body = {"id": f"list-{index}", "mosaic": tiles_document(2, f"l{index}")}
            assert http.post("/mosaics", json=body, headers=AUTH).status_code == 201
        seen: list[str] = []
        url = "/mosaics?limit=2"
        pages = 0
        while url:
            answer = http.get(url)
            assert answer.status_code == 200, answer.text
            content = answer.json()
            assert content["numberReturned"] == len(content["mosaics"]) <= 2
            assert "numberMatched" not in content  # no total: that would read the whole table
            seen += [m["id"] for m in content["mosaics"]]
            following = [link["href"] for link in content["links"] if link["rel"] == "next"]
            url = following[0] if following else None
            pages += 1
            assert pages < 50
        assert len(seen) == len(set(seen))
        assert {f"list-{i}" for i in range(5)} <= set(seen)
        bad = http.get("/mosaics?token=%%%not-a-token")
        assert bad.status_code == 422 and "token" in bad.text


def test_list_page_cost_is_bounded(moto_server, monkeypatch):
    """Each page is at most LIST_SCAN_CALLS Scan requests, whatever the table holds."""
    from lambda_handler.backends.dynamodb import dynamodb_client
    from lambda_handler.backends.dynamodb import table as dynamodb_table

    for name, value in moto_server.boto3_env("dynamodb").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(dynamodb_table, "LIST_SCAN_ITEMS", 50)
    table = unique_name("pages")
    DynamoDBBackend.create_table(table)
    names = [f"m{i}" for i in range(4)]
    for index, name in enumerate(names):
        document = MosaicJSON.parse(tiles_document(20 if index == 0 else 2, name))
        with MosaicBackend(f"dynamodb:///{table}:{name}", mosaic_def=document) as backend:
            backend.write()
    calls = []
    client = dynamodb_client("us-east-1")

    def hook(model, **kwargs) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.dynamodb", hook)
    try:
        found, token, pages = [], None, 0
        listing = Deadline(60, f"the last page of the mosaics of table {table}")
        while True:
            listing.check(f"{pages} pages so far")
            calls.clear()
            page, token = DynamoDBBackend.list_page(table, limit=1, token=token)
            assert calls.count("Scan") <= dynamodb_table.LIST_SCAN_CALLS
            assert len(page) <= 1
            found += page
            pages += 1
            if token is None:
                break
    finally:
        client.meta.events.unregister("before-call.dynamodb", hook)
    assert sorted(found) == names
    assert pages > len(names)  # the 400-quadkey mosaic alone takes pages without ids
    assert DynamoDBBackend.list_mosaics(table) == names


def test_lambda_self_invocation_runs_the_job(moto_server, monkeypatch, fault_proxy):
    """In Lambda a job is handed to an asynchronous invocation of the job function (here a
    local stand-in of the Lambda Invoke API records it); the handler runs such an event."""
    from lambda_handler import handler

    for name, value in moto_server.boto3_env("dynamodb").items():
        monkeypatch.setenv(name, value)
    table = unique_name("lambda-jobs")
    DynamoDBBackend.create_table(table)
    invocations = []

    def lambda_api(index, request):
        invocations.append(request)
        return Reply(202, b"", {"Content-Type": "application/json"})

    proxy = fault_proxy(moto_server.endpoint, lambda_api)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", proxy.endpoint)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "tiler-writer")
    settings = ApiSettings(
        mosaic_uri_template=f"dynamodb:///{table}:{{mosaic_id}}",
        api_key=API_KEY,
        sync_write_max_quadkeys=10,
        job_function="tiler-jobs",
    )
    body = {"id": "via-lambda", "mosaic": tiles_document(6, "lambda")}
    job = jobs.submit(settings, "create", "via-lambda", body, 36)
    assert len(invocations) == 1
    request = invocations[0]
    assert request.path == "/2015-03-31/functions/tiler-jobs/invocations"
    assert request.headers["x-amz-invocation-type"] == "Event"
    event = json.loads(request.body)
    assert event[jobs.JOB_EVENT_KEY]["id"] == job["id"]
    assert jobs.job_status(settings, job["id"])["status"] == "pending"
    # what Lambda then does: call the handler with the event (outside Lambda here, so the
    # handler leaves this process's GDAL environment alone)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    function = handler.ApiFunction(api_settings=settings)
    outcome = function(event)
    assert outcome["status"] == "succeeded", outcome
    assert jobs.job_status(settings, job["id"])["status"] == "succeeded"
    with MosaicBackend(f"dynamodb:///{table}:via-lambda") as backend:
        assert len(backend.to_document().tiles) == 36
    assert handler.JOB_EVENT_KEY == jobs.JOB_EVENT_KEY
    # a body too large for an asynchronous invocation is refused before anything is stored
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "tiler-writer")
    huge = {"id": "huge", "mosaic": tiles_document(6, "x" * 8000)}
    with pytest.raises(jobs.JobTooLargeError):
        jobs.submit(settings, "create", "huge", huge, 36)
    assert len(invocations) == 1
