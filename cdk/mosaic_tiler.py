"""`MosaicTiler`: the tiler as one reusable construct taking one typed props object.

Three functions run the same asset with different settings and permissions:
- the **tiler** answers every public `GET`/`HEAD`/`OPTIONS` of the HTTP API and can only read
  (mosaic store, data buckets);
- the **writer** answers the IAM-authorized `POST/PUT/PATCH/DELETE /mosaics` routes and is the only
  function allowed to write the mosaic store;
- the **batch** function sits behind a Lambda Function URL (no 30 s API Gateway cap) and writes
  responses over Lambda's 6 MB limit to the exports bucket.

Mosaics live in the DynamoDB table (default) or in an S3 bucket (`mosaic_store=s3`, created here
or an existing `mosaics_bucket`); STAC API URLs and the mosaics bucket are allow-listed for
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

from aws_cdk import Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk import environment, storage
from cdk.cdn import TilerCdn
from cdk.functions import BATCH_HANDLER, HANDLER, entry_point, package_function, retention
from cdk.lambda_asset import lambda_code
from cdk.monitoring import TilerMonitoring, access_log_group, configure_stage
from cdk.props import FunctionProps, MosaicTilerProps

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
PUBLIC_METHODS = (apigw.HttpMethod.GET, apigw.HttpMethod.HEAD, apigw.HttpMethod.OPTIONS)
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
_URL_AUTH = {
    "AWS_IAM": lambda_.FunctionUrlAuthType.AWS_IAM,
    "NONE": lambda_.FunctionUrlAuthType.NONE,
}


class MosaicTiler(Construct):
    """The mosaic store, the tiler/writer/batch functions, the HTTP API, CDN and monitoring.

    Attributes a stack (or an app embedding the construct) builds on: `api`, `public_url`,
    `cdn`, `table`, `mosaics_bucket`, `exports_bucket`, the functions `tiler`, `writer` and
    `batch` (and `*_target`, what callers invoke), `batch_url`, `access_logs`, `monitoring`.
    """

    def __init__(
        self, scope: Construct, construct_id: str, props: MosaicTilerProps | None = None
    ) -> None:
        super().__init__(scope, construct_id)
        self.props = props = props or MosaicTilerProps()
        self._storage(props)
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
        self._functions(props)
        self._grants(props)
        self._routes()
        self.access_logs = access_log_group(self, retention(props.log_retention_days))
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

    # ------------------------------------------------------------------ storage
    def _storage(self, props: MosaicTilerProps) -> None:
        removal = storage.REMOVAL_POLICIES[props.table.removal_policy]
        store = props.store
        self.table = (
            storage.mosaic_table(self, props.table) if store.mosaic_store == "dynamodb" else None
        )
        self.mosaics_bucket = (
            storage.mosaics_bucket(self, store, removal) if store.uses_s3 else None
        )
        self.exports_bucket = storage.exports_bucket(self, props.batch, removal)

    def _mosaic_uri_template(self) -> str:
        store = self.props.store
        if store.mosaic_store == "s3":
            return f"s3://{self.mosaics_bucket.bucket_name}/{store.mosaics_prefix}{{mosaic_id}}.json.gz"
        return f"dynamodb:///{self.table.table_name}:{{mosaic_id}}"

    def _mosaics_url_prefix(self) -> str | None:
        if self.mosaics_bucket is None:
            return None
        return f"s3://{self.mosaics_bucket.bucket_name}/{self.props.store.mosaics_prefix}"

    # ------------------------------------------------------------------ functions
    def _functions(self, props: MosaicTilerProps) -> None:
        code = lambda_code(props.bundle_spec())
        common_env = environment.common_environment(
            props, self._mosaic_uri_template(), self._mosaics_url_prefix()
        )
        public_env = environment.public_environment(common_env, self.public_url)
        self.tiler = self._function("Tiler", code, HANDLER, props.tiler, public_env)
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
            environment.writer_environment(public_env),
            http_timeout_seconds=min(props.writer.timeout_seconds, API_GATEWAY_TIMEOUT),
        )
        batch_env = environment.batch_environment(
            common_env, self.exports_bucket.bucket_name, props.batch
        )
        self.batch = self._function("Batch", code, BATCH_HANDLER, props.batch.function, batch_env)
        # What API Gateway and the Function URL call: the `live` alias of a published version
        # (SnapStart, provisioned concurrency), else the function itself.
        self.tiler_target = entry_point(self, "Tiler", self.tiler, props.tiler)
        self.writer_target = entry_point(self, "Writer", self.writer, writer_props)
        self.batch_target = entry_point(self, "Batch", self.batch, props.batch.function)

    def _function(
        self,
        name: str,
        code: lambda_.Code,
        handler: str,
        props: FunctionProps,
        env: dict[str, str],
        http_timeout_seconds: int | None = None,
    ) -> lambda_.Function:
        return package_function(
            self,
            name,
            code=code,
            handler=handler,
            props=props,
            environment=env,
            architecture=self.props.architecture,
            log_retention=retention(self.props.log_retention_days),
            http_timeout_seconds=http_timeout_seconds,
        )

    # ------------------------------------------------------------------ permissions
    def _grants(self, props: MosaicTilerProps) -> None:
        self._grant_store(self.tiler, write=False)
        self._grant_store(self.batch, write=False)
        self._grant_store(self.writer, write=True)
        for function in (self.tiler, self.writer, self.batch):
            self._grant_data_buckets(function, props.store.data_buckets)
        # PutObject to store a large response, GetObject so the presigned URL it signs works.
        self.batch.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[self.exports_bucket.arn_for_objects("*")],
            )
        )
        if props.writer_async_jobs:
            self._grant_write_jobs()

    def _grant_write_jobs(self) -> None:
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
            partition = Stack.of(self).partition
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[f"arn:{partition}:s3:::{bucket}/*" for bucket in buckets],
                )
            )

    # ------------------------------------------------------------------ API
    def _routes(self) -> None:
        read = integrations.HttpLambdaIntegration("TilerIntegration", self.tiler_target)
        write = integrations.HttpLambdaIntegration("WriterIntegration", self.writer_target)
        for path in ("/", "/{proxy+}"):
            self.api.add_routes(path=path, methods=list(PUBLIC_METHODS), integration=read)
        iam_auth = authorizers.HttpIamAuthorizer()
        for path in ("/mosaics", "/mosaics/{proxy+}"):
            self.api.add_routes(
                path=path, methods=list(WRITE_METHODS), integration=write, authorizer=iam_auth
            )
