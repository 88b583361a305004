"""STAC search results → MosaicJSON: each item's footprint indexed under its asset."""

from collections.abc import Sequence
from typing import Any

from lambda_handler.errors import MosaicError
from lambda_handler.mosaic.builder import from_features
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.stac.client import search
from lambda_handler.stac.items import Item, indexed_assets, make_accessor
from lambda_handler.stac.seasons import filter_seasons


class EmptySearchError(MosaicError):
    """A STAC search (after its seasons filter) left no item to mosaic."""


def mosaic_from_items(
    items: Sequence[Item],
    assets: Sequence[str],
    minzoom: int,
    maxzoom: int,
    **builder_options: Any,
) -> MosaicJSON:
    """The builder's document of `items`, item i indexed under `assets[i]`.

    The assets are computed beforehand (`items.indexed_assets`) so that an accessor's error
    names the search; the builder gets them back by item identity.
    """
    asset_of = {id(item): asset for item, asset in zip(items, assets, strict=True)}
    return from_features(
        items, minzoom, maxzoom, accessor=lambda item: asset_of[id(item)], **builder_options
    )


def mosaic_from_search(
    url: str,
    query: dict[str, Any],
    minzoom: int,
    maxzoom: int,
    *,
    asset: str | None = None,
    seasons: Sequence[str] | None = None,
    max_items: int | None = None,
    allowed_prefixes: list[str] | None = None,
    **builder_options: Any,
) -> MosaicJSON:
    """The MosaicJSON document of a STAC search (not cached: a stored mosaic is built once).

    `asset` names the asset whose href is indexed; without one the item URLs are, and the
    document says `asset_type: stac` so it is read with the STAC item reader. `seasons` keeps
    the items whose datetime falls in them. EmptySearchError when no item is left.
    """
    items = search(url, query, max_items=max_items, allowed_prefixes=allowed_prefixes)
    items = filter_seasons(items, seasons)
    if not items:
        raise EmptySearchError(f"the STAC search at {url} returned no items to mosaic")
    assets = indexed_assets(items, make_accessor(asset), url)
    if asset is None:
        builder_options.setdefault("asset_type", "stac")
    return mosaic_from_items(items, assets, minzoom, maxzoom, **builder_options)
