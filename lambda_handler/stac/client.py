"""STAC API item search: HTTP requests, paging, errors and the search cache.

Shared by the static and dynamic STAC backends and by `POST /mosaics` with `stac_api`.

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
from collections.abc import Hashable
from typing import Any

import httpx

from lambda_handler import cache
from lambda_handler.errors import MosaicError
from lambda_handler.settings import stac_settings
from lambda_handler.stac.items import Item
from lambda_handler.url_policy import UrlNotAllowed, check_url, same_origin

_ACCEPT = "application/geo+json, application/json;q=0.9"
_OPTION_NAMES = ("max_items", "limit", "next_link_key", "allowed_prefixes")
_MAX_REDIRECTS = 5
# (method, url, body, headers) of one page of a search.
PageRequest = tuple[str, str, dict | None, dict | None]


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


def _next_request(page: dict, rel: str, url: str, body: dict) -> PageRequest | None:
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


def _first_body(
    query: dict | None, limit: int | None, max_items: int | None, default_limit: int
) -> dict:
    """The body of the first page: the normalized query with the page size as its `limit`."""
    body = normalize_query(query)
    page_size = limit if limit is not None else body.get("limit")
    if page_size is None:
        page_size = default_limit
    if max_items:
        page_size = min(page_size, max_items)  # never ask for more than will be kept
    body["limit"] = page_size
    return body


class _PageGuard:
    """Stops a search whose next links loop back to an earlier page or that runs past
    MOSAIC_STAC_MAX_PAGES pages: a misbehaving API must not keep a request busy forever."""

    def __init__(self, url: str, max_pages: int):
        self.url = url
        self.max_pages = max_pages
        self.page_number = 0
        self._seen: set[str] = set()

    def admit(self, method: str, href: str, body: dict | None) -> int:
        """The number of the page about to be requested; StacApiError if it may not be."""
        fingerprint = json.dumps([method, href, body], sort_keys=True, default=str)
        if fingerprint in self._seen:
            raise StacApiError(
                f"the STAC search at {self.url} loops: page {self.page_number + 1} repeats an "
                f"earlier request ({method} {href})",
                url=href,
            )
        self._seen.add(fingerprint)
        self.page_number += 1
        if self.page_number > self.max_pages:
            raise StacApiError(
                f"the STAC search at {self.url} has more than {self.max_pages} pages "
                "(MOSAIC_STAC_MAX_PAGES): narrow the query or set max_items",
                url=href,
            )
        return self.page_number


class _UniqueItems:
    """The items of a search in order, each kept once: offset-paged APIs repeat an item when
    the result shifts between two pages."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._found: set[tuple[str, str]] = set()

    def add(self, page_items: list[Item]) -> None:
        """Append the items of a page not already kept (items without an id are all kept)."""
        for item in page_items:
            key = _item_key(item)
            if key is None or key not in self._found:
                self.items.append(item)
                if key is not None:
                    self._found.add(key)


def _item_key(item: Any) -> tuple[str, str] | None:
    if isinstance(item, dict) and item.get("id") is not None:
        return (str(item.get("collection")), str(item["id"]))
    return None


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
    body = _first_body(query, limit, max_items, settings.default_limit)
    rel = next_link_key or "next"
    guard = _PageGuard(url, settings.max_pages)
    found = _UniqueItems()
    request: PageRequest | None = ("POST", url, body, None)
    while request is not None:
        method, href, request_body, headers = request
        page_number = guard.admit(method, href, request_body)
        if page_number > 1:
            scope.check(href, "the next link")
        page = _request(method, href, request_body, headers, page_number, scope)
        if not page["features"]:
            break
        found.add(page["features"])
        if max_items and len(found.items) >= max_items:
            return found.items[:max_items]
        if request_body is not None:
            body = request_body
        request = _next_request(page, rel, href, body)
    return found.items


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
