"""boto3 clients shared by the AWS backends, built once per process, and AWS error mapping.

cogeo-mosaic builds a new boto3 session and client every time a mosaic is opened (75-110 ms on
each tile request of a Lambda). Here a client is built on first use and reused: clients are
thread-safe, sessions are not, so building happens under a lock.

The endpoint, region and credentials come from the standard AWS environment (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3`, `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, ...);
those variables are part of the cache key, so a process that changes them (tests) gets a
matching client.
"""

import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler.errors import MosaicAuthError, MosaicError, MosaicNotFoundError
from lambda_handler.settings import aws_settings

DEFAULT_REGION = "us-east-1"

# Environment variables that change which server or identity a client talks to.
_ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",  # kept in memory only, as the client itself does
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)

AUTH_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "AllAccessDisabled",
    }
)

_clients: dict[tuple, Any] = {}
_lock = threading.Lock()
_loader: Any = None  # botocore's data loader, shared by every session (see _session)


def default_region() -> str:
    """`AWS_REGION`, else `AWS_DEFAULT_REGION`, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def client(service: str, region: str | None = None, pool_size: int = 10) -> Any:
    """The process-wide boto3 client of `service` for `region` and the current environment."""
    settings = aws_settings()
    region = region or default_region()
    service_env = f"AWS_ENDPOINT_URL_{service.upper()}"
    key = (
        service,
        region,
        pool_size,
        settings.retry_mode,
        settings.max_attempts,
        settings.connect_timeout,
        settings.read_timeout,
        os.environ.get(service_env),
        *(os.environ.get(name) for name in _ENV_KEYS),
    )
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            config = Config(
                retries={"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                max_pool_connections=pool_size,
                # Requests are built by this package from typed values: botocore's per-request
                # schema walk costs more than the request itself on large batch writes.
                parameter_validation=False,
            )
            found = _session().client(service, region_name=region, config=config)
            _clients[key] = found
    return found


def _session() -> Any:
    """A new boto3 session (its own credential resolution) sharing one botocore data loader:
    the service models and endpoint rules are parsed once per process, not once per client
    (100+ ms for S3 on a cold process), also after `clear_clients` (SnapStart's restore)."""
    global _loader
    import botocore.session

    core = botocore.session.get_session()
    if _loader is None:
        _loader = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _loader)
    session = boto3.session.Session(botocore_session=core)
    # Each boto3 session appends its data directory to the loader's search paths.
    _loader.search_paths[:] = list(dict.fromkeys(_loader.search_paths))
    return session


def clear_clients() -> None:
    """Forget every cached client (after settings change)."""
    with _lock:
        _clients.clear()


def error_code(error: ClientError) -> str:
    """The AWS error code of a ClientError ('' when absent)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def status_code(error: ClientError) -> int:
    """The HTTP status of a ClientError (0 when absent)."""
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_auth_error(error: ClientError) -> bool:
    """Whether the store refused our identity or permissions."""
    return error_code(error) in AUTH_ERROR_CODES or status_code(error) in (401, 403)


def map_error(
    error: Exception,
    what: str,
    not_found: str | None = None,
    default: type[MosaicError] = MosaicError,
) -> MosaicError:
    """A typed error for a failed AWS call about `what` (a URI or a table name).

    `not_found` is the message used when the service says the resource does not exist.
    """
    if isinstance(error, ClientError):
        code, message = error_code(error), error.response.get("Error", {}).get("Message", "")
        if is_auth_error(error):
            return MosaicAuthError(f"access denied to {what}: {code}: {message}".rstrip(": "))
        if not_found and code in (
            "ResourceNotFoundException",
            "NoSuchKey",
            "NoSuchBucket",
            "NotFound",
            "404",
        ):
            return MosaicNotFoundError(not_found)
        return default(f"{what}: {code}: {message}".rstrip(": "))
    if isinstance(error, BotoCoreError):
        return default(f"{what}: {error}")
    return default(f"{what}: {error}")
