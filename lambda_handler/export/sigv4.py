"""AWS Signature Version 4 for requests to IAM-protected Lambda Function URLs.

A small, dependency-free signer (the export client signs thousands of requests; building a
botocore AWSRequest for each is slower and pulls in more than needed). Checked against
botocore's own signer in the tests.
"""

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    """Access key, secret and optional session token."""

    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    # The query is signed as sent (already URL-encoded), its pairs sorted.
    pairs = [pair.partition("=") for pair in query.split("&")] if query else []
    return "&".join(f"{k}={v}" for k, _, v in sorted(pairs))


def _canonical_path(path: str) -> str:
    # Every service but S3 signs the path URI-encoded once more than it is sent.
    return quote(path or "/", safe="/~")


def region_from_url(url: str, default: str = "us-east-1") -> str:
    """Region of a Function URL (`https://id.lambda-url.REGION.on.aws/`)."""
    match = re.search(r"\.lambda-url\.([a-z0-9-]+)\.on\.aws", urlsplit(url).netloc)
    return match.group(1) if match else default


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    credentials: Credentials,
    region: str,
    service: str = "lambda",
    body: bytes = b"",
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers for `url` signed with SigV4 (the given headers plus X-Amz-* and Authorization)."""
    now = now or dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    parts = urlsplit(url)
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256

    signed = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = amz_date
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    canonical_headers = "".join(f"{name}:{signed[name]}\n" for name in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        [
            method.upper(),
            _canonical_path(parts.path),
            _canonical_query(parts.query),
            canonical_headers,
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + credentials.secret_key).encode(), date)
    key = _hmac(_hmac(_hmac(key, region), service), "aws4_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    result = dict(headers)
    result["X-Amz-Date"] = amz_date
    if credentials.token:
        result["X-Amz-Security-Token"] = credentials.token
    result["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return result


def default_credentials() -> Credentials:
    """Credentials from the standard AWS chain (env, profile, SSO, instance role, ...)."""
    import boto3

    found = boto3.Session().get_credentials()
    if found is None:
        from lambda_handler.export.plan import ExportError

        raise ExportError("SigV4 signing needs AWS credentials: none found in the standard chain")
    frozen = found.get_frozen_credentials()
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def signer_for(url: str, credentials: Credentials | None = None, region: str | None = None):
    """A `sign(method, url, headers)` callable for the export's endpoint renderer."""
    creds = credentials or default_credentials()
    region = region or region_from_url(url)

    def _sign(method: str, request_url: str, headers: dict[str, str]) -> dict[str, str]:
        return sign(method, request_url, headers, creds, region)

    return _sign
