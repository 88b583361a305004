"""DynamoDB backend: many mosaics in one table (`dynamodb://{region}/{table}:{mosaic}`).

Layout (cogeo-mosaic's, so a table written by either tool reads in the other): partition key
`mosaicId` (S), sort key `quadkey` (S); the metadata item has `quadkey = "-1"` and every
top-level MosaicJSON field except `tiles` (numbers as DynamoDB numbers); each tile item is
`{mosaicId, quadkey, assets: [str, ...]}`.

Reads: opening a mosaic is one `BatchGetItem` (metadata item + overview info item); a tile at or
above the quadkey zoom is one `GetItem`; a tile below it is one `GetItem` of its overview item
(see below) or, 1-2 zooms below and where no overview applies, one paginated `Query` with
`begins_with(quadkey, prefix)` (its quadkeys share its quadkey as prefix and sort together);
`BatchGetItem` for several named quadkeys.

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

Overviews: a tile far below the quadkey zoom covers thousands of quadkeys (a zoom-2 tile over a
quadkey_zoom-10 mosaic: 65,536), too many for one request even as a Query. So for every prefix
zoom at least `OVERVIEW_DEPTH` levels below the quadkey zoom, down to the mosaic's minzoom (the
tiler serves no lower zoom, and each level costs about the bytes of every distinct asset once),
the writer stores the prefix's assets (its children's in quadkey order, first occurrence kept:
exactly what the Query answers) as one item of the partition `{mosaic}#overview`, sort key
`z{zoom}:{prefix}`. A low-zoom tile is then one GetItem. The mosaic's own partition keeps
cogeo-mosaic's layout untouched; the overview partition has no `-1` item, so table listings
never show it.
- An info item (sort key `info`) records the overview zooms and a fingerprint of the metadata
  item they were built for. Readers fetch it with the metadata (one BatchGetItem) and use the
  overviews only when the fingerprint matches, so a mosaic rewritten by a tool that does not know
  overviews (cogeo-mosaic, older versions) falls back to the Query. (Such a rewrite that leaves
  the metadata byte-identical is not detectable: after rewriting a mosaic with another tool,
  delete its overview partition, or update / rewrite it with this backend.)
- A prefix whose assets exceed DynamoDB's item limit gets a marker item without assets (and so
  do its ancestors). A marker is answered from the four children's overviews (one BatchGetItem)
  when the zoom below has overviews, else by the Query; a missing overview item by the Query.
- Writers delete the info item before they change any overview or tile item and put it back
  when every overview item is right, so readers never trust half-written overviews; a failed
  overwrite restores the previous overview items and info item with the tiles. `update`
  recomputes the overviews above the changed quadkeys from their stored children (one Query per
  changed bottom-zoom prefix), or rebuilds them all when the stored ones are not trusted.
"""

import hashlib
import itertools
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import attr
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler import cache
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
OVERVIEW_SUFFIX = "#overview"  # the partition of a mosaic's overview items
OVERVIEW_INFO_KEY = "info"
OVERVIEW_FORMAT = 1
# Overviews for prefixes this many zooms above the quadkey zoom and more (64+ children): one or
# two levels above, the Query returns at most 16 items and stays cheap.
OVERVIEW_DEPTH = 3
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit
BATCH_GET_SIZE = 100  # BatchGetItem's limit
_URI_RE = re.compile(
    r"^dynamodb://(?P<region>[a-z0-9-]*)/(?P<table>[A-Za-z0-9_.\-]+):(?P<name>.+)$"
)
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_NAMES = {"#m": "mosaicId", "#q": "quadkey", "#a": "assets"}
_serializer = TypeSerializer()
T = TypeVar("T")
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


# The assets of an overview prefix, or None when they are over DynamoDB's item limit.
Overview = list[str] | None


def overview_key(prefix: str) -> str:
    """Sort key of a prefix's overview item (zoom 0's prefix is empty, keys cannot be)."""
    return f"z{len(prefix)}:{prefix}"


def _union(lists: Iterable[Sequence[str]]) -> list[str]:
    """Concatenation without duplicates, first occurrence kept (the Query path's order)."""
    return list(dict.fromkeys(itertools.chain.from_iterable(lists)))


class OverviewBuilder:
    """Computes a mosaic's overview assets from tile assets, bottom-up, guarding the item size.

    Overview zooms: from the mosaic's minzoom (`top`) to `OVERVIEW_DEPTH` zooms above its
    quadkey zoom (`bottom`); none when that range is empty.
    """

    def __init__(self, mosaic_name: str, document: MosaicJSON):
        self.partition = mosaic_name + OVERVIEW_SUFFIX
        self.quadkey_zoom = document.index_zoom
        self.bottom = self.quadkey_zoom - OVERVIEW_DEPTH
        self.top = max(0, document.minzoom)
        self.zooms = frozenset(range(self.top, self.bottom + 1))

    def fit(self, prefix: str, assets: Overview) -> Overview:
        """`assets`, or None when they would not fit in one item."""
        if assets is None:
            return None
        if tile_item_size(self.partition, overview_key(prefix), assets) > MAX_ITEM_BYTES:
            return None
        return assets

    def bottom_level(self, tiles: dict[str, list[str]]) -> dict[str, Overview]:
        """Overviews at the bottom zoom of the prefixes holding `tiles` (every child of each
        of those prefixes must be in `tiles`)."""
        groups: dict[str, list[list[str]]] = {}
        for quadkey in sorted(tiles):
            groups.setdefault(quadkey[: self.bottom], []).append(tiles[quadkey])
        return {prefix: self.fit(prefix, _union(lists)) for prefix, lists in groups.items()}

    def upward(
        self, level: dict[str, Overview], known: dict[str, Overview] | None = None
    ) -> dict[str, Overview]:
        """`level` (bottom-zoom overviews) and the overviews of all their ancestors, each from
        its four children: those computed here, else `known` (stored items); a child in
        neither has no tiles. An ancestor of an oversized prefix is oversized too."""
        known = known or {}
        result = dict(level)
        for zoom in range(self.bottom - 1, self.top - 1, -1):
            parents = sorted({prefix[:zoom] for prefix in level})
            upper: dict[str, Overview] = {}
            for parent in parents:
                children = [parent + digit for digit in "0123"]
                parts = [level[c] if c in level else known.get(c, []) for c in children]
                combined = None if any(part is None for part in parts) else _union(parts)
                upper[parent] = self.fit(parent, combined)
            result.update(upper)
            level = upper
        return result

    def build(self, tiles: dict[str, list[str]]) -> dict[str, Overview]:
        """Every overview of a whole mosaic's tiles (none without overview zooms)."""
        if not self.zooms:
            return {}
        return self.upward(self.bottom_level(tiles))

    def item(self, prefix: str, assets: Overview) -> dict[str, Any]:
        """The overview item: its assets, or a marker (`oversize`) when they do not fit."""
        item: dict[str, Any] = {
            "mosaicId": {"S": self.partition},
            "quadkey": {"S": overview_key(prefix)},
        }
        if assets is None:
            item["oversize"] = {"BOOL": True}
        else:
            item["assets"] = {"L": [{"S": a} for a in assets]}
        return item


def metadata_fingerprint(item: dict[str, Any]) -> str:
    """A digest of a stored metadata item's values (numbers compared as numbers, since servers
    may store 85.0 as 85), identifying the version of the mosaic overviews were built for."""
    values = {
        k: _plain(_deserializer.deserialize(v))
        for k, v in item.items()
        if k not in ("mosaicId", "quadkey")
    }
    values = {k: v for k, v in values.items() if v is not None}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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


def _key_id(item: dict[str, Any]) -> tuple[str, str]:
    """(mosaicId, quadkey) of an item or key."""
    return item["mosaicId"]["S"], item["quadkey"]["S"]


def _trusted_zooms(
    info: dict[str, Any] | None, metadata: dict[str, Any], quadkey_zoom: int
) -> frozenset[int]:
    """The overview zooms an info item vouches for, if it was written for this metadata."""
    try:
        if (
            info is None
            or int(info["format"]["N"]) != OVERVIEW_FORMAT
            or info["fingerprint"]["S"] != metadata_fingerprint(metadata)
            or int(info["quadkey_zoom"]["N"]) != quadkey_zoom
        ):
            return frozenset()
        return frozenset(range(int(info["minzoom"]["N"]), int(info["maxzoom"]["N"]) + 1))
    except (KeyError, ValueError, TypeError):
        return frozenset()  # an info item this version does not understand: use the Query


def _merge(changed: dict[str, list[str]], stored: dict[str, list[str]]) -> dict[str, list[str]]:
    """`changed` plus the stored assets it lacks (an update never drops an asset)."""
    merged = {}
    for quadkey, assets in changed.items():
        known = set(assets)
        merged[quadkey] = assets + [a for a in stored.get(quadkey, []) if a not in known]
    return merged


class _Changes:
    """The puts and deletes of one write, and the requests that undo them."""

    def __init__(self) -> None:
        self._requests: list[dict[str, Any]] = []
        # (item written or None, item it replaced or None); undo requests are built on failure.
        self._replaced: list[tuple[dict[str, Any], dict[str, Any] | None]] = []

    def set(self, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Put `item`, which replaces `old` (None: there was no item)."""
        self._requests.append({"PutRequest": {"Item": item}})
        self._replaced.append((item, old))

    def delete(self, old: dict[str, Any]) -> None:
        """Delete the item `old`."""
        self._requests.append({"DeleteRequest": {"Key": _key_of(old)}})
        self._replaced.append((old, old))

    def requests(self) -> list[dict[str, Any]]:
        """BatchWriteItem requests of the change."""
        return self._requests

    def undo_requests(self) -> list[dict[str, Any]]:
        """BatchWriteItem requests restoring the previous items."""
        return [
            {"PutRequest": {"Item": old}}
            if old is not None
            else {"DeleteRequest": {"Key": _key_of(item)}}
            for item, old in self._replaced
        ]

    def __bool__(self) -> bool:
        return bool(self._requests)


def _key_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"mosaicId": item["mosaicId"], "quadkey": item["quadkey"]}


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
    # Zooms whose overview items match the metadata read or written (empty: use the Query).
    overview_zooms: frozenset[int] = attr.ib(init=False, factory=frozenset)

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
    @property
    def overview_partition(self) -> str:
        """The partition key of this mosaic's overview items."""
        return self.mosaic_name + OVERVIEW_SUFFIX

    def _info_key(self) -> dict[str, Any]:
        return self._key(OVERVIEW_INFO_KEY, self.overview_partition)

    def _cached_read(self) -> MosaicJSON:
        # The overview zooms are cached with the metadata: they are valid for that version only.
        document, zooms = self._cache_get(
            "definition+overviews", self._read_state, cache.metadata_cache
        )
        self.overview_zooms = zooms
        return document

    def _read(self) -> MosaicJSON:
        return self._read_state()[0]

    def _read_state(self) -> tuple[MosaicJSON, frozenset[int]]:
        """The metadata and the zooms whose overviews match it: one BatchGetItem."""
        meta_key = self._key(METADATA_QUADKEY)
        with self._errors("reading"):
            items = self._batch_get_items([meta_key, self._info_key()], consistent=True)
        item = items.get(_key_id(meta_key))
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
        document = MosaicJSON.parse(meta, source=self.input)
        info = items.get(_key_id(self._info_key()))
        return document, _trusted_zooms(info, item, document.index_zoom)

    def _metadata_exists(self) -> bool:
        item = self._call(
            "get_item",
            Key=self._key(METADATA_QUADKEY),
            ConsistentRead=True,
            ProjectionExpression="#q",
            ExpressionAttributeNames={"#q": "quadkey"},
        ).get("Item")
        return bool(item)

    def _query(
        self,
        condition: str,
        values: dict[str, Any],
        projection: str | None,
        partition: str | None = None,
        consistent: bool = False,
    ) -> Iterator[dict]:
        """Items of a partition (this mosaic's by default) matching a key condition, every
        page (LastEvaluatedKey). Writers read consistently: what they compare must be current."""
        names = {k: v for k, v in _NAMES.items() if k in condition or k in (projection or "")}
        params: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":m": {"S": partition or self.mosaic_name}, **values},
        }
        if projection:
            params["ProjectionExpression"] = projection
        if consistent:
            params["ConsistentRead"] = True
        with self._errors("querying"):
            while True:
                page = self._call("query", **params)
                yield from page.get("Items", ())
                last = page.get("LastEvaluatedKey")
                if not last:
                    return
                params["ExclusiveStartKey"] = last

    def _query_tiles(
        self, prefix: str, with_assets: bool = True, consistent: bool = False
    ) -> dict[str, list[str]]:
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
        for item in self._query(condition, values, projection, consistent=consistent):
            quadkey = item["quadkey"]["S"]
            if quadkey[:1] in ("0", "1", "2", "3"):  # never the metadata item
                found[quadkey] = _assets_of(item) if with_assets else []
        return found

    def _stored_overviews(self) -> tuple[dict[str, Overview], dict[str, Any] | None]:
        """Every stored overview (None for an oversize marker) and the raw info item."""
        overviews: dict[str, Overview] = {}
        info = None
        items = self._query("#m = :m", {}, None, self.overview_partition, consistent=True)
        for item in items:
            key = item["quadkey"]["S"]
            if key == OVERVIEW_INFO_KEY:
                info = item
            elif key.startswith("z") and ":" in key:
                overviews[key.partition(":")[2]] = _assets_of(item) if "assets" in item else None
        return overviews, info

    def _fetch_prefix(self, prefix: str) -> dict[str, list[str]]:
        return self._query_tiles(prefix)

    def _list_quadkeys(self) -> list[str]:
        return list(self._query_tiles("", with_assets=False))

    def _all_tiles(self) -> dict[str, list[str]]:
        return self._query_tiles("")

    def _prefix_assets(self, prefix: str) -> list[str]:
        """A low-zoom tile's assets: its overview item (one GetItem) for a zoom with overviews,
        else the base class's one paginated Query."""
        if len(prefix) in self.overview_zooms:
            return self._overview_assets(prefix)
        return super()._prefix_assets(prefix)

    def _overview_assets(self, prefix: str) -> list[str]:
        """A prefix's assets from its overview item (one GetItem). Without one (no tiles under
        the prefix, or an item deleted) the Query answers; for a marker (assets over the item
        limit) the four children's overviews do, when the zoom below has overviews."""
        with self._errors("reading"):
            item = self._call(
                "get_item",
                Key=self._key(overview_key(prefix), self.overview_partition),
            ).get("Item")
        return self._from_overview(prefix, item)

    def _from_overview(self, prefix: str, item: dict[str, Any] | None) -> list[str]:
        if item and "assets" in item:
            return _assets_of(item)
        if item and len(prefix) + 1 in self.overview_zooms:
            children = [prefix + digit for digit in "0123"]
            keys = [self._key(overview_key(c), self.overview_partition) for c in children]
            found = self._batch_get_items(keys)
            return _union(
                self._from_overview(child, found.get(_key_id(key)))
                for child, key in zip(children, keys, strict=True)
            )
        return self._flatten(self._query_tiles(prefix))

    def _fetch_quadkeys(
        self, keys: Sequence[str], consistent: bool = False
    ) -> dict[str, list[str]]:
        keys = [k for k in dict.fromkeys(keys) if k and k != METADATA_QUADKEY]
        if not keys:
            return {}
        if len(keys) == 1 and not consistent:
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
        for part in self._parallel(lambda chunk: self._batch_get(chunk, consistent), chunks):
            found.update(part)
        # Callers flatten in their own key order; keep the request order for stable output.
        return {k: found[k] for k in keys if k in found}

    def _parallel(self, function: Callable[[Any], T], arguments: Sequence[Any]) -> list[T]:
        """`function` over `arguments` in up to `write_threads` threads (inline for one)."""
        if len(arguments) <= 1:
            return [function(argument) for argument in arguments]
        threads = min(len(arguments), aws_settings().write_threads)
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(function, arguments))

    def _batch_get(self, keys: Sequence[str], consistent: bool = False) -> dict[str, list[str]]:
        """Assets of up to 100 quadkeys (one BatchGetItem and its retries)."""
        items = self._batch_get_items(
            [self._key(k) for k in keys], consistent=consistent, projection="#m, #q, #a"
        )
        return {key[1]: _assets_of(item) for key, item in items.items()}

    def _batch_get_items(
        self,
        keys: Sequence[dict[str, Any]],
        consistent: bool = False,
        projection: str | None = None,
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Items of up to 100 keys of this table by (mosaicId, quadkey); one BatchGetItem,
        retrying UnprocessedKeys with backoff."""
        request: dict[str, Any] = {self.table_name: {"Keys": list(keys)}}
        if consistent:
            request[self.table_name]["ConsistentRead"] = True
        if projection:
            request[self.table_name]["ProjectionExpression"] = projection
            request[self.table_name]["ExpressionAttributeNames"] = {
                k: v for k, v in _NAMES.items() if k in projection
            }
        found: dict[tuple[str, str], dict[str, Any]] = {}
        attempts = aws_settings().unprocessed_attempts
        with self._errors("reading"):
            for attempt in range(attempts):
                answer = self._call("batch_get_item", RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table_name, ()):
                    found[_key_id(item)] = item
                request = answer.get("UnprocessedKeys") or {}
                if not request.get(self.table_name, {}).get("Keys"):
                    return found
                if attempt + 1 < attempts:
                    time.sleep(_backoff(attempt))
        missing = len(request[self.table_name]["Keys"])
        raise MosaicError(
            f"reading {self.input}: {missing} items still unprocessed after {attempts} "
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
        """Store `mosaic_def`: tile and overview items first, metadata item last (see the module
        docstring for what a failure leaves behind). MosaicExistsError if it exists and
        overwrite is False, or if another writer is creating it at the same time."""
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
            info = self._write_locked(tiles, metadata, overwrite, lease)
        finally:
            lease.release()
            self._invalidate()
        self.mosaic_def = document.model_copy(update={"tiles": {}})
        self.overview_zooms = _trusted_zooms(info, metadata, document.index_zoom)

    def _exists(self) -> MosaicExistsError:
        return MosaicExistsError(
            f"mosaic {self.mosaic_name!r} already exists in DynamoDB table {self.table_name!r} "
            "(use overwrite=True)"
        )

    def _info_item(self, metadata: dict[str, Any], builder: OverviewBuilder) -> dict[str, Any]:
        """The overview info item: which zooms have overviews, for which metadata."""
        return {
            **self._info_key(),
            "format": {"N": str(OVERVIEW_FORMAT)},
            "fingerprint": {"S": metadata_fingerprint(metadata)},
            "quadkey_zoom": {"N": str(builder.quadkey_zoom)},
            "minzoom": {"N": str(builder.top)},
            "maxzoom": {"N": str(builder.bottom)},
        }

    def _plan_overviews(
        self,
        changes: "_Changes",
        builder: OverviewBuilder,
        overviews: dict[str, Overview],
        stored: dict[str, Overview],
    ) -> None:
        """Add to `changes` the overview items that differ from the stored ones."""
        for prefix, assets in overviews.items():
            if prefix not in stored or stored[prefix] != assets:
                old = builder.item(prefix, stored[prefix]) if prefix in stored else None
                changes.set(builder.item(prefix, assets), old)
        for prefix, assets in stored.items():
            if prefix not in overviews:
                changes.delete(builder.item(prefix, assets))

    def _write_locked(
        self,
        tiles: dict[str, list[str]],
        metadata: dict[str, Any],
        overwrite: bool,
        lease: _Lease,
    ) -> dict[str, Any] | None:
        """The write under the lock; returns the info item written (None: no overviews)."""
        builder = OverviewBuilder(self.mosaic_name, self.mosaic_def)
        with self._errors("writing", MosaicWriteError):
            if not overwrite and self._metadata_exists():
                raise self._exists()
            # Every stored tile item: the previous mosaic's (for rollback and stale removal), or
            # orphans of an interrupted create (removed below, they must not join this mosaic).
            previous = self._query_tiles("", consistent=True)
            stored_overviews, previous_info = self._stored_overviews()
        changes = _Changes()
        for quadkey, assets in tiles.items():
            if previous.get(quadkey) != assets:
                old = previous.get(quadkey)
                changes.set(
                    _tile_item(self.mosaic_name, quadkey, assets),
                    None if old is None else _tile_item(self.mosaic_name, quadkey, old),
                )
        self._plan_overviews(changes, builder, builder.build(tiles), stored_overviews)
        info = self._info_item(metadata, builder) if builder.zooms else None
        try:
            with self._errors("writing", MosaicWriteError):
                if previous_info is not None and changes:
                    # Readers use the Query until every overview item is right again.
                    self._call("delete_item", Key=self._info_key())
                self._batch_write(changes.requests(), lease)
                lease.check()
                if info is not None:
                    self._call("put_item", Item=info)
                elif previous_info is not None:
                    self._call("delete_item", Key=self._info_key())
                self._put_metadata(metadata, overwrite)
        except BaseException as err:
            self._rollback(changes, previous_info, err)
            raise
        stale = [qk for qk in previous if qk not in tiles]
        try:
            self._batch_write(self._delete_requests(stale), lease)
        except MosaicError as err:
            raise MosaicWriteError(
                f"{self.input} was written, but {len(stale)} quadkeys of the previous version "
                f"could not all be deleted ({err}); re-run the write to remove them"
            ) from err
        return info

    def _put_metadata(self, metadata: dict[str, Any], overwrite: bool) -> None:
        """The last step of a write: the metadata item (conditional for a create)."""
        condition = {} if overwrite else {"ConditionExpression": "attribute_not_exists(#m)"}
        if condition:
            condition["ExpressionAttributeNames"] = {"#m": "mosaicId"}
        try:
            self._call("put_item", Item=metadata, **condition)
        except ClientError as err:
            if aws.error_code(err) == "ConditionalCheckFailedException":
                raise self._exists() from err
            raise

    def _rollback(
        self, changes: "_Changes", previous_info: dict[str, Any] | None, cause: BaseException
    ) -> None:
        """Put back the items a failed write may have replaced, then the previous overview info
        item (last: readers must not trust overviews before they are all restored); note the
        outcome on `cause`."""
        try:
            with self._errors("rolling back", MosaicWriteError):
                self._batch_write(changes.undo_requests(), None)
                if previous_info is not None:
                    self._call("put_item", Item=previous_info)
                else:
                    self._call("delete_item", Key=self._info_key())
        except Exception as err:
            cause.add_note(
                f"rollback failed ({err}): the metadata item is unchanged, each quadkey holds its "
                "previous or its new assets (low-zoom reads use the Query until the next write); "
                "re-run the write to complete it"
            )
        else:
            cause.add_note("rolled back: the previous state of the mosaic is intact")

    def _persist_update(self, document: MosaicJSON, changed: dict[str, list[str]]) -> None:
        """Write the merged quadkeys and the overviews above them, then the metadata item.
        Under the writer lock the stored assets are read again and kept, so a concurrent change
        is never dropped; re-running an update gives the same assets (merging never
        duplicates). Overviews are recomputed from the stored children of each changed prefix,
        or rebuilt from the whole mosaic when the stored ones cannot be trusted (a mosaic
        written without overviews, or by another tool)."""
        self._check_tiles(changed)
        metadata = self._metadata_item(document)
        builder = OverviewBuilder(self.mosaic_name, document)
        with self._errors("updating", MosaicWriteError):
            lease = _Lease(self, "update")
            lease.acquire(exists_error=False)
        try:
            with self._errors("updating", MosaicWriteError):
                items = self._batch_get_items(
                    [self._key(METADATA_QUADKEY), self._info_key()], consistent=True
                )
                stored_metadata = items.get((self.mosaic_name, METADATA_QUADKEY))
                info = items.get((self.overview_partition, OVERVIEW_INFO_KEY))
                if not stored_metadata:
                    raise MosaicNotFoundError(
                        f"mosaic {self.mosaic_name!r} not found in DynamoDB table "
                        f"{self.table_name!r}"
                    )
                changes = _Changes()
                trusted = _trusted_zooms(info, stored_metadata, document.index_zoom)
                if not builder.zooms:
                    merged = _merge(changed, self._fetch_quadkeys(list(changed), consistent=True))
                elif trusted == builder.zooms:
                    merged, overviews = self._updated_overviews(builder, changed)
                    for prefix, assets in overviews.items():
                        changes.set(builder.item(prefix, assets), None)
                else:
                    everything = self._query_tiles("", consistent=True)
                    merged = _merge(changed, everything)
                    overviews = builder.build({**everything, **merged})
                    self._plan_overviews(changes, builder, overviews, self._stored_overviews()[0])
                for quadkey, assets in merged.items():
                    changes.set(_tile_item(self.mosaic_name, quadkey, assets), None)
                if info is not None:
                    self._call("delete_item", Key=self._info_key())
                self._batch_write(changes.requests(), lease)
                lease.check()
                if builder.zooms:
                    self._call("put_item", Item=self._info_item(metadata, builder))
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
            self.overview_zooms = builder.zooms
        finally:
            lease.release()
            self._invalidate()

    def _updated_overviews(
        self, builder: OverviewBuilder, changed: dict[str, list[str]]
    ) -> tuple[dict[str, list[str]], dict[str, Overview]]:
        """The merged assets of the changed quadkeys and the new overviews of their prefixes:
        one Query per changed bottom-zoom prefix (its children), the stored overviews of the
        unchanged siblings of every changed prefix above (one BatchGetItem per 100)."""
        prefixes = sorted({quadkey[: builder.bottom] for quadkey in changed})
        children: dict[str, list[str]] = {}
        for part in self._parallel(lambda p: self._query_tiles(p, consistent=True), prefixes):
            children.update(part)
        merged = _merge(changed, children)
        level = builder.bottom_level({**children, **merged})
        siblings: set[str] = set()
        for zoom in range(builder.top, builder.bottom):
            below = {prefix[: zoom + 1] for prefix in level}
            for parent in {prefix[:zoom] for prefix in level}:
                siblings.update(parent + d for d in "0123" if parent + d not in below)
        keys = [self._key(overview_key(p), self.overview_partition) for p in sorted(siblings)]
        known: dict[str, Overview] = {}
        chunks = [keys[i : i + BATCH_GET_SIZE] for i in range(0, len(keys), BATCH_GET_SIZE)]
        for part in self._parallel(lambda c: self._batch_get_items(c, consistent=True), chunks):
            for (_, key), item in part.items():
                known[key.partition(":")[2]] = _assets_of(item) if "assets" in item else None
        return merged, builder.upward(level, known)

    def delete(self) -> None:
        """Remove every item of the mosaic: the metadata first (the mosaic disappears at once),
        then the tile items, page by page, and the overview partition."""
        with self._errors("deleting", MosaicWriteError):
            lease = _Lease(self, "delete")
            lease.acquire(exists_error=False)
        try:
            with self._errors("deleting", MosaicWriteError):
                existed = self._metadata_exists()
                quadkeys = list(self._query_tiles("", with_assets=False, consistent=True))
                overview_keys = [
                    item["quadkey"]["S"]
                    for item in self._query(
                        "#m = :m", {}, "#q", self.overview_partition, consistent=True
                    )
                ]
                if not existed and not quadkeys and not overview_keys:
                    raise MosaicNotFoundError(
                        f"mosaic {self.mosaic_name!r} not found in DynamoDB table "
                        f"{self.table_name!r}"
                    )
                self._call("delete_item", Key=self._key(METADATA_QUADKEY))
                overviews = [
                    {"DeleteRequest": {"Key": self._key(key, self.overview_partition)}}
                    for key in overview_keys
                ]
                self._batch_write(self._delete_requests(quadkeys) + overviews, lease)
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
