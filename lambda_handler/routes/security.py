"""Credentials of the write endpoints.

A key configured in the settings (`MOSAIC_API_API_KEY`) must come as `Authorization: Bearer
<key>` or `x-api-key: <key>`: none gives 401, a wrong one 403. Without a configured key, writes
are refused (403) unless `MOSAIC_API_ALLOW_ANONYMOUS_WRITES=true` opens them for local use.
In AWS the CDK stack puts IAM auth on these routes in front of the function as well.
"""

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from lambda_handler.api_errors import ApiError
from lambda_handler.routes.dependencies import get_settings
from lambda_handler.settings import ApiSettings

# auto_error=False: we answer 401/403 ourselves, with messages saying what is expected.
bearer_scheme = HTTPBearer(auto_error=False, description="The API key as a bearer token.")
api_key_scheme = APIKeyHeader(name="x-api-key", auto_error=False, description="The API key.")


def require_write_access(
    request: Request,
    settings: Annotated[ApiSettings, Depends(get_settings)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> None:
    """Dependency of every write endpoint: 401 without credentials, 403 with wrong ones."""
    if not settings.api_key:
        if settings.allow_anonymous_writes:
            return
        raise ApiError(
            403,
            "writes are disabled: no API key is configured (set MOSAIC_API_API_KEY, or "
            "MOSAIC_API_ALLOW_ANONYMOUS_WRITES=true for local use)",
        )
    given = bearer.credentials if bearer is not None else api_key
    if not given:
        raise ApiError(
            401, "credentials required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
        )
    if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
        raise ApiError(403, "invalid API key")
