"""The functions' environment: what the stack tells the package, and under which names.

The names come from the package's settings classes (`lambda_handler.settings`, pydantic only:
synth imports nothing else of the package), so renaming a setting cannot leave the stack
setting a variable nothing reads; `tests/test_cdk_environment.py` checks every variable the
stack sets.
"""

from __future__ import annotations

import json

from cdk.props import BatchProps, MosaicTilerProps
from lambda_handler.settings import ApiSettings, LambdaSettings, env_name

MOSAIC_URI_TEMPLATE = env_name(ApiSettings, "mosaic_uri_template")
ALLOWED_URL_PREFIXES = env_name(ApiSettings, "allowed_url_prefixes")
ALLOWED_ASSET_PREFIXES = env_name(ApiSettings, "allowed_asset_prefixes")
CORS_ORIGINS = env_name(ApiSettings, "cors_origins")
WRITE_CORS_ORIGINS = env_name(ApiSettings, "write_cors_origins")
PUBLIC_URL = env_name(ApiSettings, "public_url")
ALLOW_ANONYMOUS_WRITES = env_name(ApiSettings, "allow_anonymous_writes")
REQUEST_TIMEOUT = env_name(ApiSettings, "request_timeout")
LOG_LEVEL = env_name(LambdaSettings, "log_level")
EXPORTS_BUCKET = env_name(LambdaSettings, "exports_bucket")
PRESIGNED_URL_SECONDS = env_name(LambdaSettings, "presigned_url_seconds")
BATCH_MAX_TILE_SIZE = env_name(LambdaSettings, "batch_max_tile_size")


def _json_list(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"))


def stac_api_root(search_url: str) -> str:
    """`https://host/v1/search` -> `https://host/v1/` (items and next pages live below it)."""
    root = search_url.split("?", 1)[0].rstrip("/").removesuffix("/search")
    return root + "/"


def common_environment(
    props: MosaicTilerProps, mosaic_uri_template: str, mosaics_url_prefix: str | None
) -> dict[str, str]:
    """What all three functions get: the store, the allow-lists, CORS, the log level.

    `?url=` serves stored documents only (`mosaics_url_prefix`, the mosaics bucket's): a
    `stac+https://` URL there has no zooms nor search body (the app refuses it), so STAC APIs
    are not listed. STAC-built mosaics are written with POST /mosaics {stac_api, search}; the
    app checks `stac_api` (and the links the API returns) against the asset allow-list, which
    gets the API root.
    """
    store = props.store
    url_prefixes = [mosaics_url_prefix] if mosaics_url_prefix else []
    asset_prefixes = [f"s3://{bucket}/" for bucket in store.data_buckets]
    asset_prefixes += store.asset_prefixes
    asset_prefixes += [stac_api_root(url) for url in store.stac_api_urls]
    return {
        MOSAIC_URI_TEMPLATE: mosaic_uri_template,
        ALLOWED_URL_PREFIXES: _json_list(url_prefixes),
        ALLOWED_ASSET_PREFIXES: _json_list(asset_prefixes),
        CORS_ORIGINS: _json_list(props.cors_origins),
        WRITE_CORS_ORIGINS: _json_list(props.write_cors_origins),
        LOG_LEVEL: props.log_level,
    }


def public_environment(common: dict[str, str], public_url: str) -> dict[str, str]:
    """The tiler's and writer's: links are built from the public (CDN) URL, never `Host`."""
    return {**common, PUBLIC_URL: public_url}


def writer_environment(public: dict[str, str]) -> dict[str, str]:
    """The writer's: API Gateway's IAM authorizer has vetted every request it receives."""
    return {**public, ALLOW_ANONYMOUS_WRITES: "true"}


def batch_environment(
    common: dict[str, str], exports_bucket_name: str, batch: BatchProps
) -> dict[str, str]:
    """The batch function's: where large responses go, how long their URLs live, tile size."""
    return {
        **common,
        EXPORTS_BUCKET: exports_bucket_name,
        PRESIGNED_URL_SECONDS: str(batch.presigned_url_seconds),
        BATCH_MAX_TILE_SIZE: str(batch.max_tile_size),
    }


def request_timeout_environment(timeout_seconds: int) -> dict[str, str]:
    """The app's own deadline: a few seconds before Lambda's, so the client gets a JSON 504."""
    return {REQUEST_TIMEOUT: str(max(1, timeout_seconds - 4))}
