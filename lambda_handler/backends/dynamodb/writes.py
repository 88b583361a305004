"""Writes of the DynamoDB backend: create, overwrite, update and delete a mosaic.

Every write runs under the writer lease (`lease`) and commits a new generation with one
conditional put of the metadata item (`commit`); its readers never see a mixed mosaic.
Because one item may hold two versions, each version of an item is limited to half DynamoDB's
400 KB item limit (`SLOT_LIMIT`); bigger quadkeys are refused before anything is written.
"""

import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lambda_handler.backends.base import bbox_union
from lambda_handler.backends.dynamodb import commit
from lambda_handler.backends.dynamodb.batch_io import (
    batch_get_many,
    batch_write,
    delete_requests,
    fetch_raw,
    parallel,
)
from lambda_handler.backends.dynamodb.generations import (
    Entry,
    PartitionChange,
    new_generation,
    newest_generation,
    plan_changes,
    resolve,
)
from lambda_handler.backends.dynamodb.items import MosaicTable, TableMissingError
from lambda_handler.backends.dynamodb.lease import Lease
from lambda_handler.backends.dynamodb.overviews import (
    OverviewBuilder,
    overview_key,
    trusted_zooms,
)
from lambda_handler.backends.dynamodb.records import (
    GENERATION_ATTR,
    METADATA_QUADKEY,
    Overview,
    check_tile_sizes,
    document_of,
    encode_slot,
    item_generation,
    item_key,
    item_pending,
    set_revision,
)
from lambda_handler.errors import MosaicWriteError
from lambda_handler.mosaic.model import MosaicJSON

logger = logging.getLogger(__name__)
RawItems = dict[str, dict[str, Any]]  # raw items by sort key


def _merge(changed: dict[str, list[str]], stored: dict[str, list[str]]) -> dict[str, list[str]]:
    """`changed` plus the stored assets it lacks (an update never drops an asset)."""
    merged = {}
    for quadkey, assets in changed.items():
        known = set(assets)
        merged[quadkey] = assets + [a for a in stored.get(quadkey, []) if a not in known]
    return merged


class MosaicWrites:
    """The write methods of DynamoDBBackend (its attributes are declared there)."""

    table: MosaicTable
    mosaic_def: MosaicJSON
    mosaic_name: str
    input: str
    generation: str | None
    pending: bool
    overview_zooms: frozenset[int]
    bounds: tuple[float, ...]
    _lease: Lease | None
    # Methods of DynamoDBBackend and its base class (annotated only: defining them here would
    # shadow the base class's in the method resolution order).
    _invalidate: Callable[[], None]
    _resolved: Callable[[RawItems], dict[str, list[str]]]
    create_table: Callable[..., bool]

    # ------------------------------------------------------------------ lease
    @contextmanager
    def _locked(self, operation: str, exists_error: bool = False) -> Iterator[Lease]:
        """Hold the writer lease around a write (re-entrant: a write inside a guarded
        read-modify-write of the base class uses the lease already held)."""
        if self._lease is not None:
            yield self._lease
            return
        with self.table.errors("locking", MosaicWriteError):
            lease = Lease(self.table, operation)
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

    # ------------------------------------------------------------------ commit bookkeeping
    def _committed(self, metadata: dict[str, Any], document: MosaicJSON, zooms: Any) -> None:
        """Adopt what a write committed as this backend's state."""
        generation = metadata[GENERATION_ATTR]["S"]
        self.mosaic_def = document.model_copy(update={"tiles": {}})
        set_revision(self.mosaic_def, generation)
        self.bounds = tuple(document.bounds)
        self.generation = generation
        self.overview_zooms = frozenset(zooms)

    def _commit_generation(
        self,
        lease: Lease,
        document: MosaicJSON,
        builder: OverviewBuilder,
        committed: str | None,
        generation: str,
        tiles: PartitionChange,
        overviews: PartitionChange,
        doing: str,
    ) -> dict[str, Any]:
        """Commit the changes of an existing mosaic as `generation`: stage the changed
        items, flip the metadata item, promote (see `commit`). Returns the metadata item."""
        metadata = commit.generation_metadata(self.mosaic_name, document, builder, generation, True)
        entries = plan_changes(self.mosaic_name, tiles, committed, tombstones=True)
        entries += plan_changes(
            self.table.overview_partition, overviews, committed, tombstones=False
        )
        staged = [entry for entry in entries if entry.stage]
        commit.locked_write(
            self.table,
            lease,
            requests=[{"PutRequest": {"Item": e.staged_item(generation)}} for e in staged],
            undo=[e.undo_request() for e in staged],
            metadata=metadata,
            committed=committed,
            create=False,
            doing=doing,
        )
        self._promote(entries, generation, lease, strict=False)
        return metadata

    def _promote(self, entries: list[Entry], generation: str, lease: Lease, strict: bool) -> None:
        """Promote after the flip. A failure leaves `_pending` set for the next writer; it is
        raised only when `strict` (the write itself is committed and served whole either way)."""
        try:
            commit.promote(self.table, lease, entries, generation)
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

    def _complete_pending(self, committed: str, lease: Lease) -> None:
        """Finish the promotion of generation `committed` left by a writer that died or lost
        its connection after its commit (the metadata item says `_pending`)."""
        entries = commit.unfinished_promotion(self.table, committed)
        self._promote(entries, committed, lease, strict=True)

    # ------------------------------------------------------------------ write / overwrite
    def write(self, overwrite: bool = False) -> None:
        """Store `mosaic_def` as a new committed generation (see `commit`).
        MosaicExistsError if it exists and overwrite is False, or if another writer is
        creating it at the same time; MosaicConflictError if another writer holds it.

        A missing table is created first (on-demand, see `create_table`), as cogeo-mosaic's
        write does. Only a write that met ResourceNotFoundException tries it: nothing was
        written then, and the deployed functions (no DescribeTable/CreateTable grant) never
        pay a table check."""
        try:
            self._write(overwrite)
        except TableMissingError:
            if self._lease is not None:
                raise  # the table vanished in the middle of a guarded read-modify-write
            self.create_table(self.table.table_name, self.table.region)
            self._write(overwrite)

    def _write(self, overwrite: bool) -> None:
        document = self.mosaic_def
        tiles = document.tiles
        check_tile_sizes(self.mosaic_name, tiles)
        builder = OverviewBuilder(self.mosaic_name, document)
        with self.table.errors("writing", MosaicWriteError):
            if not overwrite and self._lease is None and self.table.metadata_exists():
                raise self.table.exists_error()
        operation = "overwrite" if overwrite else "create"
        with self._locked(operation, exists_error=not overwrite) as lease:
            with self.table.errors("writing", MosaicWriteError):
                stored = self.table.metadata_item()
                if stored is not None and not overwrite:
                    raise self.table.exists_error()
                tile_items = self.table.raw_tiles("", consistent=True)
                overview_items = self.table.raw_partition(self.table.overview_partition)
            floor = newest_generation(itertools.chain(tile_items.values(), overview_items.values()))
            overviews = {overview_key(p): v for p, v in builder.build(tiles).items()}
            if stored is None:
                metadata = commit.generation_metadata(
                    self.mosaic_name, document, builder, new_generation(None, floor), False
                )
                self._create(metadata, tiles, overviews, tile_items, overview_items, lease)
            else:
                committed = item_generation(stored)
                metadata = self._commit_generation(
                    lease,
                    document,
                    builder,
                    committed,
                    new_generation(committed, floor),
                    PartitionChange(tile_items, dict(tiles), full=True),
                    PartitionChange(overview_items, overviews, full=True),
                    "writing",
                )
        self._committed(metadata, document, builder.zooms)

    def _create(
        self,
        metadata: dict[str, Any],
        tiles: dict[str, list[str]],
        overviews: dict[str, Overview],
        tile_items: RawItems,
        overview_items: RawItems,
        lease: Lease,
    ) -> None:
        """A new mosaic: items written base-only (orphans of a failed create removed), then
        the metadata item with a conditional put that makes it visible at once."""
        generation = {"gen": metadata[GENERATION_ATTR]}
        partition = self.table.overview_partition
        puts = [
            {"PutRequest": {"Item": {**self.table.key(q), **encode_slot(a), **generation}}}
            for q, a in tiles.items()
        ] + [
            {
                "PutRequest": {
                    "Item": {**self.table.key(k, partition), **encode_slot(v), **generation}
                }
            }
            for k, v in overviews.items()
        ]
        orphans = delete_requests(
            [self.table.key(q) for q in tile_items if q not in tiles]
            + [self.table.key(k, partition) for k in overview_items if k not in overviews]
        )
        commit.locked_write(
            self.table,
            lease,
            requests=orphans + puts,
            undo=delete_requests([item_key(r["PutRequest"]["Item"]) for r in puts]),
            metadata=metadata,
            committed=None,
            create=True,
            doing="writing",
        )

    # ------------------------------------------------------------------ update
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Add footprints (see the base class); the document kept afterwards is the one the
        update committed (stored version and bounds, not this backend's earlier copy)."""
        super().update(*args, **kwargs)  # type: ignore[misc]
        if self._updated is not None:
            self.mosaic_def, self._updated = self._updated, None
            self.bounds = tuple(self.mosaic_def.bounds)

    _updated: MosaicJSON | None = None

    def _persist_update(self, document: MosaicJSON, changed: dict[str, list[str]]) -> None:
        """Commit the merged quadkeys and the overviews above them as a new generation.
        Under the lease the stored assets are read again and kept, so a concurrent change is
        never dropped; re-running an update gives the same assets (merging never duplicates)."""
        check_tile_sizes(self.mosaic_name, changed)
        with self._locked("update") as lease:
            with self.table.errors("updating", MosaicWriteError):
                stored = self.table.metadata_item()
                if not stored:
                    raise self.table.not_found_error()
                committed = item_generation(stored)
                if item_pending(stored) and committed:
                    self._complete_pending(committed, lease)
                document = self._rebased(document, stored)
                builder = OverviewBuilder(self.mosaic_name, document)
                self.generation = committed
                trusted = trusted_zooms(stored, document.index_zoom)
                tiles, overviews = self._update_plan(builder, changed, trusted == builder.zooms)
            metadata = self._commit_generation(
                lease,
                document,
                builder,
                committed,
                new_generation(committed),
                tiles,
                overviews,
                "updating",
            )
        self._committed(metadata, document, builder.zooms)
        self._updated = self.mosaic_def

    def _update_plan(
        self, builder: OverviewBuilder, changed: dict[str, list[str]], trusted: bool
    ) -> tuple[PartitionChange, PartitionChange]:
        """The changes of an update: the merged quadkeys (their raw items read again) and the
        overviews. Overviews are recomputed from the stored children of each changed prefix
        when the stored ones are `trusted`, else rebuilt from the whole mosaic."""
        partition = self.table.overview_partition
        if not builder.zooms:
            tile_items = fetch_raw(self.table, list(changed), consistent=True)
            merged = _merge(changed, self._resolved(tile_items))
            overviews = PartitionChange(self.table.raw_partition(partition), {}, full=True)
            return PartitionChange(tile_items, dict(merged), full=False), overviews
        if trusted:
            return self._updated_overviews(builder, changed)
        tile_items = self.table.raw_tiles("", consistent=True)
        everything = self._resolved(tile_items)
        merged = _merge(changed, everything)
        built = builder.build({**everything, **merged})
        overviews = PartitionChange(
            self.table.raw_partition(partition),
            {overview_key(p): v for p, v in built.items()},
            full=True,
        )
        return PartitionChange(tile_items, dict(merged), full=False), overviews

    def _rebased(self, document: MosaicJSON, stored: dict[str, Any]) -> MosaicJSON:
        """`document` (this backend's copy plus the update) applied to the stored metadata
        when another writer committed since that copy was read: the stored version bumped,
        the bounds of both."""
        if item_generation(stored) == self.generation:
            return document
        current = document_of(stored, self.input)
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
    ) -> tuple[PartitionChange, PartitionChange]:
        """The changes of an update whose stored overviews are trusted: the merged assets of
        the changed quadkeys and the new overviews of their prefixes, from one Query per
        changed bottom-zoom prefix (its children) and the stored overviews of the changed
        prefixes and of their unchanged siblings (one BatchGetItem per 100)."""
        prefixes = sorted({quadkey[: builder.bottom] for quadkey in changed})
        children: RawItems = {}
        for part in parallel(lambda p: self.table.raw_tiles(p, consistent=True), prefixes):
            children.update(part)
        resolved = self._resolved(children)
        merged = _merge(changed, resolved)
        level = builder.bottom_level({**resolved, **merged})
        partition = self.table.overview_partition
        wanted = sorted(builder.affected_prefixes(level))
        keys = [self.table.key(overview_key(p), partition) for p in wanted]
        found = batch_get_many(self.table, keys, consistent=True, projection=None)
        raw = {key: item for (_, key), item in found.items()}
        known: dict[str, Overview] = {}
        for key, item in raw.items():
            value = resolve(item, self.generation, check=False)[0]
            if value is not None:
                known[key.partition(":")[2]] = value
        overviews = {overview_key(p): v for p, v in builder.upward(level, known).items()}
        tile_items = {q: children[q] for q in merged if q in children}
        return (
            PartitionChange(tile_items, dict(merged), full=False),
            PartitionChange(raw, dict(overviews), full=False),
        )

    # ------------------------------------------------------------------ delete
    def delete(self) -> None:
        """Remove every item of the mosaic: the metadata first (the mosaic disappears at once),
        then the tile items, page by page, and the overview partition. Orphans of a failed
        create or delete are removed too (MosaicNotFoundError only when nothing is left)."""
        with self._locked("delete") as lease, self.table.errors("deleting", MosaicWriteError):
            existed = self.table.metadata_exists()
            quadkeys = list(self.table.raw_tiles("", consistent=True))
            partition = self.table.overview_partition
            overview_keys = list(self.table.raw_partition(partition))
            if not existed and not quadkeys and not overview_keys:
                raise self.table.not_found_error()
            self.table.call("delete_item", Key=self.table.key(METADATA_QUADKEY))
            keys = [self.table.key(q) for q in quadkeys]
            keys += [self.table.key(k, partition) for k in overview_keys]
            batch_write(self.table, delete_requests(keys), lease)
