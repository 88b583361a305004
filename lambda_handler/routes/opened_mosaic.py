"""The one dependency of the read routes: the mosaic opened, its ETag, or a 304.

Every read route starts the same way: resolve the mosaic's URI, open it (in the TMS the request
names), derive the ETag from the mosaic's revision and the request, and answer 304 when the
client already holds that ETag. `mosaic_dependency` does it once for all of them, as a FastAPI
dependency with `yield` (the backend is opened when the route first uses it, after every
parameter is validated, and closed after the route has answered).
"""

from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import Field
from starlette.responses import Response

from lambda_handler.api_errors import ErrorMappingRoute
from lambda_handler.routes.common import make_etag, not_modified, open_backend
from lambda_handler.routes.dependencies import TileMatrixSetId, get_tms

if TYPE_CHECKING:
    from morecantile import TileMatrixSet

    from lambda_handler.backends.base import MosaicJSONBackend

TmsPath = Annotated[TileMatrixSetId, Path(description="TileMatrixSet identifier.")]
# Path parameter in one variant of a route, query parameter (with a default) in the other.
TmsField = Annotated[TileMatrixSetId, Field(description="TileMatrixSet identifier.")]


class OpenedMosaic:
    """The request's mosaic, opened on first use, with what a conditional answer needs.

    The dependency only resolves the URI and the TMS (no I/O): FastAPI validates the route's
    parameters after its dependencies have run, so opening there would read the store (a
    DynamoDB/S3 round trip) for requests about to be refused with a 422. The route's body runs
    once every parameter is valid; its first use of `backend`, `etag` or `version` opens the
    mosaic and raises NotModified when the client holds the ETag.
    """

    def __init__(self, request: Request, uri: str, tms: "TileMatrixSet | None"):
        self.request = request
        self.uri = uri
        self.tms = tms
        self._stack = ExitStack()
        self._opened: tuple[MosaicJSONBackend, str, str] | None = None

    def _open(self) -> "tuple[MosaicJSONBackend, str, str]":
        if self._opened is None:
            backend = self._stack.enter_context(open_backend(self.uri, self.tms))
            version = cache_version(backend)
            etag = make_etag(self.uri, version, self.request)
            self._opened = (backend, etag, version)
            if cached := not_modified(self.request, etag):
                raise NotModified(cached)
        return self._opened

    @property
    def backend(self) -> "MosaicJSONBackend":
        """The open backend."""
        return self._open()[0]

    @property
    def etag(self) -> str:
        """The ETag of this request's answer (mosaic, revision, path and query)."""
        return self._open()[1]

    @property
    def version(self) -> str:
        """What changes with every write (the `v=` of tile URLs)."""
        return self._open()[2]

    def close(self) -> None:
        """Close the backend if it was opened."""
        self._stack.close()


class NotModified(Exception):
    """The client holds the current ETag: answered 304 by `ConditionalRoute`."""

    def __init__(self, response: Response):
        self.response = response
        super().__init__("not modified")


class ConditionalRoute(ErrorMappingRoute):
    """An ErrorMappingRoute that answers `NotModified` (raised by the mosaic dependency, before
    the route runs) with its 304."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, wrapped."""
        handler = super().get_route_handler()

        async def conditional(request: Request) -> Response:
            try:
                return await handler(request)
            except NotModified as answer:
                return answer.response

        return conditional


def cache_version(backend: "MosaicJSONBackend") -> str:
    """What changes with every write: the store's revision where the backend has one (a
    replace may keep the document version), else the document version."""
    return getattr(backend, "revision", None) or backend.mosaic_def.version


def default_tms() -> None:
    """No TMS in the request: the mosaic is opened in WebMercatorQuad."""
    return None


def tms_in_path(tileMatrixSetId: TmsPath) -> "TileMatrixSet":  # OGC's name, as titiler
    """The TMS of `{tileMatrixSetId}` in the route's path."""
    return get_tms(tileMatrixSetId)


def tms_in_path_or_query(
    tileMatrixSetId: TmsField = "WebMercatorQuad",  # OGC's name, as titiler
) -> "TileMatrixSet":
    """The TMS of `{tileMatrixSetId}` in the path, or of the `tileMatrixSetId` query parameter
    where the path has none (TileJSON and WMTS documents have both forms)."""
    return get_tms(tileMatrixSetId)


def mosaic_dependency(
    uri_dependency: Callable[..., str],
    tms_dependency: Callable[..., "TileMatrixSet | None"] = default_tms,
) -> Callable[..., Iterator[OpenedMosaic]]:
    """A dependency yielding the mosaic `uri_dependency` names, to be opened (on first use) in
    the TMS `tms_dependency` reads from the request; its first use raises NotModified when
    If-None-Match holds the ETag."""

    def opened_mosaic(
        request: Request,
        # The TMS first: where the route has it, it leads its parameters (as titiler's).
        tms: Annotated[Any, Depends(tms_dependency)],
        uri: Annotated[str, Depends(uri_dependency)],
    ) -> Iterator[OpenedMosaic]:
        mosaic = OpenedMosaic(request, uri, tms)
        try:
            yield mosaic
        finally:
            mosaic.close()

    return opened_mosaic
