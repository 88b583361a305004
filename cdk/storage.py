"""Where the tiler keeps things: the DynamoDB mosaic table, the S3 mosaics bucket (created or
existing) and the exports bucket of the batch function's large responses."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk import security
from cdk.props import BatchProps, StoreProps, TableProps

# The attribute of job records (and write leases) that DynamoDB's TTL expires.
TABLE_TTL_ATTRIBUTE = "expires"
REMOVAL_POLICIES = {
    "retain": RemovalPolicy.RETAIN,
    "destroy": RemovalPolicy.DESTROY,
    "snapshot": RemovalPolicy.SNAPSHOT,
}


def mosaic_table(scope: Construct, props: TableProps) -> dynamodb.Table:
    """The on-demand table of mosaics (`mosaicId`/`quadkey`), job records expiring by TTL."""
    table = dynamodb.Table(
        scope,
        "MosaicTable",
        table_name=props.table_name,
        partition_key=dynamodb.Attribute(name="mosaicId", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="quadkey", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=props.point_in_time_recovery
        ),
        removal_policy=REMOVAL_POLICIES[props.removal_policy],
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


def _private_bucket(
    scope: Construct,
    construct_id: str,
    removal: RemovalPolicy,
    lifecycle_rule: s3.LifecycleRule,
    versioned: bool = False,
) -> s3.Bucket:
    """A bucket no one reaches without IAM, encrypted, TLS only."""
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        versioned=versioned or None,
        lifecycle_rules=[lifecycle_rule],
        removal_policy=removal,
    )


def mosaics_bucket(scope: Construct, store: StoreProps, removal: RemovalPolicy) -> s3.IBucket:
    """The existing `store.mosaics_bucket`, else a new private, versioned bucket."""
    if store.mosaics_bucket:
        return s3.Bucket.from_bucket_name(scope, "MosaicsBucket", store.mosaics_bucket)
    bucket = _private_bucket(
        scope,
        "MosaicsBucket",
        removal,
        s3.LifecycleRule(
            noncurrent_version_expiration=Duration.days(30),
            abort_incomplete_multipart_upload_after=Duration.days(1),
        ),
        # A bad overwrite or delete of a mosaic document can be undone for 30 days.
        versioned=True,
    )
    security.skip_checkov(bucket, {"CKV_AWS_18": security.NO_S3_ACCESS_LOGS})
    return bucket


def exports_bucket(scope: Construct, batch: BatchProps, removal: RemovalPolicy) -> s3.Bucket:
    """A private bucket whose objects expire after `batch.exports_expiry_days`."""
    bucket = _private_bucket(
        scope,
        "ExportsBucket",
        removal,
        s3.LifecycleRule(
            expiration=Duration.days(batch.exports_expiry_days),
            abort_incomplete_multipart_upload_after=Duration.days(1),
        ),
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
