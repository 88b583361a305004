"""The tiler's Lambda functions: one factory for the three (log group, runtime, checkov reasons),
the `live` alias callers use when a function is published, and log retention."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk import security
from cdk.environment import request_timeout_environment
from cdk.props import FunctionProps

HANDLER = "lambda_handler.handler.handler"
BATCH_HANDLER = "lambda_handler.handler.batch_handler"
LIVE_ALIAS = "live"
ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
_FUNCTION_SKIPS = {
    "CKV_AWS_116": security.NO_LAMBDA_DLQ,
    "CKV_AWS_117": security.NO_VPC,
    "CKV_AWS_173": security.NO_ENV_CMK,
}
_RETENTION_DAYS = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    731: "TWO_YEARS",
    1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
    0: "INFINITE",
}


def retention(days: int) -> logs.RetentionDays:
    """The `RetentionDays` member for `days` (0: never expire)."""
    if days not in _RETENTION_DAYS:
        raise ValueError(f"log_retention_days must be one of {sorted(_RETENTION_DAYS)}, not {days}")
    return getattr(logs.RetentionDays, _RETENTION_DAYS[days])


def package_function(
    scope: Construct,
    name: str,
    *,
    code: lambda_.Code,
    handler: str,
    props: FunctionProps,
    environment: dict[str, str],
    architecture: str,
    log_retention: logs.RetentionDays,
    http_timeout_seconds: int | None = None,
) -> lambda_.Function:
    """A function running the package's asset, with its log group; its HTTP requests get a
    deadline a few seconds before `http_timeout_seconds` (default: the function's timeout)."""
    log_group = logs.LogGroup(
        scope, f"{name}Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
    )
    security.skip_checkov(log_group, {"CKV_AWS_158": security.NO_CMK_LOGS})
    function = lambda_.Function(
        scope,
        name,
        runtime=lambda_.Runtime.PYTHON_3_12,
        architecture=ARCHITECTURES[architecture],
        code=code,
        handler=handler,
        memory_size=props.memory_size,
        timeout=Duration.seconds(props.timeout_seconds),
        reserved_concurrent_executions=props.reserved_concurrency,
        environment={
            **environment,
            **request_timeout_environment(http_timeout_seconds or props.timeout_seconds),
            **props.environment,
        },
        log_group=log_group,
        # Only versions published from it are snapshotted; `$LATEST` keeps a normal init.
        snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if props.snap_start else None,
    )
    skips = dict(_FUNCTION_SKIPS)
    if props.reserved_concurrency is None:
        skips["CKV_AWS_115"] = (
            "Reserved concurrency turned off by the operator (tiler/writer/batch_reserved_"
            "concurrency=none), e.g. on an account whose concurrency quota is 10."
        )
    security.skip_checkov(function, skips)
    return function


def entry_point(
    scope: Construct, name: str, function: lambda_.Function, props: FunctionProps
) -> lambda_.IFunction:
    """The `live` alias of the function's current version when it is published (SnapStart
    or provisioned concurrency), else the function. `current_version` publishes a new
    version whenever the code or configuration changes, and the alias moves to it."""
    if not props.published:
        return function
    return lambda_.Alias(
        scope,
        f"{name}Live",
        alias_name=LIVE_ALIAS,
        version=function.current_version,
        provisioned_concurrent_executions=props.provisioned_concurrency,
    )
