"""`MosaicTilerProps` from CDK context (`cdk.json`, `-c key=value`) and environment variables.

Every option is one flat key; an environment variable `MOSAIC_CDK_<KEY>` (upper case) wins over
the context, which wins over the defaults of the props dataclasses: the dataclasses are the one
place a default is written (`cdk.json` sets no option; `python3 -m cdk.config` prints every
option with its default). Values given on the command line arrive as strings and are converted
here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from cdk.props import MosaicTilerProps

ENV_PREFIX = "MOSAIC_CDK_"
STACK_NAME_OPTION = "stack_name"
DEFAULT_STACK_NAME = "MosaicTiler"


def _optional_int(value: Any) -> int | None:
    if value is None or str(value).strip().lower() in {"", "none", "null"}:
        return None
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _str_list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    return [part.strip() for part in text.split(",") if part.strip()]


def _optional_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


# key: (converter, where it goes: attribute path in MosaicTilerProps)
OPTIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "table_name": (_optional_str, "table.table_name"),
    "removal_policy": (str, "table.removal_policy"),
    "point_in_time_recovery": (_bool, "table.point_in_time_recovery"),
    "architecture": (str, "architecture"),
    "log_retention_days": (int, "log_retention_days"),
    "log_level": (lambda v: str(v).upper(), "log_level"),
    "cors_origins": (_str_list, "cors_origins"),
    "write_cors_origins": (_str_list, "write_cors_origins"),
    # stores
    "mosaic_store": (lambda v: str(v).lower(), "store.mosaic_store"),
    "mosaics_bucket": (_optional_str, "store.mosaics_bucket"),
    "mosaics_prefix": (str, "store.mosaics_prefix"),
    "stac_api_urls": (_str_list, "store.stac_api_urls"),
    "data_buckets": (_str_list, "store.data_buckets"),
    "asset_prefixes": (_str_list, "store.asset_prefixes"),
    # functions
    "tiler_memory_size": (int, "tiler.memory_size"),
    "tiler_timeout": (int, "tiler.timeout_seconds"),
    "tiler_reserved_concurrency": (_optional_int, "tiler.reserved_concurrency"),
    "tiler_snap_start": (_bool, "tiler.snap_start"),
    "tiler_provisioned_concurrency": (_optional_int, "tiler.provisioned_concurrency"),
    "writer_memory_size": (int, "writer.memory_size"),
    "writer_timeout": (int, "writer.timeout_seconds"),
    "writer_reserved_concurrency": (_optional_int, "writer.reserved_concurrency"),
    "writer_snap_start": (_bool, "writer.snap_start"),
    "writer_provisioned_concurrency": (_optional_int, "writer.provisioned_concurrency"),
    "writer_async_jobs": (_bool, "writer_async_jobs"),
    "batch_memory_size": (int, "batch.function.memory_size"),
    "batch_timeout": (int, "batch.function.timeout_seconds"),
    "batch_reserved_concurrency": (_optional_int, "batch.function.reserved_concurrency"),
    "batch_snap_start": (_bool, "batch.function.snap_start"),
    "batch_provisioned_concurrency": (_optional_int, "batch.function.provisioned_concurrency"),
    "batch_url_auth": (lambda v: str(v).upper(), "batch.url_auth"),
    "batch_max_tile_size": (int, "batch.max_tile_size"),
    "exports_expiry_days": (int, "batch.exports_expiry_days"),
    "presigned_url_seconds": (int, "batch.presigned_url_seconds"),
    # CDN
    "cdn_enabled": (_bool, "cdn.enabled"),
    "cdn_domain_name": (_optional_str, "cdn.domain_name"),
    "cdn_certificate_arn": (_optional_str, "cdn.certificate_arn"),
    "cdn_price_class": (str, "cdn.price_class"),
    "cdn_document_max_ttl": (int, "cdn.document_max_ttl"),
    "cdn_tile_max_ttl": (int, "cdn.tile_max_ttl"),
    "cdn_default_ttl": (int, "cdn.default_ttl"),
    # monitoring
    "alarm_topic_arn": (_optional_str, "monitoring.alarm_topic_arn"),
    "alarm_email": (_optional_str, "monitoring.alarm_email"),
    "alarm_error_rate_percent": (float, "monitoring.error_rate_percent"),
    "alarm_duration_fraction": (float, "monitoring.duration_fraction"),
    "dashboard": (_bool, "monitoring.dashboard"),
    "api_throttle_rate": (int, "monitoring.api_throttle_rate"),
    "api_throttle_burst": (int, "monitoring.api_throttle_burst"),
}


def _raw_option(key: str, context: Callable[[str], Any], environ: Mapping[str, str]) -> Any:
    """The value set for option `key` (None: not set), the environment first."""
    raw = environ.get(ENV_PREFIX + key.upper())
    return context(key) if raw is None else raw


def stack_name(context: Callable[[str], Any], environ: Mapping[str, str] | None = None) -> str:
    """The CloudFormation stack name (option `stack_name`)."""
    environ = os.environ if environ is None else environ
    name = environ.get(ENV_PREFIX + STACK_NAME_OPTION.upper()) or context(STACK_NAME_OPTION)
    return name or DEFAULT_STACK_NAME


def option_defaults() -> dict[str, Any]:
    """Every option with its default, read from the props dataclasses."""
    defaults: dict[str, Any] = {STACK_NAME_OPTION: DEFAULT_STACK_NAME}
    props = MosaicTilerProps()
    for key, (_, path) in OPTIONS.items():
        value: Any = props
        for name in path.split("."):
            value = getattr(value, name)
        defaults[key] = value
    return defaults


def props_from_context(
    context: Callable[[str], Any], environ: Mapping[str, str] | None = None
) -> MosaicTilerProps:
    """Props from `context(key)` (e.g. `app.node.try_get_context`) and `environ`."""
    environ = os.environ if environ is None else environ
    defaults = MosaicTilerProps()
    values: dict[str, Any] = {
        "table": defaults.table,
        "tiler": defaults.tiler,
        "writer": defaults.writer,
        "batch": defaults.batch,
        "store": defaults.store,
        "cdn": defaults.cdn,
        "monitoring": defaults.monitoring,
    }
    top: dict[str, Any] = {}
    for key, (convert, path) in OPTIONS.items():
        raw = _raw_option(key, context, environ)
        if raw is None:
            continue
        try:
            value = convert(raw)
        except (TypeError, ValueError) as err:
            raise ValueError(f"option {key!r}: {raw!r} is invalid ({err})") from err
        *parents, attribute = path.split(".")
        if not parents:
            top[attribute] = value
            continue
        target = values[parents[0]]
        for name in parents[1:]:
            target = getattr(target, name)
        setattr(target, attribute, value)
    # Built last, so its validation sees every option.
    return MosaicTilerProps(**values, **top)


if __name__ == "__main__":
    print(json.dumps(option_defaults(), indent=2))
