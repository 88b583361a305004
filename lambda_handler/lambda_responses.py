"""Lambda response payloads: their size, and what to answer instead of one over Lambda's limit.

Lambda refuses a response payload over 6 MB. The API function answers 413 instead (pointing at
the batch URL); the batch function stores the body in the exports bucket and answers 303 with a
presigned, expiring URL. Standard library only at import (boto3 is imported by the first
export), like `lambda_handler.handler`, whose cold start imports this module.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import mimetypes
import os
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambda_handler.settings import LambdaSettings

logger = logging.getLogger(__name__)

LambdaResponse = dict[str, Any]


def response_size(response: LambdaResponse) -> int:
    """Bytes of the response payload as Lambda serializes it."""
    return len(json.dumps(response, separators=(",", ":")).encode())


def header_value(response: LambdaResponse, name: str) -> str | None:
    """The first value of header `name` (lower case) in a mangum response, or None."""
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name:
            return value
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name and values:
            return values[0]
    return None


def response_body(response: LambdaResponse) -> bytes:
    """The body bytes of a mangum response (base64 decoded when flagged)."""
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else body


def json_answer(status: int, content: dict[str, Any], **headers: str) -> LambdaResponse:
    """A JSON Lambda response the CDN and clients never cache."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "cache-control": "no-store", **headers},
        "body": json.dumps(content),
        "isBase64Encoded": False,
    }


def too_large_answer(size: int, limit: int) -> LambdaResponse:
    """413 for the API function: the client should use the batch endpoint."""
    return json_answer(
        413,
        {
            "detail": f"the response is {size:,} bytes, over Lambda's limit of {limit:,} bytes: "
            "ask for a smaller area or tile, or use the batch endpoint (its large responses "
            "are answered with a redirect to a download)"
        },
    )


_EXTENSIONS = {
    "image/tiff": ".tif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "application/x-binary": ".npy",
    "application/json": ".json",
}


@functools.lru_cache(maxsize=4)
def exports_client(endpoint: str | None) -> Any:
    """S3 client of the exports bucket (one per endpoint), signing presigned URLs with SigV4
    (SigV2 URLs are refused by newer regions and KMS-encrypted objects)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, config=Config(signature_version="s3v4")
    )


def export_response(
    response: LambdaResponse, settings: LambdaSettings, size: int
) -> LambdaResponse:
    """Store a too-large response body in the exports bucket; 303 to a presigned URL."""
    if not settings.exports_bucket:
        return json_answer(
            500,
            {
                "detail": f"the response is {size:,} bytes, over Lambda's limit of "
                f"{settings.response_limit_bytes:,} bytes, and no exports bucket is configured "
                "(MOSAIC_LAMBDA_EXPORTS_BUCKET)"
            },
        )
    body = response_body(response)
    content_type = header_value(response, "content-type") or "application/octet-stream"
    media_type = content_type.split(";")[0].strip()
    extension = _EXTENSIONS.get(media_type) or mimetypes.guess_extension(media_type) or ""
    key = f"{settings.exports_prefix}{uuid.uuid4().hex}{extension}"
    put: dict[str, Any] = {"ContentType": content_type}
    encoding = header_value(response, "content-encoding")
    if encoding:
        put["ContentEncoding"] = encoding
    client = exports_client(
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    client.put_object(Bucket=settings.exports_bucket, Key=key, Body=body, **put)
    url = client.generate_presigned_url(
        "get_object",
        Params={"Bucket": settings.exports_bucket, "Key": key},
        ExpiresIn=settings.presigned_url_seconds,
    )
    logger.info("exported a %d-byte response to s3://%s/%s", size, settings.exports_bucket, key)
    return json_answer(
        303,
        {
            "location": url,
            "expires_in": settings.presigned_url_seconds,
            "size": len(body),
            "content_type": content_type,
        },
        location=url,
    )
