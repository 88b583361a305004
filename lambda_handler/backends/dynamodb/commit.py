"""Committing a generation: stage, flip, promote (and undo when the flip never happened).

A writer (create aside) therefore:
1. stages: puts every changed item with base = the value committed readers see now and staged =
   the new value (BatchWriteItem; readers of C still see C everywhere);
2. flips: one conditional PutItem of the metadata item with the new generation G (condition:
   the generation is still C). From that instant readers see G everywhere;
3. promotes: puts base = new value, gen = G (so cogeo-mosaic catches up; it may lag while this
   runs, it never crashes), writes empty tombstones for removed quadkeys, deletes the
   tombstones of the previous write, and clears `_pending` on the metadata item.
A writer that dies before the flip leaves staged slots no reader trusts (they name a generation
that never commits; the next write overwrites them); one that dies after the flip leaves
`_pending` set: the next writer promotes generation C first. A new mosaic (create) is written
base-only with its generation and becomes visible with the conditional put of its metadata
item; orphans of a failed create (no metadata item) are invisible and removed by the next
create or delete of that name.
"""

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler.backends.dynamodb.batch_io import batch_write
from lambda_handler.backends.dynamodb.generations import Entry, unfinished_entries
from lambda_handler.backends.dynamodb.items import ConditionFailedError, MosaicTable
from lambda_handler.backends.dynamodb.lease import Lease
from lambda_handler.backends.dynamodb.overviews import OverviewBuilder
from lambda_handler.backends.dynamodb.records import (
    GENERATION_ATTR,
    METADATA_QUADKEY,
    OVERVIEWS_ATTR,
    PENDING_ATTR,
    expression_names,
    item_generation,
    metadata_fingerprint,
    metadata_item,
)
from lambda_handler.errors import MosaicConflictError, MosaicExistsError, MosaicWriteError
from lambda_handler.mosaic.model import MosaicJSON

logger = logging.getLogger(__name__)


class FlipUnknownError(MosaicWriteError):
    """The metadata put's answer was lost and the outcome could not be read back."""


def generation_metadata(
    mosaic_name: str, document: MosaicJSON, builder: OverviewBuilder, generation: str, pending: bool
) -> dict[str, Any]:
    """The metadata item of `document` in `generation` (with its overview description)."""
    item = metadata_item(mosaic_name, document)
    if builder.zooms:
        item[OVERVIEWS_ATTR] = builder.description(metadata_fingerprint(item))
    item[GENERATION_ATTR] = {"S": generation}
    if pending:
        item[PENDING_ATTR] = {"BOOL": True}
    return item


def _flip_condition(committed: str | None, create: bool) -> tuple[str, dict[str, Any]]:
    """The condition of the commit: absent for a create, else still at generation
    `committed` (a mosaic of another tool: still without generation)."""
    if create:
        return "attribute_not_exists(#m)", {}
    if committed is None:
        return "attribute_exists(#m) AND attribute_not_exists(#gen)", {}
    return "#gen = :c", {":c": {"S": committed}}


def flip(table: MosaicTable, metadata: dict[str, Any], committed: str | None, create: bool) -> None:
    """Commit: one conditional PutItem of the metadata item (see `_flip_condition`). A lost
    answer is resolved by reading the item back; if that fails too, FlipUnknownError (either
    version is served, whole)."""
    condition, values = _flip_condition(committed, create)
    try:
        table.put_if(metadata, condition, values)
        return
    except ConditionFailedError as err:
        if create:
            raise table.exists_error() from err
        if not table.metadata_exists():
            raise table.not_found_error() from err
        raise MosaicConflictError(
            f"{table.uri} was changed by another writer during this write (its "
            "generation moved on): nothing of this write was committed, retry"
        ) from err
    except (ClientError, BotoCoreError) as err:
        failure: Exception = err
    try:  # the answer was lost: did the put happen?
        stored = table.metadata_item()
    except (ClientError, BotoCoreError) as err:
        raise FlipUnknownError(
            f"writing {table.uri}: the commit's answer was lost ({failure}) and it could not "
            f"be read back ({err}): readers see either the previous or the new version, "
            "each whole; the next write completes or replaces it"
        ) from failure
    if stored is not None and item_generation(stored) == item_generation(metadata):
        return
    raise table.error(failure, "committing", MosaicWriteError) from failure


def locked_write(
    table: MosaicTable,
    lease: Lease,
    requests: Sequence[dict[str, Any]],
    undo: Sequence[dict[str, Any]],
    metadata: dict[str, Any],
    committed: str | None,
    create: bool,
    doing: str,
) -> None:
    """The write sequence of every write under the lease: send the item `requests`, check the
    lease, flip the metadata item (see `flip`). A failure before the flip sends `undo` (the
    items as they were) and is raised."""
    try:
        with table.errors(doing, MosaicWriteError):
            batch_write(table, requests, lease)
            lease.check()
            flip(table, metadata, committed, create)
    except (FlipUnknownError, MosaicExistsError):
        # Never undo: the new generation may be the committed one, or the items may belong
        # to another writer's committed create.
        raise
    except BaseException as err:
        clean_up(table, lease, list(undo), err)
        raise


def clean_up(
    table: MosaicTable, lease: Lease, requests: list[dict[str, Any]], cause: BaseException
) -> None:
    """After a failure before the commit, put the staged items back as they were (best
    effort: staged slots of an uncommitted generation are invisible to readers anyway)."""
    if not requests:
        cause.add_note("nothing was written: the previous version is intact")
        return
    try:
        with table.errors("cleaning up", MosaicWriteError):
            batch_write(table, requests, lease)
    except Exception as err:
        cause.add_note(
            f"nothing was committed: readers see the previous version, whole; cleaning up "
            f"the staged items failed ({err}): no reader uses them, the next write of the "
            "mosaic replaces them"
        )
    else:
        cause.add_note("rolled back: the previous version is intact")


def promote(table: MosaicTable, lease: Lease, entries: list[Entry], generation: str) -> None:
    """After the flip: new values into the base slots, tombstones, removals, then clear
    `_pending` (only while the metadata item is still at `generation`)."""
    requests = [entry.promote_request(generation) for entry in entries]
    with table.errors("completing", MosaicWriteError):
        batch_write(table, requests, lease)
        lease.check()
        table.call(
            "update_item",
            Key=table.key(METADATA_QUADKEY),
            UpdateExpression="REMOVE #p",
            ConditionExpression="#gen = :g",
            ExpressionAttributeNames=expression_names("#p #gen"),
            ExpressionAttributeValues={":g": {"S": generation}},
        )


def unfinished_promotion(table: MosaicTable, committed: str) -> list[Entry]:
    """The entries finishing the promotion of generation `committed`, left by a writer that
    died or lost its connection after its commit (the metadata item says `_pending`)."""
    entries = []
    for partition, tombstones in ((table.mosaic_name, True), (table.overview_partition, False)):
        items = table.raw_partition(partition)
        entries += unfinished_entries(partition, items, committed, tombstones)
    logger.warning(
        "completing the unfinished promotion of %s (generation %s, %d items)",
        table.uri,
        committed,
        len(entries),
    )
    return entries
