"""Generations: every committed version of a mosaic, and the write plan that stages the next.

Every committed version of a mosaic has a generation token `{number:012d}-{random}` stored in
the metadata item (`_generation`). A tile item has two slots:
- the base slot `assets` (+ `gen`, the generation it belongs to): what cogeo-mosaic reads;
- the staged slot `next_assets` + `next_gen`: the value of that quadkey in generation
  `next_gen` (an empty list: the quadkey does not exist in it).
A reader with committed generation C takes the staged slot when `next_gen == C`, else the base
slot (`resolve`). A writer's plan (`plan_changes`) lists, per changed item, the value readers of
C see (the undo record: put back if the write fails before its commit) and the new value.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lambda_handler.backends.dynamodb.records import (
    METADATA_QUADKEY,
    Value,
    decode_slot,
    encode_slot,
    key_of,
)


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


def newest_generation(items: Iterable[dict[str, Any]]) -> int:
    """The highest generation counter any item names (base or staged slot)."""
    newest = 0
    for item in items:
        for name in ("gen", "next_gen"):
            newest = max(newest, generation_number(item.get(name, {}).get("S")))
    return newest


def staged_generation(item: dict[str, Any]) -> str | None:
    """The generation of an item's staged slot (None: nothing staged)."""
    return item.get("next_gen", {}).get("S")


class StaleGenerationError(Exception):
    """An item belongs to a generation newer than the metadata the reader resolved it with."""


def resolve(
    item: dict[str, Any], committed: str | None, check: bool = True
) -> tuple[Value, str | None]:
    """(value, its generation) of an item for readers of generation `committed`: the staged
    slot if it belongs to that generation, else the base slot. With `check`, a base slot newer
    than `committed` raises StaleGenerationError (the reader's metadata is out of date)."""
    if committed is not None and staged_generation(item) == committed:
        return decode_slot(item, "next_"), committed
    generation = item.get("gen", {}).get("S")
    if check and generation_number(generation) > generation_number(committed):
        raise StaleGenerationError(generation)
    return decode_slot(item), generation


@dataclass
class Entry:
    """One item a write changes: its value for readers of the committed generation (`old`)
    and in the new one (`new`)."""

    partition: str
    key: str
    old: Value
    old_generation: str | None
    new: Value
    stage: bool  # False: nothing to stage, the item is only removed after the flip
    tombstone: bool  # a removed tile quadkey leaves an empty item of the new generation

    def _base_item(self, value: Value, generation: str | None) -> dict[str, Any]:
        item = {**key_of(self.partition, self.key), **encode_slot(value)}
        if generation:
            item["gen"] = {"S": generation}
        return item

    def _delete_request(self) -> dict[str, Any]:
        return {"DeleteRequest": {"Key": key_of(self.partition, self.key)}}

    def staged_item(self, generation: str) -> dict[str, Any]:
        """The item of the staging phase: the committed value in the base slot (readers of
        the committed generation see no change), the new one in the staged slot."""
        item = self._base_item(self.old, self.old_generation)
        item["next_gen"] = {"S": generation}
        item.update(encode_slot(self.new, "next_"))
        return item

    def promote_request(self, generation: str) -> dict[str, Any]:
        """The request making the new value the base slot (what other readers see)."""
        if self.new is None and not (self.stage and self.tombstone):
            return self._delete_request()
        return {"PutRequest": {"Item": self._base_item(self.new, generation)}}

    def undo_request(self) -> dict[str, Any]:
        """The request putting the item back as it was before staging (cleanup)."""
        if self.old is None and self.old_generation is None:
            return self._delete_request()
        return {"PutRequest": {"Item": self._base_item(self.old, self.old_generation)}}


@dataclass
class PartitionChange:
    """What a write changes in one partition: the stored `items` (sort key -> raw item) and
    the `values` of the new generation (`full`: the whole partition, stored keys it lacks are
    removed)."""

    items: dict[str, dict[str, Any]]
    values: dict[str, Value]
    full: bool


def plan_changes(
    partition: str, change: PartitionChange, committed: str | None, tombstones: bool
) -> list[Entry]:
    """The entries turning the stored items of a partition into the new values in a new
    generation. Unchanged items are left alone, except those whose staged slot holds the
    committed generation (a promotion that did not finish): they are rewritten too."""
    items, values = change.items, change.values
    keys = set(values) | (set(items) if change.full else set())
    entries = []
    for key in sorted(keys):
        item = items.get(key)
        old, old_generation = resolve(item, committed, check=False) if item else (None, None)
        new = values.get(key)
        unfinished = (
            item is not None and committed is not None and staged_generation(item) == committed
        )
        if old == new and not unfinished:
            if item is not None and old is None:  # a tombstone or an orphan: removed after
                entries.append(Entry(partition, key, None, None, None, False, False))
            continue
        entries.append(Entry(partition, key, old, old_generation, new, True, tombstones))
    return entries


def unfinished_entries(
    partition: str, items: dict[str, dict[str, Any]], committed: str, tombstones: bool
) -> list[Entry]:
    """The entries completing the promotion of generation `committed` in a partition: every
    item whose staged slot still holds that generation."""
    return [
        Entry(partition, key, None, None, decode_slot(item, "next_"), True, tombstones)
        for key, item in items.items()
        if key != METADATA_QUADKEY and staged_generation(item) == committed
    ]
