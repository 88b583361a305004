"""DynamoDB backend: many mosaics in one table (`dynamodb://{region}/{table}:{mosaic}`).

Layout (cogeo-mosaic's, so a table written by either tool reads in the other): partition key
`mosaicId` (S), sort key `quadkey` (S); the metadata item has `quadkey = "-1"` and every
top-level MosaicJSON field except `tiles` (numbers as DynamoDB numbers); each tile item is
`{mosaicId, quadkey, assets: [str, ...]}`.

Reads: one `GetItem` for a tile at or above the quadkey zoom; one paginated `Query` with
`begins_with(quadkey, prefix)` for a tile below it (its quadkeys share its quadkey as prefix and
sort together); `BatchGetItem` for several named quadkeys.

Writes are guarded by a writer lock: an item in the partition `{mosaic}#lock` (a name no mosaic
can have, so other readers never see it) holding a lease that the writer renews while it works.
A second writer of the same mosaic fails at once instead of mixing its tiles into the first one's.

What a failed write leaves behind:
- create (`overwrite=False`): tile items are written first and the metadata item last, with a
  conditional put, so an interrupted create leaves no visible mosaic (the orphan tile items are
  removed on failure when the server still answers, and by the next write otherwise).
- overwrite: unchanged quadkeys are not rewritten; changed ones are written, then the metadata is
  swapped, then quadkeys the new mosaic lacks are deleted. On failure before the swap the writer
  restores the previous items (the previous mosaic is then exactly intact); if the server does not
  answer any more, the previous metadata stays and every quadkey holds either its previous or its
  new assets, and re-running the write completes it.
"""

import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ClassVar

import attr
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler.backends import aws
from lambda_handler.backends.base import MosaicJSONBackend, validate_mosaic_name
from lambda_handler.errors import (
    InvalidMosaicError,
    MosaicError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.settings import aws_settings

logger = logging.getLogger(__name__)

METADATA_QUADKEY = "-1"
LOCK_SUFFIX = "#lock"  # '#' is not allowed in mosaic names: the lock never collides with one
LOCK_QUADKEY = "writer"
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit
BATCH_GET_SIZE = 100  # BatchGetItem's limit
_URI_RE = re.compile(
    r"^dynamodb://(?P<region>[a-z0-9-]*)/(?P<table>[A-Za-z0-9_.\-]+):(?P<name>.+)$"
)
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_NAMES = {"#m": "mosaicId", "#q": "quadkey", "#a": "assets"}
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def parse_dynamodb_uri(uri: str) -> tuple[str, str, str]:
    """(region, table, mosaic) of `dynamodb://{region}/{table}:{mosaic}`.

    An empty region (`dynamodb:///{table}:{mosaic}`) means `AWS_REGION`, else us-east-1.
    """
    match = _URI_RE.match(uri)
    if not match:
        raise InvalidMosaicError(
            f"invalid DynamoDB mosaic URI {uri!r}: expected dynamodb://{{region}}/{{table}}:{{mosaic}} "
            "or dynamodb:///{table}:{mosaic}"
        )
    table = match["table"]
    if not _TABLE_RE.match(table):
        raise InvalidMosaicError(f"invalid DynamoDB table name {table!r}: 3-255 of [A-Za-z0-9_.-]")
    return match["region"] or aws.default_region(), table, validate_mosaic_name(match["name"])


def tile_item_size(mosaic_name: str, quadkey: str, assets: Sequence[str]) -> int:
    """Size DynamoDB counts for a tile item (attribute names + values; a list costs 3 bytes
    plus 1 byte per element). Slightly generous, so an accepted item is never refused."""
    size = len("mosaicId") + len(mosaic_name.encode()) + len("quadkey") + len(quadkey)
    return size + len("assets") + 3 + sum(len(a.encode()) + 1 for a in assets)


def _plain(value: Any) -> Any:
    """DynamoDB values (Decimal, sets) as JSON-like Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


def _assets_of(item: dict[str, Any]) -> list[str]:
    """Assets of a raw tile item (a list of strings; cogeo-mosaic writes a list, a string set
    is accepted as well)."""
    value = item.get("assets")
    if value is None:
        return []
    if "L" in value:
        return [element["S"] for element in value["L"]]
    if "SS" in value:
        return list(value["SS"])
    raise InvalidMosaicError(f"tile item {item['quadkey']['S']!r} has non-string assets")


def _tile_item(mosaic_name: str, quadkey: str, assets: Sequence[str]) -> dict[str, Any]:
    return {
        "mosaicId": {"S": mosaic_name},
        "quadkey": {"S": quadkey},
        "assets": {"L": [{"S": a} for a in assets]},
    }


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: 50 ms, 100 ms, ... capped at 2 s."""
    return min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)


class _Lease:
    """A writer lock held in the table, renewed in the background while the writer works."""

    def __init__(self, backend: "DynamoDBBackend", operation: str):
        self.backend = backend
        self.operation = operation
        self.token = uuid.uuid4().hex
        self.seconds = aws_settings().write_lock_seconds
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> dict[str, Any]:
        return {
            "mosaicId": {"S": self.backend.mosaic_name + LOCK_SUFFIX},
            "quadkey": {"S": LOCK_QUADKEY},
        }

    def acquire(self, exists_error: bool) -> None:
        """Take the lock, or raise (MosaicExistsError for a create, else MosaicWriteError)."""
        now = time.time()
        item = {
            **self.key,
            "token": {"S": self.token},
            "operation": {"S": self.operation},
            "expires": {"N": f"{now + self.seconds:.3f}"},
        }
        try:
            self.backend._call(
                "put_item",
                Item=item,
                ConditionExpression="attribute_not_exists(#m) OR expires < :now",
                ExpressionAttributeNames={"#m": "mosaicId"},
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
            )
        except ClientError as err:
            if aws.error_code(err) != "ConditionalCheckFailedException":
                raise
            holder = self.backend._call("get_item", Key=self.key, ConsistentRead=True).get("Item")
            until = float(holder["expires"]["N"]) if holder else now
            what = holder["operation"]["S"] if holder else "write"
            message = (
                f"mosaic {self.backend.mosaic_name!r} in table {self.backend.table_name!r} is "
                f"locked by another writer ({what}, lock expires in {until - now:.0f} s)"
            )
            raise (MosaicExistsError if exists_error else MosaicWriteError)(message) from err
        self._thread = threading.Thread(target=self._renew, name="dynamodb-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.backend._call(
                    "update_item",
                    Key=self.key,
                    UpdateExpression="SET expires = :e",
                    ConditionExpression="#t = :t",
                    ExpressionAttributeNames={"#t": "token"},
                    ExpressionAttributeValues={
                        ":e": {"N": f"{time.time() + self.seconds:.3f}"},
                        ":t": {"S": self.token},
                    },
                )
            except (ClientError, BotoCoreError) as err:
                self.lost = f"the writer lock could not be renewed: {err}"
                return

    def check(self) -> None:
        """Raise if the lease was lost (another writer may have taken over)."""
        if self.lost:
            raise MosaicWriteError(f"write of {self.backend.input} aborted: {self.lost}")

    def release(self) -> None:
        """Stop renewing and delete the lock (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.backend._call(
                "delete_item",
                Key=self.key,
                ConditionExpression="#t = :t",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":t": {"S": self.token}},
            )
        except (ClientError, BotoCoreError) as err:
            # The operation itself is done; the lease simply expires later.
            logger.warning("could not release the writer lock of %s: %s", self.backend.input, err)


@attr.s
class DynamoDBBackend(MosaicJSONBackend):
    """Mosaics in a DynamoDB table, one item per quadkey plus a metadata item."""

    region: str = attr.ib(init=False)
    table_name: str = attr.ib(init=False)
    mosaic_name: str = attr.ib(init=False)

    _backend_name: ClassVar[str] = "DynamoDB"
    _tiles_in_document: ClassVar[bool] = False

    def __attrs_post_init__(self) -> None:
        """Parse the URI and read the metadata item (unless a document to write was given)."""
        self.region, self.table_name, self.mosaic_name = parse_dynamodb_uri(self.input)
        super().__attrs_post_init__()

    # ------------------------------------------------------------------ client
    @property
    def client(self) -> Any:
        """The process-wide DynamoDB client of this backend's region."""
        return _dynamodb_client(self.region)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call a DynamoDB operation on this table (TableName filled in where it applies)."""
        if operation not in ("batch_get_item", "batch_write_item"):
            params["TableName"] = self.table_name
        return getattr(self.client, operation)(**params)

    def _error(self, err: Exception, doing: str, default: type[MosaicError]) -> MosaicError:
        if isinstance(err, ClientError) and aws.error_code(err) == "ResourceNotFoundException":
            return MosaicNotFoundError(
                f"DynamoDB table {self.table_name!r} not found in region {self.region} "
                f"(create it with DynamoDBBackend.create_table or deploy the stack)"
            )
        return aws.map_error(err, f"{doing} {self.input}", default=default)

    @contextmanager
    def _errors(self, doing: str, default: type[MosaicError] = MosaicError) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, doing, default) from err

    def _key(self, quadkey: str, mosaic: str | None = None) -> dict[str, Any]:
        return {"mosaicId": {"S": mosaic or self.mosaic_name}, "quadkey": {"S": quadkey}}

    # ------------------------------------------------------------------ reads
    def _read(self) -> MosaicJSON:
        with self._errors("reading"):
            item = self._call("get_item", Key=self._key(METADATA_QUADKEY), ConsistentRead=True).get(
                "Item"
            )
        if not item:
            raise MosaicNotFoundError(
                f"mosaic {self.mosaic_name!r} not found in DynamoDB table {self.table_name!r}"
            )
        meta = {
            k: _plain(_deserializer.deserialize(v))
            for k, v in item.items()
            if k not in ("mosaicId", "quadkey")
        }
        meta = {k: v for k, v in meta.items() if v is not None}
        meta["tiles"] = {}
        return MosaicJSON.parse(meta, source=self.input)

    def _metadata_exists(self) -> bool:
        item = self._call(
            "get_item",
            Key=self._key(METADATA_QUADKEY),
            ConsistentRead=True,
            ProjectionExpression="#q",
            ExpressionAttributeNames={"#q": "quadkey"},
        ).get("Item")
        return bool(item)

    def _query(self, condition: str, values: dict[str, Any], projection: str) -> Iterator[dict]:
        """Items of this mosaic matching a key condition, every page (LastEvaluatedKey)."""
        names = {k: v for k, v in _NAMES.items() if k in condition or k in projection}
        params: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":m": {"S": self.mosaic_name}, **values},
            "ProjectionExpression": projection,
        }
        with self._errors("querying"):
            while True:
                page = self._call("query", **params)
                yield from page.get("Items", ())
                last = page.get("LastEvaluatedKey")
                if not last:
                    return
                params["ExclusiveStartKey"] = last

    def _query_tiles(self, prefix: str, with_assets: bool = True) -> dict[str, list[str]]:
        """Tile items whose quadkey starts with `prefix` ('' = all), in quadkey order."""
        if prefix:
            condition = "#m = :m AND begins_with(#q, :p)"
            values = {":p": {"S": prefix}}
        else:
            # Every quadkey is made of the digits 0-3; the metadata item "-1" sorts before "0".
            condition = "#m = :m AND #q BETWEEN :lo AND :hi"
            values = {":lo": {"S": "0"}, ":hi": {"S": "4"}}
        projection = "#q, #a" if with_assets else "#q"
        found: dict[str, list[str]] = {}
        for item in self._query(condition, values, projection):
            quadkey = item["quadkey"]["S"]
            if quadkey[:1] in ("0", "1", "2", "3"):  # never the metadata item
                found[quadkey] = _assets_of(item) if with_assets else []
        return found

    def _fetch_prefix(self, prefix: str) -> dict[str, list[str]]:
        return self._query_tiles(prefix)

    def _list_quadkeys(self) -> list[str]:
        return list(self._query_tiles("", with_assets=False))

    def _all_tiles(self) -> dict[str, list[str]]:
        return self._query_tiles("")

    def _fetch_quadkeys(self, keys: Sequence[str]) -> dict[str, list[str]]:
        keys = [k for k in dict.fromkeys(keys) if k and k != METADATA_QUADKEY]
        if not keys:
            return {}
        if len(keys) == 1:
            with self._errors("reading"):
                item = self._call(
                    "get_item",
                    Key=self._key(keys[0]),
                    ProjectionExpression="#q, #a",
                    ExpressionAttributeNames={"#q": "quadkey", "#a": "assets"},
                ).get("Item")
            return {keys[0]: _assets_of(item)} if item else {}
        chunks = [keys[i : i + BATCH_GET_SIZE] for i in range(0, len(keys), BATCH_GET_SIZE)]
        found: dict[str, list[str]] = {}
        if len(chunks) == 1:
            found.update(self._batch_get(chunks[0]))
        else:
            threads = min(len(chunks), aws_settings().write_threads)
            with ThreadPoolExecutor(threads) as pool:
                for part in pool.map(self._batch_get, chunks):
                    found.update(part)
        # Callers flatten in their own key order; keep the request order for stable output.
        return {k: found[k] for k in keys if k in found}

    def _batch_get(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """One BatchGetItem (≤ 100 keys), retrying UnprocessedKeys with backoff."""
        request: dict[str, Any] = {
            self.table_name: {
                "Keys": [self._key(k) for k in keys],
                "ProjectionExpression": "#q, #a",
                "ExpressionAttributeNames": {"#q": "quadkey", "#a": "assets"},
            }
        }
        found: dict[str, list[str]] = {}
        attempts = aws_settings().unprocessed_attempts
        with self._errors("reading"):
            for attempt in range(attempts):
                answer = self._call("batch_get_item", RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table_name, ()):
                    found[item["quadkey"]["S"]] = _assets_of(item)
                request = answer.get("UnprocessedKeys") or {}
                if not request.get(self.table_name, {}).get("Keys"):
                    return found
                if attempt + 1 < attempts:
                    time.sleep(_backoff(attempt))
        missing = len(request[self.table_name]["Keys"])
        raise MosaicError(
            f"reading {self.input}: {missing} quadkeys still unprocessed after {attempts} "
            "BatchGetItem attempts (table throttled?)"
        )

    # ------------------------------------------------------------------ batch writes
    def _batch_write(self, requests: Sequence[dict[str, Any]], lease: _Lease | None) -> None:
        """Send put/delete requests in parallel batches of 25; retry unprocessed items with
        exponential backoff. The first failure stops every batch not yet sent and is raised."""
        if not requests:
            return
        settings = aws_settings()
        chunks = [
            requests[i : i + BATCH_WRITE_SIZE] for i in range(0, len(requests), BATCH_WRITE_SIZE)
        ]
        stop = threading.Event()

        def send(chunk: Sequence[dict[str, Any]]) -> None:
            pending = list(chunk)
            for attempt in range(settings.unprocessed_attempts):
                if stop.is_set():
                    return
                answer = self.client.batch_write_item(RequestItems={self.table_name: pending})
                pending = answer.get("UnprocessedItems", {}).get(self.table_name) or []
                if not pending:
                    return
                if attempt + 1 < settings.unprocessed_attempts:
                    time.sleep(_backoff(attempt))
            raise MosaicWriteError(
                f"writing {self.input}: {len(pending)} items still unprocessed after "
                f"{settings.unprocessed_attempts} BatchWriteItem attempts (table throttled?)"
            )

        threads = min(len(chunks), settings.write_threads)
        pool = ThreadPoolExecutor(threads, thread_name_prefix="dynamodb-write")
        try:
            futures = {pool.submit(send, chunk) for chunk in chunks}
            while futures:
                done, futures = wait(futures, timeout=1.0, return_when=FIRST_EXCEPTION)
                for future in done:
                    err = future.exception()
                    if err is not None:
                        stop.set()
                        if isinstance(err, ClientError | BotoCoreError):
                            raise self._error(err, "writing", MosaicWriteError) from err
                        raise err
                if lease is not None and lease.lost:
                    stop.set()
                    lease.check()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _put_requests(self, tiles: dict[str, list[str]]) -> list[dict[str, Any]]:
        return [
            {"PutRequest": {"Item": _tile_item(self.mosaic_name, q, a)}} for q, a in tiles.items()
        ]

    def _delete_requests(self, quadkeys: Sequence[str]) -> list[dict[str, Any]]:
        return [{"DeleteRequest": {"Key": self._key(q)}} for q in quadkeys]

    # ------------------------------------------------------------------ writes
    def _metadata_item(self, document: MosaicJSON) -> dict[str, Any]:
        # DynamoDB numbers must be Decimal (floats are refused): round-trip through JSON text.
        text = json.dumps(document.metadata())
        meta = json.loads(text, parse_float=Decimal)
        item = {"mosaicId": self.mosaic_name, "quadkey": METADATA_QUADKEY, **meta}
        serialized = {k: _serializer.serialize(v) for k, v in item.items()}
        size = len(text.encode()) + 64
        if size > MAX_ITEM_BYTES:
            raise InvalidMosaicError(
                f"the metadata of mosaic {self.mosaic_name!r} is about {size} bytes, over "
                f"DynamoDB's {MAX_ITEM_BYTES}-byte item limit"
            )
        return serialized

    def _check_tiles(self, tiles: dict[str, list[str]]) -> None:
        """Refuse, before anything is written, what DynamoDB would refuse halfway."""
        if "" in tiles:
            raise InvalidMosaicError(
                "DynamoDB cannot store a quadkey index at zoom 0 (empty quadkey): "
                "use a quadkey_zoom of 1 or more"
            )
        name = self.mosaic_name
        for quadkey, assets in tiles.items():
            size = tile_item_size(name, quadkey, assets)
            if size > MAX_ITEM_BYTES:
                raise InvalidMosaicError(
                    f"quadkey {quadkey!r} lists {len(assets)} assets ({size} bytes), over "
                    f"DynamoDB's {MAX_ITEM_BYTES}-byte item limit: use a larger quadkey_zoom "
                    f"(now {len(quadkey)}) so each quadkey holds fewer assets"
                )

    def write(self, overwrite: bool = False) -> None:
        """Store `mosaic_def`: tile items first, metadata item last (see the module docstring
        for what a failure leaves behind). MosaicExistsError if it exists and overwrite is False,
        or if another writer is creating it at the same time."""
        document = self.mosaic_def
        tiles = document.tiles
        self._check_tiles(tiles)
        metadata = self._metadata_item(document)
        with self._errors("writing", MosaicWriteError):
            if not overwrite and self._metadata_exists():
                raise self._exists()
            lease = _Lease(self, "overwrite" if overwrite else "create")
            lease.acquire(exists_error=not overwrite)
        try:
            self._write_locked(tiles, metadata, overwrite, lease)
        finally:
            lease.release()
            self._invalidate()
        self.mosaic_def = document.model_copy(update={"tiles": {}})

    def _exists(self) -> MosaicExistsError:
        return MosaicExistsError(
            f"mosaic {self.mosaic_name!r} already exists in DynamoDB table {self.table_name!r} "
            "(use overwrite=True)"
        )

    def _write_locked(
        self,
        tiles: dict[str, list[str]],
        metadata: dict[str, Any],
        overwrite: bool,
        lease: _Lease,
    ) -> None:
        with self._errors("writing", MosaicWriteError):
            if not overwrite and self._metadata_exists():
                raise self._exists()
            # Every stored tile item: the previous mosaic's (for rollback and stale removal), or
            # orphans of an interrupted create (removed below, they must not join this mosaic).
            previous = self._query_tiles("")
        changed = {qk: assets for qk, assets in tiles.items() if previous.get(qk) != assets}
        try:
            self._batch_write(self._put_requests(changed), lease)
            lease.check()
            condition = {} if overwrite else {"ConditionExpression": "attribute_not_exists(#m)"}
            if condition:
                condition["ExpressionAttributeNames"] = {"#m": "mosaicId"}
            try:
                self._call("put_item", Item=metadata, **condition)
            except ClientError as err:
                if aws.error_code(err) == "ConditionalCheckFailedException":
                    raise self._exists() from err
                raise self._error(err, "writing", MosaicWriteError) from err
        except BaseException as err:
            self._rollback(changed, previous, err)
            raise
        stale = [qk for qk in previous if qk not in tiles]
        try:
            self._batch_write(self._delete_requests(stale), lease)
        except MosaicError as err:
            raise MosaicWriteError(
                f"{self.input} was written, but {len(stale)} quadkeys of the previous version "
                f"could not all be deleted ({err}); re-run the write to remove them"
            ) from err

    def _rollback(
        self, changed: dict[str, list[str]], previous: dict[str, list[str]], cause: BaseException
    ) -> None:
        """Put back the items a failed write may have replaced; note the outcome on `cause`."""
        restore = {qk: previous[qk] for qk in changed if qk in previous}
        remove = [qk for qk in changed if qk not in previous]
        try:
            self._batch_write(self._put_requests(restore) + self._delete_requests(remove), None)
        except Exception as err:
            cause.add_note(
                f"rollback failed ({err}): the metadata item is unchanged, each quadkey holds its "
                "previous or its new assets; re-run the write to complete it"
            )
        else:
            cause.add_note("rolled back: the previous state of the mosaic is intact")

    def _persist_update(self, document: MosaicJSON, changed: dict[str, list[str]]) -> None:
        """Write the merged quadkeys, then the metadata item. Under the writer lock the stored
        assets are read again and kept, so a concurrent change is never dropped; re-running an
        update gives the same assets (merging never duplicates)."""
        self._check_tiles(changed)
        metadata = self._metadata_item(document)
        with self._errors("updating", MosaicWriteError):
            lease = _Lease(self, "update")
            lease.acquire(exists_error=False)
        try:
            with self._errors("updating", MosaicWriteError):
                if not self._metadata_exists():
                    raise MosaicNotFoundError(
                        f"mosaic {self.mosaic_name!r} not found in DynamoDB table "
                        f"{self.table_name!r}"
                    )
                stored = self._fetch_quadkeys(list(changed))
                merged = {}
                for quadkey, assets in changed.items():
                    known = set(assets)
                    merged[quadkey] = assets + [
                        a for a in stored.get(quadkey, []) if a not in known
                    ]
                self._batch_write(self._put_requests(merged), lease)
                lease.check()
                try:
                    self._call(
                        "put_item",
                        Item=metadata,
                        ConditionExpression="attribute_exists(#m)",
                        ExpressionAttributeNames={"#m": "mosaicId"},
                    )
                except ClientError as err:
                    if aws.error_code(err) == "ConditionalCheckFailedException":
                        raise MosaicNotFoundError(
                            f"mosaic {self.mosaic_name!r} was deleted during the update"
                        ) from err
                    raise
        finally:
            lease.release()
            self._invalidate()

    def delete(self) -> None:
        """Remove every item of the mosaic: the metadata first (the mosaic disappears at once),
        then the tile items, page by page."""
        with self._errors("deleting", MosaicWriteError):
            lease = _Lease(self, "delete")
            lease.acquire(exists_error=False)
        try:
            with self._errors("deleting", MosaicWriteError):
                existed = self._metadata_exists()
                quadkeys = list(self._query_tiles("", with_assets=False))
                if not existed and not quadkeys:
                    raise MosaicNotFoundError(
                        f"mosaic {self.mosaic_name!r} not found in DynamoDB table "
                        f"{self.table_name!r}"
                    )
                self._call("delete_item", Key=self._key(METADATA_QUADKEY))
                self._batch_write(self._delete_requests(quadkeys), lease)
        finally:
            lease.release()
            self._invalidate()

    # ------------------------------------------------------------------ table helpers
    @classmethod
    def list_mosaics(cls, table: str, region: str | None = None) -> list[str]:
        """Names of the mosaics of a table (`dynamodb://{region}/{table}` or a table name);
        one paginated Scan for the metadata items."""
        if table.startswith("dynamodb://"):
            region_part, _, table = table[len("dynamodb://") :].partition("/")
            region = region or region_part or None
            table = table.rstrip(":")
        client = _dynamodb_client(region or aws.default_region())
        params: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "#q = :meta",
            "ProjectionExpression": "#m",
            "ExpressionAttributeNames": {"#q": "quadkey", "#m": "mosaicId"},
            "ExpressionAttributeValues": {":meta": {"S": METADATA_QUADKEY}},
        }
        names: list[str] = []
        try:
            while True:
                page = client.scan(**params)
                names.extend(item["mosaicId"]["S"] for item in page.get("Items", ()))
                if not page.get("LastEvaluatedKey"):
                    break
                params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except ClientError as err:
            if aws.error_code(err) == "ResourceNotFoundException":
                raise MosaicNotFoundError(f"DynamoDB table {table!r} not found") from err
            raise aws.map_error(err, f"listing DynamoDB table {table!r}") from err
        return sorted(names)

    @classmethod
    def create_table(cls, table: str, region: str | None = None, timeout: float = 60.0) -> bool:
        """Create a mosaic table (on-demand billing) for local use and wait until it is ACTIVE.
        Returns False when it already exists. The deployed table comes from the CDK stack."""
        client = _dynamodb_client(region or aws.default_region())
        try:
            client.create_table(
                TableName=table,
                AttributeDefinitions=[
                    {"AttributeName": "mosaicId", "AttributeType": "S"},
                    {"AttributeName": "quadkey", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "mosaicId", "KeyType": "HASH"},
                    {"AttributeName": "quadkey", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            created = True
        except ClientError as err:
            if aws.error_code(err) != "ResourceInUseException":
                raise aws.map_error(err, f"creating DynamoDB table {table!r}") from err
            created = False
        # boto3's waiter polls every 20 s; local servers are ready within milliseconds.
        deadline = time.monotonic() + timeout
        while client.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
            if time.monotonic() > deadline:
                raise MosaicWriteError(f"DynamoDB table {table!r} not ACTIVE after {timeout} s")
            time.sleep(0.1)
        return created


def _dynamodb_client(region: str) -> Any:
    # Enough pooled connections for the parallel batch writers and the lease renewer.
    return aws.client("dynamodb", region, pool_size=aws_settings().write_threads + 4)
