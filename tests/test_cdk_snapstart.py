"""SnapStart, published versions and the `live` alias in the synthesized stacks.

Default: the tiler and batch functions snapshot their published versions; API Gateway's read
routes and the batch Function URL call the `live` alias of the current version. The writer is
not published (writes are rare; its asynchronous jobs invoke the function by name). Options:
SnapStart off per function, provisioned concurrency on the alias (refused together with
SnapStart, as Lambda refuses it).
"""

import pytest

from cdk.config import props_from_context
from tests.cdk_support import synthesized


def _resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _function_id(template: dict, prefix: str) -> str:
    (found,) = [k for k in _resources(template, "AWS::Lambda::Function") if k.startswith(prefix)]
    return found


def _alias(template: dict, prefix: str) -> tuple[str, dict]:
    (found,) = [
        (k, r["Properties"])
        for k, r in _resources(template, "AWS::Lambda::Alias").items()
        if k.startswith(prefix)
    ]
    return found


def _integration_targets(template: dict) -> dict[str, object]:
    return {
        k: r["Properties"]["IntegrationUri"]
        for k, r in _resources(template, "AWS::ApiGatewayV2::Integration").items()
    }


@pytest.fixture(scope="module")
def default() -> dict:
    return synthesized()["Default"]


@pytest.fixture(scope="module")
def existing() -> dict:
    return synthesized()["Existing"]


def test_snapstart_on_published_versions_of_tiler_and_batch(default):
    functions = _resources(default, "AWS::Lambda::Function")
    snap = {k: r["Properties"].get("SnapStart") for k, r in functions.items()}
    for prefix in ("Tiler", "Batch"):
        assert snap[_function_id(default, prefix)] == {"ApplyOn": "PublishedVersions"}
    assert snap[_function_id(default, "Writer")] is None
    versions = _resources(default, "AWS::Lambda::Version")
    published = {r["Properties"]["FunctionName"]["Ref"] for r in versions.values()}
    assert published == {_function_id(default, "Tiler"), _function_id(default, "Batch")}


def test_alias_points_at_the_current_version(default):
    versions = _resources(default, "AWS::Lambda::Version")
    for prefix in ("Tiler", "Batch"):
        _, alias = _alias(default, prefix + "Live")
        assert alias["Name"] == "live"
        assert alias["FunctionName"] == {"Ref": _function_id(default, prefix)}
        version_id = alias["FunctionVersion"]["Fn::GetAtt"][0]
        assert versions[version_id]["Properties"]["FunctionName"] == {
            "Ref": _function_id(default, prefix)
        }
        assert "ProvisionedConcurrencyConfig" not in alias  # off by default: billed when idle


def test_api_routes_and_function_url_call_the_alias(default):
    tiler_alias, _ = _alias(default, "TilerLive")
    _, batch_alias = _alias(default, "BatchLive")
    targets = _integration_targets(default)
    reads = [uri for key, uri in targets.items() if "TilerIntegration" in key]
    writes = [uri for key, uri in targets.items() if "WriterIntegration" in key]
    assert reads and all(uri == {"Ref": tiler_alias} for uri in reads)
    # The writer is not published: its integration calls the function.
    assert writes and all(
        uri == {"Fn::GetAtt": [_function_id(default, "Writer"), "Arn"]} for uri in writes
    )
    # API Gateway may invoke the alias (the permission names it, not the function).
    permissions = _resources(default, "AWS::Lambda::Permission")
    tiler_permissions = [
        p["Properties"]
        for p in permissions.values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
        and p["Properties"]["FunctionName"] == {"Ref": tiler_alias}
    ]
    assert len(tiler_permissions) == 6  # GET, HEAD, OPTIONS on `/` and `/{proxy+}`
    (url,) = [r["Properties"] for r in _resources(default, "AWS::Lambda::Url").values()]
    assert url["Qualifier"] == batch_alias["Name"] == "live"
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": [_function_id(default, "Batch"), "Arn"]}
    outputs = default["Outputs"]
    (batch_output,) = [v for k, v in outputs.items() if k.startswith("BatchUrl")]
    assert "BatchLiveFunctionUrl" in str(batch_output["Value"])


def test_provisioned_concurrency_instead_of_snapstart(existing):
    functions = _resources(existing, "AWS::Lambda::Function")
    for prefix in ("Tiler", "Batch", "Writer"):
        assert "SnapStart" not in functions[_function_id(existing, prefix)]["Properties"]
    tiler_alias, alias = _alias(existing, "TilerLive")
    assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    targets = _integration_targets(existing)
    assert all(uri == {"Ref": tiler_alias} for k, uri in targets.items() if "Tiler" in k)
    # The batch function is neither snapshotted nor provisioned: its URL is the function's.
    assert not [k for k in _resources(existing, "AWS::Lambda::Alias") if k.startswith("Batch")]
    (url,) = [r["Properties"] for r in _resources(existing, "AWS::Lambda::Url").values()]
    assert "Qualifier" not in url


def test_snapstart_options_from_context():
    props = props_from_context(
        {"tiler_snap_start": "false", "tiler_provisioned_concurrency": "3"}.get, environ={}
    )
    assert not props.tiler.snap_start and props.tiler.provisioned_concurrency == 3
    assert props.batch.function.snap_start and props.batch.function.provisioned_concurrency is None
    off = props_from_context(
        {"batch_snap_start": "off"}.get, environ={"MOSAIC_CDK_WRITER_SNAP_START": "1"}
    )
    assert not off.batch.function.snap_start and off.writer.snap_start


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"tiler_provisioned_concurrency": "2"}, "tiler_snap_start=false"),
        ({"batch_provisioned_concurrency": "1"}, "batch_snap_start=false"),
        ({"tiler_snap_start": "false", "tiler_provisioned_concurrency": "0"}, "positive"),
        (
            {"tiler_snap_start": "false", "tiler_provisioned_concurrency": "60"},
            "over tiler_reserved_concurrency (50)",
        ),
    ],
)
def test_refused_combinations_name_the_option(context, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        props_from_context(context.get, environ={})
