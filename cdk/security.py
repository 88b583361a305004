"""checkov suppressions written into the template, each with its reason.

checkov reads `Metadata.checkov.skip` of a CloudFormation resource: a check listed there is
reported as skipped with the comment beside it. `tests/test_cdk_checkov.py` fails on any failed
check and on any skip without a reason, so every exception to the scan is explained here, in the
template, next to the resource it concerns.
"""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct

# Reasons shared by several resources (one wording, one place).
NO_VPC = (
    "The functions read COGs from S3 and https:// hosts and answer API Gateway: they need no "
    "private network, and a VPC would need NAT gateways (about $32/month each) for that egress."
)
NO_CMK_LOGS = (
    "CloudWatch Logs encrypts every log group at rest with AWS-owned keys; the logs hold "
    "request metadata, not secrets, and a customer key adds cost and a key policy to manage."
)
NO_LAMBDA_DLQ = (
    "Invoked synchronously (API Gateway, Function URL): errors go back to the caller, there "
    "is no asynchronous event to dead-letter."
)
NO_ENV_CMK = (
    "The environment holds names, URL templates and limits, no secrets; Lambda encrypts it at "
    "rest with an AWS-managed key."
)
NO_S3_ACCESS_LOGS = (
    "Object-level audit is CloudTrail data events (an account-wide setting); reads through the "
    "API are in the stage's access log. A server-access-log bucket per bucket adds a bucket "
    "that itself cannot be logged."
)


def skip_checkov(construct: IConstruct, checks: dict[str, str]) -> None:
    """Mark `checks` ({check id: reason}) as skipped on the resource behind `construct`.

    `construct` is an L1 resource or an L2 construct whose default child is one; skips already
    present are kept (a later reason for the same id replaces the earlier one).
    """
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to annotate")
    for check, reason in checks.items():
        if not reason.strip():
            raise ValueError(f"{check}: a skipped check needs its reason")
    existing = resource.get_metadata("checkov") or {}
    skips = {entry["id"]: entry["comment"] for entry in existing.get("skip", [])}
    skips.update(checks)
    resource.add_metadata(
        "checkov", {"skip": [{"id": check, "comment": reason} for check, reason in skips.items()]}
    )
