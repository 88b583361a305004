"""Groups of routes built on first use.

Building a FastAPI route analyses its endpoint's signature and compiles a pydantic validator per
parameter (about 0.6 ms each): this API's 39 routes have ~300 parameters, ~200 ms of work that a
Lambda cold start did during init although an invoke uses one or two routes.

`DeferredRoutes` stands in the app's route list for the routes of some paths (e.g. everything
below `/mosaics/{mosaic_id}/`). It builds them (once, thread-safe) when a request for one of
those paths arrives, when `url_for` names one of
them, or when `expand_deferred_routes` is called (the OpenAPI document does, see `app.py`), and
then delegates to them in their order, so matching, 405s and URL reversal are the same as with
the routes in place. The routes are used directly, not through `include_router` (which builds
every route of an included router a second time, on the first request).
"""

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

# Scope key carrying the route a DeferredRoutes matched, from `matches` to `handle`.
_SELECTED = "lambda_handler.deferred_route"


def _path_pattern(paths: Sequence[str]) -> re.Pattern[str]:
    """A regex of path templates: `{param}` is one segment, a trailing `/...` anything below."""
    patterns = []
    for path in paths:
        below = path.endswith("/...")
        pattern = re.escape(path.removesuffix("/..."))
        pattern = re.sub(r"\\\{\w+(?::\w+)?\\\}", "[^/]+", pattern)
        patterns.append(pattern + ("/.+" if below else ""))
    return re.compile("^(?:" + "|".join(patterns) + ")$")


class DeferredRoutes(BaseRoute):
    """The routes of `factory()`, an APIRouter whose paths match the templates `paths` and
    whose route names satisfy `names` (both checked when they are built), built on first use."""

    def __init__(
        self,
        paths: Sequence[str],
        names: Callable[[str], bool],
        factory: Callable[[], APIRouter],
    ) -> None:
        self.paths = tuple(paths)
        self.names = names
        self._factory = factory
        self._routes: list[BaseRoute] | None = None
        self._lock = threading.Lock()
        self._pattern = _path_pattern(self.paths)

    @property
    def built(self) -> bool:
        """Whether the routes exist yet."""
        return self._routes is not None

    @property
    def routes(self) -> list[BaseRoute]:
        """The routes (built now if needed)."""
        if self._routes is None:
            with self._lock:
                if self._routes is None:
                    routes = list(self._factory().routes)
                    self._check(routes)
                    self._routes = routes
        return self._routes

    def _check(self, routes: list[BaseRoute]) -> None:
        # A route the group does not announce would be missed by matching or url_for.
        for route in routes:
            path, name = getattr(route, "path", ""), getattr(route, "name", "")
            if not self._pattern.match(path):
                raise ValueError(f"route {path!r} is not one of the group's paths {self.paths}")
            if not self.names(name):
                raise ValueError(f"route name {name!r} is not one of the group's names")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """The first full match among the routes, else the first partial one (405)."""
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        if not self._pattern.match(get_route_path(scope)):
            return Match.NONE, {}
        partial: Scope | None = None
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match == Match.FULL:
                return Match.FULL, {**child_scope, _SELECTED: route}
            if match == Match.PARTIAL and partial is None:
                partial = {**child_scope, _SELECTED: route}
        if partial is not None:
            return Match.PARTIAL, partial
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to the route `matches` selected."""
        await scope.pop(_SELECTED).handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: object) -> object:
        """Reverse the URL of one of the routes (building them only for one of their names)."""
        if self.names(name):
            for route in self.routes:
                try:
                    return route.url_path_for(name, **path_params)
                except NoMatchFound:
                    pass
        raise NoMatchFound(name, path_params)

    def __repr__(self) -> str:
        state = f"{len(self._routes)} routes" if self._routes is not None else "not built"
        return f"{type(self).__name__}(paths={self.paths!r}, {state})"


def expand_deferred_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """`routes` with every DeferredRoutes replaced by its (built) routes."""
    expanded: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, DeferredRoutes):
            expanded.extend(route.routes)
        else:
            expanded.append(route)
    return expanded


def document_deferred_routes(app: FastAPI) -> None:
    """Put `app`'s deferred routes in place before its OpenAPI document is generated (FastAPI
    documents the APIRoutes it finds in `app.routes`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.router.routes = expand_deferred_routes(app.router.routes)
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]
