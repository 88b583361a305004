"""The DynamoDB backend: many mosaics in one table (`dynamodb://{region}/{table}:{mosaic}`).

Reads: opening a mosaic is one GetItem (the metadata item, with the overview description); a
tile at or above the quadkey zoom is one GetItem; a tile below it is one GetItem of its
overview item (see `overviews`) or, 1-2 zooms below and where no overview applies, one
paginated Query with `begins_with(quadkey, prefix)`; BatchGetItem for several named quadkeys.

A reader never sees a mixed mosaic: it resolves every item with the committed generation of
the metadata it read (see `generations`). A reader holding an older generation (a cached
metadata item) that meets an item promoted by a later generation (`gen` newer than its own)
re-reads the metadata and retries. Writes are in `writes`.
"""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import attr

from lambda_handler import cache
from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.backends.dynamodb import table as table_admin
from lambda_handler.backends.dynamodb.batch_io import batch_get_items, fetch_raw
from lambda_handler.backends.dynamodb.generations import StaleGenerationError, resolve
from lambda_handler.backends.dynamodb.items import MosaicTable
from lambda_handler.backends.dynamodb.lease import Lease
from lambda_handler.backends.dynamodb.overviews import overview_key, trusted_zooms, union_assets
from lambda_handler.backends.dynamodb.records import (
    OVERSIZE,
    document_of,
    item_generation,
    item_pending,
    key_id,
)
from lambda_handler.backends.dynamodb.writes import MosaicWrites
from lambda_handler.errors import MosaicError
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.settings import aws_settings

STALE_RETRIES = 3  # re-reads of the metadata when items are newer than it
T = TypeVar("T")


@attr.s
class DynamoDBBackend(MosaicWrites, MosaicJSONBackend):
    """Mosaics in a DynamoDB table, one item per quadkey plus a metadata item."""

    region: str = attr.ib(init=False)
    table_name: str = attr.ib(init=False)
    mosaic_name: str = attr.ib(init=False)
    # This mosaic's items in the table: the requests every read and write makes.
    table: MosaicTable = attr.ib(init=False)
    # Zooms whose overview items match the metadata read or written (empty: use the Query).
    overview_zooms: frozenset[int] = attr.ib(init=False, factory=frozenset)
    # The committed generation the reads resolve items with (None: written by another tool).
    generation: str | None = attr.ib(init=False, default=None)
    # Whether the last write committed but could not finish promoting (the next write does).
    pending: bool = attr.ib(init=False, default=False)
    _lease: Lease | None = attr.ib(init=False, default=None)
    _check_stale: bool = attr.ib(init=False, default=True)

    _backend_name: ClassVar[str] = "DynamoDB"
    _tiles_in_document: ClassVar[bool] = False

    list_mosaics = staticmethod(table_admin.list_mosaics)
    list_page = staticmethod(table_admin.list_page)
    create_table = staticmethod(table_admin.create_table)

    def __attrs_post_init__(self) -> None:
        """Parse the URI and read the metadata item (unless a document to write was given)."""
        self.region, self.table_name, self.mosaic_name = table_admin.parse_dynamodb_uri(self.input)
        self.table = MosaicTable(self.region, self.table_name, self.mosaic_name, self.input)
        super().__attrs_post_init__()

    @property
    def client(self) -> Any:
        """The process-wide DynamoDB client of this backend's region."""
        return self.table.client

    @property
    def _consistent(self) -> bool:
        # Writers always read consistently: what they compare must be current.
        return self._lease is not None or aws_settings().consistent_reads

    @property
    def _checking(self) -> bool:
        # Writers resolve with the generation they just read: nothing newer can exist.
        return self._check_stale and self._lease is None

    # ------------------------------------------------------------------ metadata
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

    def _read_state(self) -> tuple[MosaicJSON, frozenset[int], str | None, bool]:
        """The metadata, the zooms whose overviews match it, its generation and whether its
        promotion is unfinished: one GetItem."""
        with self.table.errors("reading"):
            item = self.table.metadata_item()
        if not item:
            raise self.table.not_found_error()
        document = document_of(item, self.input)
        zooms = trusted_zooms(item, document.index_zoom)
        return document, zooms, item_generation(item), item_pending(item)

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
            except StaleGenerationError:
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
    def _resolved(self, items: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
        """The assets of raw tile items in this reader's generation (absent ones left out)."""
        found = {}
        for quadkey, item in items.items():
            value, _ = resolve(item, self.generation, self._checking)
            if isinstance(value, list):
                found[quadkey] = value
        return found

    def _fetch_prefix(self, prefix: str) -> dict[str, list[str]]:
        """Tile assets of the quadkeys starting with `prefix` ('' = all), in quadkey order."""
        return self._resolved(self.table.raw_tiles(prefix, self._consistent))

    def _list_quadkeys(self) -> list[str]:
        return list(self._fetch_prefix(""))

    def _all_tiles(self) -> dict[str, list[str]]:
        return self._fetch_prefix("")

    def _fetch_quadkeys(self, keys: Sequence[str]) -> dict[str, list[str]]:
        return self._resolved(fetch_raw(self.table, keys, self._consistent))

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
        with self.table.errors("reading"):
            item = self.table.call(
                "get_item",
                Key=self.table.key(overview_key(prefix), self.table.overview_partition),
                ConsistentRead=self._consistent,
            ).get("Item")
        return self._from_overview(prefix, item)

    def _from_overview(self, prefix: str, item: dict[str, Any] | None) -> list[str]:
        value = resolve(item, self.generation, self._checking)[0] if item else None
        if isinstance(value, list):
            return value
        if value is OVERSIZE and len(prefix) + 1 in self.overview_zooms:
            children = [prefix + digit for digit in "0123"]
            partition = self.table.overview_partition
            keys = [self.table.key(overview_key(c), partition) for c in children]
            found = batch_get_items(self.table, keys, consistent=self._consistent)
            return union_assets(
                self._from_overview(child, found.get(key_id(key)))
                for child, key in zip(children, keys, strict=True)
            )
        return self._flatten(self._fetch_prefix(prefix))
