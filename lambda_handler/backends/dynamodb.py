"""DynamoDB backend: many mosaics in one table (`dynamodb://{region}/{table}:{mosaic}`).

Layout (cogeo-mosaic's, so a table written by either tool reads in the other): partition key
`mosaicId` (S), sort key `quadkey` (S); the metadata item has `quadkey = "-1"` and every
top-level MosaicJSON field except `tiles` (numbers as DynamoDB numbers); each tile item is
`{mosaicId, quadkey, assets: [str, ...]}`. This backend adds attributes other readers ignore
(cogeo-mosaic reads `assets` with `.get("assets", [])` and builds its model from the metadata
item ignoring unknown fields).

Generations: a reader never sees a mixed mosaic
-----------------------------------------------
Every committed version of a mosaic has a generation token `{number:012d}-{random}` stored in
the metadata item (`_generation`). A tile item has two slots:
- the base slot `assets` (+ `gen`, the generation it belongs to): what cogeo-mosaic reads;
- the staged slot `next_assets` + `next_gen`: the value of that quadkey in generation
  `next_gen` (an empty list: the quadkey does not exist in it).
A reader with committed generation C takes the staged slot when `next_gen == C`, else the base
slot. A writer (create aside) therefore:
1. stages: puts every changed item with base = the value committed readers see now and staged =
   the new value (BatchWriteItem; readers of C still see C everywhere);
2. flips: one conditional PutItem of the metadata item with the new generation G (condition:
   the generation is still C). From that instant readers see G everywhere;
3. promotes: puts base = new value, gen = G (so cogeo-mosaic catches up; it may lag while this
   runs, it never crashes), writes empty tombstones for removed quadkeys, deletes the
   tombstones of the previous write, and clears `_pending` on the metadata item.
A writer that dies before the flip leaves staged slots no reader trusts (they name a generation
that never commits; the next write overwrites them); one that dies after the flip leaves
`_pending` set: the next writer promotes generation C first. A reader holding an older
generation (a cached metadata item) that meets an item promoted by a later generation (`gen`
newer than its own) re-reads the metadata and retries, so it never mixes versions either.
A new mosaic (create) is written base-only with its generation and becomes visible with the
conditional put of its metadata item; orphans of a failed create (no metadata item) are
invisible and removed by the next create or delete of that name.

Because one item may hold two versions, each version of an item is limited to half DynamoDB's
400 KB item limit (`SLOT_LIMIT`); bigger quadkeys are refused before anything is written.

Writers hold a lease: an item of the partition `{mosaic}#lock` (a name no mosaic can have),
with a short expiry (`MOSAIC_AWS_WRITE_LOCK_SECONDS`, 30 s) renewed by a heartbeat while the
writer works. A writer whose heartbeat stops (SIGKILL, lost network) blocks others at most that
long; a writer that cannot renew stops before its lease could be taken over. A second writer of
the same mosaic is refused at once (MosaicConflictError; MosaicExistsError for a create).

Reads: opening a mosaic is one GetItem (the metadata item, with the overview description); a
tile at or above the quadkey zoom is one GetItem; a tile below it is one GetItem of its
overview item (see below) or, 1-2 zooms below and where no overview applies, one paginated
Query with `begins_with(quadkey, prefix)`; BatchGetItem for several named quadkeys. Reads are
strongly consistent by default (`MOSAIC_AWS_CONSISTENT_READS`): an eventually consistent read
could return an item older than the metadata it is resolved against.

Overviews: a tile far below the quadkey zoom covers thousands of quadkeys, too many for one
request. So for every prefix zoom at least `OVERVIEW_DEPTH` levels below the quadkey zoom,
down to the mosaic's minzoom, the writer stores the prefix's assets (its children's in quadkey
order, first occurrence kept: exactly what the Query answers) as one item of the partition
`{mosaic}#overview`, sort key `z{zoom}:{prefix}`, with the same two slots as tile items (a
marker `oversize` when they exceed the slot limit). The metadata item describes them
(`_overviews`: zooms and a fingerprint of the other metadata values); readers use overviews only
when the fingerprint matches, so a mosaic rewritten by a tool that does not know them falls back
to the Query. The overview partition has no `-1` item, so table listings never show it.
"""

import base64
import binascii
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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import attr
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler import cache
from lambda_handler.backends import aws
from lambda_handler.backends.base import MosaicJSONBackend, bbox_union, validate_mosaic_name
from lambda_handler.errors import (
    InvalidMosaicError,
    MosaicConflictError,
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
LEGACY_INFO_KEY = "info"  # overview description item of earlier versions (removed by writes)
OVERVIEW_FORMAT = 2
# Overviews for prefixes this many zooms above the quadkey zoom and more (64+ children): one or
# two levels above, the Query returns at most 16 items and stays cheap.
OVERVIEW_DEPTH = 3
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
# One item holds up to two versions of a quadkey while a write is staged.
SLOT_LIMIT = MAX_ITEM_BYTES // 2 - 1024
BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit
BATCH_GET_SIZE = 100  # BatchGetItem's limit
STALE_RETRIES = 3  # re-reads of the metadata when items are newer than it
LIST_SCAN_CALLS = 4  # Scan requests one listing page may cost at most
LIST_SCAN_ITEMS = 1000  # items each of them may evaluate
# Attributes of the metadata item that are not MosaicJSON fields.
GENERATION_ATTR = "_generation"
PENDING_ATTR = "_pending"
OVERVIEWS_ATTR = "_overviews"
PRIVATE_ATTRS = frozenset({GENERATION_ATTR, PENDING_ATTR, OVERVIEWS_ATTR})
KEY_ATTRS = frozenset({"mosaicId", "quadkey"})
_URI_RE = re.compile(
    r"^dynamodb://(?P<region>[a-z0-9-]*)/(?P<table>[A-Za-z0-9_.\-]+):(?P<name>.+)$"
)
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_NAMES = {
    "#m": "mosaicId",
    "#q": "quadkey",
    "#a": "assets",
    "#o": "oversize",
    "#g": "gen",
    "#ng": "next_gen",
    "#na": "next_assets",
    "#no": "next_oversize",
    "#gen": GENERATION_ATTR,
    "#p": PENDING_ATTR,
    "#t": "token",
}
ITEM_PROJECTION = "#m, #q, #a, #o, #g, #ng, #na, #no"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
T = TypeVar("T")


def _names(*expressions: str | None) -> dict[str, str]:
    """ExpressionAttributeNames for the placeholders used (DynamoDB refuses unused ones)."""
    used = set()
    for expression in expressions:
        used.update(re.findall(r"#\w+", expression or ""))
    return {name: _NAMES[name] for name in sorted(used)}


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


# ---------------------------------------------------------------------- generations
def generation_number(generation: str | None) -> int:
    """The counter of a generation token (0 for none: a mosaic written by another tool)."""
    try:
        return int((generation or "0").partition("-")[0])
    except ValueError:
        return 0


def new_generation(previous: str | None, floor: int = 0) -> str:
    """The token of the next version: a counter above `previous` (and `floor`, the newest
    generation seen on any item) and a random part, so an aborted write's token never commits."""
    number = max(generation_number(previous), floor) + 1
    return f"{number:012d}-{uuid.uuid4().hex[:12]}"


class _StaleGenerationError(Exception):
    """An item belongs to a generation newer than the metadata the reader resolved it with."""


class _Oversize:
    """The value of an overview whose assets do not fit in one item slot."""

    def __repr__(self) -> str:
        return "OVERSIZE"


OVERSIZE = _Oversize()
# A quadkey's or overview's value in one generation: assets, OVERSIZE, or None (absent).
Value = list[str] | _Oversize | None
Overview = list[str] | _Oversize


def _decode(item: dict[str, Any], prefix: str = "") -> Value:
    """The value of one slot of an item (`prefix` '' for the base slot, 'next_' for the staged
    one); an empty list is an absent quadkey. cogeo-mosaic writes lists; string sets are read
    as well."""
    marker = item.get(prefix + "oversize")
    if marker is not None and marker.get("BOOL"):
        return OVERSIZE
    value = item.get(prefix + "assets")
    if value is None:
        return None
    if "L" in value:
        assets = [element["S"] for element in value["L"]]
    elif "SS" in value:
        assets = list(value["SS"])
    else:
        raise InvalidMosaicError(f"item {item['quadkey']['S']!r} has non-string assets")
    return assets or None


def _encode(value: Value, prefix: str = "") -> dict[str, Any]:
    """Attributes of one slot (an absent value is an empty list: readers that only know
    `assets` read no assets)."""
    if value is OVERSIZE:
        return {prefix + "oversize": {"BOOL": True}}
    return {prefix + "assets": {"L": [{"S": a} for a in (value or [])]}}


def _assets_of(item: dict[str, Any]) -> list[str]:
    """Assets of the base slot of a raw item ([] when absent or oversize)."""
    value = _decode(item)
    return value if isinstance(value, list) else []


def resolve(
    item: dict[str, Any], committed: str | None, check: bool = True
) -> tuple[Value, str | None]:
    """(value, its generation) of an item for readers of generation `committed`: the staged
    slot if it belongs to that generation, else the base slot. With `check`, a base slot newer
    than `committed` raises _StaleGenerationError (the reader's metadata is out of date)."""
    staged = item.get("next_gen", {}).get("S")
    if committed is not None and staged == committed:
        return _decode(item, "next_"), committed
    generation = item.get("gen", {}).get("S")
    if check and generation_number(generation) > generation_number(committed):
        raise _StaleGenerationError(generation)
    return _decode(item), generation


# ---------------------------------------------------------------------- overviews
def overview_key(prefix: str) -> str:
    """Sort key of a prefix's overview item (zoom 0's prefix is empty, keys cannot be)."""
    return f"z{len(prefix)}:{prefix}"


def _union(lists: Iterable[Sequence[str]]) -> list[str]:
    """Concatenation without duplicates, first occurrence kept (the Query path's order)."""
    return list(dict.fromkeys(itertools.chain.from_iterable(lists)))


class OverviewBuilder:
    """Computes a mosaic's overview assets from tile assets, bottom-up, guarding the slot size.

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
        """`assets`, or OVERSIZE when they would not fit in one slot."""
        if assets is OVERSIZE:
            return OVERSIZE
        if tile_item_size(self.partition, overview_key(prefix), assets) > SLOT_LIMIT:
            return OVERSIZE
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
                if any(part is OVERSIZE for part in parts):
                    upper[parent] = OVERSIZE
                else:
                    upper[parent] = self.fit(parent, _union(parts))  # type: ignore[arg-type]
            result.update(upper)
            level = upper
        return result

    def build(self, tiles: dict[str, list[str]]) -> dict[str, Overview]:
        """Every overview of a whole mosaic's tiles (none without overview zooms)."""
        if not self.zooms:
            return {}
        return self.upward(self.bottom_level(tiles))

    def description(self, fingerprint: str) -> dict[str, Any]:
        """The metadata item's `_overviews` attribute: which zooms have overviews, for which
        metadata values."""
        return {
            "M": {
                "format": {"N": str(OVERVIEW_FORMAT)},
                "fingerprint": {"S": fingerprint},
                "quadkey_zoom": {"N": str(self.quadkey_zoom)},
                "minzoom": {"N": str(self.top)},
                "maxzoom": {"N": str(self.bottom)},
            }
        }


def metadata_fingerprint(item: dict[str, Any]) -> str:
    """A digest of a stored metadata item's MosaicJSON values (numbers compared as numbers,
    since servers may store 85.0 as 85): overviews are trusted only for the values they were
    built with."""
    values = {
        k: _plain(_deserializer.deserialize(v))
        for k, v in item.items()
        if k not in KEY_ATTRS and k not in PRIVATE_ATTRS
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


def _trusted_zooms(metadata: dict[str, Any], quadkey_zoom: int) -> frozenset[int]:
    """The overview zooms the metadata item vouches for (its values unchanged since)."""
    try:
        info = metadata[OVERVIEWS_ATTR]["M"]
        if (
            int(info["format"]["N"]) != OVERVIEW_FORMAT
            or info["fingerprint"]["S"] != metadata_fingerprint(metadata)
            or int(info["quadkey_zoom"]["N"]) != quadkey_zoom
        ):
            return frozenset()
        return frozenset(range(int(info["minzoom"]["N"]), int(info["maxzoom"]["N"]) + 1))
    except (KeyError, ValueError, TypeError):
        return frozenset()  # none, or a description this version does not understand


def _document_of(item: dict[str, Any], source: str) -> MosaicJSON:
    """The MosaicJSON document (without tiles) of a metadata item."""
    meta = {
        k: _plain(_deserializer.deserialize(v))
        for k, v in item.items()
        if k not in KEY_ATTRS and k not in PRIVATE_ATTRS
    }
    meta = {k: v for k, v in meta.items() if v is not None}
    meta["tiles"] = {}
    document = MosaicJSON.parse(meta, source=source)
    _set_revision(document, item.get(GENERATION_ATTR, {}).get("S"))
    return document


def _set_revision(document: MosaicJSON, generation: str | None) -> None:
    """Record the generation as the store revision HTTP ETags are made from."""
    setter = getattr(document, "with_store_revision", None)
    if setter is not None:
        setter(generation)


def _merge(changed: dict[str, list[str]], stored: dict[str, list[str]]) -> dict[str, list[str]]:
    """`changed` plus the stored assets it lacks (an update never drops an asset)."""
    merged = {}
    for quadkey, assets in changed.items():
        known = set(assets)
        merged[quadkey] = assets + [a for a in stored.get(quadkey, []) if a not in known]
    return merged


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: 50 ms, 100 ms, ... capped at 2 s."""
    return min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)


def _key_id(item: dict[str, Any]) -> tuple[str, str]:
    """(mosaicId, quadkey) of an item or key."""
    return item["mosaicId"]["S"], item["quadkey"]["S"]


def _key_of(partition: str, key: str) -> dict[str, Any]:
    return {"mosaicId": {"S": partition}, "quadkey": {"S": key}}


def _newest_generation(items: Iterable[dict[str, Any]]) -> int:
    """The highest generation counter any item names (base or staged slot)."""
    newest = 0
    for item in items:
        for name in ("gen", "next_gen"):
            newest = max(newest, generation_number(item.get(name, {}).get("S")))
    return newest


def encode_page_token(key: dict[str, Any]) -> str:
    """An opaque continuation token for the listing page after the item `key`."""
    text = json.dumps([key["mosaicId"]["S"], key["quadkey"]["S"]], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> dict[str, Any]:
    """The table key a continuation token resumes after (InvalidMosaicError if malformed)."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        partition, sort = json.loads(text)
        if not (isinstance(partition, str) and isinstance(sort, str)):
            raise ValueError("not two strings")
        if not (0 < len(partition) <= 300 and 0 < len(sort) <= 300):
            raise ValueError("key out of range")
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as err:
        raise InvalidMosaicError(f"invalid page token {token[:100]!r}") from err
    return _key_of(partition, sort)


# ---------------------------------------------------------------------- write plans
@dataclass
class _Entry:
    """One item a write changes: its value for readers of the committed generation (`old`)
    and in the new one (`new`)."""

    partition: str
    key: str
    old: Value
    old_generation: str | None
    new: Value
    stage: bool  # False: nothing to stage, the item is only removed after the flip
    tombstone: bool  # a removed tile quadkey leaves an empty item of the new generation

    def staged_item(self, generation: str) -> dict[str, Any]:
        """The item of the staging phase: the committed value in the base slot (readers of
        the committed generation see no change), the new one in the staged slot."""
        item = {**_key_of(self.partition, self.key), **_encode(self.old)}
        if self.old_generation:
            item["gen"] = {"S": self.old_generation}
        item["next_gen"] = {"S": generation}
        item.update(_encode(self.new, "next_"))
        return item

    def promote_request(self, generation: str) -> dict[str, Any]:
        """The request making the new value the base slot (what other readers see)."""
        if self.new is None and not (self.stage and self.tombstone):
            return {"DeleteRequest": {"Key": _key_of(self.partition, self.key)}}
        item = {**_key_of(self.partition, self.key), **_encode(self.new)}
        item["gen"] = {"S": generation}
        return {"PutRequest": {"Item": item}}

    def undo_request(self) -> dict[str, Any]:
        """The request putting the item back as it was before staging (cleanup)."""
        if self.old is None and self.old_generation is None:
            return {"DeleteRequest": {"Key": _key_of(self.partition, self.key)}}
        item = {**_key_of(self.partition, self.key), **_encode(self.old)}
        if self.old_generation:
            item["gen"] = {"S": self.old_generation}
        return {"PutRequest": {"Item": item}}


def plan_changes(
    partition: str,
    items: dict[str, dict[str, Any]],
    values: dict[str, Value],
    committed: str | None,
    full: bool,
    tombstones: bool,
) -> list[_Entry]:
    """The entries turning the stored `items` (sort key -> raw item) into `values` in a new
    generation. `full`: `values` is the whole partition, stored keys it lacks are removed.
    Unchanged items are left alone, except those whose staged slot holds the committed
    generation (a promotion that did not finish): they are rewritten too."""
    keys = set(values) | (set(items) if full else set())
    entries = []
    for key in sorted(keys):
        item = items.get(key)
        old, old_generation = resolve(item, committed, check=False) if item else (None, None)
        new = values.get(key)
        unfinished = (
            item is not None
            and committed is not None
            and item.get("next_gen", {}).get("S") == committed
        )
        if old == new and not unfinished:
            if item is not None and old is None:  # a tombstone or an orphan: removed after
                entries.append(_Entry(partition, key, None, None, None, False, False))
            continue
        entries.append(_Entry(partition, key, old, old_generation, new, True, tombstones))
    return entries


class _TableMissingError(MosaicNotFoundError):
    """The table itself does not exist (a write creates it, as cogeo-mosaic does)."""


class _FlipUnknownError(MosaicWriteError):
    """The metadata put's answer was lost and the outcome could not be read back."""


# ---------------------------------------------------------------------- writer lease
class _Lease:
    """A writer lock held in the table with a short expiry, renewed by a heartbeat while the
    writer works. The writer stops (`check`) before the lease could expire unrenewed, so a
    writer that took over an expired lease never races a living one."""

    def __init__(self, backend: "DynamoDBBackend", operation: str):
        self.backend = backend
        self.operation = operation
        self.token = uuid.uuid4().hex
        self.seconds = aws_settings().write_lock_seconds
        self.lost: str | None = None
        self.took_over: dict[str, Any] | None = None  # the expired lease of a dead writer
        self.valid_until = 0.0  # time.monotonic() after which this writer must stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> dict[str, Any]:
        return _key_of(self.backend.mosaic_name + LOCK_SUFFIX, LOCK_QUADKEY)

    def _safe_until(self, started: float) -> float:
        # A margin below the expiry others see: for clock skew and a slow last request.
        return started + self.seconds * 0.75

    def acquire(self, exists_error: bool) -> None:
        """Take the lock (a free or expired one), or raise MosaicExistsError (a create) /
        MosaicConflictError (another writer holds it)."""
        started = time.monotonic()
        now = time.time()
        item = {
            **self.key,
            "token": {"S": self.token},
            "operation": {"S": self.operation},
            "expires": {"N": f"{now + self.seconds:.3f}"},
        }
        try:
            answer = self.backend._call(
                "put_item",
                Item=item,
                ConditionExpression="attribute_not_exists(#m) OR expires < :now",
                ExpressionAttributeNames={"#m": "mosaicId"},
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
                ReturnValues="ALL_OLD",
            )
        except ClientError as err:
            if aws.error_code(err) != "ConditionalCheckFailedException":
                raise
            holder = self.backend._call("get_item", Key=self.key, ConsistentRead=True).get("Item")
            until = float(holder["expires"]["N"]) if holder else now
            what = holder["operation"]["S"] if holder else "write"
            message = (
                f"mosaic {self.backend.mosaic_name!r} in table {self.backend.table_name!r} is "
                f"being written by another writer ({what}; its lock expires in "
                f"{max(0.0, until - now):.0f} s unless renewed): nothing was written, retry later"
            )
            raise (MosaicExistsError if exists_error else MosaicConflictError)(message) from err
        self.valid_until = self._safe_until(started)
        self.took_over = answer.get("Attributes") or None
        if self.took_over:
            logger.warning(
                "took over the expired writer lock of %s (a writer died during %s)",
                self.backend.input,
                self.took_over.get("operation", {}).get("S", "a write"),
            )
        self._thread = threading.Thread(target=self._renew, name="dynamodb-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            started = time.monotonic()
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
                if isinstance(err, ClientError) and (
                    aws.error_code(err) == "ConditionalCheckFailedException"
                ):
                    self.lost = "another writer took the lock over"
                    return
                continue  # transient: the next beat retries; `valid_until` bounds the wait
            if self.lost:
                return
            self.valid_until = self._safe_until(started)

    @property
    def valid(self) -> bool:
        """Whether the writer may still write. Once lapsed, never valid again: a renewal that
        succeeds late must not let a writer go on after it skipped work."""
        if not self.lost and time.monotonic() >= self.valid_until:
            self.lost = "the writer lock could not be renewed in time"
        return not self.lost

    def check(self) -> None:
        """Raise if the lease was lost or could not be renewed in time."""
        if not self.valid:
            raise MosaicWriteError(f"write of {self.backend.input} stopped: {self.lost}")

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
            # The operation itself is done; the lease simply expires soon.
            logger.warning("could not release the writer lock of %s: %s", self.backend.input, err)


@attr.s
class DynamoDBBackend(MosaicJSONBackend):
    """Mosaics in a DynamoDB table, one item per quadkey plus a metadata item."""

    region: str = attr.ib(init=False)
    table_name: str = attr.ib(init=False)
    mosaic_name: str = attr.ib(init=False)
    # Zooms whose overview items match the metadata read or written (empty: use the Query).
    overview_zooms: frozenset[int] = attr.ib(init=False, factory=frozenset)
    # The committed generation the reads resolve items with (None: written by another tool).
    generation: str | None = attr.ib(init=False, default=None)
    # Whether the last write committed but could not finish promoting (the next write does).
    pending: bool = attr.ib(init=False, default=False)
    _lease: _Lease | None = attr.ib(init=False, default=None)
    _check_stale: bool = attr.ib(init=False, default=True)

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
            return _TableMissingError(
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
        return _key_of(mosaic or self.mosaic_name, quadkey)

    @property
    def _consistent(self) -> bool:
        # Writers always read consistently: what they compare must be current.
        return self._lease is not None or aws_settings().consistent_reads

    @property
    def _checking(self) -> bool:
        # Writers resolve with the generation they just read: nothing newer can exist.
        return self._check_stale and self._lease is None

    # ------------------------------------------------------------------ metadata
    @property
    def overview_partition(self) -> str:
        """The partition key of this mosaic's overview items."""
        return self.mosaic_name + OVERVIEW_SUFFIX

    def _cached_read(self) -> MosaicJSON:
        # The overview zooms and generation are cached with the metadata they belong to.
        document, self.overview_zooms, self.generation, self.pending = self._cache_get(
            "state", self._read_state, cache.metadata_cache
        )
        return document

    def _read(self) -> MosaicJSON:
        document, self.overview_zooms, self.generation, self.pending = self._read_state()
        return document

    def _read_for_write(self) -> tuple[MosaicJSON, Any]:
        document = self._read()
        return document, self.generation

    def _metadata_item(self, consistent: bool = True) -> dict[str, Any] | None:
        return self._call(
            "get_item", Key=self._key(METADATA_QUADKEY), ConsistentRead=consistent
        ).get("Item")

    def _read_state(self) -> tuple[MosaicJSON, frozenset[int], str | None, bool]:
        """The metadata, the zooms whose overviews match it, its generation and whether its
        promotion is unfinished: one GetItem."""
        with self._errors("reading"):
            item = self._metadata_item()
        if not item:
            raise MosaicNotFoundError(
                f"mosaic {self.mosaic_name!r} not found in DynamoDB table {self.table_name!r}"
            )
        document = _document_of(item, self.input)
        return (
            document,
            _trusted_zooms(item, document.index_zoom),
            item.get(GENERATION_ATTR, {}).get("S"),
            bool(item.get(PENDING_ATTR, {}).get("BOOL")),
        )

    def _metadata_exists(self) -> bool:
        item = self._call(
            "get_item",
            Key=self._key(METADATA_QUADKEY),
            ConsistentRead=True,
            ProjectionExpression="#q",
            ExpressionAttributeNames={"#q": "quadkey"},
        ).get("Item")
        return bool(item)

    # ------------------------------------------------------------------ consistent reads
    def _cache_get(self, key: Any, compute: Callable[[], Any], store: cache.MosaicCache) -> Any:
        # Cached lookups belong to one generation: a rewrite may keep the document version.
        if isinstance(key, tuple) and key[:1] == ("tile",):
            key = (*key, self.generation)
        return super()._cache_get(key, compute, store)

    def _fresh(self, read: Callable[[], T]) -> T:
        """Run a read; if it met an item of a newer generation than the metadata it used (a
        cached or outdated metadata item), re-read the metadata and run it again."""
        for _ in range(STALE_RETRIES):
            try:
                return read()
            except _StaleGenerationError:
                before = self.generation
                self._invalidate()
                self.mosaic_def = self._cached_read()
                self.bounds = tuple(self.mosaic_def.bounds)
                if self.generation == before:
                    # Still newer after a fresh read: items left by another tool or writer
                    # outside this protocol; their base slots are what that writer meant.
                    self._check_stale = False
        raise MosaicError(f"reading {self.input}: the mosaic kept changing during the read")

    def get_assets(self, x: int, y: int, z: int, reverse: bool = False) -> list[str]:
        """Assets of tile (x, y, z), all of one committed version (see the module docs)."""
        parent = super()
        return self._fresh(lambda: parent.get_assets(x, y, z, reverse=reverse))

    def assets_for_bbox(self, *args: Any, **kwargs: Any) -> list[str]:
        """Assets of every quadkey a bbox touches, all of one committed version."""
        parent = super()
        return self._fresh(lambda: parent.assets_for_bbox(*args, **kwargs))

    def to_document(self) -> MosaicJSON:
        """The whole document of one committed version (every tile item read)."""
        parent = super()
        return self._fresh(parent.to_document)

    def info(self, quadkeys: bool = False) -> Any:
        """Mosaic info (quadkeys listed on request: it reads the whole index)."""
        parent = super()
        return self._fresh(lambda: parent.info(quadkeys=quadkeys))

    # ------------------------------------------------------------------ item reads
    def _query(
        self,
        condition: str,
        values: dict[str, Any],
        projection: str | None,
        partition: str | None = None,
        consistent: bool = False,
    ) -> Iterator[dict]:
        """Items of a partition (this mosaic's by default) matching a key condition, every
        page (LastEvaluatedKey)."""
        params: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": _names(condition, projection),
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

    def _raw_tiles(self, prefix: str, consistent: bool = False) -> dict[str, dict[str, Any]]:
        """Raw tile items whose quadkey starts with `prefix` ('' = all), in quadkey order."""
        if prefix:
            condition = "#m = :m AND begins_with(#q, :p)"
            values = {":p": {"S": prefix}}
        else:
            # Every quadkey is made of the digits 0-3; the metadata item "-1" sorts before "0".
            condition = "#m = :m AND #q BETWEEN :lo AND :hi"
            values = {":lo": {"S": "0"}, ":hi": {"S": "4"}}
        found: dict[str, dict[str, Any]] = {}
        items = self._query(condition, values, ITEM_PROJECTION, consistent=consistent)
        for item in items:
            quadkey = item["quadkey"]["S"]
            if quadkey[:1] in ("0", "1", "2", "3"):  # never the metadata item
                found[quadkey] = item
        return found

    def _raw_partition(self, partition: str) -> dict[str, dict[str, Any]]:
        """Every item of a partition by sort key (consistent)."""
        items = self._query("#m = :m", {}, None, partition, consistent=True)
        return {item["quadkey"]["S"]: item for item in items}

    def _resolved(self, items: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
        """The assets of raw tile items in this reader's generation (absent ones left out)."""
        found = {}
        for quadkey, item in items.items():
            value, _ = resolve(item, self.generation, self._checking)
            if isinstance(value, list):
                found[quadkey] = value
        return found

    def _query_tiles(
        self, prefix: str, with_assets: bool = True, consistent: bool = False
    ) -> dict[str, list[str]]:
        """Tile assets of the quadkeys starting with `prefix` ('' = all), in quadkey order."""
        return self._resolved(self._raw_tiles(prefix, consistent or self._consistent))

    def _fetch_prefix(self, prefix: str) -> dict[str, list[str]]:
        return self._query_tiles(prefix)

    def _list_quadkeys(self) -> list[str]:
        return list(self._query_tiles(""))

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
        the prefix, or an item deleted) the Query answers; for a marker (assets over the slot
        limit) the four children's overviews do, when the zoom below has overviews."""
        with self._errors("reading"):
            item = self._call(
                "get_item",
                Key=self._key(overview_key(prefix), self.overview_partition),
                ConsistentRead=self._consistent,
            ).get("Item")
        return self._from_overview(prefix, item)

    def _from_overview(self, prefix: str, item: dict[str, Any] | None) -> list[str]:
        value = resolve(item, self.generation, self._checking)[0] if item else None
        if isinstance(value, list):
            return value
        if value is OVERSIZE and len(prefix) + 1 in self.overview_zooms:
            children = [prefix + digit for digit in "0123"]
            keys = [self._key(overview_key(c), self.overview_partition) for c in children]
            found = self._batch_get_items(keys, consistent=self._consistent)
            return _union(
                self._from_overview(child, found.get(_key_id(key)))
                for child, key in zip(children, keys, strict=True)
            )
        return self._flatten(self._query_tiles(prefix))

    def _fetch_quadkeys(
        self, keys: Sequence[str], consistent: bool = False
    ) -> dict[str, list[str]]:
        return self._resolved(self._fetch_raw(keys, consistent or self._consistent))

    def _fetch_raw(self, keys: Sequence[str], consistent: bool) -> dict[str, dict[str, Any]]:
        """Raw tile items of named quadkeys (missing ones left out), in the order asked."""
        keys = [k for k in dict.fromkeys(keys) if k and k != METADATA_QUADKEY]
        if not keys:
            return {}
        if len(keys) == 1:
            with self._errors("reading"):
                item = self._call(
                    "get_item",
                    Key=self._key(keys[0]),
                    ProjectionExpression=ITEM_PROJECTION,
                    ExpressionAttributeNames=_names(ITEM_PROJECTION),
                    ConsistentRead=consistent,
                ).get("Item")
            return {keys[0]: item} if item else {}
        chunks = [keys[i : i + BATCH_GET_SIZE] for i in range(0, len(keys), BATCH_GET_SIZE)]
        found: dict[str, dict[str, Any]] = {}

        def get(chunk: Sequence[str]) -> dict[tuple[str, str], dict[str, Any]]:
            return self._batch_get_items(
                [self._key(k) for k in chunk], consistent=consistent, projection=ITEM_PROJECTION
            )

        for part in self._parallel(get, chunks):
            found.update({key[1]: item for key, item in part.items()})
        # Callers flatten in their own key order; keep the request order for stable output.
        return {k: found[k] for k in keys if k in found}

    def _parallel(self, function: Callable[[Any], T], arguments: Sequence[Any]) -> list[T]:
        """`function` over `arguments` in up to `write_threads` threads (inline for one)."""
        if len(arguments) <= 1:
            return [function(argument) for argument in arguments]
        threads = min(len(arguments), aws_settings().write_threads)
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(function, arguments))

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
            request[self.table_name]["ExpressionAttributeNames"] = _names(projection)
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
        exponential backoff. The first failure stops every batch not yet sent and is raised;
        so does the lease becoming invalid (no batch is sent after that)."""
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
                    return  # another batch failed: that failure is raised
                if lease is not None:
                    lease.check()  # never skip a batch silently
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
                if lease is not None and not lease.valid:
                    stop.set()
                    lease.check()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        if lease is not None:
            lease.check()  # a batch skipped because the lease ended is a failed write

    def _delete_requests(self, quadkeys: Sequence[str]) -> list[dict[str, Any]]:
        return [{"DeleteRequest": {"Key": self._key(q)}} for q in quadkeys]

    # ------------------------------------------------------------------ writes: common
    @contextmanager
    def _locked(self, operation: str, exists_error: bool = False) -> Iterator[_Lease]:
        """Hold the writer lease around a write (re-entrant: a write inside a guarded
        read-modify-write of the base class uses the lease already held)."""
        if self._lease is not None:
            yield self._lease
            return
        with self._errors("locking", MosaicWriteError):
            lease = _Lease(self, operation)
            lease.acquire(exists_error)
        self._lease = lease
        try:
            yield lease
        finally:
            self._lease = None
            lease.release()
            self._invalidate()

    @contextmanager
    def _write_guard(self) -> Iterator[None]:
        """The base class's read-modify-write guard: the writer lease."""
        with self._locked("update"):
            yield

    def _new_metadata_item(
        self, document: MosaicJSON, builder: OverviewBuilder, generation: str, pending: bool
    ) -> dict[str, Any]:
        """The metadata item of `document` in `generation` (with its overview description)."""
        # DynamoDB numbers must be Decimal (floats are refused): round-trip through JSON text.
        text = json.dumps({k: v for k, v in document.metadata().items() if k not in PRIVATE_ATTRS})
        meta = json.loads(text, parse_float=Decimal)
        item = {"mosaicId": self.mosaic_name, "quadkey": METADATA_QUADKEY, **meta}
        serialized = {k: _serializer.serialize(v) for k, v in item.items()}
        size = len(text.encode()) + 256
        if size > MAX_ITEM_BYTES:
            raise InvalidMosaicError(
                f"the metadata of mosaic {self.mosaic_name!r} is about {size} bytes, over "
                f"DynamoDB's {MAX_ITEM_BYTES}-byte item limit"
            )
        if builder.zooms:
            serialized[OVERVIEWS_ATTR] = builder.description(metadata_fingerprint(serialized))
        serialized[GENERATION_ATTR] = {"S": generation}
        if pending:
            serialized[PENDING_ATTR] = {"BOOL": True}
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
            if size > SLOT_LIMIT:
                raise InvalidMosaicError(
                    f"quadkey {quadkey!r} lists {len(assets)} assets ({size} bytes), over the "
                    f"{SLOT_LIMIT}-byte limit of one version of a DynamoDB item (half the "
                    "400 KB item limit: an item holds two versions while a write is staged): "
                    f"use a larger quadkey_zoom (now {len(quadkey)}) so each quadkey holds "
                    "fewer assets"
                )

    def _exists(self) -> MosaicExistsError:
        return MosaicExistsError(
            f"mosaic {self.mosaic_name!r} already exists in DynamoDB table {self.table_name!r} "
            "(use overwrite=True)"
        )

    def _not_found(self) -> MosaicNotFoundError:
        return MosaicNotFoundError(
            f"mosaic {self.mosaic_name!r} not found in DynamoDB table {self.table_name!r}"
        )

    def _committed(self, metadata: dict[str, Any], document: MosaicJSON, zooms: Any) -> None:
        """Adopt what a write committed as this backend's state."""
        generation = metadata[GENERATION_ATTR]["S"]
        self.mosaic_def = document.model_copy(update={"tiles": {}})
        _set_revision(self.mosaic_def, generation)
        self.bounds = tuple(document.bounds)
        self.generation = generation
        self.overview_zooms = frozenset(zooms)

    def _flip(self, metadata: dict[str, Any], committed: str | None, create: bool) -> None:
        """Commit: one conditional PutItem of the metadata item (condition: absent for a
        create, else still at generation `committed`). A lost answer is resolved by reading the
        item back; if that fails too, _FlipUnknownError (either version is served, whole)."""
        generation = metadata[GENERATION_ATTR]["S"]
        if create:
            condition = "attribute_not_exists(#m)"
            values: dict[str, Any] = {}
        elif committed is None:
            condition = "attribute_exists(#m) AND attribute_not_exists(#gen)"
            values = {}
        else:
            condition = "#gen = :c"
            values = {":c": {"S": committed}}
        params: dict[str, Any] = {
            "Item": metadata,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": _names(condition),
        }
        if values:
            params["ExpressionAttributeValues"] = values
        try:
            self._call("put_item", **params)
            return
        except ClientError as err:
            if aws.error_code(err) == "ConditionalCheckFailedException":
                if create:
                    raise self._exists() from err
                if not self._metadata_exists():
                    raise self._not_found() from err
                raise MosaicConflictError(
                    f"{self.input} was changed by another writer during this write (its "
                    "generation moved on): nothing of this write was committed, retry"
                ) from err
            failure: Exception = err
        except BotoCoreError as err:
            failure = err
        try:  # the answer was lost: did the put happen?
            stored = self._metadata_item()
        except (ClientError, BotoCoreError) as err:
            raise _FlipUnknownError(
                f"writing {self.input}: the commit's answer was lost ({failure}) and it could not "
                f"be read back ({err}): readers see either the previous or the new version, "
                "each whole; the next write completes or replaces it"
            ) from failure
        if stored is not None and stored.get(GENERATION_ATTR, {}).get("S") == generation:
            return
        raise self._error(failure, "committing", MosaicWriteError) from failure

    def _commit(
        self,
        entries: list[_Entry],
        metadata: dict[str, Any],
        committed: str | None,
        lease: _Lease,
        doing: str,
    ) -> None:
        """Stage the entries, flip the metadata, promote (see the module docstring)."""
        generation = metadata[GENERATION_ATTR]["S"]
        staged = [entry for entry in entries if entry.stage]
        try:
            with self._errors(doing, MosaicWriteError):
                requests = [{"PutRequest": {"Item": e.staged_item(generation)}} for e in staged]
                self._batch_write(requests, lease)
                lease.check()
                self._flip(metadata, committed, create=False)
        except _FlipUnknownError:
            raise  # never clean up: the new generation may be the committed one
        except BaseException as err:
            self._clean_up([e.undo_request() for e in staged], lease, err)
            raise
        self._promote(entries, generation, lease, strict=False)

    def _clean_up(
        self, requests: list[dict[str, Any]], lease: _Lease, cause: BaseException
    ) -> None:
        """After a failure before the commit, put the staged items back as they were (best
        effort: staged slots of an uncommitted generation are invisible to readers anyway)."""
        if not requests:
            cause.add_note("nothing was written: the previous version is intact")
            return
        try:
            with self._errors("cleaning up", MosaicWriteError):
                self._batch_write(requests, lease)
        except Exception as err:
            cause.add_note(
                f"nothing was committed: readers see the previous version, whole; cleaning up "
                f"the staged items failed ({err}): no reader uses them, the next write of the "
                "mosaic replaces them"
            )
        else:
            cause.add_note("rolled back: the previous version is intact")

    def _promote(self, entries: list[_Entry], generation: str, lease: _Lease, strict: bool) -> None:
        """After the flip: new values into the base slots, tombstones, removals, then clear
        `_pending`. A failure leaves `_pending` set for the next writer; it is raised only when
        `strict` (the write itself is committed and served whole either way)."""
        requests = [entry.promote_request(generation) for entry in entries]
        try:
            with self._errors("completing", MosaicWriteError):
                self._batch_write(requests, lease)
                lease.check()
                self._call(
                    "update_item",
                    Key=self._key(METADATA_QUADKEY),
                    UpdateExpression="REMOVE #p",
                    ConditionExpression="#gen = :g",
                    ExpressionAttributeNames=_names("#p #gen"),
                    ExpressionAttributeValues={":g": {"S": generation}},
                )
            self.pending = False
        except Exception as err:
            self.pending = True
            if strict:
                raise
            logger.warning(
                "%s is committed (generation %s) but not all items were promoted (%s): readers "
                "of this package see it whole; cogeo-mosaic sees it once the next write of the "
                "mosaic completes the promotion",
                self.input,
                generation,
                err,
            )

    def _complete_pending(self, committed: str, lease: _Lease) -> None:
        """Finish the promotion of generation `committed` left by a writer that died or lost
        its connection after its commit (the metadata item says `_pending`)."""
        entries = []
        for partition, tombstones in ((self.mosaic_name, True), (self.overview_partition, False)):
            for key, item in self._raw_partition(partition).items():
                if key == METADATA_QUADKEY:
                    continue
                if item.get("next_gen", {}).get("S") == committed:
                    value = _decode(item, "next_")
                    entries.append(_Entry(partition, key, None, None, value, True, tombstones))
        logger.warning(
            "completing the unfinished promotion of %s (generation %s, %d items)",
            self.input,
            committed,
            len(entries),
        )
        self._promote(entries, committed, lease, strict=True)

    # ------------------------------------------------------------------ write / overwrite
    def write(self, overwrite: bool = False) -> None:
        """Store `mosaic_def` as a new committed generation (see the module docstring).
        MosaicExistsError if it exists and overwrite is False, or if another writer is
        creating it at the same time; MosaicConflictError if another writer holds it.

        A missing table is created first (on-demand, see `create_table`), as cogeo-mosaic's
        write does. Only a write that met ResourceNotFoundException tries it: nothing was
        written then, and the deployed functions (no DescribeTable/CreateTable grant) never
        pay a table check."""
        try:
            self._write(overwrite)
        except _TableMissingError:
            if self._lease is not None:
                raise  # the table vanished in the middle of a guarded read-modify-write
            self.create_table(self.table_name, self.region)
            self._write(overwrite)

    def _write(self, overwrite: bool) -> None:
        document = self.mosaic_def
        tiles = document.tiles
        self._check_tiles(tiles)
        builder = OverviewBuilder(self.mosaic_name, document)
        with self._errors("writing", MosaicWriteError):
            if not overwrite and self._lease is None and self._metadata_exists():
                raise self._exists()
        operation = "overwrite" if overwrite else "create"
        with self._locked(operation, exists_error=not overwrite) as lease:
            with self._errors("writing", MosaicWriteError):
                stored = self._metadata_item()
                if stored is not None and not overwrite:
                    raise self._exists()
                tile_items = self._raw_tiles("", consistent=True)
                overview_items = self._raw_partition(self.overview_partition)
            floor = _newest_generation(
                itertools.chain(tile_items.values(), overview_items.values())
            )
            overviews = {overview_key(p): v for p, v in builder.build(tiles).items()}
            if stored is None:
                metadata = self._create(
                    document, builder, tiles, overviews, tile_items, overview_items, floor, lease
                )
            else:
                committed = stored.get(GENERATION_ATTR, {}).get("S")
                metadata = self._new_metadata_item(
                    document, builder, new_generation(committed, floor), pending=True
                )
                entries = plan_changes(
                    self.mosaic_name, tile_items, dict(tiles), committed, True, True
                ) + plan_changes(
                    self.overview_partition, overview_items, overviews, committed, True, False
                )
                self._commit(entries, metadata, committed, lease, "writing")
        self._committed(metadata, document, builder.zooms)

    def _create(
        self,
        document: MosaicJSON,
        builder: OverviewBuilder,
        tiles: dict[str, list[str]],
        overviews: dict[str, Overview],
        tile_items: dict[str, dict[str, Any]],
        overview_items: dict[str, dict[str, Any]],
        floor: int,
        lease: _Lease,
    ) -> dict[str, Any]:
        """A new mosaic: items written base-only (orphans of a failed create removed), then
        the metadata item with a conditional put that makes it visible at once."""
        generation = new_generation(None, floor)
        metadata = self._new_metadata_item(document, builder, generation, pending=False)
        generation_attr = {"gen": {"S": generation}}
        puts = [
            {"PutRequest": {"Item": {**self._key(q), **_encode(a), **generation_attr}}}
            for q, a in tiles.items()
        ] + [
            {
                "PutRequest": {
                    "Item": {
                        **self._key(k, self.overview_partition),
                        **_encode(v),
                        **generation_attr,
                    }
                }
            }
            for k, v in overviews.items()
        ]
        orphans = [
            {"DeleteRequest": {"Key": self._key(q)}} for q in tile_items if q not in tiles
        ] + [
            {"DeleteRequest": {"Key": self._key(k, self.overview_partition)}}
            for k in overview_items
            if k not in overviews
        ]
        try:
            with self._errors("writing", MosaicWriteError):
                self._batch_write(orphans + puts, lease)
                lease.check()
                self._flip(metadata, None, create=True)
        except (_FlipUnknownError, MosaicExistsError):
            raise  # never remove items another writer's committed create may own
        except BaseException as err:
            removals = [
                {"DeleteRequest": {"Key": _key_id_key(r["PutRequest"]["Item"])}} for r in puts
            ]
            self._clean_up(removals, lease, err)
            raise
        return metadata

    # ------------------------------------------------------------------ update
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add footprints (see the base class); the document kept afterwards is the one the
        update committed (stored version and bounds, not this backend's earlier copy)."""
        super().update(*args, **kwargs)
        if self._updated is not None:
            self.mosaic_def, self._updated = self._updated, None
            self.bounds = tuple(self.mosaic_def.bounds)

    _updated: MosaicJSON | None = None

    def _persist_update(self, document: MosaicJSON, changed: dict[str, list[str]]) -> None:
        """Commit the merged quadkeys and the overviews above them as a new generation.
        Under the lease the stored assets are read again and kept, so a concurrent change is
        never dropped; re-running an update gives the same assets (merging never duplicates).
        Overviews are recomputed from the stored children of each changed prefix, or rebuilt
        from the whole mosaic when the stored ones cannot be trusted."""
        self._check_tiles(changed)
        with self._locked("update") as lease:
            with self._errors("updating", MosaicWriteError):
                stored = self._metadata_item()
                if not stored:
                    raise self._not_found()
                committed = stored.get(GENERATION_ATTR, {}).get("S")
                if stored.get(PENDING_ATTR, {}).get("BOOL") and committed:
                    self._complete_pending(committed, lease)
                document = self._rebased(document, stored)
                builder = OverviewBuilder(self.mosaic_name, document)
                self.generation = committed
                trusted = _trusted_zooms(stored, document.index_zoom)
                overview_items: dict[str, dict[str, Any]]
                if not builder.zooms:
                    tile_items = self._fetch_raw(list(changed), consistent=True)
                    merged = _merge(changed, self._resolved(tile_items))
                    overviews: dict[str, Value] = {}
                    overview_items = self._raw_partition(self.overview_partition)
                    full_overviews = True
                elif trusted == builder.zooms:
                    merged, tile_items, new_overviews, overview_items = self._updated_overviews(
                        builder, changed
                    )
                    overviews = {overview_key(p): v for p, v in new_overviews.items()}
                    full_overviews = False
                else:
                    tile_items = self._raw_tiles("", consistent=True)
                    everything = self._resolved(tile_items)
                    merged = _merge(changed, everything)
                    built = builder.build({**everything, **merged})
                    overviews = {overview_key(p): v for p, v in built.items()}
                    overview_items = self._raw_partition(self.overview_partition)
                    full_overviews = True
                metadata = self._new_metadata_item(
                    document, builder, new_generation(committed), pending=True
                )
                entries = plan_changes(
                    self.mosaic_name, tile_items, dict(merged), committed, False, True
                ) + plan_changes(
                    self.overview_partition,
                    overview_items,
                    overviews,
                    committed,
                    full_overviews,
                    False,
                )
            self._commit(entries, metadata, committed, lease, "updating")
        self._committed(metadata, document, builder.zooms)
        self._updated = self.mosaic_def

    def _rebased(self, document: MosaicJSON, stored: dict[str, Any]) -> MosaicJSON:
        """`document` (this backend's copy plus the update) applied to the stored metadata
        when another writer committed since that copy was read: the stored version bumped,
        the bounds of both."""
        if stored.get(GENERATION_ATTR, {}).get("S") == self.generation:
            return document
        current = _document_of(stored, self.input)
        bounds = bbox_union(current.bounds, document.bounds)
        rebased = document.model_copy(
            update={
                "version": current.version,
                "bounds": bounds,
                "center": (
                    (bounds[0] + bounds[2]) / 2,
                    (bounds[1] + bounds[3]) / 2,
                    document.minzoom,
                ),
            }
        )
        rebased.bump_version()
        return rebased

    def _updated_overviews(
        self, builder: OverviewBuilder, changed: dict[str, list[str]]
    ) -> tuple[
        dict[str, list[str]],
        dict[str, dict[str, Any]],
        dict[str, Overview],
        dict[str, dict[str, Any]],
    ]:
        """The merged assets of the changed quadkeys, their raw items, the new overviews of
        their prefixes and the raw stored items of those overviews: one Query per changed
        bottom-zoom prefix (its children), the stored overviews of the changed prefixes and of
        their unchanged siblings (one BatchGetItem per 100)."""
        prefixes = sorted({quadkey[: builder.bottom] for quadkey in changed})
        children: dict[str, dict[str, Any]] = {}
        for part in self._parallel(lambda p: self._raw_tiles(p, consistent=True), prefixes):
            children.update(part)
        resolved = self._resolved(children)
        merged = _merge(changed, resolved)
        level = builder.bottom_level({**resolved, **merged})
        wanted: set[str] = set(level)
        for zoom in range(builder.top, builder.bottom):
            for parent in {prefix[:zoom] for prefix in level}:
                wanted.update(parent + d for d in "0123")
                wanted.add(parent)
        keys = [self._key(overview_key(p), self.overview_partition) for p in sorted(wanted)]
        chunks = [keys[i : i + BATCH_GET_SIZE] for i in range(0, len(keys), BATCH_GET_SIZE)]
        raw: dict[str, dict[str, Any]] = {}
        for part in self._parallel(lambda c: self._batch_get_items(c, consistent=True), chunks):
            raw.update({key: item for (_, key), item in part.items()})
        known: dict[str, Overview] = {}
        for key, item in raw.items():
            value = resolve(item, self.generation, check=False)[0]
            if value is not None:
                known[key.partition(":")[2]] = value
        overviews = builder.upward(level, known)
        tile_items = {q: children[q] for q in merged if q in children}
        return merged, tile_items, overviews, raw

    # ------------------------------------------------------------------ delete
    def delete(self) -> None:
        """Remove every item of the mosaic: the metadata first (the mosaic disappears at once),
        then the tile items, page by page, and the overview partition. Orphans of a failed
        create or delete are removed too (MosaicNotFoundError only when nothing is left)."""
        with self._locked("delete") as lease, self._errors("deleting", MosaicWriteError):
            existed = self._metadata_exists()
            quadkeys = list(self._raw_tiles("", consistent=True))
            overview_keys = list(self._raw_partition(self.overview_partition))
            if not existed and not quadkeys and not overview_keys:
                raise self._not_found()
            self._call("delete_item", Key=self._key(METADATA_QUADKEY))
            overviews = [
                {"DeleteRequest": {"Key": self._key(key, self.overview_partition)}}
                for key in overview_keys
            ]
            self._batch_write(self._delete_requests(quadkeys) + overviews, lease)

    # ------------------------------------------------------------------ table helpers
    @staticmethod
    def _table_of(table: str, region: str | None) -> tuple[str, str]:
        """(table, region) of `dynamodb://{region}/{table}` or a bare table name."""
        if table.startswith("dynamodb://"):
            region_part, _, table = table[len("dynamodb://") :].partition("/")
            region = region or region_part or None
            table = table.rstrip(":")
        return table, region or aws.default_region()

    @classmethod
    def list_mosaics(cls, table: str, region: str | None = None) -> list[str]:
        """Names of every mosaic of a table (`dynamodb://{region}/{table}` or a table name):
        a Scan of the whole table (the CLI); the HTTP API pages with `list_page`."""
        names: list[str] = []
        token = None
        while True:
            page, token = cls.list_page(table, region, limit=1000, token=token)
            names.extend(page)
            if token is None:
                return sorted(names)

    @classmethod
    def list_page(
        cls,
        table: str,
        region: str | None = None,
        limit: int = 100,
        token: str | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of mosaic names and the token of the next page (None at the end).

        Scan for metadata items, resuming after the mosaic a token names: at most
        `LIST_SCAN_CALLS` requests of `LIST_SCAN_ITEMS` evaluated items each, so a page costs
        the same on any table; a page may hold fewer than `limit` names (even none) with a
        token to continue. Names come in the table's scan order, not sorted."""
        table, region = cls._table_of(table, region)
        client = _dynamodb_client(region)
        params: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "#q = :meta",
            "ProjectionExpression": "#m",
            "ExpressionAttributeNames": {"#q": "quadkey", "#m": "mosaicId"},
            "ExpressionAttributeValues": {":meta": {"S": METADATA_QUADKEY}},
            "Limit": max(LIST_SCAN_ITEMS, limit),
        }
        if token:
            params["ExclusiveStartKey"] = decode_page_token(token)
        names: list[str] = []
        try:
            for _ in range(LIST_SCAN_CALLS):
                page = client.scan(**params)
                for item in page.get("Items", ()):
                    names.append(item["mosaicId"]["S"])
                    if len(names) == limit:
                        more = item is not page["Items"][-1] or page.get("LastEvaluatedKey")
                        key = _key_of(names[-1], METADATA_QUADKEY)
                        return names, encode_page_token(key) if more else None
                last = page.get("LastEvaluatedKey")
                if not last:
                    return names, None
                params["ExclusiveStartKey"] = last
        except ClientError as err:
            if aws.error_code(err) == "ResourceNotFoundException":
                raise MosaicNotFoundError(f"DynamoDB table {table!r} not found") from err
            if aws.error_code(err) == "ValidationException" and token:
                raise InvalidMosaicError(f"invalid page token {token!r}") from err
            raise aws.map_error(err, f"listing DynamoDB table {table!r}") from err
        # Budget spent: continue after the last item evaluated (a metadata item or not).
        return names, encode_page_token(params["ExclusiveStartKey"])

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


def _key_id_key(item: dict[str, Any]) -> dict[str, Any]:
    return {"mosaicId": item["mosaicId"], "quadkey": item["quadkey"]}


def _dynamodb_client(region: str) -> Any:
    # Enough pooled connections for the parallel batch writers and the lease renewer.
    return aws.client("dynamodb", region, pool_size=aws_settings().write_threads + 4)
