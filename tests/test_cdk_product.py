"""The stack as a product (issue 14): store options, the CDN, reserved concurrency, the
asynchronous-writer hook (access logs, alarms, dashboard: test_cdk_monitoring.py). Template
assertions on the variants of `tests/cdk_support.py`."""

import json

import pytest
from aws_cdk.assertions import Match, Template

from cdk.config import props_from_context
from cdk.props import CdnProps, MosaicTilerProps, StoreProps
from tests.cdk_support import CERTIFICATE, STAC_ASSETS, synthesized, template
from tests.cdk_support import function_properties as _function
from tests.cdk_support import logical_id as _logical_id
from tests.cdk_support import role_statements as _statements
from tests.cdk_support import statement_actions as _actions

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # CloudFront's managed policy id


@pytest.fixture(scope="module")
def default() -> Template:
    return template("Default")


@pytest.fixture(scope="module")
def s3_stac() -> Template:
    return template("S3Stac")


@pytest.fixture(scope="module")
def existing() -> Template:
    return template("Existing")


def _env(tpl: Template, prefix: str) -> dict:
    return _function(tpl, prefix)["Environment"]["Variables"]


# ---------------------------------------------------------------------------- stores
def test_dynamodb_is_the_default_store(default):
    env = _env(default, "Tiler")
    table = _logical_id(default, "AWS::DynamoDB::Table", "MosaicTable")
    assert env["MOSAIC_API_MOSAIC_URI_TEMPLATE"] == {
        "Fn::Join": ["", ["dynamodb:///", {"Ref": table}, ":{mosaic_id}"]]
    }
    assert env["MOSAIC_API_ALLOWED_URL_PREFIXES"] == "[]"
    assert env["MOSAIC_API_ALLOWED_ASSET_PREFIXES"] == "[]"
    assert env["MOSAIC_API_WRITE_CORS_ORIGINS"] == "[]"
    # Only the exports bucket: no mosaics bucket without the S3 store.
    default.resource_count_is("AWS::S3::Bucket", 1)


def test_s3_store_created_by_the_stack(s3_stac):
    s3_stac.resource_count_is("AWS::DynamoDB::Table", 0)
    bucket = _logical_id(s3_stac, "AWS::S3::Bucket", "MosaicsBucket")
    s3_stac.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicAcls": True}),
        },
    )
    for prefix in ("Tiler", "Writer", "Batch"):
        env = _env(s3_stac, prefix)
        assert env["MOSAIC_API_MOSAIC_URI_TEMPLATE"] == {
            "Fn::Join": ["", ["s3://", {"Ref": bucket}, "/mosaics/{mosaic_id}.json.gz"]]
        }
    # Reads for the tiler and batch, writes for the writer only, all below the prefix.
    tiler = _statements(s3_stac, "TilerServiceRole")
    writer = _statements(s3_stac, "WriterServiceRole")
    batch = _statements(s3_stac, "BatchServiceRole")
    assert _actions(tiler) == {"s3:GetObject", "s3:ListBucket"}
    assert _actions(batch) == {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}
    assert _actions(writer) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}
    (objects,) = [s for s in writer if "s3:PutObject" in s["Action"]]
    assert objects["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/mosaics/*"]]
    }
    (listing,) = [s for s in tiler if s["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == {"Fn::GetAtt": [bucket, "Arn"]}  # 404 (not 403) when missing
    assert "dynamodb" not in json.dumps(tiler + writer + batch)


def test_stac_urls_and_assets_are_allow_listed(s3_stac):
    env = _env(s3_stac, "Tiler")
    bucket = _logical_id(s3_stac, "AWS::S3::Bucket", "MosaicsBucket")
    # `?url=` reads stored documents: the mosaics bucket's prefix, never a STAC search (it has no
    # zooms nor search body there; STAC mosaics are written through POST /mosaics).
    assert env["MOSAIC_API_ALLOWED_URL_PREFIXES"] == {
        "Fn::Join": ["", ['["s3://', {"Ref": bucket}, '/mosaics/"]']]
    }
    assert "stac+" not in json.dumps(env)
    assets = json.loads(env["MOSAIC_API_ALLOWED_ASSET_PREFIXES"])
    assert assets == [
        "s3://cogs-a/",
        "s3://cogs-b/",
        STAC_ASSETS,
        "https://earth-search.aws.element84.com/v1/",
    ]
    assert json.loads(env["MOSAIC_API_WRITE_CORS_ORIGINS"]) == ["https://app.example.org"]


def test_existing_mosaics_bucket_beside_the_table(existing):
    # No bucket created for mosaics: the exports bucket only; the table stays the store.
    existing.resource_count_is("AWS::S3::Bucket", 1)
    existing.resource_count_is("AWS::DynamoDB::Table", 1)
    env = _env(existing, "Tiler")
    assert "dynamodb:///" in json.dumps(env["MOSAIC_API_MOSAIC_URI_TEMPLATE"])
    assert json.loads(env["MOSAIC_API_ALLOWED_URL_PREFIXES"]) == ["s3://my-mosaics/mosaics/"]
    assert json.loads(env["MOSAIC_API_ALLOWED_ASSET_PREFIXES"]) == ["s3://cogs-a/"]
    writer = _statements(existing, "WriterServiceRole")
    (objects,) = [s for s in writer if "s3:PutObject" in s["Action"]]
    assert "arn:" in json.dumps(objects["Resource"])
    assert ":s3:::my-mosaics/mosaics/*" in json.dumps(objects["Resource"])


def test_store_options_are_validated():
    with pytest.raises(ValueError, match="mosaic_store"):
        MosaicTilerProps(store=StoreProps(mosaic_store="sqlite"))
    with pytest.raises(ValueError, match="https"):
        MosaicTilerProps(store=StoreProps(stac_api_urls=["http://stac.internal/search"]))
    with pytest.raises(ValueError, match="bucket name"):
        MosaicTilerProps(store=StoreProps(data_buckets=["s3://cogs"]))
    with pytest.raises(ValueError, match="go together"):
        MosaicTilerProps(cdn=CdnProps(domain_name="tiles.example.org"))
    with pytest.raises(ValueError, match="needs the CDN"):
        props_from_context(
            {
                "cdn_enabled": "false",
                "cdn_domain_name": "t.example.org",
                "cdn_certificate_arn": CERTIFICATE,
            }.get,
            environ={},
        )
    with pytest.raises(ValueError, match="cdn_enabled"):
        props_from_context({"cdn_enabled": "maybe"}.get, environ={})


# ---------------------------------------------------------------------------- CDN
def _distribution(tpl: Template) -> dict:
    (dist,) = tpl.find_resources("AWS::CloudFront::Distribution").values()
    return dist["Properties"]["DistributionConfig"]


def _policies(tpl: Template) -> dict[str, dict]:
    return {
        name: p["Properties"]["CachePolicyConfig"]
        for name, p in tpl.find_resources("AWS::CloudFront::CachePolicy").items()
    }


def test_cdn_caches_tiles_and_documents_by_the_full_query_string(default):
    policies = _policies(default)
    assert len(policies) == 2
    for config in policies.values():
        key = config["ParametersInCacheKeyAndForwardedToOrigin"]
        assert key["QueryStringsConfig"] == {"QueryStringBehavior": "all"}
        assert key["HeadersConfig"] == {"HeaderBehavior": "whitelist", "Headers": ["Origin"]}
        assert key["CookiesConfig"] == {"CookieBehavior": "none"}
        assert key["EnableAcceptEncodingGzip"] and key["EnableAcceptEncodingBrotli"]
        assert config["MinTTL"] == 0  # the origin's Cache-Control can always ask for less
    by_max = {config["MaxTTL"]: name for name, config in policies.items()}
    assert set(by_max) == {60, 86_400}
    documents, tiles = by_max[60], by_max[86_400]

    config = _distribution(default)
    default_behavior = config["DefaultCacheBehavior"]
    assert default_behavior["CachePolicyId"] == {"Ref": documents}
    assert default_behavior["Compress"] is True
    assert default_behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert set(default_behavior["AllowedMethods"]) == {
        "GET",
        "HEAD",
        "OPTIONS",
        "PUT",
        "PATCH",
        "POST",
        "DELETE",
    }
    assert default_behavior["CachedMethods"] == ["GET", "HEAD"]  # writes are never cached
    behaviors = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    # First match wins: a tile's asset list is a document, not a tile.
    order = [b["PathPattern"] for b in config["CacheBehaviors"]]
    assert order.index("*/assets") < order.index("*/tiles/*")
    assert behaviors["*/assets"]["CachePolicyId"] == {"Ref": documents}
    assert behaviors["*/tiles/*"]["CachePolicyId"] == {"Ref": tiles}
    assert behaviors["/static/*"]["CachePolicyId"] == {"Ref": tiles}
    assert behaviors["/mosaics"]["CachePolicyId"] == CACHING_DISABLED
    assert behaviors["/healthz"]["CachePolicyId"] == CACHING_DISABLED
    assert all(b["Compress"] for b in behaviors.values())
    # CORS preflight headers reach the app; nothing else beyond the cache key.
    (request_policy,) = default.find_resources("AWS::CloudFront::OriginRequestPolicy").values()
    headers = request_policy["Properties"]["OriginRequestPolicyConfig"]["HeadersConfig"]
    assert set(headers["Headers"]) == {
        "Access-Control-Request-Headers",
        "Access-Control-Request-Method",
    }


def test_cdn_origin_is_the_api_over_https_and_no_cycle(default):
    config = _distribution(default)
    (origin,) = config["Origins"]
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    api = _logical_id(default, "AWS::ApiGatewayV2::Api", "Api")
    assert {"Ref": api} in origin["DomainName"]["Fn::Join"][1]
    # The distribution refers to the API resource only, never to a function: the functions
    # can then carry the distribution's URL without a dependency cycle.
    text = json.dumps(default.find_resources("AWS::CloudFront::Distribution"))
    assert "Tiler" not in text and "Writer" not in text
    domain = {
        "Fn::Join": [
            "",
            [
                "https://",
                {
                    "Fn::GetAtt": [
                        _logical_id(default, "AWS::CloudFront::Distribution", "Cdn"),
                        "DomainName",
                    ]
                },
            ],
        ]
    }
    assert _env(default, "Tiler")["MOSAIC_API_PUBLIC_URL"] == domain
    assert _env(default, "Writer")["MOSAIC_API_PUBLIC_URL"] == domain
    assert default.to_json()["Outputs"]["TilesUrl"]["Value"] == domain


def test_custom_domain(s3_stac):
    config = _distribution(s3_stac)
    assert config["Aliases"] == ["tiles.example.org"]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    assert _env(s3_stac, "Tiler")["MOSAIC_API_PUBLIC_URL"] == "https://tiles.example.org"
    assert s3_stac.to_json()["Outputs"]["TilesUrl"]["Value"] == "https://tiles.example.org"


def test_cdn_can_be_turned_off(existing):
    existing.resource_count_is("AWS::CloudFront::Distribution", 0)
    outputs = existing.to_json()["Outputs"]
    assert "DistributionId" not in outputs
    assert outputs["TilesUrl"]["Value"] == outputs["ApiUrl"]["Value"]
    assert _env(existing, "Tiler")["MOSAIC_API_PUBLIC_URL"] == outputs["ApiUrl"]["Value"]


def test_api_cors_is_left_to_the_app(default):
    """API Gateway's CORS would answer every preflight itself, with one policy for reads and
    writes: preflights go to the app (read origins, write origins per route)."""
    (api,) = default.find_resources("AWS::ApiGatewayV2::Api").values()
    assert "CorsConfiguration" not in api["Properties"]
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in default.find_resources("AWS::ApiGatewayV2::Route").values()
    }
    for key in ("OPTIONS /", "OPTIONS /{proxy+}"):
        assert routes[key].get("AuthorizationType", "NONE") == "NONE"
        assert routes[key]["Target"] == routes["GET /{proxy+}"]["Target"]


# ---------------------------------------------------------------------------- operations
def test_reserved_concurrency_caps_cost_unless_turned_off(default, existing):
    assert [
        _function(default, n)["ReservedConcurrentExecutions"] for n in ("Tiler", "Writer", "Batch")
    ] == [50, 5, 10]
    assert "ReservedConcurrentExecutions" not in _function(existing, "Tiler")
    assert _function(existing, "Writer")["ReservedConcurrentExecutions"] == 5


def test_write_jobs(default, s3_stac):
    """Writes too large for API Gateway run as jobs: the writer invokes itself (once, no
    retries), may run 900 s, and still answers HTTP requests within API Gateway's 30 s."""
    writer = _function(default, "Writer")
    assert writer["Timeout"] == 900
    assert writer["Environment"]["Variables"]["MOSAIC_API_REQUEST_TIMEOUT"] == "25"
    (invoke,) = [
        p["Properties"]
        for name, p in default.find_resources("AWS::IAM::Policy").items()
        if name.startswith("WriterInvokesItself")
    ]
    (statement,) = invoke["PolicyDocument"]["Statement"]
    writer_id = _logical_id(default, "AWS::Lambda::Function", "Writer")
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"] == {"Fn::GetAtt": [writer_id, "Arn"]}
    default.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": {"Ref": writer_id}, "MaximumRetryAttempts": 0},
    )
    # Job records expire through the table's TTL.
    default.has_resource_properties(
        "AWS::DynamoDB::Table",
        {"TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True}},
    )
    # Turned off: an ordinary 29 s writer that cannot invoke itself.
    assert _function(s3_stac, "Writer")["Timeout"] == 29
    assert not [n for n in s3_stac.find_resources("AWS::IAM::Policy") if "Invokes" in n]
    assert _env(default, "Tiler")["MOSAIC_API_REQUEST_TIMEOUT"] == "25"


def test_every_variant_passes_cfn_lint(tmp_path):
    import subprocess

    paths = []
    for name, body in synthesized().items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        paths.append(str(path))
    # W3005 is CDK's own redundant DependsOn on the function roles; nothing else is ignored.
    result = subprocess.run(
        ["cfn-lint", "--ignore-checks", "W3005", "--", *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
