"""STAC API item search: paging, errors, caching. Shared by the static and dynamic STAC backends.

Paging follows the STAC API spec only: `rel=next` links, POST (with `body`, and `merge`) or GET;
a search stops on an empty page or a page without a next link. The `context` extension and
`numberMatched` are never consulted: many servers omit them or get them wrong.

Where requests go: redirects and `next` links are followed only to the search URL's own origin
(scheme, host, port) or, when an allow-list is given (MOSAIC_API_ALLOWED_ASSET_PREFIXES), to a
URL it admits. Errors name the status and the URL, never the upstream's body (an internal
server's error page can hold anything).
"""

import json
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import httpx
from cachetools import TTLCache

from lambda_handler import cache
from lambda_handler.errors import InvalidMosaicError, MosaicError
from lambda_handler.settings import cache_settings, stac_settings
from lambda_handler.url_policy import UrlNotAllowed, check_url, same_origin

Item = dict[str, Any]
Accessor = Callable[[Item], str]

_ACCEPT = "application/geo+json, application/json;q=0.9"
_OPTION_NAMES = ("max_items", "limit", "next_link_key", "allowed_prefixes")
_MAX_REDIRECTS = 5


class StacApiError(MosaicError):
    """A STAC API request failed; `status` is the HTTP status (None when there was no answer)."""

    def __init__(self, message: str, url: str, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class StacApiUnreachableError(StacApiError):
    """The STAC API could not be reached (connection refused, DNS, timeout)."""


class StacResponseError(StacApiError):
    """The STAC API answered something that is not a search page (invalid JSON, no features)."""


# ---------------------------------------------------------------------------- HTTP client
_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """The process-wide HTTP client (connection reuse across searches and warm invocations)."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                timeout=stac_settings().timeout,
                # Redirects are followed by _request, only where the search may go.
                follow_redirects=False,
                headers={"Accept": _ACCEPT},
            )
        return _client


def search_url(url: str) -> str:
    """The HTTP(S) URL of a search endpoint given as `stac+http(s)://…` or plain `http(s)://…`."""
    return url[len("stac+") :] if url.lower().startswith("stac+") else url


# ---------------------------------------------------------------------------- requests
class _Scope:
    """Where one search may send requests: its own origin, or what an allow-list admits."""

    def __init__(self, url: str, allowed_prefixes: list[str] | None):
        self.url = url
        self.allowed = list(allowed_prefixes or [])

    def check(self, target: str, what: str) -> None:
        """StacApiError unless `target` may be requested."""
        if same_origin(target, self.url):
            return
        if self.allowed:
            try:
                check_url(target, self.allowed, what, "MOSAIC_API_ALLOWED_ASSET_PREFIXES")
                return
            except UrlNotAllowed as err:
                raise StacApiError(f"the STAC search at {self.url}: {err}", url=target) from err
        raise StacApiError(
            f"the STAC search at {self.url} refused {what} {target!r}: another host",
            url=target,
        )


def _request(
    method: str,
    url: str,
    body: dict | None,
    headers: dict[str, str] | None,
    page: int,
    scope: "_Scope | None" = None,
) -> dict:
    where = f"page {page} of the STAC search ({method} {url})"
    response = None
    for _ in range(_MAX_REDIRECTS + 1):
        try:
            response = http_client().request(method, url, json=body, headers=headers)
        except httpx.HTTPError as err:
            raise StacApiUnreachableError(f"{where} failed: {type(err).__name__}", url=url) from err
        if not response.is_redirect:
            break
        target = str(response.url.join(response.headers.get("location", "")))
        if scope is not None:
            scope.check(target, "a redirect to")
        elif not same_origin(target, url):
            raise StacApiError(f"{where} redirects to another host: {target}", url=target)
        if response.status_code in (301, 302, 303):
            method, body = ("GET", None) if method != "GET" else (method, body)
        url = target
    else:
        raise StacApiError(f"{where} redirects more than {_MAX_REDIRECTS} times", url=url)
    assert response is not None
    if response.status_code >= 400:
        raise StacApiError(
            f"{where} failed: HTTP {response.status_code} {response.reason_phrase}",
            url=url,
            status=response.status_code,
        )
    try:
        payload = response.json()
    except ValueError as err:
        raise StacResponseError(
            f"{where} returned invalid JSON", url=url, status=response.status_code
        ) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("features"), list):
        raise StacResponseError(
            f"{where} returned no 'features' list: not a STAC ItemCollection",
            url=url,
            status=response.status_code,
        )
    return payload


def _next_request(
    page: dict, rel: str, url: str, body: dict
) -> tuple[str, str, dict | None, dict | None] | None:
    """(method, url, body, headers) of the link with relation `rel`, or None on the last page."""
    links = page.get("links") or []
    link = next((x for x in links if isinstance(x, dict) and x.get("rel") == rel), None)
    if link is None or not link.get("href"):
        return None
    href = str(httpx.URL(url).join(link["href"]))  # relative hrefs are resolved as browsers do
    headers = link.get("headers") or None
    if str(link.get("method", "GET")).upper() != "POST":
        return "GET", href, None, headers
    link_body = link.get("body")
    if link_body is None:
        next_body = body  # the token is in the href: resend the same body
    elif link.get("merge"):
        next_body = {**body, **link_body}
    else:
        next_body = link_body
    return "POST", href, next_body, headers


def _item_key(item: Any) -> tuple[str, str] | None:
    if isinstance(item, dict) and item.get("id") is not None:
        return (str(item.get("collection")), str(item["id"]))
    return None


def normalize_query(query: dict | None) -> dict:
    """A copy of a search body with `sortby` given as text ("-a,+b") turned into the POST form."""
    body = dict(query or {})
    sortby = body.get("sortby")
    if isinstance(sortby, str):
        fields = [f.strip() for f in sortby.split(",") if f.strip()]
        body["sortby"] = [
            {"field": f.lstrip("+-"), "direction": "desc" if f.startswith("-") else "asc"}
            for f in fields
        ]
    return body


def search(
    url: str,
    query: dict | None = None,
    max_items: int | None = None,
    limit: int | None = None,
    next_link_key: str | None = None,
    allowed_prefixes: list[str] | None = None,
) -> list[Item]:
    """Every item a STAC API search returns, following next links page by page.

    `limit` is the page size (default: the query's own `limit`, else the settings' 500);
    `max_items` caps the total; `next_link_key` is the link relation to follow ("next");
    redirects and next links stay on the search URL's origin or under `allowed_prefixes`.
    An item repeated on a later page (offset paging while the catalog changes) is kept once.
    Any failing page fails the whole search: a truncated result would be a silently wrong mosaic.
    """
    settings = stac_settings()
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    url = search_url(url)
    scope = _Scope(url, allowed_prefixes)
    body = normalize_query(query)
    page_size = limit if limit is not None else body.get("limit")
    if page_size is None:
        page_size = settings.default_limit
    if max_items:
        page_size = min(page_size, max_items)  # never ask for more than will be kept
    body["limit"] = page_size
    rel = next_link_key or "next"

    features: list[Item] = []
    request: tuple[str, str, dict | None, dict | None] | None = ("POST", url, body, None)
    seen: set[str] = set()
    found: set[tuple[str, str]] = set()
    page_number = 0
    while request is not None:
        method, href, request_body, headers = request
        fingerprint = json.dumps([method, href, request_body], sort_keys=True, default=str)
        if fingerprint in seen:
            raise StacApiError(
                f"the STAC search at {url} loops: page {page_number + 1} repeats an earlier "
                f"request ({method} {href})",
                url=href,
            )
        seen.add(fingerprint)
        page_number += 1
        if page_number > settings.max_pages:
            raise StacApiError(
                f"the STAC search at {url} has more than {settings.max_pages} pages "
                "(MOSAIC_STAC_MAX_PAGES): narrow the query or set max_items",
                url=href,
            )
        if page_number > 1:
            scope.check(href, "the next link")
        page = _request(method, href, request_body, headers, page_number, scope)
        items = page["features"]
        if not items:
            break
        for item in items:
            # Offset-paged APIs repeat an item when the result shifts between two pages.
            key = _item_key(item)
            if key is None or key not in found:
                features.append(item)
                if key is not None:
                    found.add(key)
        if max_items and len(features) >= max_items:
            return features[:max_items]
        if request_body is not None:
            body = request_body
        request = _next_request(page, rel, href, body)
    return features


# ---------------------------------------------------------------------------- caching
def canonical(value: Any) -> str:
    """A stable text form of a JSON-like value, for cache keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def api_options(options: dict | None) -> dict:
    """Validated `stac_api_options` (unknown names raise, so a typo is not silently ignored)."""
    options = dict(options or {})
    unknown = set(options) - set(_OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown stac_api_options: {', '.join(sorted(unknown))} "
            f"(supported: {', '.join(_OPTION_NAMES)})"
        )
    return options


def cached_search(url: str, query: dict | None = None, **options: Any) -> list[Item]:
    """`search` through the process TTL cache, keyed on the URL, the query and the options.

    The cached list is shared: callers must not modify it or its items.
    """
    url = search_url(url)
    options = api_options(options)
    key: Hashable = ("stac-search", canonical(query or {}), canonical(options))
    return cache.assets_cache.get_or_compute(url, key, lambda: search(url, query, **options))


# ---------------------------------------------------------------------------- items
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
