"""`TilerCdn`: a CloudFront distribution in front of the tiler's HTTP API.

Caching follows the paths the app serves:
- tiles (`*/tiles/*`, but not a tile's `*/assets` list) and static files: cached by the full
  query string up to `tile_max_ttl`, within the origin's `Cache-Control`;
- everything else readable (TileJSON, WMTS, metadata, info, points, the map page): cached by the
  full query string for at most `document_max_ttl` (short), so a mosaic update reaches the edge
  quickly without an invalidation; the tile URLs in TileJSON/WMTS carry the mosaic version (`v=`),
  so tiles of the new version are new cache keys and never served stale;
- `/mosaics` (the listing) and `/healthz`: never cached. Writes (POST/PUT/PATCH/DELETE) are never
  cached by CloudFront; they pass through to the API (which needs SigV4 signed for its own host,
  so writers call the API URL directly).

The `Origin` header is part of every cache key: the app answers CORS headers only to requests
that carry one, and a response cached for a request without it must not be served to a browser.
CloudFront revalidates an expired object with the origin's `ETag` (`If-None-Match`, 304).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from constructs import Construct

from cdk.props import CdnProps
from cdk.security import skip_checkov

DOCUMENT_PATHS_BEFORE_TILES = ("*/assets",)
TILE_PATHS = ("*/tiles/*", "/static/*")
UNCACHED_PATHS = ("/mosaics", "/healthz")
_PRICE_CLASSES = {
    "PriceClass_100": "PRICE_CLASS_100",
    "PriceClass_200": "PRICE_CLASS_200",
    "PriceClass_All": "PRICE_CLASS_ALL",
}
# Forwarded to the origin without being part of the cache key (CORS preflights are not cached).
FORWARDED_HEADERS = ("Access-Control-Request-Headers", "Access-Control-Request-Method")


class TilerCdn(Construct):
    """The distribution; `url` is its public base URL (custom domain when one is set)."""

    def __init__(self, scope: Construct, construct_id: str, api: apigw.HttpApi, props: CdnProps):
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        origin = origins.HttpOrigin(
            f"{api.api_id}.execute-api.{stack.region}.{stack.url_suffix}",
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            read_timeout=Duration.seconds(30),  # API Gateway's own cap
        )
        documents = self._cache_policy("Documents", props.document_max_ttl, props)
        tiles = self._cache_policy("Tiles", props.tile_max_ttl, props)
        forward = cloudfront.OriginRequestPolicy(
            self,
            "Forward",
            comment="CORS preflight headers; query strings come with the cache key",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.allow_list(*FORWARDED_HEADERS),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.all(),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.none(),
        )

        def behavior(cache_policy: cloudfront.ICachePolicy) -> cloudfront.BehaviorOptions:
            return cloudfront.BehaviorOptions(
                origin=origin,
                cache_policy=cache_policy,
                origin_request_policy=forward,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                compress=True,
            )

        # CloudFront takes the first matching pattern: a tile's asset list (JSON) goes with the
        # documents, before `*/tiles/*` would catch it.
        extra = {path: behavior(documents) for path in DOCUMENT_PATHS_BEFORE_TILES}
        extra.update({path: behavior(tiles) for path in TILE_PATHS})
        extra.update(
            {path: behavior(cloudfront.CachePolicy.CACHING_DISABLED) for path in UNCACHED_PATHS}
        )
        certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", props.certificate_arn)
            if props.certificate_arn
            else None
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{stack.stack_name} tiles",
            default_behavior=behavior(documents),
            additional_behaviors=extra,
            domain_names=[props.domain_name] if props.domain_name else None,
            certificate=certificate,
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            price_class=getattr(cloudfront.PriceClass, _PRICE_CLASSES[props.price_class]),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )
        self.url = f"https://{props.domain_name or self.distribution.distribution_domain_name}"
        skip_checkov(
            self.distribution,
            {
                "CKV_AWS_68": "A WAF web ACL costs $5/month plus per-request fees; the API is "
                "read-only to the public and rate-limited by the stage throttle and the "
                "functions' reserved concurrency. Attach one with web_acl_id where needed.",
                "CKV_AWS_86": "Edge access logs need a logging bucket with ACLs enabled; requests "
                "that reach the origin are in the API stage's JSON access log.",
                **(
                    {}
                    if props.certificate_arn
                    else {
                        "CKV_AWS_174": "Without a custom domain CloudFront serves its default "
                        "*.cloudfront.net certificate, whose TLS policy cannot be chosen; with "
                        "cdn_domain_name/cdn_certificate_arn the policy is TLSv1.2_2021."
                    }
                ),
            },
        )

    def _cache_policy(self, name: str, max_ttl: int, props: CdnProps) -> cloudfront.CachePolicy:
        return cloudfront.CachePolicy(
            self,
            f"{name}Cache",
            comment=f"{name}: full query string and Origin, at most {max_ttl} s",
            query_string_behavior=cloudfront.CacheQueryStringBehavior.all(),
            header_behavior=cloudfront.CacheHeaderBehavior.allow_list("Origin"),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            min_ttl=Duration.seconds(0),
            default_ttl=Duration.seconds(min(props.default_ttl, max_ttl)),
            max_ttl=Duration.seconds(max_ttl),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )
