"""`MosaicTilerStack`: mosaic store, tiler/writer/batch Lambdas, HTTP API, CDN, monitoring.

Three functions run the same asset with different settings and permissions:
- the **tiler** answers every public `GET`/`HEAD`/`OPTIONS` of the HTTP API and can only read
  (mosaic store, data buckets);
- the **writer** answers the IAM-authorized `POST/PUT/PATCH/DELETE /mosaics` routes and is the only
  function allowed to write the mosaic store;
- the **batch** function sits behind a Lambda Function URL (no 30 s API Gateway cap) and writes
  responses over Lambda's 6 MB limit to the exports bucket.

Mosaics live in the DynamoDB table (default) or in an S3 bucket (`mosaic_store=s3`, created by the
stack or an existing `mosaics_bucket`); STAC API URLs and the mosaics bucket are allow-listed for
the raw `?url=` form; the data buckets are the asset allow-list (SSRF) and the only buckets the
functions may read COGs from.

A CloudFront distribution (`cdn.py`) fronts the API; its URL is the functions' public base URL
(`MOSAIC_API_PUBLIC_URL`): the app builds TileJSON/WMTS/map URLs from it and ignores `Host`.
There is no dependency cycle: the distribution's origin is the API resource's id, which depends
on nothing, while the functions (and the routes that call them) depend on the distribution.

IAM statements name their actions one by one (no `*`), which is why CDK's `grant*` helpers (they
add wildcard actions such as `s3:Abort*`) are not used.
"""

from __future__ import annotations

import dataclasses
import json

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk import security
from cdk.bundling import lambda_code
from cdk.cdn import TilerCdn
from cdk.monitoring import TilerMonitoring, access_log_group, configure_stage
from cdk.props import (
    BatchProps,
    CdnProps,
    FunctionProps,
    MonitoringProps,
    MosaicTilerProps,
    StoreProps,
    TableProps,
)

__all__ = [
    "BatchProps",
    "CdnProps",
    "FunctionProps",
    "MonitoringProps",
    "MosaicTilerProps",
    "MosaicTilerStack",
    "StoreProps",
    "TableProps",
]

HANDLER = "lambda_handler.handler.handler"
LIVE_ALIAS = "live"
BATCH_HANDLER = "lambda_handler.handler.batch_handler"
# Scan: only `GET /mosaics` (the list of mosaic ids) uses it.
TABLE_READ_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
)
TABLE_WRITE_ACTIONS = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
)
# S3 mosaics: GetObject also answers HeadObject.
BUCKET_READ_ACTIONS = ("s3:GetObject",)
BUCKET_WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject")
WRITE_METHODS = (
    apigw.HttpMethod.POST,
    apigw.HttpMethod.PUT,
    apigw.HttpMethod.PATCH,
    apigw.HttpMethod.DELETE,
)
# Write jobs (lambda_handler/jobs.py): the writer invokes itself asynchronously and may then run
# Lambda's maximum; requests through API Gateway still end at its 30 s.
ASYNC_WRITER_TIMEOUT = 900
API_GATEWAY_TIMEOUT = 30
# The attribute of job records (and write leases) that DynamoDB's TTL expires.
TABLE_TTL_ATTRIBUTE = "expires"
_REMOVAL = {
    "retain": RemovalPolicy.RETAIN,
    "destroy": RemovalPolicy.DESTROY,
    "snapshot": RemovalPolicy.SNAPSHOT,
}
_ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
_URL_AUTH = {
    "AWS_IAM": lambda_.FunctionUrlAuthType.AWS_IAM,
    "NONE": lambda_.FunctionUrlAuthType.NONE,
}
_FUNCTION_SKIPS = {
    "CKV_AWS_116": security.NO_LAMBDA_DLQ,
    "CKV_AWS_117": security.NO_VPC,
    "CKV_AWS_173": security.NO_ENV_CMK,
}


def _json_list(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"))


def _stac_api_root(search_url: str) -> str:
    """`https://host/v1/search` -> `https://host/v1/` (items and next pages live below it)."""
    root = search_url.split("?", 1)[0].rstrip("/").removesuffix("/search")
    return root + "/"


def _request_timeout(timeout_seconds: int) -> str:
    """The app's own deadline: a few seconds before Lambda's, so the client gets a JSON 504."""
    return str(max(1, timeout_seconds - 4))


class MosaicTilerStack(Stack):
    """The deployable tiler; see the module docstring."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        props: MosaicTilerProps | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.props = props = props or MosaicTilerProps()
        removal = _REMOVAL[props.table.removal_policy]
        store = props.store

        self.table = self._table(props) if store.mosaic_store == "dynamodb" else None
        self.mosaics_bucket = self._mosaics_bucket(store, removal) if store.uses_s3 else None
        self.exports_bucket = self._exports_bucket(props, removal)
        self.api = apigw.HttpApi(
            self,
            "Api",
            description="lambda-mosaic-tiler",
            # CORS is the app's: read origins for everyone, write origins only for write routes
            # (API Gateway's CORS would answer every preflight with one policy and hide the app's).
            cors_preflight=None,
        )
        self.cdn = TilerCdn(self, "Cdn", self.api, props.cdn) if props.cdn.enabled else None
        self.public_url = self.cdn.url if self.cdn else self.api.api_endpoint

        code = lambda_code(props.bundle_spec())
        common_env = self._common_environment(props)
        public_env = {**common_env, "MOSAIC_API_PUBLIC_URL": self.public_url}
        self.tiler = self._function("Tiler", code, HANDLER, props.tiler, public_env)
        # API Gateway's IAM authorizer has vetted every request the writer receives.
        writer_env = {**public_env, "MOSAIC_API_ALLOW_ANONYMOUS_WRITES": "true"}
        writer_props = props.writer
        if props.writer_async_jobs:
            writer_props = dataclasses.replace(
                writer_props,
                timeout_seconds=max(writer_props.timeout_seconds, ASYNC_WRITER_TIMEOUT),
            )
        self.writer_timeout = writer_props.timeout_seconds
        self.writer = self._function(
            "Writer",
            code,
            HANDLER,
            writer_props,
            writer_env,
            http_timeout_seconds=min(props.writer.timeout_seconds, API_GATEWAY_TIMEOUT),
        )
        batch_env = {
            **common_env,
            "MOSAIC_LAMBDA_EXPORTS_BUCKET": self.exports_bucket.bucket_name,
            "MOSAIC_LAMBDA_PRESIGNED_URL_SECONDS": str(props.batch.presigned_url_seconds),
            "MOSAIC_LAMBDA_BATCH_MAX_TILE_SIZE": str(props.batch.max_tile_size),
        }
        self.batch = self._function("Batch", code, BATCH_HANDLER, props.batch.function, batch_env)
        # What API Gateway and the Function URL call: the `live` alias of a published version
        # (SnapStart, provisioned concurrency), else the function itself.
        self.tiler_target = self._entry_point("Tiler", self.tiler, props.tiler)
        self.writer_target = self._entry_point("Writer", self.writer, writer_props)
        self.batch_target = self._entry_point("Batch", self.batch, props.batch.function)

        self._grant_store(self.tiler, write=False)
        self._grant_store(self.batch, write=False)
        self._grant_store(self.writer, write=True)
        for function in (self.tiler, self.writer, self.batch):
            self._grant_data_buckets(function, store.data_buckets)
        # PutObject to store a large response, GetObject so the presigned URL it signs works.
        self.batch.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[self.exports_bucket.arn_for_objects("*")],
            )
        )
        if props.writer_async_jobs:
            # A separate policy: in the role's default policy the function's own ARN would make
            # the function depend on itself.
            iam.Policy(
                self,
                "WriterInvokesItself",
                roles=[self.writer.role],
                statements=[
                    iam.PolicyStatement(
                        actions=["lambda:InvokeFunction"], resources=[self.writer.function_arn]
                    )
                ],
            )
            # A job records its own failure (GET /mosaics/jobs/{id}): Lambda must not run it twice.
            self.writer.configure_async_invoke(retry_attempts=0)

        self._routes(props)
        self.access_logs = access_log_group(self, _retention(props.log_retention_days))
        configure_stage(
            self.api,
            self.access_logs,
            props.monitoring.api_throttle_rate,
            props.monitoring.api_throttle_burst,
        )
        self.batch_url = self.batch_target.add_function_url(
            auth_type=_URL_AUTH[props.batch.url_auth],
            invoke_mode=lambda_.InvokeMode.BUFFERED,
        )
        self.monitoring = TilerMonitoring(
            self,
            "Monitoring",
            props=props.monitoring,
            api=self.api,
            functions={"Tiler": self.tiler, "Writer": self.writer, "Batch": self.batch},
            timeouts={
                "Tiler": props.tiler.timeout_seconds,
                "Writer": self.writer_timeout,
                "Batch": props.batch.function.timeout_seconds,
            },
            batch=self.batch,
            table=self.table,
            distribution=self.cdn.distribution if self.cdn else None,
        )
        self._outputs()

    # ------------------------------------------------------------------ storage
    def _table(self, props: MosaicTilerProps) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "MosaicTable",
            table_name=props.table.table_name,
            partition_key=dynamodb.Attribute(name="mosaicId", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="quadkey", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=props.table.point_in_time_recovery
            ),
            removal_policy=_REMOVAL[props.table.removal_policy],
            time_to_live_attribute=TABLE_TTL_ATTRIBUTE,
        )
        security.skip_checkov(
            table,
            {
                "CKV_AWS_119": "DynamoDB encrypts every table at rest (AWS-owned key); a customer "
                "key would add KMS calls to every tile's quadkey lookup and a monthly key cost."
            },
        )
        return table

    def _mosaics_bucket(self, store: StoreProps, removal: RemovalPolicy) -> s3.IBucket:
        if store.mosaics_bucket:
            return s3.Bucket.from_bucket_name(self, "MosaicsBucket", store.mosaics_bucket)
        bucket = s3.Bucket(
            self,
            "MosaicsBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            # A bad overwrite or delete of a mosaic document can be undone for 30 days.
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal,
        )
        security.skip_checkov(bucket, {"CKV_AWS_18": security.NO_S3_ACCESS_LOGS})
        return bucket

    def _exports_bucket(self, props: MosaicTilerProps, removal: RemovalPolicy) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "ExportsBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(props.batch.exports_expiry_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal,
        )
        security.skip_checkov(
            bucket,
            {
                "CKV_AWS_18": security.NO_S3_ACCESS_LOGS,
                "CKV_AWS_21": "Exports are written once under a random key and expire after "
                "exports_expiry_days: there is no earlier version worth keeping.",
            },
        )
        return bucket

    def _mosaic_uri_template(self, store: StoreProps) -> str:
        if store.mosaic_store == "s3":
            return f"s3://{self.mosaics_bucket.bucket_name}/{store.mosaics_prefix}{{mosaic_id}}.json.gz"
        return f"dynamodb:///{self.table.table_name}:{{mosaic_id}}"

    def _common_environment(self, props: MosaicTilerProps) -> dict[str, str]:
        store = props.store
        # `?url=` serves stored documents only: a `stac+https://` URL there has no zooms nor
        # search body (the app refuses it), so STAC APIs are not listed. STAC-built mosaics are
        # written with POST /mosaics {stac_api, search}; the app checks `stac_api` (and the
        # links the API returns) against the asset allow-list, which gets the API root.
        url_prefixes = []
        if self.mosaics_bucket is not None:
            url_prefixes.append(f"s3://{self.mosaics_bucket.bucket_name}/{store.mosaics_prefix}")
        asset_prefixes = [f"s3://{bucket}/" for bucket in store.data_buckets]
        asset_prefixes += store.asset_prefixes
        asset_prefixes += [_stac_api_root(url) for url in store.stac_api_urls]
        return {
            "MOSAIC_API_MOSAIC_URI_TEMPLATE": self._mosaic_uri_template(store),
            "MOSAIC_API_ALLOWED_URL_PREFIXES": _json_list(url_prefixes),
            "MOSAIC_API_ALLOWED_ASSET_PREFIXES": _json_list(asset_prefixes),
            "MOSAIC_API_CORS_ORIGINS": _json_list(props.cors_origins),
            "MOSAIC_API_WRITE_CORS_ORIGINS": _json_list(props.write_cors_origins),
            "MOSAIC_LAMBDA_LOG_LEVEL": props.log_level,
        }

    # ------------------------------------------------------------------ functions
    def _function(
        self,
        name: str,
        code: lambda_.Code,
        handler: str,
        props: FunctionProps,
        environment: dict[str, str],
        http_timeout_seconds: int | None = None,
    ) -> lambda_.Function:
        """A function with its log group; its HTTP requests get a deadline a few seconds
        before `http_timeout_seconds` (default: the function's timeout)."""
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=_retention(self.props.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        security.skip_checkov(
            log_group,
            {"CKV_AWS_158": security.NO_CMK_LOGS},
        )
        function = lambda_.Function(
            self,
            name,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=_ARCHITECTURES[self.props.architecture],
            code=code,
            handler=handler,
            memory_size=props.memory_size,
            timeout=Duration.seconds(props.timeout_seconds),
            reserved_concurrent_executions=props.reserved_concurrency,
            environment={
                **environment,
                "MOSAIC_API_REQUEST_TIMEOUT": _request_timeout(
                    http_timeout_seconds or props.timeout_seconds
                ),
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

    def _entry_point(
        self, name: str, function: lambda_.Function, props: FunctionProps
    ) -> lambda_.IFunction:
        """The `live` alias of the function's current version when it is published (SnapStart
        or provisioned concurrency), else the function. `current_version` publishes a new
        version whenever the code or configuration changes, and the alias moves to it."""
        if not props.published:
            return function
        return lambda_.Alias(
            self,
            f"{name}Live",
            alias_name=LIVE_ALIAS,
            version=function.current_version,
            provisioned_concurrent_executions=props.provisioned_concurrency,
        )

    def _grant_store(self, function: lambda_.Function, write: bool) -> None:
        if self.table is not None:
            actions = TABLE_READ_ACTIONS + (TABLE_WRITE_ACTIONS if write else ())
            function.add_to_role_policy(
                iam.PolicyStatement(actions=list(actions), resources=[self.table.table_arn])
            )
        if self.mosaics_bucket is not None:
            prefix = self.props.store.mosaics_prefix
            actions = BUCKET_READ_ACTIONS + (BUCKET_WRITE_ACTIONS if write else ())
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=list(actions),
                    resources=[self.mosaics_bucket.arn_for_objects(f"{prefix}*")],
                )
            )
            # Without ListBucket S3 answers a missing key with 403, not 404 (the app's "no such
            # mosaic"). No s3:prefix condition: a GetObject/HeadObject carries no prefix, so a
            # conditioned grant would not apply there. It lists key names, never reads objects.
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"], resources=[self.mosaics_bucket.bucket_arn]
                )
            )

    def _grant_data_buckets(self, function: lambda_.Function, buckets: list[str]) -> None:
        if buckets:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[f"arn:{self.partition}:s3:::{bucket}/*" for bucket in buckets],
                )
            )

    # ------------------------------------------------------------------ API
    def _routes(self, props: MosaicTilerProps) -> None:
        read = integrations.HttpLambdaIntegration("TilerIntegration", self.tiler_target)
        write = integrations.HttpLambdaIntegration("WriterIntegration", self.writer_target)
        public = (apigw.HttpMethod.GET, apigw.HttpMethod.HEAD, apigw.HttpMethod.OPTIONS)
        for path in ("/", "/{proxy+}"):
            self.api.add_routes(path=path, methods=list(public), integration=read)
        iam_auth = authorizers.HttpIamAuthorizer()
        for path in ("/mosaics", "/mosaics/{proxy+}"):
            self.api.add_routes(
                path=path, methods=list(WRITE_METHODS), integration=write, authorizer=iam_auth
            )

    def _outputs(self) -> None:
        CfnOutput(self, "ApiUrl", value=self.api.api_endpoint, description="Tiler HTTP API")
        CfnOutput(
            self,
            "TilesUrl",
            value=self.public_url,
            description="Public base URL of tiles, TileJSON and the map (CDN when enabled)",
        )
        if self.cdn is not None:
            CfnOutput(
                self,
                "DistributionId",
                value=self.cdn.distribution.distribution_id,
                description="CloudFront distribution",
            )
        CfnOutput(self, "BatchUrl", value=self.batch_url.url, description="Batch Function URL")
        if self.table is not None:
            CfnOutput(self, "TableName", value=self.table.table_name, description="Mosaic table")
        if self.mosaics_bucket is not None:
            CfnOutput(
                self,
                "MosaicsBucketName",
                value=self.mosaics_bucket.bucket_name,
                description="S3-stored mosaics",
            )
        CfnOutput(
            self,
            "ExportsBucketName",
            value=self.exports_bucket.bucket_name,
            description="Large batch responses (expire)",
        )
        CfnOutput(
            self,
            "AccessLogGroup",
            value=self.access_logs.log_group_name,
            description="API access log (JSON)",
        )
        if self.monitoring.props.dashboard:
            CfnOutput(
                self,
                "DashboardName",
                value=self.monitoring.dashboard.dashboard_name,
                description="CloudWatch dashboard",
            )


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


def _retention(days: int) -> logs.RetentionDays:
    """The `RetentionDays` member for `days` (0: never expire)."""
    if days not in _RETENTION_DAYS:
        raise ValueError(f"log_retention_days must be one of {sorted(_RETENTION_DAYS)}, not {days}")
    return getattr(logs.RetentionDays, _RETENTION_DAYS[days])
