"""What the project takes from a STAC item: its URL, an asset href, its geometry; and the
cache of searched items, so the STAC reader need not GET an item the search already returned."""

import threading
from collections.abc import Callable, Sequence
from typing import Any

from cachetools import TTLCache

from lambda_handler.errors import InvalidMosaicError
from lambda_handler.settings import cache_settings, stac_settings

Item = dict[str, Any]
Accessor = Callable[[Item], str]


def item_label(item: Any, index: int | None = None) -> str:
    """How an item is named in error messages: its id, else its position."""
    if isinstance(item, dict) and item.get("id") is not None:
        return repr(item["id"])
    return f"#{index}" if index is not None else "(no id)"


def item_url(item: Item) -> str:
    """The URL of an item: its `self` link, else `{root}/collections/{collection}/items/{id}`,
    else its id."""
    links = [x for x in item.get("links") or [] if isinstance(x, dict)]
    for link in links:
        if link.get("rel") == "self" and link.get("href"):
            return link["href"]
    root = next((x["href"] for x in links if x.get("rel") == "root" and x.get("href")), None)
    if root and item.get("collection") and item.get("id") is not None:
        return f"{root.rstrip('/')}/collections/{item['collection']}/items/{item['id']}"
    if item.get("id") is None:
        raise InvalidMosaicError("a STAC item has neither a self link nor an id")
    return str(item["id"])


def asset_href(name: str) -> Accessor:
    """Accessor returning the href of asset `name` (error naming the item when it has none)."""

    def accessor(item: Item) -> str:
        try:
            return item["assets"][name]["href"]
        except (KeyError, TypeError) as err:
            raise InvalidMosaicError(
                f"STAC item {item_label(item)} has no asset {name!r} (or it has no href)"
            ) from err

    accessor.__name__ = f"asset_href_{name}"
    return accessor


def make_accessor(accessor: Accessor | str | None) -> Accessor:
    """An accessor from the `accessor` option: a callable, an asset name, or None (item URL)."""
    if accessor is None:
        return item_url
    if isinstance(accessor, str):
        return asset_href(accessor)
    if not callable(accessor):
        raise TypeError(f"accessor must be a callable or an asset name, got {accessor!r}")
    return accessor


def item_assets(items: Sequence[Item], accessor: Accessor, url: str) -> list[str]:
    """The accessor's value for each item; an item it fails on is named with the search URL."""
    values = []
    for index, item in enumerate(items):
        try:
            value = accessor(item)
        except InvalidMosaicError as err:
            raise InvalidMosaicError(f"{err} (search {url})") from err
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
            raise InvalidMosaicError(
                f"the accessor failed on STAC item {item_label(item, index)} from {url}: "
                f"{type(err).__name__}: {err}"
            ) from err
        if not isinstance(value, str) or not value:
            raise InvalidMosaicError(
                f"the accessor returned {value!r} for STAC item {item_label(item, index)} "
                f"from {url}: expected a non-empty string"
            )
        values.append(value)
    return values


def check_geometries(items: Sequence[Item], url: str) -> None:
    """Raise InvalidMosaicError naming the first item without a geometry."""
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("geometry"):
            raise InvalidMosaicError(
                f"STAC item {item_label(item, index)} from {url} has no geometry"
            )


def indexed_assets(items: Sequence[Item], accessor: Accessor, url: str) -> list[str]:
    """The asset each item is indexed under, once every item is known to have a footprint.

    Errors name the item and the search `url`, which the builder could not do.
    """
    check_geometries(items, url)
    return item_assets(items, accessor, url)


# Items seen in searches, by URL, so the STAC reader need not GET each item again.
_items_lock = threading.Lock()
_items: TTLCache | None = None


def _item_store() -> TTLCache | None:
    global _items
    size = stac_settings().item_cache_size
    if not cache_settings().enabled or size == 0:
        return None
    if _items is None or _items.maxsize != size or _items.ttl != cache_settings().ttl:
        _items = TTLCache(maxsize=size, ttl=cache_settings().ttl)
    return _items


def remember_items(items: Sequence[Item], urls: Sequence[str], query: dict | None) -> None:
    """Keep searched items by URL for `cached_item` (not when `fields` trimmed the items)."""
    if query and query.get("fields"):
        return
    with _items_lock:
        store = _item_store()
        if store is None:
            return
        for item, item_href in zip(items, urls, strict=True):
            store[item_href] = item


def cached_item(item_href: str) -> Item | None:
    """A searched item by URL, if still cached."""
    with _items_lock:
        store = _item_store()
        return None if store is None else store.get(item_href)


def forget_items() -> None:
    """Drop the searched items (tests)."""
    with _items_lock:
        if _items is not None:
            _items.clear()
