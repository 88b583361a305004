"""Structured logs of the Lambda functions: one JSON object per line.

`configure(level)` (called once per process, in Lambda only) formats every record of the root
logger as JSON, so the runtime's own lines, library warnings and the request lines below are all
queryable with CloudWatch Logs Insights (`filter status >= 500 | stats count() by route`).

`log_request` writes one line per invoke: request id (Lambda's and API Gateway's), method, path,
a low-cardinality route (`/mosaics/{mosaic_id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png`), the
mosaic id, the status and the duration. Standard library only: Powertools' Logger costs 32-35 ms
of imports on this machine (`python -X importtime`), this module nothing beyond `logging` and
`json`, which the handler imports anyway.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from typing import IO, Any

logger = logging.getLogger("lambda_handler.request")

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Added to every record by Lambda's runtime (request id, tenant id when multi-tenant).
_RUNTIME_ATTRIBUTES = {"aws_request_id", "tenant_id"}
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lambda_request_id", default=None
)
_MOSAIC = re.compile(r"^/mosaics/(?P<id>[^/]+)")
_ROUTE_PARTS = (
    (re.compile(r"^/mosaics/[^/]+"), "/mosaics/{mosaic_id}"),
    (re.compile(r"/\d+/\d+/\d+(?=[@./]|$)"), "/{z}/{x}/{y}"),
    (re.compile(r"/point/[^/]+"), "/point/{lon},{lat}"),
    (re.compile(r"/bbox/[^/]+"), "/bbox/{minx},{miny},{maxx},{maxy}"),
)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, request id, `extra` fields.

    `terminator` ends each line: Lambda's runtime handler writes what the formatter returns as
    is (its own text format ends in a newline), a `StreamHandler` adds its own.
    """

    def __init__(self, terminator: str = "") -> None:
        super().__init__()
        self.terminator = terminator

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of `record`."""
        out: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id:
            out["requestId"] = request_id
        for key, value in vars(record).items():
            if key in _RUNTIME_ATTRIBUTES:
                # The runtime's filter tags records with the request id: one name for it.
                if value and "requestId" not in out:
                    out["requestId"] = value
            elif key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":")) + self.terminator


def configure(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """JSON-format the root logger's handlers (Lambda's runtime installs one; without any, a
    stream handler on `stream` is added). The package logs at `level`, libraries at WARNING
    (botocore's and mangum's INFO lines would repeat every request) unless `level` is DEBUG."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream))
    for handler in root.handlers:
        plain_stream = isinstance(handler, logging.StreamHandler)
        handler.setFormatter(JsonFormatter(terminator="" if plain_stream else "\n"))
    numeric = logging.getLevelName(level.upper())
    logging.getLogger("lambda_handler").setLevel(numeric)
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))


def route_of(path: str) -> str:
    """The path with ids and coordinates replaced by placeholders (few distinct values)."""
    for pattern, replacement in _ROUTE_PARTS:
        path = pattern.sub(replacement, path, count=1)
    return path


def request_fields(event: dict[str, Any], context: Any, status: int, seconds: float) -> dict:
    """The fields of one request line."""
    request_context = event.get("requestContext") or {}
    http = request_context.get("http") or {}
    path = event.get("rawPath") or event.get("path") or http.get("path") or ""
    mosaic = _MOSAIC.match(path)
    return {
        "requestId": getattr(context, "aws_request_id", None),
        "apiRequestId": request_context.get("requestId"),
        "method": http.get("method") or event.get("httpMethod"),
        "path": path,
        "route": route_of(path),
        "mosaic": mosaic.group("id") if mosaic else None,
        "status": status,
        "durationMs": round(seconds * 1000, 1),
    }


def start_request(context: Any) -> contextvars.Token:
    """Tag the records of this invoke with its request id (undo with `end_request`)."""
    return _request_id.set(getattr(context, "aws_request_id", None))


def end_request(token: contextvars.Token) -> None:
    """Stop tagging records with the request id set by `start_request`."""
    _request_id.reset(token)


def log_request(
    event: dict[str, Any],
    context: Any,
    response: dict[str, Any] | None,
    seconds: float,
    error: BaseException | None = None,
) -> None:
    """One line for an answered (or failed: `response` None, `error` set) invoke; 5xx at ERROR."""
    status = int(response.get("statusCode", 500)) if response else 500
    fields = request_fields(event, context, status, seconds)
    level = logging.ERROR if status >= 500 else logging.INFO
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    logger.log(level, "request", extra=fields, exc_info=exc_info)
