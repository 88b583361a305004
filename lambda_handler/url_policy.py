"""Allow-lists of URLs, compared as parsed URLs (scheme, host, port, path segments).

A string prefix is not a boundary: `http://good.example` is a prefix of
`http://good.example@169.254.169.254/` (another host) and `file:///data/allowed` of
`file:///data/allowed-secret/` (another folder). Here a URL is allowed when a prefix has the
same scheme, host and port and its path segments start the URL's. A prefix whose last segment
ends with `:` (`sqlite:///m.db:`, `dynamodb:///table:`) admits that segment followed by a name.

Some forms are refused whatever the list says: credentials in the URL, `..` segments, NUL or
backslashes, GDAL's own `/vsi…/` paths (which bypass every check), and the link-local
addresses where clouds serve instance credentials (169.254.0.0/16, fe80::/10, fd00:ec2::254).
"""

import functools
import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# Matches every URL that is not refused anyway.
ALLOW_ALL = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443, "stac+http": 80, "stac+https": 443}
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
_EC2_IPV6_METADATA = ipaddress.ip_address("fd00:ec2::254")


class UrlNotAllowed(ValueError):
    """A URL is refused; the message says why (without echoing anything but the URL)."""


@dataclass(frozen=True)
class Location:
    """The parts of a URL an allow-list compares."""

    scheme: str
    host: str
    port: int | None
    segments: tuple[str, ...]


def _link_local(host: str) -> bool:
    if host in _METADATA_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_link_local or address == _EC2_IPV6_METADATA


# Every candidate asset of every tile is checked: the same few URLs and prefixes, parsed once.
@functools.lru_cache(maxsize=4096)
def parse_location(url: str) -> Location:
    """The comparable parts of `url` (a bare path is a `file://` URL); UrlNotAllowed for the
    forms that are always refused."""
    url = _refuse_raw_forms(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme:
        raise UrlNotAllowed(f"{url!r} is neither an absolute path nor a URL")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed(f"{url!r} carries credentials (user@host)")
    try:
        port = parts.port
    except ValueError as err:
        raise UrlNotAllowed(f"{url!r} has an invalid port") from err
    host = (parts.hostname or "").lower()
    if scheme == "file" and host == "localhost":
        host = ""
    if _link_local(host):
        raise UrlNotAllowed(f"{url!r} points at a link-local (instance metadata) address")
    segments = _path_segments(url, parts.path, scheme)
    return Location(scheme, host, port or _DEFAULT_PORTS.get(scheme), segments)


def _refuse_raw_forms(url: str) -> str:
    """`url` with a bare path made a file:// URL; UrlNotAllowed for forms refused as text."""
    if not isinstance(url, str) or not url:
        raise UrlNotAllowed("an empty URL")
    if "\x00" in url or "\\" in url:
        raise UrlNotAllowed(f"{url!r} contains a NUL or a backslash")
    if url.lower().startswith(("/vsi", "file:///vsi", "file://localhost/vsi")):
        raise UrlNotAllowed(f"{url!r} is a GDAL virtual file path: give a plain URL")
    return "file://" + url if url.startswith("/") else url


def _path_segments(url: str, path: str, scheme: str) -> tuple[str, ...]:
    # Web servers decode %2e%2e and %2f: compare decoded segments, refuse the ambiguous ones.
    decode = scheme in ("http", "https", "stac+http", "stac+https")
    segments = []
    for segment in path.split("/"):
        text = unquote(segment) if decode else segment
        if text in ("..", ".") or (decode and "/" in text):
            raise UrlNotAllowed(f"{url!r} has a '..' or '.' path segment")
        segments.append(text)
    return tuple(segments)


@functools.lru_cache(maxsize=256)
def _prefix_location(prefix: str) -> Location:
    location = parse_location(prefix)
    segments = location.segments
    # "a/b/" and "a/b" both mean the folder b; an empty path means the whole host.
    while segments and segments[-1] == "":
        segments = segments[:-1]
    return Location(location.scheme, location.host, location.port, segments)


def _matches(location: Location, prefix: Location) -> bool:
    if (location.scheme, location.host, location.port) != (
        prefix.scheme,
        prefix.host,
        prefix.port,
    ):
        return False
    want, have = prefix.segments, location.segments
    if not want:
        return True
    if len(have) < len(want) or have[: len(want) - 1] != want[:-1]:
        return False
    last, candidate = want[-1], have[len(want) - 1]
    if last.endswith(":"):  # sqlite:///m.db: admits sqlite:///m.db:name, nothing deeper
        return candidate.startswith(last) and len(have) == len(want)
    return candidate == last


def check_url(url: str, prefixes: list[str], what: str = "URL", setting: str = "") -> None:
    """Raise UrlNotAllowed naming `url` unless it is allowed. An empty list allows every URL
    that is not refused anyway; `*` in the list does the same."""
    location = parse_location(url)
    if not prefixes or ALLOW_ALL in prefixes:
        return
    for prefix in prefixes:
        try:
            if _matches(location, _prefix_location(prefix)):
                return
        except UrlNotAllowed:
            continue  # a malformed prefix admits nothing
    where = f" ({setting})" if setting else ""
    raise UrlNotAllowed(f"{what} {url!r} is not under an allowed prefix{where}")


def is_allowed(url: str, prefixes: list[str]) -> bool:
    """Whether `check_url` accepts `url`."""
    try:
        check_url(url, prefixes)
    except UrlNotAllowed:
        return False
    return True


def same_origin(url: str, other: str) -> bool:
    """Whether two http(s) URLs have the same scheme, host and port."""
    try:
        a, b = parse_location(url), parse_location(other)
    except UrlNotAllowed:
        return False
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
