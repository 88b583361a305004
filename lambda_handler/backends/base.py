"""Base class of every MosaicJSON backend, on rio-tiler's mosaic BaseBackend.

Backends implement storage only: `_read` (metadata, and tiles for whole-document stores),
`write`, `delete`, and — for stores that keep one record per quadkey — `_fetch_quadkeys` /
`_fetch_prefix` / `_persist_update`. Everything else (quadkey arithmetic, caching, update merging,
tile/point rendering through rio-tiler) is here, once.
"""

import bisect
import inspect
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import attr
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.warp import transform as transform_coords
from rasterio.warp import transform_bounds
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.io import BaseReader, MultiBandReader, MultiBaseReader, Reader
from rio_tiler.mosaic.backend import BaseBackend as RioTilerBaseBackend
from rio_tiler.mosaic.backend import MosaicInfo
from rio_tiler.utils import CRS_to_uri

from lambda_handler import cache

# Name validation lives in the (light) package module; re-exported here for the backends.
from lambda_handler.backends import MOSAIC_NAME_RE as MOSAIC_NAME_RE
from lambda_handler.backends import validate_mosaic_name as validate_mosaic_name
from lambda_handler.errors import MosaicChangedError, MosaicConflictError, ReadOnlyBackendError
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.mosaic.tiling import matrix_grid, quadkey_to_tile, quadkeys, tile_quadkey
from lambda_handler.settings import write_settings

# A bbox lookup enumerating more quadkeys than this switches to prefix lookups one zoom up.
MAX_BBOX_QUADKEYS = 1024

# Called on the fresh read inside a guarded write; raises (MosaicPreconditionError) to refuse it.
Precondition = Callable[["MosaicJSONBackend"], None]


def _index_parameters(document: MosaicJSON) -> tuple[Any, ...]:
    """What an addition's quadkeys depend on: an addition built for other values is rebuilt."""
    return (
        document.minzoom,
        document.maxzoom,
        document.index_zoom,
        document.tms.id,
        document.asset_prefix,
    )


def _to_mosaic(value: Any) -> MosaicJSON | None:
    if value is None or isinstance(value, MosaicJSON):
        return value
    return MosaicJSON.parse(dict(value))


def merge_assets(old: list[str], new: list[str], add_first: bool) -> list[str]:
    """Merged asset list without duplicates, so running the same update twice changes nothing."""
    if add_first:
        seen = set(new)
        return list(dict.fromkeys(new)) + [a for a in old if a not in seen]
    seen = set(old)
    return list(old) + [a for a in dict.fromkeys(new) if a not in seen]


def _addition_index(
    features: Sequence[dict[str, Any]], current: MosaicJSON, **kwargs: Any
) -> MosaicJSON:
    """The index of `features` in the zooms, TMS and quadkey zoom of `current`."""
    # The builder (and shapely behind it) is not needed to read tiles: imported by updates.
    from lambda_handler.mosaic.builder import from_features

    return from_features(
        features,
        current.minzoom,
        current.maxzoom,
        quadkey_zoom=current.index_zoom,
        tilematrixset=current.tilematrixset,
        asset_prefix=current.asset_prefix,
        **kwargs,
    )


def bbox_union(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """The smallest bbox holding both."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@attr.s
class BaseBackend(RioTilerBaseBackend):
    """rio-tiler's abstract mosaic backend (what `cogeo_mosaic.backends.base.BaseBackend` is),
    with defaults for what cogeo-mosaic's custom-backend recipe leaves out, so the recipe's
    subclass (attrs fields, own `assets_for_tile`/`assets_for_point`) instantiates as written:
    world bounds in WGS84, and `assets_for_bbox` as the union of `assets_for_tile` over the
    bbox's tiles at the lowest zoom served (at most 64 of them; more is refused)."""

    # Keyword-only here: a recipe's subclass redefines `input` (no default) after the inherited
    # fields, and attrs refuses a mandatory positional field after one with a default.
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS, kw_only=True)

    # Plain class values, not attrs defaults: a recipe's subclass redefines `input` without a
    # default, which attrs refuses after inherited fields with defaults.
    bounds = (-180.0, -90.0, 180.0, 90.0)
    crs = WGS84_CRS

    def point(  # type: ignore[override]
        self,
        lon: float,
        lat: float,
        coord_crs: CRS = WGS84_CRS,
        search_options: dict | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Values at a point from every asset; `assets_for_point(lng, lat)` without
        `coord_crs` (cogeo-mosaic's recipe) is given WGS84 coordinates."""
        parameters = inspect.signature(self.assets_for_point).parameters
        if "coord_crs" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return super().point(
                lon, lat, coord_crs=coord_crs, search_options=search_options, **kwargs
            )
        from rio_tiler.errors import NoAssetFoundError, PointOutsideBounds
        from rio_tiler.tasks import multi_values_list
        from rio_tiler.utils import inherit_rasterio_env

        search_lon, search_lat = lon, lat
        if coord_crs != WGS84_CRS:
            xs, ys = transform_coords(coord_crs, WGS84_CRS, [lon], [lat])
            search_lon, search_lat = xs[0], ys[0]
        assets = self.assets_for_point(search_lon, search_lat, **(search_options or {}))
        if not assets:
            raise NoAssetFoundError(f"No assets found for point ({lon},{lat})")

        @inherit_rasterio_env
        def _reader(asset: Any, lon: float, lat: float, coord_crs: CRS, **options: Any) -> Any:
            with self.reader(asset, **self.reader_options) as src_dst:
                return src_dst.point(lon, lat, coord_crs=coord_crs, **options)

        kwargs.setdefault("allowed_exceptions", (PointOutsideBounds,))
        return [
            (self.asset_name(asset), pt)
            for asset, pt in multi_values_list(assets, _reader, lon, lat, coord_crs, **kwargs)
        ]

    def assets_for_bbox(
        self,
        xmin: float,
        ymin: float,
        xmax: float,
        ymax: float,
        coord_crs: CRS | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Assets of the tiles (lowest served zoom) covering a bbox, without duplicates."""
        geographic = self.tms.rasterio_geographic_crs
        if coord_crs is not None and coord_crs != geographic:
            xmin, ymin, xmax, ymax = transform_bounds(coord_crs, geographic, xmin, ymin, xmax, ymax)
        zoom = self.minzoom if self.minzoom is not None else self.tms.minzoom
        tiles = list(itertools.islice(self.tms.tiles(xmin, ymin, xmax, ymax, [zoom]), 65))
        if len(tiles) > 64:
            raise ValueError(
                f"the bbox covers more than 64 tiles at zoom {zoom}: use a smaller one"
            )
        found = (self.assets_for_tile(t.x, t.y, t.z) for t in tiles)
        return list(dict.fromkeys(itertools.chain.from_iterable(found)))


class MosaicBackendInfo(MosaicInfo):
    """`info()` answer: rio-tiler's MosaicInfo plus the mosaic's own metadata."""

    name: str
    quadkeys: list[str]
    mosaic_tilematrixset: str
    mosaic_minzoom: int
    mosaic_maxzoom: int
    mosaic_quadkey_zoom: int
    version: str


@attr.s
class MosaicJSONBackend(RioTilerBaseBackend):
    """A MosaicJSON document in some store.

    Attributes:
        input: the backend URI.
        mosaic_def: a document to write (when given, nothing is read).
        tms: TileMatrixSet of the requests (may differ from the mosaic's).
        minzoom/maxzoom: zooms served; default to the mosaic's (or the TMS's when they differ).
        reader/reader_options: rio-tiler reader for the assets.
    """

    input: str = attr.ib()
    mosaic_def: MosaicJSON = attr.ib(default=None, converter=_to_mosaic)
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    minzoom: int = attr.ib(default=None)
    maxzoom: int = attr.ib(default=None)
    reader: type[BaseReader] | type[MultiBaseReader] | type[MultiBandReader] = attr.ib(
        default=Reader
    )
    reader_options: dict = attr.ib(factory=dict)

    bounds: tuple[float, float, float, float] = attr.ib(init=False)
    crs: CRS = attr.ib(init=False)

    _backend_name: ClassVar[str] = "base"
    # Whether reads may be cached by URI (not for in-memory documents, which have no URI).
    _cacheable: ClassVar[bool] = True
    # Whether `mosaic_def.tiles` holds the whole index (document stores) or stays empty.
    _tiles_in_document: ClassVar[bool] = True
    # The store's token of the copy read by `_refresh` (object ETag, GCS generation), set only
    # during a guarded write: the final write is made conditional on it.
    _expected_token: Any = None

    def __attrs_post_init__(self) -> None:
        """Load the document (metadata) unless one was given."""
        if self.mosaic_def is None:
            self.mosaic_def = self._cached_read()
        self._apply_definition()

    def _apply_definition(self) -> None:
        mosaic_tms = self.mosaic_def.tms
        self.bounds = tuple(self.mosaic_def.bounds)
        self.crs = mosaic_tms.rasterio_geographic_crs
        same_tms = mosaic_tms == self.tms
        if self.minzoom is None:
            self.minzoom = self.mosaic_def.minzoom if same_tms else self.tms.minzoom
        if self.maxzoom is None:
            self.maxzoom = self.mosaic_def.maxzoom if same_tms else self.tms.maxzoom

    # ------------------------------------------------------------------ storage (override)
    def _read(self) -> MosaicJSON:
        """Fetch the document (metadata only for stores keeping tiles apart)."""
        raise NotImplementedError

    def write(self, overwrite: bool = False) -> None:
        """Store `mosaic_def`; MosaicExistsError if it exists and overwrite is False."""
        raise ReadOnlyBackendError(f"the {self._backend_name} backend is read-only")

    def delete(self) -> None:
        """Remove the mosaic from its store."""
        raise ReadOnlyBackendError(f"the {self._backend_name} backend is read-only")

    def _fetch_quadkeys(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """Stored assets (without prefix) of these quadkeys; missing quadkeys are left out."""
        tiles = self.mosaic_def.tiles
        return {qk: tiles[qk] for qk in keys if qk in tiles}

    def _fetch_prefix(self, prefix: str) -> dict[str, list[str]]:
        """Stored assets of every quadkey starting with `prefix`, in quadkey order."""
        keys = self._sorted_quadkeys()
        start = bisect.bisect_left(keys, prefix)
        end = bisect.bisect_left(keys, prefix + "4")  # '4' sorts right after '3'
        tiles = self.mosaic_def.tiles
        return {qk: tiles[qk] for qk in keys[start:end]}

    def _prefix_assets(self, prefix: str) -> list[str]:
        """Assets of every quadkey under `prefix`, in quadkey order, without duplicates (stores
        with a faster answer for a whole prefix override this)."""
        return self._flatten(self._fetch_prefix(prefix))

    def _list_quadkeys(self) -> list[str]:
        """Every quadkey of the index."""
        return list(self.mosaic_def.tiles)

    def _all_tiles(self) -> dict[str, list[str]]:
        """The whole index (stores keeping tiles apart read every record)."""
        return dict(self.mosaic_def.tiles)

    def _persist_update(self, document: MosaicJSON, changed: dict[str, list[str]]) -> None:
        """Store an updated document whose `changed` quadkeys got new asset lists."""
        tiles = {**self.mosaic_def.tiles, **changed}
        full = document.model_copy(update={"tiles": tiles})
        previous = self.mosaic_def
        self.mosaic_def = full
        try:
            self.write(overwrite=True)
        except BaseException:
            self.mosaic_def = previous
            raise

    # ------------------------------------------------------------------ concurrent writers
    # Every read-modify-write runs under `_write_guard()` (a lock of the store: SQLite's write
    # transaction, the file store's lock file; nothing for object stores) on a fresh read
    # (`_refresh`), and object stores make the final write conditional on the token of that
    # read: a concurrent change is either waited for or detected (MosaicChangedError), and then
    # the whole operation is re-read, re-merged and retried. Nothing is merged from a stale read.
    @contextmanager
    def _write_guard(self) -> Iterator[None]:
        """Held around a read-modify-write; stores with a lock make other writers wait here."""
        yield

    def _read_for_write(self) -> tuple[MosaicJSON, Any]:
        """A fresh (never cached) read and the store's token of the copy read (None for stores
        whose write guard is a lock)."""
        return self._read(), None

    def _refresh(self) -> None:
        document, self._expected_token = self._read_for_write()
        self.mosaic_def = document
        self.bounds = tuple(document.bounds)

    @property
    def revision(self) -> str:
        """What HTTP ETags are made from: the version plus the store's revision of the copy
        (digest of the stored bytes, write token), so every write changes it, even a replace
        that keeps the version."""
        stored = self.mosaic_def.store_revision
        return f"{self.mosaic_def.version}+{stored}" if stored else self.mosaic_def.version

    def _run_guarded(
        self, action: Callable[[], None], precondition: Precondition | None, what: str
    ) -> None:
        """Run `action` on a fresh read under the write guard; retry (bounded, with jittered
        backoff) when a conditional write finds the mosaic changed, then refuse with
        MosaicConflictError. A failed precondition is never retried."""
        if type(self).write is MosaicJSONBackend.write:
            # Read-only stores: refuse before a fresh read (a STAC search, an HTTP fetch).
            raise ReadOnlyBackendError(f"the {self._backend_name} backend is read-only")
        attempts = write_settings().update_attempts
        last: MosaicChangedError | None = None
        for attempt in range(attempts):
            try:
                with self._write_guard():
                    self._refresh()
                    if precondition is not None:
                        precondition(self)
                    action()
                return
            except MosaicChangedError as err:
                last = err
                self._invalidate()
                time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))
            finally:
                self._expected_token = None
        raise MosaicConflictError(
            f"{what} of {self.input} refused: the mosaic was changed by concurrent writers "
            f"during each of {attempts} attempts (nothing of this {what} was stored; retry later)"
        ) from last

    def replace(self, document: MosaicJSON, precondition: Precondition | None = None) -> None:
        """Replace the stored mosaic (MosaicNotFoundError if there is none) by `document`, after
        `precondition` passed on a fresh read; atomic against concurrent writers."""

        def action() -> None:
            self.mosaic_def = document
            self.bounds = tuple(document.bounds)
            self.write(overwrite=True)

        self._run_guarded(action, precondition, "replace")

    def delete_if(self, precondition: Precondition) -> None:
        """Delete the mosaic if `precondition` passes on a fresh read; atomic against
        concurrent writers where the store allows it (locks, conditional deletes)."""
        self._run_guarded(self.delete, precondition, "delete")

    # ------------------------------------------------------------------ caching
    def _cache_get(self, key: Any, compute: Callable[[], Any], store: cache.MosaicCache) -> Any:
        if not self._cacheable:
            return compute()
        return store.get_or_compute(self.input, key, compute)

    def _cached_read(self) -> MosaicJSON:
        return self._cache_get("definition", self._read, cache.metadata_cache)

    def _invalidate(self) -> None:
        if self._cacheable:
            cache.invalidate(self.input)

    def _sorted_quadkeys(self) -> list[str]:
        return self._cache_get(
            ("sorted-quadkeys", self.mosaic_def.version, id(self.mosaic_def.tiles)),
            lambda: sorted(self.mosaic_def.tiles),
            cache.assets_cache,
        )

    # ------------------------------------------------------------------ cogeo-mosaic API
    @property
    def mosaicid(self) -> str:
        """sha224 of the document's metadata and tiles, as cogeo-mosaic computes it (its
        `get_hash`: sorted-key JSON of `model_dump(exclude_none=True)`). Reads the whole index
        for stores keeping tiles apart."""
        import hashlib
        import json

        document = self.to_document() if not self._tiles_in_document else self.mosaic_def
        body = document.model_dump(exclude_none=True)
        return hashlib.sha224(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def _quadkeys(self) -> list[str]:
        """Every quadkey of the index (cogeo-mosaic's name)."""
        return self._list_quadkeys()

    def find_quadkeys(self, tile: Tile, quadkey_zoom: int) -> list[str]:
        """Quadkeys at `quadkey_zoom` covering `tile` of the mosaic's TMS: its ancestor's when
        the tile is deeper, its descendants' when it is shallower (cogeo-mosaic's method)."""
        x, y, z = tile
        if z >= quadkey_zoom:
            depth = z - quadkey_zoom
            return [tile_quadkey(x >> depth, y >> depth, quadkey_zoom)]
        # Descendants in morecantile's children order, as cogeo-mosaic lists them.
        tiles = [Tile(x, y, z)]
        for _ in range(quadkey_zoom - z):
            tiles = [child for t in tiles for child in self.mosaic_tms.children(t)]
        return [tile_quadkey(t.x, t.y, t.z) for t in tiles]

    # ------------------------------------------------------------------ lookups
    @property
    def quadkey_zoom(self) -> int:
        """Zoom of the index's quadkeys."""
        return self.mosaic_def.index_zoom

    @property
    def mosaic_tms(self) -> TileMatrixSet:
        """TileMatrixSet of the index."""
        return self.mosaic_def.tms

    def _with_prefix(self, assets: list[str]) -> list[str]:
        prefix = self.mosaic_def.asset_prefix
        return [prefix + a for a in assets] if prefix else assets

    @staticmethod
    def _flatten(tiles: dict[str, list[str]], keys: Sequence[str] | None = None) -> list[str]:
        ordered = keys if keys is not None else sorted(tiles)
        return list(dict.fromkeys(itertools.chain.from_iterable(tiles.get(k, ()) for k in ordered)))

    def get_assets(self, x: int, y: int, z: int, reverse: bool = False) -> list[str]:
        """Assets of tile (x, y, z) of the mosaic's TMS.

        At or above the quadkey zoom this is one quadkey (the tile's ancestor); below it, every
        quadkey under the tile, which all share the tile's quadkey as prefix: one range lookup.
        """
        qz = self.quadkey_zoom

        def lookup() -> list[str]:
            if z >= qz:
                depth = z - qz
                key = tile_quadkey(x >> depth, y >> depth, qz)
                return self._flatten(self._fetch_quadkeys([key]), [key])
            return self._prefix_assets(tile_quadkey(x, y, z))

        assets = self._cache_get(
            ("tile", self.mosaic_def.version, x, y, z), lookup, cache.assets_cache
        )
        assets = self._with_prefix(assets)
        return list(reversed(assets)) if reverse else assets

    def assets_for_tile(self, x: int, y: int, z: int, **kwargs: Any) -> list[str]:
        """Assets of a tile of the request TMS."""
        if self.tms == self.mosaic_tms:
            return self.get_assets(x, y, z, **kwargs)
        west, south, east, north = self.tms.bounds(x, y, z)
        return self.assets_for_bbox(
            west, south, east, north, coord_crs=self.tms.rasterio_geographic_crs, **kwargs
        )

    def assets_for_point(
        self, lng: float, lat: float, coord_crs: CRS | None = None, **kwargs: Any
    ) -> list[str]:
        """Assets of the quadkey holding a point."""
        geographic = self.mosaic_tms.rasterio_geographic_crs
        coord_crs = coord_crs or self.tms.rasterio_geographic_crs
        if coord_crs != geographic:
            xs, ys = transform_coords(coord_crs, geographic, [lng], [lat])
            lng, lat = xs[0], ys[0]
        tile = self.mosaic_tms.tile(lng, lat, self.quadkey_zoom)
        return self.get_assets(tile.x, tile.y, tile.z, **kwargs)

    def assets_for_bbox(
        self,
        xmin: float,
        ymin: float,
        xmax: float,
        ymax: float,
        coord_crs: CRS | None = None,
        reverse: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Assets of every quadkey a bbox touches, in quadkey order, without duplicates."""
        geographic = self.mosaic_tms.rasterio_geographic_crs
        coord_crs = coord_crs or self.tms.rasterio_geographic_crs
        if coord_crs != geographic:
            xmin, ymin, xmax, ymax = transform_bounds(coord_crs, geographic, xmin, ymin, xmax, ymax)
        boxes = [(xmin, ymin, xmax, ymax)]
        if xmin > xmax:  # crosses the antimeridian
            boxes = [(xmin, ymin, 180.0, ymax), (-180.0, ymin, xmax, ymax)]
        tiles: dict[str, list[str]] = {}
        for box in boxes:
            tiles.update(self._tiles_in_bbox(*box))
        assets = self._with_prefix(self._flatten(tiles))
        return list(reversed(assets)) if reverse else assets

    def _tiles_in_bbox(
        self, west: float, south: float, east: float, north: float
    ) -> dict[str, list[str]]:
        tms, qz = self.mosaic_tms, self.quadkey_zoom
        top_left = tms.tile(west, north, qz)
        bottom_right = tms.tile(east, south, qz)
        x0, x1 = sorted((top_left.x, bottom_right.x))
        y0, y1 = sorted((top_left.y, bottom_right.y))
        count = (x1 - x0 + 1) * (y1 - y0 + 1)
        if count <= MAX_BBOX_QUADKEYS:
            keys = quadkeys(
                [x for x in range(x0, x1 + 1) for _ in range(y0, y1 + 1)],
                [y for _ in range(x0, x1 + 1) for y in range(y0, y1 + 1)],
                qz,
            )
            return self._fetch_quadkeys(keys)
        # Too many quadkeys to name: ask for the prefixes of a coarser zoom, keep those inside.
        depth = 1
        while ((x1 >> depth) - (x0 >> depth) + 1) * ((y1 >> depth) - (y0 >> depth) + 1) > 64:
            depth += 1
        found: dict[str, list[str]] = {}
        for px in range(x0 >> depth, (x1 >> depth) + 1):
            for py in range(y0 >> depth, (y1 >> depth) + 1):
                for key, assets in self._fetch_prefix(tile_quadkey(px, py, qz - depth)).items():
                    x, y, _ = quadkey_to_tile(key)
                    if x0 <= x <= x1 and y0 <= y <= y1:
                        found[key] = assets
        return found

    # ------------------------------------------------------------------ updates
    def addition_index(self, features: Sequence[dict[str, Any]], **kwargs: Any) -> MosaicJSON:
        """The index `features` would add to this mosaic (its zooms, TMS and quadkey zoom)."""
        return _addition_index(features, self.mosaic_def, **kwargs)

    def update(
        self,
        features: Sequence[dict[str, Any]],
        add_first: bool = True,
        quiet: bool = True,
        precondition: Precondition | None = None,
        addition: MosaicJSON | None = None,
        **kwargs: Any,
    ) -> None:
        """Add footprints to the mosaic: merge their assets per quadkey, bump the version,
        union the bounds. An asset already listed for a quadkey is not added twice.
        `addition` is `addition_index(features)` when the caller built it already (to size the
        write), so the footprints are not indexed twice.

        Concurrent updates are all applied or refused: the merge is made on a fresh read under
        the store's write guard (and a conditional write), retried when another writer got in
        first, and refused with MosaicConflictError after `MOSAIC_WRITE_UPDATE_ATTEMPTS`.
        `precondition` is checked on that fresh read (HTTP If-Match).

        `quiet` is accepted for cogeo-mosaic's signature; the builder prints nothing."""

        def build(current: MosaicJSON) -> MosaicJSON:
            return _addition_index(features, current, **kwargs)

        # Built before the guard (no lock held while footprints are indexed); rebuilt inside
        # only if a concurrent replace changed what the quadkeys depend on.
        built = {_index_parameters(self.mosaic_def): addition or build(self.mosaic_def)}

        def merge_and_store() -> None:
            current = self.mosaic_def
            key = _index_parameters(current)
            if key not in built:
                built[key] = build(current)
            addition = built[key]
            stored = self._fetch_quadkeys(list(addition.tiles))
            changed = {
                qk: merge_assets(stored.get(qk, []), new_assets, add_first)
                for qk, new_assets in addition.tiles.items()
            }
            bounds = bbox_union(current.bounds, addition.bounds)
            document = current.model_copy(
                update={
                    "bounds": bounds,
                    "center": (
                        (bounds[0] + bounds[2]) / 2,
                        (bounds[1] + bounds[3]) / 2,
                        current.minzoom,
                    ),
                },
                deep=False,
            )
            document.bump_version()
            if current.mosaicjson != addition.mosaicjson:
                document.mosaicjson = addition.mosaicjson
            self._persist_update(document, changed)
            if not self._tiles_in_document:  # document stores hold the merged index already
                self.mosaic_def = document
            self.bounds = bounds

        try:
            self._run_guarded(merge_and_store, precondition, "update")
        finally:
            self._invalidate()

    # ------------------------------------------------------------------ description
    def to_document(self) -> MosaicJSON:
        """The whole MosaicJSON document, tiles included (read from the store if kept apart)."""
        return self.mosaic_def.model_copy(update={"tiles": self._all_tiles()})

    def info(self, quadkeys: bool = False) -> MosaicBackendInfo:  # type: ignore[override]
        """Mosaic info (quadkeys listed on request: it reads the whole index)."""
        return MosaicBackendInfo(
            bounds=self.bounds,
            crs=CRS_to_uri(self.crs) or self.crs.to_wkt(),
            name=self.mosaic_def.name or "mosaic",
            quadkeys=self._list_quadkeys() if quadkeys else [],
            mosaic_tilematrixset=self.mosaic_tms.id,
            mosaic_minzoom=self.mosaic_def.minzoom,
            mosaic_maxzoom=self.mosaic_def.maxzoom,
            mosaic_quadkey_zoom=self.quadkey_zoom,
            version=self.mosaic_def.version,
        )

    def tile_in_range(self, x: int, y: int, z: int) -> bool:
        """Whether (x, y, z) is a valid tile of the request TMS within the served zooms."""
        if not self.minzoom <= z <= self.maxzoom:
            return False
        grid = matrix_grid(self.tms, z)
        return 0 <= x < grid.width and 0 <= y < grid.height

    def tile_in_tms(self, x: int, y: int, z: int) -> bool:
        """Whether (x, y, z) is a tile of the request TMS (any of its zooms, as titiler serves
        zooms outside the mosaic's)."""
        if not self.tms.minzoom <= z <= self.tms.maxzoom:
            return False
        grid = matrix_grid(self.tms, z)
        return 0 <= x < grid.width and 0 <= y < grid.height

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        """Close resources held by the backend."""
        self.close()

    def close(self) -> None:
        """Release resources (connections); nothing by default."""
