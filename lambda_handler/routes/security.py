"""Credentials of the write endpoints.

A key configured in the settings (`MOSAIC_API_API_KEY`) must come as `Authorization: Bearer
<key>` or `x-api-key: <key>`: none gives 401, a wrong one 403. Without a configured key, writes
are refused (403) unless `MOSAIC_API_ALLOW_ANONYMOUS_WRITES=true` opens them for local use.
In AWS the CDK stack puts IAM auth on these routes in front of the function as well, and the
writer function checks the IAM identity of each write event (handler.py).

The check runs twice: in `WriteAuthMiddleware`, from the headers alone, before any body is
read (FastAPI reads and parses the body before it runs dependencies), and as the routes'
dependency, which documents the schemes in the OpenAPI document.
"""

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from lambda_handler.api_errors import ApiError
from lambda_handler.routes.middleware import WRITE_METHODS, send_json_error
from lambda_handler.settings import ApiSettings

# auto_error=False: we answer 401/403 ourselves, with messages saying what is expected.
bearer_scheme = HTTPBearer(auto_error=False, description="The API key as a bearer token.")
api_key_scheme = APIKeyHeader(name="x-api-key", auto_error=False, description="The API key.")


def _settings(request: Request) -> ApiSettings:
    # Not routes.dependencies.get_settings: the app imports this module at startup, that one
    # lists colormaps and TMSs on import.
    return request.app.state.settings


def check_write_credentials(
    settings: ApiSettings, authorization: str | None, api_key: str | None
) -> None:
    """ApiError 401 without credentials, 403 with wrong ones or when writes are disabled."""
    if not settings.api_key:
        if settings.allow_anonymous_writes:
            return
        raise ApiError(
            403,
            "writes are disabled: no API key is configured (set MOSAIC_API_API_KEY, or "
            "MOSAIC_API_ALLOW_ANONYMOUS_WRITES=true for local use)",
        )
    given = api_key
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            given = credentials.strip()
    if not given:
        raise ApiError(
            401, "credentials required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
        )
    if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
        raise ApiError(403, "invalid API key")


def require_write_access(
    request: Request,
    settings: Annotated[ApiSettings, Depends(_settings)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> None:
    """Dependency of every write endpoint (documents the schemes in OpenAPI; the same check
    already ran in WriteAuthMiddleware, before the body was read)."""
    check_write_credentials(
        settings, f"Bearer {bearer.credentials}" if bearer is not None else None, api_key
    )


class WriteAuthMiddleware:
    """Check the credentials of write requests under `prefix` before anything reads the body:
    an anonymous 400 MB POST is refused with 401 after its headers, not after parsing it."""

    def __init__(self, app: ASGIApp, settings: ApiSettings, prefix: str = "/mosaics"):
        self.app = app
        self.settings = settings
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401/403 from the headers alone, else run the app."""
        if scope["type"] == "http" and scope.get("method") in WRITE_METHODS:
            path = get_route_path(scope)
            if path == self.prefix or path.startswith(self.prefix + "/"):
                headers = Headers(scope=scope)
                try:
                    check_write_credentials(
                        self.settings, headers.get("authorization"), headers.get("x-api-key")
                    )
                except ApiError as error:
                    extra = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
                    await send_json_error(send, error.status_code, str(error), extra)
                    return
        await self.app(scope, receive, send)
