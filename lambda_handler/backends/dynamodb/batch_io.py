"""Batched and parallel requests: BatchGetItem / BatchWriteItem with retries of unprocessed
items, and the GetItem-or-BatchGetItem read of named quadkeys."""

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler.backends.dynamodb.items import MosaicTable
from lambda_handler.backends.dynamodb.lease import Lease
from lambda_handler.backends.dynamodb.records import (
    ITEM_PROJECTION,
    METADATA_QUADKEY,
    expression_names,
    key_id,
)
from lambda_handler.errors import MosaicError, MosaicWriteError
from lambda_handler.settings import aws_settings

BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit
BATCH_GET_SIZE = 100  # BatchGetItem's limit
T = TypeVar("T")


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: 50 ms, 100 ms, ... capped at 2 s."""
    return min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)


def chunked(values: Sequence[T], size: int) -> list[Sequence[T]]:
    """`values` in consecutive chunks of at most `size`."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def parallel(function: Callable[[Any], T], arguments: Sequence[Any]) -> list[T]:
    """`function` over `arguments` in up to `write_threads` threads (inline for one)."""
    if len(arguments) <= 1:
        return [function(argument) for argument in arguments]
    threads = min(len(arguments), aws_settings().write_threads)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, arguments))


def batch_get_items(
    table: MosaicTable,
    keys: Sequence[dict[str, Any]],
    consistent: bool = False,
    projection: str | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Items of up to 100 keys of the table by (mosaicId, quadkey); one BatchGetItem,
    retrying UnprocessedKeys with backoff."""
    name = table.table_name
    request: dict[str, Any] = {name: {"Keys": list(keys)}}
    if consistent:
        request[name]["ConsistentRead"] = True
    if projection:
        request[name]["ProjectionExpression"] = projection
        request[name]["ExpressionAttributeNames"] = expression_names(projection)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    attempts = aws_settings().unprocessed_attempts
    with table.errors("reading"):
        for attempt in range(attempts):
            answer = table.call("batch_get_item", RequestItems=request)
            for item in answer.get("Responses", {}).get(name, ()):
                found[key_id(item)] = item
            request = answer.get("UnprocessedKeys") or {}
            if not request.get(name, {}).get("Keys"):
                return found
            if attempt + 1 < attempts:
                time.sleep(backoff(attempt))
    missing = len(request[name]["Keys"])
    raise MosaicError(
        f"reading {table.uri}: {missing} items still unprocessed after {attempts} "
        "BatchGetItem attempts (table throttled?)"
    )


def batch_get_many(
    table: MosaicTable, keys: Sequence[dict[str, Any]], consistent: bool, projection: str | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Items of any number of keys: BatchGetItem requests of 100 keys, in parallel."""

    def get(chunk: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return batch_get_items(table, chunk, consistent=consistent, projection=projection)

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parallel(get, chunked(keys, BATCH_GET_SIZE)):
        found.update(part)
    return found


def fetch_raw(
    table: MosaicTable, quadkeys: Sequence[str], consistent: bool
) -> dict[str, dict[str, Any]]:
    """Raw tile items of named quadkeys (missing ones left out), in the order asked: one
    GetItem for one quadkey, else parallel BatchGetItem requests."""
    quadkeys = [k for k in dict.fromkeys(quadkeys) if k and k != METADATA_QUADKEY]
    if not quadkeys:
        return {}
    if len(quadkeys) == 1:
        with table.errors("reading"):
            item = table.call(
                "get_item",
                Key=table.key(quadkeys[0]),
                ProjectionExpression=ITEM_PROJECTION,
                ExpressionAttributeNames=expression_names(ITEM_PROJECTION),
                ConsistentRead=consistent,
            ).get("Item")
        return {quadkeys[0]: item} if item else {}
    keys = [table.key(k) for k in quadkeys]
    found = {
        key[1]: item
        for key, item in batch_get_many(table, keys, consistent, ITEM_PROJECTION).items()
    }
    # Callers flatten in their own key order; keep the request order for stable output.
    return {k: found[k] for k in quadkeys if k in found}


def _send_batch(
    table: MosaicTable, chunk: Sequence[dict[str, Any]], lease: Lease | None, stop: threading.Event
) -> None:
    """One BatchWriteItem of up to 25 requests, retrying unprocessed items with backoff."""
    attempts = aws_settings().unprocessed_attempts
    pending = list(chunk)
    for attempt in range(attempts):
        if stop.is_set():
            return  # another batch failed: that failure is raised
        if lease is not None:
            lease.check()  # never skip a batch silently
        answer = table.client.batch_write_item(RequestItems={table.table_name: pending})
        pending = answer.get("UnprocessedItems", {}).get(table.table_name) or []
        if not pending:
            return
        if attempt + 1 < attempts:
            time.sleep(backoff(attempt))
    raise MosaicWriteError(
        f"writing {table.uri}: {len(pending)} items still unprocessed after "
        f"{attempts} BatchWriteItem attempts (table throttled?)"
    )


def batch_write(
    table: MosaicTable, requests: Sequence[dict[str, Any]], lease: Lease | None
) -> None:
    """Send put/delete requests in parallel batches of 25; retry unprocessed items with
    exponential backoff. The first failure stops every batch not yet sent and is raised;
    so does the lease becoming invalid (no batch is sent after that)."""
    if not requests:
        return
    chunks = chunked(requests, BATCH_WRITE_SIZE)
    stop = threading.Event()
    threads = min(len(chunks), aws_settings().write_threads)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="dynamodb-write")
    try:
        futures = {pool.submit(_send_batch, table, chunk, lease, stop) for chunk in chunks}
        while futures:
            done, futures = wait(futures, timeout=1.0, return_when=FIRST_EXCEPTION)
            for future in done:
                err = future.exception()
                if err is not None:
                    stop.set()
                    if isinstance(err, ClientError | BotoCoreError):
                        raise table.error(err, "writing", MosaicWriteError) from err
                    raise err
            if lease is not None and not lease.valid:
                stop.set()
                lease.check()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if lease is not None:
        lease.check()  # a batch skipped because the lease ended is a failed write


def delete_requests(keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """BatchWriteItem requests deleting the items of these keys."""
    return [{"DeleteRequest": {"Key": key}} for key in keys]
