"""STAC backend: a MosaicJSON document built in memory from a STAC API search (read-only).

`MosaicBackend("stac+https://host/search", query={...}, minzoom=.., maxzoom=..,
stac_api_options={...}, mosaic_options={...})` searches, then indexes the items' footprints with
the project's builder. Nothing is written anywhere.
"""

import hashlib
from collections.abc import Callable
from typing import Any, ClassVar

import attr
import morecantile
from rio_tiler.constants import WEB_MERCATOR_TMS
from rio_tiler.io import BaseReader, MultiBandReader, MultiBaseReader

from lambda_handler import cache
from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.errors import InvalidMosaicError, MosaicNotFoundError
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.stac.client import api_options, cached_search, canonical, search, search_url
from lambda_handler.stac.items import indexed_assets, item_url, make_accessor, remember_items
from lambda_handler.stac.mosaic import mosaic_from_items
from lambda_handler.stac.reader import SearchedItemReader

# mosaic_options that are not builder arguments.
_ZOOM_OPTIONS = ("minzoom", "maxzoom")


def _option_key(value: Any) -> Any:
    """A hashable cache-key form of one mosaic option (callables by identity)."""
    if callable(value) and not isinstance(value, type):
        return value  # kept alive by the cache, so its identity cannot be reused meanwhile
    if isinstance(value, morecantile.TileMatrixSet):
        return value.model_dump_json()
    return canonical(value)


def _with_geometry(query: dict) -> dict:
    """The query with `geometry` kept by its `fields` filter: footprints are the index, and
    documented queries (`"fields": {"include": ["id", ...]}`) leave it out on APIs that honour
    the fields extension."""
    fields = query.get("fields")
    if not isinstance(fields, dict):
        return query
    fields = dict(fields)
    include = list(fields.get("include") or [])
    if include and "geometry" not in include:
        fields["include"] = [*include, "geometry"]
    exclude = list(fields.get("exclude") or [])
    if "geometry" in exclude:
        fields["exclude"] = [name for name in exclude if name != "geometry"]
    return {**query, "fields": fields}


@attr.s
class StacBackend(MosaicJSONBackend):
    """A mosaic of the items a STAC API search returns (`stac+http(s)://host/search`).

    Attributes:
        input: `stac+https://host/search` (the search endpoint with a `stac+` prefix).
        query: the search body (collections, bbox/intersects, datetime, query, filter, sortby…).
        minzoom/maxzoom: zooms of the mosaic (required, unless given in `mosaic_options`).
        stac_api_options: `max_items`, `limit`, `next_link_key`.
        mosaic_options: `accessor` (callable item -> asset, or an asset name; default the item
            URL), `tilematrixset`, `minzoom`, `maxzoom`, `quadkey_zoom` and the builder's filters
            (`minimum_tile_cover`, `tile_cover_sort`, `maximum_items_per_tile`, …).
        reader: defaults to rio-tiler's STAC reader fed with the searched items.
    """

    # Redefined in cogeo-mosaic's order, so its positional form works:
    # STACBackend(url, query, minzoom, maxzoom, tms, reader, reader_options, ...).
    input: str = attr.ib()
    query: dict = attr.ib(factory=dict)
    minzoom: int = attr.ib(default=None)
    maxzoom: int = attr.ib(default=None)
    tms: morecantile.TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    reader: type[BaseReader] | type[MultiBaseReader] | type[MultiBandReader] = attr.ib(
        default=SearchedItemReader
    )
    reader_options: dict = attr.ib(factory=dict)
    stac_api_options: dict = attr.ib(factory=dict)
    mosaic_options: dict = attr.ib(factory=dict)
    # Read-only: the document always comes from the search.
    mosaic_def: MosaicJSON = attr.ib(init=False, default=None)

    _backend_name: ClassVar[str] = "STAC"

    def __attrs_post_init__(self) -> None:
        """Check the options, then search and build (or take the cached document)."""
        self.stac_api_options = api_options(self.stac_api_options)
        self.query = _with_geometry(dict(self.query or {}))
        options = dict(self.mosaic_options or {})
        self._url = search_url(self.input)
        self._mosaic_minzoom = options.pop("minzoom", self.minzoom)
        self._mosaic_maxzoom = options.pop("maxzoom", self.maxzoom)
        if self._mosaic_minzoom is None or self._mosaic_maxzoom is None:
            raise InvalidMosaicError(
                "a STAC mosaic needs minzoom and maxzoom (arguments or mosaic_options)"
            )
        tms = options.get("tilematrixset")
        if isinstance(tms, str):
            try:
                options["tilematrixset"] = morecantile.tms.get(tms)
            except Exception as err:  # morecantile raises its own InvalidIdentifier
                raise InvalidMosaicError(f"unknown tilematrixset {tms!r}: {err}") from err
        self._accessor: Callable[[dict], str] = make_accessor(options.pop("accessor", None))
        self._build_options = options
        # Cache entries are per search, not per URL: one API serves many different mosaics.
        identity = canonical(
            [self.query, self.stac_api_options, self._mosaic_minzoom, self._mosaic_maxzoom]
        )
        self._cache_uri = f"{self.input}#{hashlib.sha256(identity.encode()).hexdigest()[:24]}"
        self._cache_extra = (
            _option_key(self._accessor),
            tuple(sorted((k, _option_key(v)) for k, v in options.items())),
        )
        super().__attrs_post_init__()

    # ------------------------------------------------------------------ storage
    def _cache_get(self, key: Any, compute: Callable[[], Any], store: cache.MosaicCache) -> Any:
        return store.get_or_compute(self._cache_uri, (key, self._cache_extra), compute)

    def _read(self) -> MosaicJSON:
        """Search the STAC API and index the items' footprints."""
        items = cached_search(self._url, self.query, **self.stac_api_options)
        if not items:
            raise MosaicNotFoundError(
                f"the STAC search at {self._url} returned no items for query {canonical(self.query)}"
            )
        assets = indexed_assets(items, self._accessor, self._url)
        remember_items(items, assets, self.query)
        try:
            return mosaic_from_items(
                items, assets, self._mosaic_minzoom, self._mosaic_maxzoom, **self._build_options
            )
        except InvalidMosaicError as err:
            raise InvalidMosaicError(f"STAC search {self._url}: {err}") from err


# cogeo-mosaic's names, for code written against its documents.
STACBackend = StacBackend


def default_stac_accessor(feature: dict) -> str:
    """cogeo-mosaic's default accessor: the item's `self` link, else
    `{root}/collections/{collection}/items/{id}`, else its id."""
    return item_url(feature)


def _fetch(
    stac_url: str,
    query: dict,
    max_items: int | None = None,
    next_link_key: str | None = None,
    limit: int = 500,
) -> list[dict]:
    """cogeo-mosaic's search helper: every item of a STAC API search (POST, following next
    links; `max_items` caps the total). Not cached, as in cogeo-mosaic."""
    query = dict(query)
    query.setdefault("limit", limit)
    return search(search_url(stac_url), query, max_items=max_items, next_link_key=next_link_key)
