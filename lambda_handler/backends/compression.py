"""Encoding of whole MosaicJSON documents: JSON, gzip-compressed when the name ends in `.gz`;
the revision of stored bytes."""

import gzip
import hashlib
import zlib

from lambda_handler.errors import InvalidMosaicError
from lambda_handler.mosaic.model import MosaicJSON


def is_gzip_name(name: str) -> bool:
    """Whether a key or path names a gzip-compressed document."""
    return name.lower().endswith(".gz")


def encode_document(document: MosaicJSON, name: str) -> bytes:
    """Bytes to store for `document` under `name`."""
    body = document.to_json().encode("utf-8")
    # mtime=0: the same document always gives the same bytes (stable ETags, no spurious diffs).
    return gzip.compress(body, compresslevel=6, mtime=0) if is_gzip_name(name) else body


def decode_document(body: bytes, name: str) -> MosaicJSON:
    """Parse stored bytes; gzip is detected by its magic number as well as by the name."""
    if body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as err:
            raise InvalidMosaicError(f"{name} is not a valid gzip file: {err}") from err
    elif is_gzip_name(name) and body.lstrip()[:1] != b"{":
        raise InvalidMosaicError(f"{name} ends in .gz but is not gzip-compressed")
    return MosaicJSON.parse(body, source=name)


def revision_of(body: bytes) -> str:
    """The store revision of a document: a digest of its stored bytes (stores whose own
    version token is not a content digest, e.g. files and GCS generations)."""
    return hashlib.sha1(body, usedforsecurity=False).hexdigest()[:20]
