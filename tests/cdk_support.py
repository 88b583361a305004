"""Stack variants synthesized once per test process (bundling skipped) and shared by the CDK
test modules: synthesis costs several seconds per stack."""

import functools
import os

import aws_cdk as cdk
from aws_cdk.assertions import Template

from cdk.config import props_from_context
from cdk.props import (
    BatchProps,
    CdnProps,
    FunctionProps,
    MonitoringProps,
    MosaicTilerProps,
    StoreProps,
)
from cdk.stack import MosaicTilerStack

CDK_ENV = {
    "CDK_DISABLE_VERSION_CHECK": "1",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}
os.environ.update({k: os.environ.get(k, v) for k, v in CDK_ENV.items()})

STAC_SEARCH = "https://earth-search.aws.element84.com/v1/search"
STAC_ASSETS = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ops-alarms"


def variant_props() -> dict[str, MosaicTilerProps]:
    """The stacks the tests look at, by name."""
    return {
        # Every default: DynamoDB store, CDN on, alarms without a topic, dashboard.
        "Default": MosaicTilerProps(),
        # S3 store created by the stack, STAC searches, a custom domain, alarm e-mails, the
        # asynchronous writer; options as `-c key=value` strings.
        "S3Stac": props_from_context(
            {
                "mosaic_store": "s3",
                "stac_api_urls": STAC_SEARCH,
                "data_buckets": "cogs-a,cogs-b",
                "asset_prefixes": STAC_ASSETS,
                "write_cors_origins": "https://app.example.org",
                "cdn_domain_name": "tiles.example.org",
                "cdn_certificate_arn": CERTIFICATE,
                "alarm_email": "ops@example.org",
                # Jobs keep their records in the DynamoDB table: an S3 store has none to run.
                "writer_async_jobs": "false",
            }.get,
            environ={},
        ),
        # DynamoDB store plus an existing bucket of `.json.gz` mosaics; no CDN, an existing
        # alarm topic, no dashboard, the tiler without reserved concurrency and with provisioned
        # concurrency instead of SnapStart, the batch function without SnapStart.
        "Existing": MosaicTilerProps(
            tiler=FunctionProps(reserved_concurrency=None, provisioned_concurrency=2),
            batch=BatchProps(function=FunctionProps(memory_size=3008, timeout_seconds=900)),
            store=StoreProps(mosaics_bucket="my-mosaics", data_buckets=["cogs-a"]),
            cdn=CdnProps(enabled=False),
            monitoring=MonitoringProps(alarm_topic_arn=TOPIC, dashboard=False),
        ),
    }


@functools.cache
def synthesized() -> dict[str, dict]:
    """Template JSON of every variant (one app, synthesized once per process)."""
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stacks = {name: MosaicTilerStack(app, name, props) for name, props in variant_props().items()}
    return {name: Template.from_stack(stack).to_json() for name, stack in stacks.items()}


def template(name: str) -> Template:
    """An assertions Template of a variant."""
    return Template.from_json(synthesized()[name])


def function_properties(tpl: Template, prefix: str) -> dict:
    """Properties of the one function whose logical id starts with `prefix`."""
    (props,) = [
        p["Properties"]
        for k, p in tpl.find_resources("AWS::Lambda::Function").items()
        if k.startswith(prefix)
    ]
    return props


def role_statements(tpl: Template, role_prefix: str) -> list[dict]:
    """The statements of every IAM policy whose logical id starts with `role_prefix`."""
    statements = []
    for name, policy in tpl.find_resources("AWS::IAM::Policy").items():
        if name.startswith(role_prefix):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def statement_actions(statements: list[dict]) -> set[str]:
    """Every action the statements name (`Action` is a string or a list)."""
    found: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        found.update([value] if isinstance(value, str) else value)
    return found


def logical_id(tpl: Template, kind: str, prefix: str) -> str:
    """The logical id of the one `kind` resource whose id starts with `prefix`."""
    (name,) = [k for k in tpl.find_resources(kind) if k.startswith(prefix)]
    return name
