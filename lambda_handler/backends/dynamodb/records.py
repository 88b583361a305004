"""How a mosaic is laid out in DynamoDB items, and how values are encoded in them.

Layout (cogeo-mosaic's, so a table written by either tool reads in the other): partition key
`mosaicId` (S), sort key `quadkey` (S); the metadata item has `quadkey = "-1"` and every
top-level MosaicJSON field except `tiles` (numbers as DynamoDB numbers); each tile item is
`{mosaicId, quadkey, assets: [str, ...]}`. This backend adds attributes other readers ignore
(cogeo-mosaic reads `assets` with `.get("assets", [])` and builds its model from the metadata
item ignoring unknown fields): the generation slots (see `generations`) and, on the metadata
item, `_generation`, `_pending` and `_overviews`.
"""

import enum
import hashlib
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from lambda_handler.errors import InvalidMosaicError
from lambda_handler.mosaic.model import MosaicJSON

METADATA_QUADKEY = "-1"
LOCK_SUFFIX = "#lock"  # '#' is not allowed in mosaic names: the lock never collides with one
LOCK_QUADKEY = "writer"
OVERVIEW_SUFFIX = "#overview"  # the partition of a mosaic's overview items
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
# One item holds up to two versions of a quadkey while a write is staged.
SLOT_LIMIT = MAX_ITEM_BYTES // 2 - 1024
# Attributes of the metadata item that are not MosaicJSON fields.
GENERATION_ATTR = "_generation"
PENDING_ATTR = "_pending"
OVERVIEWS_ATTR = "_overviews"
PRIVATE_ATTRS = frozenset({GENERATION_ATTR, PENDING_ATTR, OVERVIEWS_ATTR})
KEY_ATTRS = frozenset({"mosaicId", "quadkey"})
# Placeholders of expression attribute names (DynamoDB refuses unused ones: see `expression_names`).
_ATTRIBUTE_NAMES = {
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


class SlotMarker(enum.Enum):
    """Values of a slot that are not an asset list."""

    # The assets do not fit in one item slot (overviews only: tile items are refused instead).
    OVERSIZE = "oversize"

    def __repr__(self) -> str:
        return self.name


OVERSIZE = SlotMarker.OVERSIZE
# A quadkey's or overview's value in one generation: assets, OVERSIZE, or None (absent).
Value = list[str] | Literal[SlotMarker.OVERSIZE] | None
Overview = list[str] | Literal[SlotMarker.OVERSIZE]


def expression_names(*expressions: str | None) -> dict[str, str]:
    """ExpressionAttributeNames for the placeholders used (DynamoDB refuses unused ones)."""
    used: set[str] = set()
    for expression in expressions:
        used.update(re.findall(r"#\w+", expression or ""))
    return {name: _ATTRIBUTE_NAMES[name] for name in sorted(used)}


def key_of(partition: str, key: str) -> dict[str, Any]:
    """The table key of an item."""
    return {"mosaicId": {"S": partition}, "quadkey": {"S": key}}


def key_id(item: dict[str, Any]) -> tuple[str, str]:
    """(mosaicId, quadkey) of an item or key."""
    return item["mosaicId"]["S"], item["quadkey"]["S"]


def item_key(item: dict[str, Any]) -> dict[str, Any]:
    """The table key of a whole item."""
    return {"mosaicId": item["mosaicId"], "quadkey": item["quadkey"]}


# ---------------------------------------------------------------------- slots
def decode_slot(item: dict[str, Any], prefix: str = "") -> Value:
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


def encode_slot(value: Value, prefix: str = "") -> dict[str, Any]:
    """Attributes of one slot (an absent value is an empty list: readers that only know
    `assets` read no assets)."""
    if value is OVERSIZE:
        return {prefix + "oversize": {"BOOL": True}}
    return {prefix + "assets": {"L": [{"S": a} for a in (value or [])]}}


def base_assets(item: dict[str, Any]) -> list[str]:
    """Assets of the base slot of a raw item ([] when absent or oversize)."""
    value = decode_slot(item)
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------------- sizes
def tile_item_size(mosaic_name: str, quadkey: str, assets: Sequence[str]) -> int:
    """Size DynamoDB counts for a tile item (attribute names + values; a list costs 3 bytes
    plus 1 byte per element). Slightly generous, so an accepted item is never refused."""
    size = len("mosaicId") + len(mosaic_name.encode()) + len("quadkey") + len(quadkey)
    return size + len("assets") + 3 + sum(len(a.encode()) + 1 for a in assets)


def check_tile_sizes(mosaic_name: str, tiles: dict[str, list[str]]) -> None:
    """Refuse, before anything is written, what DynamoDB would refuse halfway."""
    if "" in tiles:
        raise InvalidMosaicError(
            "DynamoDB cannot store a quadkey index at zoom 0 (empty quadkey): "
            "use a quadkey_zoom of 1 or more"
        )
    for quadkey, assets in tiles.items():
        size = tile_item_size(mosaic_name, quadkey, assets)
        if size > SLOT_LIMIT:
            raise InvalidMosaicError(
                f"quadkey {quadkey!r} lists {len(assets)} assets ({size} bytes), over the "
                f"{SLOT_LIMIT}-byte limit of one version of a DynamoDB item (half the "
                "400 KB item limit: an item holds two versions while a write is staged): "
                f"use a larger quadkey_zoom (now {len(quadkey)}) so each quadkey holds "
                "fewer assets"
            )


# ---------------------------------------------------------------------- metadata item
def _plain(value: Any) -> Any:
    """DynamoDB values (Decimal, sets) as JSON-like Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


def _metadata_values(item: dict[str, Any]) -> dict[str, Any]:
    """The MosaicJSON fields of a stored metadata item as plain values (nulls left out)."""
    values = {
        k: _plain(_deserializer.deserialize(v))
        for k, v in item.items()
        if k not in KEY_ATTRS and k not in PRIVATE_ATTRS
    }
    return {k: v for k, v in values.items() if v is not None}


def metadata_fingerprint(item: dict[str, Any]) -> str:
    """A digest of a stored metadata item's MosaicJSON values (numbers compared as numbers,
    since servers may store 85.0 as 85): overviews are trusted only for the values they were
    built with."""
    text = json.dumps(_metadata_values(item), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def item_generation(item: dict[str, Any]) -> str | None:
    """The generation a metadata item commits (None: written by another tool)."""
    return item.get(GENERATION_ATTR, {}).get("S")


def item_pending(item: dict[str, Any]) -> bool:
    """Whether the promotion of a metadata item's generation is unfinished."""
    return bool(item.get(PENDING_ATTR, {}).get("BOOL"))


def set_revision(document: MosaicJSON, generation: str | None) -> None:
    """Record the generation as the store revision HTTP ETags are made from."""
    setter = getattr(document, "with_store_revision", None)
    if setter is not None:
        setter(generation)


def document_of(item: dict[str, Any], source: str) -> MosaicJSON:
    """The MosaicJSON document (without tiles) of a metadata item."""
    meta = _metadata_values(item)
    meta["tiles"] = {}
    document = MosaicJSON.parse(meta, source=source)
    set_revision(document, item_generation(item))
    return document


def metadata_item(mosaic_name: str, document: MosaicJSON) -> dict[str, Any]:
    """The metadata item of `document` (MosaicJSON fields only), refused if over the limit."""
    # DynamoDB numbers must be Decimal (floats are refused): round-trip through JSON text.
    text = json.dumps({k: v for k, v in document.metadata().items() if k not in PRIVATE_ATTRS})
    meta = json.loads(text, parse_float=Decimal)
    item = {"mosaicId": mosaic_name, "quadkey": METADATA_QUADKEY, **meta}
    serialized = {k: _serializer.serialize(v) for k, v in item.items()}
    size = len(text.encode()) + 256
    if size > MAX_ITEM_BYTES:
        raise InvalidMosaicError(
            f"the metadata of mosaic {mosaic_name!r} is about {size} bytes, over "
            f"DynamoDB's {MAX_ITEM_BYTES}-byte item limit"
        )
    return serialized
