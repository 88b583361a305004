"""Asynchronous mosaic writes: writes too large for the API's time limit run as jobs.

A `POST`, `PUT` or `PATCH /mosaics…` whose planned write touches more quadkeys than
`MOSAIC_API_SYNC_WRITE_MAX_QUADKEYS` is not written within the request (API Gateway cuts it at
30 s, a 50,000-quadkey DynamoDB write takes longer): the route records a job, starts it and
answers 202 with `Location: /mosaics/jobs/{job_id}`; that URL answers the job's status
(`pending`, `running`, `succeeded`, `failed` with the error's status code and message).

Where the job runs:
- locally (uvicorn, `mosaic-tiler serve`): in a background thread of the server;
- in Lambda: in an asynchronous invocation (`InvocationType=Event`) of the function named by
  `MOSAIC_API_JOB_FUNCTION` (default: the function itself), whose event carries the job under
  `JOB_EVENT_KEY`; the Lambda handlers recognise such events and run the job. That function
  needs the time (the batch function's 900 s) and the caller `lambda:InvokeFunction` on it.

Job records: in the mosaic table for DynamoDB stores (partition `#jobs`, a name no mosaic can
have, so listings never show it; attribute `expires` for the table's TTL), else in the process
(local servers only: a Lambda without a DynamoDB store refuses large writes with 413).

A job carries the request body, not the built document (a Lambda event is limited to 256 KB):
the job builds the document again (footprints are read a second time for `urls`).
"""

import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from lambda_handler.errors import MosaicError, MosaicNotFoundError
from lambda_handler.settings import ApiSettings

logger = logging.getLogger(__name__)

JOB_EVENT_KEY = "mosaic_tiler_job"
JOBS_PARTITION = "#jobs"  # '#' is not allowed in mosaic ids: never listed as a mosaic
OPERATIONS = ("create", "replace", "update")
# Lambda's asynchronous invocation payload limit, less room for the envelope.
MAX_EVENT_BYTES = 250_000


class JobTooLargeError(MosaicError):
    """The job cannot be handed to an asynchronous invocation (payload over its limit)."""


class JobsUnavailableError(MosaicError):
    """No job store works for this configuration (a Lambda without a DynamoDB store)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def in_lambda() -> bool:
    """Whether this process runs in AWS Lambda."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


# ---------------------------------------------------------------------------- job stores
class MemoryJobStore:
    """Job records of this process (local servers)."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put(self, job: dict[str, Any]) -> None:
        """Store a new job record."""
        with self._lock:
            self._jobs[job["id"]] = dict(job)

    def update(self, job_id: str, **fields: Any) -> None:
        """Change fields of a job record."""
        with self._lock:
            self._jobs[job_id].update(fields)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A job record, or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job else None


_memory_store = MemoryJobStore()


class DynamoDBJobStore:
    """Job records in the mosaic table (partition `#jobs`, sort key the job id)."""

    def __init__(self, table: str, region: str, ttl_seconds: int):
        self.table = table
        self.region = region
        self.ttl_seconds = ttl_seconds

    @property
    def client(self) -> Any:
        """The process-wide DynamoDB client."""
        from lambda_handler.backends import aws

        return aws.client("dynamodb", self.region)

    def _key(self, job_id: str) -> dict[str, Any]:
        return {"mosaicId": {"S": JOBS_PARTITION}, "quadkey": {"S": job_id}}

    def put(self, job: dict[str, Any]) -> None:
        """Store a new job record (the status fields; the request body travels with the job)."""
        record = {k: v for k, v in job.items() if k != "body"}
        item = {
            **self._key(job["id"]),
            "job": {"S": json.dumps(record)},
            "expires": {"N": str(int(time.time()) + self.ttl_seconds)},
        }
        self.client.put_item(TableName=self.table, Item=item)

    def update(self, job_id: str, **fields: Any) -> None:
        """Change fields of a job record (read, merge, put: one writer per job)."""
        job = self.get(job_id) or {"id": job_id}
        job.update(fields)
        self.put(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A job record, or None."""
        item = self.client.get_item(
            TableName=self.table, Key=self._key(job_id), ConsistentRead=True
        ).get("Item")
        return json.loads(item["job"]["S"]) if item else None


def job_store(settings: ApiSettings) -> MemoryJobStore | DynamoDBJobStore:
    """The job store of the configured mosaic store (JobsUnavailableError if none works)."""
    template = settings.mosaic_uri_template
    if template.startswith("dynamodb://"):
        from lambda_handler.backends.dynamodb import parse_dynamodb_uri

        region, table, _ = parse_dynamodb_uri(template.replace("{mosaic_id}", "x"))
        return DynamoDBJobStore(table, region, settings.job_ttl_seconds)
    if in_lambda():
        raise JobsUnavailableError(
            "this write is too large for a request, and asynchronous jobs need a DynamoDB "
            "mosaic store in Lambda: use the CLI or a smaller write"
        )
    return _memory_store


# ---------------------------------------------------------------------------- submitting
def submit(
    settings: ApiSettings,
    operation: str,
    mosaic_id: str,
    body: dict[str, Any],
    quadkeys: int,
    document: Any = None,
    if_match: str | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """Record a job and start it; returns its record. `document` (the built MosaicJSON) saves
    a rebuild when the job runs in this process; `if_match` (the request's header) and `path`
    (the request's path) make the job's write conditional, as the request's would have been."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown job operation {operation!r}")
    store = job_store(settings)
    job = {
        "id": str(uuid.uuid4()),
        "operation": operation,
        "mosaic_id": mosaic_id,
        "status": "pending",
        "quadkeys": quadkeys,
        "created": _now(),
        "updated": _now(),
        "body": body,
    }
    if if_match is not None:
        job.update({"if_match": if_match, "path": path})
    if in_lambda():
        payload = json.dumps({JOB_EVENT_KEY: job})
        if len(payload.encode()) > MAX_EVENT_BYTES:
            raise JobTooLargeError(
                f"the request body is too large ({len(payload.encode())} bytes) to hand to an "
                f"asynchronous job (at most {MAX_EVENT_BYTES}): use the CLI"
            )
        store.put(job)
        _invoke(settings, payload)
    else:
        store.put(job)
        thread = threading.Thread(
            target=run_job, args=(job, settings, document), name=f"job-{job['id']}", daemon=True
        )
        thread.start()
    return {k: v for k, v in job.items() if k != "body"}


def _invoke(settings: ApiSettings, payload: str) -> None:
    """Start the job in an asynchronous invocation of the job function."""
    import boto3

    function = settings.job_function or os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    boto3.client("lambda").invoke(
        FunctionName=function, InvocationType="Event", Payload=payload.encode()
    )


# ---------------------------------------------------------------------------- running
Runner = Callable[[dict[str, Any], ApiSettings, Any], dict[str, Any]]


def run_job(job: dict[str, Any], settings: ApiSettings, document: Any = None) -> dict[str, Any]:
    """Run a job, recording `running`, then `succeeded` (with the mosaic's version) or `failed`
    (with the status code and message the API would have answered). Never raises."""
    try:
        store = job_store(settings)
        store.update(job["id"], status="running", updated=_now())
    except Exception:
        logger.exception("job %s: its record could not be updated; not run", job["id"])
        return {"status": "failed", "error": "job store unavailable"}
    try:
        result = _execute(job, settings, document)
    except Exception as err:  # recorded for the client: the job's outcome is its record
        status, message = _error_answer(err)
        logger.warning("job %s (%s) failed: %s", job["id"], job["operation"], message)
        outcome = {"status": "failed", "error": {"status": status, "detail": message}}
    else:
        outcome = {"status": "succeeded", "result": result}
    try:
        store.update(job["id"], updated=_now(), **outcome)
    except Exception:
        logger.exception(
            "job %s ended (%s) but its record could not be updated", job["id"], outcome
        )
    return outcome


def _error_answer(err: Exception) -> tuple[int, str]:
    """The status code and message the API answers for an error."""
    from lambda_handler.api_errors import client_message, status_for

    status, _ = status_for(err)
    if status >= 500 and not isinstance(err, MosaicError):
        return status, f"internal error ({type(err).__name__})"
    return status, client_message(err, status)


def _execute(job: dict[str, Any], settings: ApiSettings, document: Any) -> dict[str, Any]:
    """The write a job stands for (the same code as the synchronous routes)."""
    from lambda_handler.backends import MosaicBackend
    from lambda_handler.routes.common import uri_for_id
    from lambda_handler.routes.mosaic_models import MosaicAddition, MosaicSource
    from lambda_handler.routes.mosaic_sources import addition_features, build_document

    mosaic_id, operation = job["mosaic_id"], job["operation"]
    uri = uri_for_id(mosaic_id, settings)
    precondition = None
    if job.get("if_match") is not None and operation != "create":
        from lambda_handler.routes.write_locks import if_match_check

        precondition = if_match_check(job["if_match"], uri, job["path"])
    if operation == "update":
        addition = MosaicAddition.model_validate(job["body"])
        with MosaicBackend(uri) as backend:
            features = addition_features(addition, backend)
            # No in-process write lock: a long job must not hold up the requests' writes (the
            # store's own guard arbitrates; a DynamoDB writer meanwhile gets a clear 409).
            backend.update(features, add_first=addition.add_first, precondition=precondition)
            return {"version": backend.mosaic_def.version}
    body = MosaicSource.model_validate({k: v for k, v in job["body"].items() if k != "id"})
    if document is None:
        document = build_document(body, mosaic_id, settings)
    if operation == "replace":
        with MosaicBackend(uri) as backend:
            # MosaicNotFoundError: PUT replaces, POST creates
            backend.replace(document, precondition=precondition)
        return {"version": document.version}
    backend = MosaicBackend(uri, mosaic_def=document)
    try:
        backend.write(overwrite=False)
    finally:
        backend.close()
    return {"version": document.version}


def run_job_event(event: dict[str, Any], settings: ApiSettings) -> dict[str, Any]:
    """Lambda entry for an asynchronous job invocation (`{JOB_EVENT_KEY: job}`)."""
    job = event[JOB_EVENT_KEY]
    if not isinstance(job, dict) or job.get("operation") not in OPERATIONS:
        raise ValueError("not a mosaic job event")
    return run_job(job, settings)


def job_status(settings: ApiSettings, job_id: str) -> dict[str, Any]:
    """A job's record (MosaicNotFoundError if unknown)."""
    job = job_store(settings).get(job_id)
    if job is None:
        raise MosaicNotFoundError(f"job {job_id!r} not found")
    return {k: v for k, v in job.items() if k != "body"}
