"""`MosaicTilerStack`: the deployable stack, one `MosaicTiler` construct and its outputs.

The construct (`cdk/mosaic_tiler.py`) holds every resource; the stack adds what a deployment
reads back (`TilesUrl`, `ApiUrl`, …: README § Outputs).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cdk.mosaic_tiler import MosaicTiler
from cdk.props import MosaicTilerProps

# CDK leaves a path component named "Default" out of logical ids: the construct's resources keep
# the ids they had when the stack created them itself (a deployed table is not replaced).
TILER_ID = "Default"


class MosaicTilerStack(Stack):
    """The deployable tiler: `MosaicTiler` with `props`, and the stack's outputs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        props: MosaicTilerProps | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.mosaic_tiler = MosaicTiler(self, TILER_ID, props)
        self.props = self.mosaic_tiler.props
        self._outputs(self.mosaic_tiler)

    def _outputs(self, tiler: MosaicTiler) -> None:
        CfnOutput(self, "ApiUrl", value=tiler.api.api_endpoint, description="Tiler HTTP API")
        CfnOutput(
            self,
            "TilesUrl",
            value=tiler.public_url,
            description="Public base URL of tiles, TileJSON and the map (CDN when enabled)",
        )
        if tiler.cdn is not None:
            CfnOutput(
                self,
                "DistributionId",
                value=tiler.cdn.distribution.distribution_id,
                description="CloudFront distribution",
            )
        CfnOutput(self, "BatchUrl", value=tiler.batch_url.url, description="Batch Function URL")
        if tiler.table is not None:
            CfnOutput(self, "TableName", value=tiler.table.table_name, description="Mosaic table")
        if tiler.mosaics_bucket is not None:
            CfnOutput(
                self,
                "MosaicsBucketName",
                value=tiler.mosaics_bucket.bucket_name,
                description="S3-stored mosaics",
            )
        CfnOutput(
            self,
            "ExportsBucketName",
            value=tiler.exports_bucket.bucket_name,
            description="Large batch responses (expire)",
        )
        CfnOutput(
            self,
            "AccessLogGroup",
            value=tiler.access_logs.log_group_name,
            description="API access log (JSON)",
        )
        if tiler.monitoring.props.dashboard:
            CfnOutput(
                self,
                "DashboardName",
                value=tiler.monitoring.dashboard.dashboard_name,
                description="CloudWatch dashboard",
            )
