"""The CDK stack: synthesized once per module (bundling skipped), inspected, linted with cfn-lint;
`npx cdk synth` with the pinned CLI works offline from the repo root."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from cdk.bundling import BundleSpec, BundleTooLargeError, build_asset, cached_asset
from cdk.config import OPTIONS, option_defaults, props_from_context, stack_name
from cdk.mosaic_tiler import MosaicTiler
from cdk.props import CdnProps, MosaicTilerProps
from cdk.stack import MosaicTilerStack
from infrastructure import build_app
from tests.cdk_support import CDK_ENV
from tests.cdk_support import function_properties as _function
from tests.cdk_support import role_statements as _allow_statements
from tests.cdk_support import statement_actions as _actions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app() -> cdk.App:
    """An app (bundling skipped) with the default stack and an arm64 / options variant."""
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    MosaicTilerStack(app, "Default", MosaicTilerProps())
    context = {
        "architecture": "arm64",
        "removal_policy": "destroy",
        "tiler_memory_size": "2048",
        "tiler_reserved_concurrency": "none",
        "batch_url_auth": "none",
        "data_buckets": "cogs-a,cogs-b",
        "log_retention_days": "7",
    }
    MosaicTilerStack(app, "Custom", props_from_context(context.get, environ={}))
    # The construct in a stack of one's own, beside other resources.
    embedded = cdk.Stack(app, "Embedded")
    MosaicTiler(embedded, "Tiles", MosaicTilerProps(cdn=CdnProps(enabled=False)))
    return app


@pytest.fixture(scope="module")
def template(app) -> Template:
    """The default stack's template."""
    return Template.from_stack(app.node.find_child("Default"))


@pytest.fixture(scope="module")
def custom(app) -> Template:
    """The stack with options from context values (strings, as from `-c key=value`)."""
    return Template.from_stack(app.node.find_child("Custom"))


def _functions(template: Template) -> dict[str, dict]:
    found = template.find_resources("AWS::Lambda::Function")
    return {p["Properties"]["Handler"] + ":" + k: p["Properties"] for k, p in found.items()}


def test_table_schema_billing_recovery_and_retention(template, custom):
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [
                    {"AttributeName": "mosaicId", "KeyType": "HASH"},
                    {"AttributeName": "quadkey", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "mosaicId", "AttributeType": "S"},
                    {"AttributeName": "quadkey", "AttributeType": "S"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    custom.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Delete"})


def test_functions_runtime_memory_timeouts(template, custom):
    tiler, writer, batch = (_function(template, n) for n in ("Tiler", "Writer", "Batch"))
    for props in (tiler, writer, batch):
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["x86_64"]
        env = props["Environment"]["Variables"]
        assert "MOSAIC_API_MOSAIC_URI_TEMPLATE" in env
    assert tiler["Handler"] == writer["Handler"] == "lambda_handler.handler.handler"
    assert batch["Handler"] == "lambda_handler.handler.batch_handler"
    assert (tiler["MemorySize"], tiler["Timeout"]) == (1536, 29)
    assert (batch["MemorySize"], batch["Timeout"]) == (3008, 900)
    # Reserved concurrency caps cost by default; "none" turns it off.
    assert [f["ReservedConcurrentExecutions"] for f in (tiler, writer, batch)] == [50, 5, 10]
    assert "MOSAIC_API_ALLOW_ANONYMOUS_WRITES" not in tiler["Environment"]["Variables"]
    assert writer["Environment"]["Variables"]["MOSAIC_API_ALLOW_ANONYMOUS_WRITES"] == "true"
    assert "MOSAIC_LAMBDA_EXPORTS_BUCKET" in batch["Environment"]["Variables"]

    custom_tiler = _function(custom, "Tiler")
    assert custom_tiler["Architectures"] == ["arm64"]
    assert custom_tiler["MemorySize"] == 2048
    assert "ReservedConcurrentExecutions" not in custom_tiler
    # Three functions and the API's access log, all with the configured retention.
    for tpl, days in ((template, 30), (custom, 7)):
        groups = tpl.find_resources("AWS::Logs::LogGroup").values()
        assert [g["Properties"]["RetentionInDays"] for g in groups] == [days] * 4


def test_routes_public_reads_and_iam_writes(template):
    routes = template.find_resources("AWS::ApiGatewayV2::Route")
    by_key = {r["Properties"]["RouteKey"]: r["Properties"] for r in routes.values()}
    for key in ("GET /", "GET /{proxy+}", "HEAD /{proxy+}", "OPTIONS /{proxy+}"):
        assert by_key[key].get("AuthorizationType", "NONE") == "NONE", key
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/mosaics", "/mosaics/{proxy+}"):
            assert by_key[f"{method} {path}"]["AuthorizationType"] == "AWS_IAM"
    # Writes go to the writer function, reads to the tiler.
    integrations = template.find_resources("AWS::ApiGatewayV2::Integration")
    assert len(integrations) == 2
    get_target = json.dumps(by_key["GET /{proxy+}"]["Target"])
    post_target = json.dumps(by_key["POST /mosaics"]["Target"])
    assert get_target != post_target
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration", {"PayloadFormatVersion": "2.0"}
    )


def test_iam_is_least_privilege(template, custom):
    for tpl in (template, custom):
        for policy in tpl.find_resources("AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow"
                assert not any("*" in a for a in _actions([statement])), statement
    tiler = _actions(_allow_statements(template, "TilerServiceRole"))
    writer = _actions(_allow_statements(template, "WriterServiceRole"))
    batch = _actions(_allow_statements(template, "BatchServiceRole"))
    reads = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"}
    assert tiler == reads
    assert writer == reads | {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    }
    assert batch == reads | {"s3:PutObject", "s3:GetObject"}
    # Data buckets: object reads only, on the named buckets.
    statements = _allow_statements(custom, "TilerServiceRole")
    (data,) = [s for s in statements if s["Action"] == "s3:GetObject"]
    assert json.dumps(data["Resource"]).count("cogs-a/*") == 1
    assert "cogs-b/*" in json.dumps(data["Resource"])


def test_function_url_auth_and_exports_bucket(template, custom):
    template.has_resource_properties(
        "AWS::Lambda::Url", {"AuthType": "AWS_IAM", "InvokeMode": "BUFFERED"}
    )
    custom.has_resource_properties("AWS::Lambda::Url", {"AuthType": "NONE"})
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"ExpirationInDays": 1, "Status": "Enabled"})]
                )
            },
        },
    )
    # TLS only (the one Deny statement the stack has).
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Effect": "Deny",
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    )
                ]
            }
        },
    )


def test_outputs(template):
    outputs = template.to_json()["Outputs"]
    assert {
        "ApiUrl",
        "TilesUrl",
        "DistributionId",
        "BatchUrl",
        "TableName",
        "ExportsBucketName",
        "AccessLogGroup",
        "DashboardName",
    } <= set(outputs)


def test_construct_in_any_stack(app, template):
    embedded = Template.from_stack(app.node.find_child("Embedded"))
    functions = embedded.find_resources("AWS::Lambda::Function")
    assert len(functions) == 3 and all(k.startswith("Tiles") for k in functions)
    embedded.resource_count_is("AWS::CloudFront::Distribution", 0)
    assert "Outputs" not in embedded.to_json()  # outputs are the deployable stack's
    # In `MosaicTilerStack` the construct's resources keep the stack's logical ids.
    assert "MosaicTable9ADB2E43" in template.to_json()["Resources"]


def test_bundle_spec_changes_the_asset_hash(tmp_path):
    """The local bundler is not hashed by CDK: the spec in BundlingOptions.environment is."""
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        BundleSpec().requirements.read_text().replace("cachetools==6.0.0", "cachetools==6.1.0")
    )
    specs = {
        "A": BundleSpec(),
        "B": BundleSpec(),
        "Arm": BundleSpec(architecture="arm64"),
        "Pins": BundleSpec(requirements=requirements),
    }
    stacks = {
        name: MosaicTilerStack(app, name, MosaicTilerProps(bundle=spec))
        for name, spec in specs.items()
    }
    keys = {}
    for name, stack in stacks.items():
        code = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
        keys[name] = {json.dumps(p["Properties"]["Code"]["S3Key"]) for p in code.values()}
        assert len(keys[name]) == 1  # one asset shared by the three functions
    assert keys["A"] == keys["B"]
    assert len({next(iter(k)) for k in keys.values()}) == 3
    assert BundleSpec(architecture="arm64").platforms[0] == "manylinux2014_aarch64"


def test_props_from_environment_win_over_context():
    context = {
        "tiler_memory_size": 1024,
        "data_buckets": ["a"],
        "batch_reserved_concurrency": "none",
    }
    env = {"MOSAIC_CDK_TILER_MEMORY_SIZE": "4096", "MOSAIC_CDK_DATA_BUCKETS": '["x", "y"]'}
    props = props_from_context(context.get, environ=env)
    assert props.tiler.memory_size == 4096
    assert props.data_buckets == ["x", "y"]
    assert props.batch.function.reserved_concurrency is None
    with pytest.raises(ValueError, match="tiler_memory_size"):
        props_from_context({"tiler_memory_size": "lots"}.get, environ={})
    with pytest.raises(ValueError, match="architecture"):
        props_from_context({"architecture": "sparc"}.get, environ={})


def test_defaults_are_the_props_and_cdk_json_sets_no_option():
    """One source of defaults: the props dataclasses. `cdk.json` keeps CDK's feature flags."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    assert not set(context) & set(option_defaults())
    assert props_from_context(context.get, environ={}) == MosaicTilerProps()
    defaults = option_defaults()
    assert set(defaults) == {"stack_name", *OPTIONS}
    assert defaults["tiler_reserved_concurrency"] == 50 and defaults["writer_async_jobs"] is True
    assert defaults["batch_memory_size"] == 3008 and defaults["cors_origins"] == ["*"]
    assert stack_name({}.get, environ={}) == "MosaicTiler"
    assert stack_name({"stack_name": "Ctx"}.get, environ={}) == "Ctx"
    assert stack_name({"stack_name": "Ctx"}.get, {"MOSAIC_CDK_STACK_NAME": "Env"}) == "Env"


def test_cfn_lint_passes(template, tmp_path):
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template.to_json()))
    # W3005 is CDK's own redundant DependsOn on the function roles; nothing else is ignored.
    result = subprocess.run(
        ["cfn-lint", "--ignore-checks", "W3005", "--", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_oversized_asset_fails_with_a_clear_message(tmp_path):
    spec = BundleSpec(max_unzipped_bytes=10_000_000)
    with pytest.raises(BundleTooLargeError, match=r"over the limit of 10,000,000 bytes.*rasterio"):
        build_asset(spec, tmp_path / "asset")


def test_infrastructure_app_synthesizes(monkeypatch, tmp_path):
    monkeypatch.setenv("MOSAIC_CDK_STACK_NAME", "FromEnv")
    app = build_app(cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []}))
    assembly = app.synth()
    assert [s.stack_name for s in assembly.stacks] == ["FromEnv"]


def test_npx_cdk_synth_from_the_repo_root(tmp_path):
    """The pinned CLI (package.json at the root, `npm ci`) synthesizes offline, bundling the
    real asset with the local bundler (Docker is never needed)."""
    npx = shutil.which("npx")
    assert npx, "npx (Node.js) is required: it runs the pinned CDK CLI"
    assert (ROOT / "node_modules" / "aws-cdk").is_dir(), "run `npm ci` at the repo root"
    cached_asset(BundleSpec())  # warm the dependency cache the bundler reuses
    env = {**os.environ, **CDK_ENV, "PATH": os.environ["PATH"]}
    env.pop("MOSAIC_CDK_STACK_NAME", None)
    result = subprocess.run(
        [npx, "--no-install", "cdk", "synth", "--no-notices", "-q", "-o", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "docker" not in result.stderr.lower()
    template = json.loads((tmp_path / "out" / "MosaicTiler.template.json").read_text())
    assets = json.loads((tmp_path / "out" / "MosaicTiler.assets.json").read_text())
    (bundle,) = [a for a in assets["files"].values() if a["source"]["path"].startswith("asset.")]
    asset_dir = tmp_path / "out" / bundle["source"]["path"]
    assert (asset_dir / "lambda_handler" / "handler.py").is_file()
    assert (asset_dir / "rasterio").is_dir() and not (asset_dir / "boto3").exists()
    assert "MosaicTable9ADB2E43" in template["Resources"]
