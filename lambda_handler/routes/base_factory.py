"""The base of the read-route factories: one router, named routes, the mosaic dependency.

As titiler's `BaseFactory`: a dataclass holding an `APIRouter`, whose `__post_init__` calls
`register_routes()`; subclasses add one method per group of endpoints.
"""

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lambda_handler.api_errors import READ_RESPONSES
from lambda_handler.routes.opened_mosaic import (
    ConditionalRoute,
    default_tms,
    mosaic_dependency,
)


@dataclass
class BaseMosaicFactory(abc.ABC):
    """Routes reading one mosaic, named by `path_dependency` (which gives its URI)."""

    path_dependency: Callable[..., str]
    # Prefix of the route names (for url_for), of the operation ids and of the tag.
    name: str
    prefix: str = ""
    router: APIRouter = field(init=False)

    def __post_init__(self) -> None:
        self.router = APIRouter(
            prefix=self.prefix,
            tags=[f"Mosaic ({self.name})"],
            route_class=ConditionalRoute,
            responses=READ_RESPONSES,
        )
        self.register_routes()

    @abc.abstractmethod
    def register_routes(self) -> None:
        """Add every route to `self.router`."""

    def route_name(self, kind: str) -> str:
        """The name of a route of this factory (`request.url_for`)."""
        return f"{self.name}:{kind}"

    def mosaic(self, tms_dependency: Callable[..., Any] = default_tms) -> Callable[..., Any]:
        """The mosaic dependency of this factory's routes, opened in the TMS
        `tms_dependency` reads from the request."""
        return mosaic_dependency(self.path_dependency, tms_dependency)


def json_answer(content: Any, etag: str | None = None) -> JSONResponse:
    """A JSON answer of a read route, with the mosaic's ETag when it has one."""
    return JSONResponse(content, headers={"ETag": etag} if etag else {})
