"""Base class of every MosaicJSON backend, on rio-tiler's mosaic BaseBackend.

Backends implement storage only: `_read` (metadata, and tiles for whole-document stores),
`write`, `delete`, and — for stores that keep one record per quadkey — `_fetch_quadkeys` /
`_fetch_prefix` / `_persist_update`. Everything else is written once: quadkey lookups and
caching here, guarded writes and update merging in `updates.py`, the choice of reader and of
the zooms served in `readers.py` and `zooms.py` (so every entry point reads a mosaic alike).
"""

import bisect
import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attr
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.warp import transform as transform_coords
from rasterio.warp import transform_bounds
from rio_tiler.constants import WEB_MERCATOR_TMS
from rio_tiler.io import BaseReader, MultiBandReader, MultiBaseReader
from rio_tiler.mosaic.backend import BaseBackend as RioTilerBaseBackend
from rio_tiler.mosaic.backend import MosaicInfo
from rio_tiler.utils import CRS_to_uri

from lambda_handler import cache

# Name validation lives in the (light) package module; re-exported here for the backends.
from lambda_handler.backends import MOSAIC_NAME_RE as MOSAIC_NAME_RE
from lambda_handler.backends import validate_mosaic_name as validate_mosaic_name
from lambda_handler.backends.readers import reader_for

# cogeo-mosaic's custom-backend base, at the import path README documents (its code in recipe.py).
from lambda_handler.backends.recipe import BaseBackend as BaseBackend
from lambda_handler.backends.updates import GuardedWrites
from lambda_handler.backends.updates import bbox_union as bbox_union  # used by the stores
from lambda_handler.backends.zooms import zoom_range
from lambda_handler.errors import ReadOnlyBackendError
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.mosaic.tiling import matrix_grid, quadkey_to_tile, quadkeys, tile_quadkey

# A bbox lookup enumerating more quadkeys than this switches to prefix lookups one zoom up.
MAX_BBOX_QUADKEYS = 1024


def _to_mosaic(value: Any) -> MosaicJSON | None:
    if value is None or isinstance(value, MosaicJSON):
        return value
    return MosaicJSON.parse(dict(value))


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
class MosaicJSONBackend(GuardedWrites, RioTilerBaseBackend):
    """A MosaicJSON document in some store.

    Attributes:
        input: the backend URI.
        mosaic_def: a document to write (when given, nothing is read).
        tms: TileMatrixSet of the requests (may differ from the mosaic's).
        minzoom/maxzoom: zooms served; default to the mosaic's zooms translated to `tms`
            (the zooms of `tms` with the same resolutions).
        reader/reader_options: rio-tiler reader for the assets; defaults to the one for the
            mosaic's `asset_type` (STAC items or COGs, see `readers.reader_for`).
    """

    input: str = attr.ib()
    mosaic_def: MosaicJSON = attr.ib(default=None, converter=_to_mosaic)
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    minzoom: int = attr.ib(default=None)
    maxzoom: int = attr.ib(default=None)
    reader: type[BaseReader] | type[MultiBaseReader] | type[MultiBandReader] = attr.ib(default=None)
    reader_options: dict = attr.ib(factory=dict)

    bounds: tuple[float, float, float, float] = attr.ib(init=False)
    crs: CRS = attr.ib(init=False)

    _backend_name: ClassVar[str] = "base"
    # Whether reads may be cached by URI (not for in-memory documents, which have no URI).
    _cacheable: ClassVar[bool] = True
    # Whether `mosaic_def.tiles` holds the whole index (document stores) or stays empty.
    _tiles_in_document: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        """Load the document (metadata) unless one was given."""
        if self.mosaic_def is None:
            self.mosaic_def = self._cached_read()
        self._apply_definition()

    def _apply_definition(self) -> None:
        """Bounds and CRS from the document; the reader and zooms the caller left open chosen
        from it (here, once: the API, the CLI, the export and the library read alike)."""
        mosaic = self.mosaic_def
        self.bounds = tuple(mosaic.bounds)
        self.crs = mosaic.tms.rasterio_geographic_crs
        if self.reader is None:
            self.reader = reader_for(mosaic)
        if self.minzoom is None or self.maxzoom is None:
            minzoom, maxzoom = zoom_range(mosaic.tms, mosaic.minzoom, mosaic.maxzoom, self.tms)
            self.minzoom = minzoom if self.minzoom is None else self.minzoom
            self.maxzoom = maxzoom if self.maxzoom is None else self.maxzoom

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

    @property
    def revision(self) -> str:
        """What HTTP ETags are made from: the version plus the store's revision of the copy
        (digest of the stored bytes, write token), so every write changes it, even a replace
        that keeps the version."""
        stored = self.mosaic_def.store_revision
        return f"{self.mosaic_def.version}+{stored}" if stored else self.mosaic_def.version

    def _is_read_only(self) -> bool:
        """Whether the store cannot be written (its class keeps the base `write`)."""
        return type(self).write is MosaicJSONBackend.write

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
