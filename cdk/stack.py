"""`MosaicTilerStack`: DynamoDB mosaic table, tiler/writer/batch Lambdas, HTTP API, exports bucket.

Three functions run the same asset with different settings and permissions:
- the **tiler** answers every public `GET` of the HTTP API and can only read (table and data
  buckets);
- the **writer** answers the IAM-authorized `POST/PUT/PATCH/DELETE /mosaics` routes and is the only
  function allowed to write the table;
- the **batch** function sits behind a Lambda Function URL (no 30 s API Gateway cap) and writes
  responses over Lambda's 6 MB limit to the exports bucket.

IAM statements name their actions one by one (no `*`), which is why CDK's `grant*` helpers (they
add wildcard actions such as `s3:Abort*`) are not used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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

from cdk.bundling import BundleSpec, lambda_code

HANDLER = "lambda_handler.handler.handler"
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
WRITE_METHODS = (
    apigw.HttpMethod.POST,
    apigw.HttpMethod.PUT,
    apigw.HttpMethod.PATCH,
    apigw.HttpMethod.DELETE,
)
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


@dataclass
class TableProps:
    """The DynamoDB mosaic table (`mosaicId`/`quadkey`, on-demand)."""

    table_name: str | None = None  # None: CloudFormation names it
    removal_policy: str = "retain"  # retain | destroy | snapshot
    point_in_time_recovery: bool = True


@dataclass
class FunctionProps:
    """One Lambda function's sizing."""

    memory_size: int = 1536
    timeout_seconds: int = 29  # the HTTP API answers 503 after 30 s anyway
    reserved_concurrency: int | None = None
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchProps:
    """The batch function, its Function URL and the exports bucket."""

    function: FunctionProps = field(
        default_factory=lambda: FunctionProps(memory_size=3008, timeout_seconds=900)
    )
    url_auth: str = "AWS_IAM"  # AWS_IAM | NONE
    exports_expiry_days: int = 1
    presigned_url_seconds: int = 3600
    max_tile_size: int = 8192


@dataclass
class MosaicTilerProps:
    """Everything the stack can be told; every field has a default."""

    table: TableProps = field(default_factory=TableProps)
    tiler: FunctionProps = field(default_factory=FunctionProps)
    writer: FunctionProps = field(default_factory=lambda: FunctionProps(memory_size=1024))
    batch: BatchProps = field(default_factory=BatchProps)
    architecture: str = "x86_64"  # x86_64 | arm64
    log_retention_days: int = 30
    data_buckets: list[str] = field(default_factory=list)  # buckets holding the COGs
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    bundle: BundleSpec | None = None  # None: the default spec for `architecture`

    def __post_init__(self) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise ValueError(f"architecture must be one of {sorted(_ARCHITECTURES)}")
        if self.table.removal_policy not in _REMOVAL:
            raise ValueError(f"removal_policy must be one of {sorted(_REMOVAL)}")
        if self.batch.url_auth not in _URL_AUTH:
            raise ValueError(f"batch url_auth must be one of {sorted(_URL_AUTH)}")

    def bundle_spec(self) -> BundleSpec:
        """The asset spec (its architecture follows the functions')."""
        return self.bundle or BundleSpec(architecture=self.architecture)


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

        self.table = dynamodb.Table(
            self,
            "MosaicTable",
            table_name=props.table.table_name,
            partition_key=dynamodb.Attribute(name="mosaicId", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="quadkey", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=props.table.point_in_time_recovery
            ),
            removal_policy=removal,
        )
        self.exports_bucket = s3.Bucket(
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

        code = lambda_code(props.bundle_spec())
        common_env = {
            "MOSAIC_API_MOSAIC_URI_TEMPLATE": f"dynamodb:///{self.table.table_name}:{{mosaic_id}}",
            "MOSAIC_API_CORS_ORIGINS": json.dumps(props.cors_origins),
        }
        self.tiler = self._function("Tiler", code, HANDLER, props.tiler, common_env)
        # API Gateway's IAM authorizer has vetted every request the writer receives.
        writer_env = {**common_env, "MOSAIC_API_ALLOW_ANONYMOUS_WRITES": "true"}
        self.writer = self._function("Writer", code, HANDLER, props.writer, writer_env)
        batch_env = {
            **common_env,
            "MOSAIC_LAMBDA_EXPORTS_BUCKET": self.exports_bucket.bucket_name,
            "MOSAIC_LAMBDA_PRESIGNED_URL_SECONDS": str(props.batch.presigned_url_seconds),
            "MOSAIC_LAMBDA_BATCH_MAX_TILE_SIZE": str(props.batch.max_tile_size),
        }
        self.batch = self._function("Batch", code, BATCH_HANDLER, props.batch.function, batch_env)

        self._grant_table(self.tiler, TABLE_READ_ACTIONS)
        self._grant_table(self.batch, TABLE_READ_ACTIONS)
        self._grant_table(self.writer, TABLE_READ_ACTIONS + TABLE_WRITE_ACTIONS)
        for function in (self.tiler, self.writer, self.batch):
            self._grant_data_buckets(function, props.data_buckets)
        # PutObject to store a large response, GetObject so the presigned URL it signs works.
        self.batch.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[self.exports_bucket.arn_for_objects("*")],
            )
        )

        self.api = self._http_api(props)
        self.batch_url = self.batch.add_function_url(
            auth_type=_URL_AUTH[props.batch.url_auth],
            invoke_mode=lambda_.InvokeMode.BUFFERED,
        )

        CfnOutput(self, "ApiUrl", value=self.api.api_endpoint, description="Tiler HTTP API")
        CfnOutput(self, "BatchUrl", value=self.batch_url.url, description="Batch Function URL")
        CfnOutput(self, "TableName", value=self.table.table_name, description="Mosaic table")
        CfnOutput(
            self,
            "ExportsBucketName",
            value=self.exports_bucket.bucket_name,
            description="Large batch responses (expire)",
        )

    def _function(
        self,
        name: str,
        code: lambda_.Code,
        handler: str,
        props: FunctionProps,
        environment: dict[str, str],
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{name}Logs",
            retention=_retention(self.props.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        return lambda_.Function(
            self,
            name,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=_ARCHITECTURES[self.props.architecture],
            code=code,
            handler=handler,
            memory_size=props.memory_size,
            timeout=Duration.seconds(props.timeout_seconds),
            reserved_concurrent_executions=props.reserved_concurrency,
            environment={**environment, **props.environment},
            log_group=log_group,
        )

    def _grant_table(self, function: lambda_.Function, actions: tuple[str, ...]) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(actions=list(actions), resources=[self.table.table_arn])
        )

    def _grant_data_buckets(self, function: lambda_.Function, buckets: list[str]) -> None:
        if buckets:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[f"arn:{self.partition}:s3:::{bucket}/*" for bucket in buckets],
                )
            )

    def _http_api(self, props: MosaicTilerProps) -> apigw.HttpApi:
        api = apigw.HttpApi(
            self,
            "Api",
            description="lambda-mosaic-tiler",
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=props.cors_origins,
                allow_methods=[apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.HEAD],
                allow_headers=["*"],
                max_age=Duration.days(1),
            ),
        )
        read = integrations.HttpLambdaIntegration("TilerIntegration", self.tiler)
        write = integrations.HttpLambdaIntegration("WriterIntegration", self.writer)
        for path in ("/", "/{proxy+}"):
            api.add_routes(
                path=path,
                methods=[apigw.HttpMethod.GET, apigw.HttpMethod.HEAD],
                integration=read,
            )
        iam_auth = authorizers.HttpIamAuthorizer()
        for path in ("/mosaics", "/mosaics/{proxy+}"):
            api.add_routes(
                path=path, methods=list(WRITE_METHODS), integration=write, authorizer=iam_auth
            )
        return api


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
