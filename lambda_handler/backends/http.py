"""HTTP(S) backend: a MosaicJSON document served by a web server (read-only)."""

from typing import ClassVar

import attr
import httpx

from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.backends.compression import decode_document
from lambda_handler.errors import MosaicAuthError, MosaicError, MosaicNotFoundError
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.settings import read_settings


@attr.s
class HttpBackend(MosaicJSONBackend):
    """A MosaicJSON document read over HTTP(S). Writes raise ReadOnlyBackendError."""

    # Read-only: no document at init (as cogeo-mosaic), so positional arguments after the URL
    # are tms, minzoom, maxzoom, reader, reader_options there and here.
    mosaic_def: MosaicJSON = attr.ib(init=False, default=None)

    _backend_name: ClassVar[str] = "HTTP"

    def _read(self) -> MosaicJSON:
        try:
            response = httpx.get(
                self.input, timeout=read_settings().http_timeout, follow_redirects=True
            )
        except httpx.HTTPError as err:
            raise MosaicError(f"could not fetch {self.input}: {err}") from err
        if response.status_code == 404:
            raise MosaicNotFoundError(f"mosaic not found: {self.input} (HTTP 404)")
        if response.status_code in (401, 403):
            raise MosaicAuthError(f"access denied to {self.input} (HTTP {response.status_code})")
        if response.status_code >= 400:
            raise MosaicError(
                f"could not fetch {self.input}: HTTP {response.status_code} {response.text[:200]}"
            )
        # httpx already undid Content-Encoding: gzip; a stored .gz body is decoded here.
        return decode_document(response.content, self.input.split("?")[0])
