"""S3 backend: a whole MosaicJSON document in an object (`s3://{bucket}/{key}`, gzip for `.gz`).

One boto3 client per process (cogeo-mosaic builds a session per open: 75-110 ms per request).
`write(overwrite=False)` is atomic where the server honours `If-None-Match: *` on PutObject (AWS
S3 since 2024, moto). Support is detected once per endpoint and bucket with a probe object; where
the header is ignored (older S3-compatible servers) the backend falls back to HEAD-then-PUT,
which still refuses to replace an existing document but cannot stop two simultaneous creators.

Concurrent updates: an update reads the document and its ETag, merges, and puts with
`If-Match: <that ETag>` (AWS S3 conditional writes, moto); a writer that lost the race gets 412,
re-reads, re-merges and retries (bounded, then MosaicConflictError). Conditional deletes send
`If-Match` too. s3rver ignores `If-Match`: there concurrent updates can still overwrite each other.
The protocol and the error table are `object_store.py`'s; this module holds S3's vocabulary.
"""

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import attr
from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler.backends import aws
from lambda_handler.backends.object_store import (
    Failure,
    ObjectStoreBackend,
    StoredObject,
    etag_revision,
)
from lambda_handler.errors import InvalidMosaicError

logger = logging.getLogger(__name__)

NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Both mean "an object is already there": 412 for a plain conflict, 409 when a concurrent
# conditional write of the same key is in flight.
EXISTS_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
# S3's error codes -> what they mean; auth codes and anything else are decided in `_classify`.
FAILURE_OF_CODE: dict[str, Failure] = {
    "NoSuchBucket": Failure.CONTAINER_NOT_FOUND,
    "NoSuchKey": Failure.OBJECT_NOT_FOUND,
    # HEAD answers carry no body, hence no code saying what is missing.
    "NotFound": Failure.NOT_FOUND,
    "404": Failure.NOT_FOUND,
    **dict.fromkeys(EXISTS_CODES, Failure.PRECONDITION_FAILED),
}

# (endpoint, bucket) -> whether PutObject honours If-None-Match: *.
_conditional_support: dict[tuple[str, str], bool] = {}
# (endpoint, bucket) -> whether PutObject honours If-Match: <etag>.
_if_match_support: dict[tuple[str, str], bool] = {}
_support_lock = threading.Lock()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://{bucket}/{key}`."""
    if not uri.startswith("s3://"):
        raise InvalidMosaicError(f"not an S3 mosaic URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise InvalidMosaicError(f"invalid S3 mosaic URI {uri!r}: expected s3://{{bucket}}/{{key}}")
    return bucket, key


def s3_client() -> Any:
    """The process-wide S3 client."""
    return aws.client("s3")


@attr.s
class S3Backend(ObjectStoreBackend):
    """A MosaicJSON document in an S3 object."""

    _backend_name: ClassVar[str] = "S3"
    _container_label: ClassVar[str] = "S3 bucket"
    _credentials_hint: ClassVar[str] = (
        "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, …) and the bucket's policy"
    )
    # DeleteObject of a missing key succeeds: a HEAD first reports it.
    _delete_reports_missing: ClassVar[bool] = False

    @property
    def bucket(self) -> str:
        """The bucket holding the document."""
        return self.container

    def _locate(self) -> tuple[str, str]:
        return parse_s3_uri(self.input)

    # ------------------------------------------------------------------ primitives
    def _get_object(self) -> StoredObject:
        response = s3_client().get_object(Bucket=self.bucket, Key=self.key)
        body = response["Body"].read()
        etag = response.get("ETag")
        return StoredObject(body, etag, etag_revision(etag))

    def _put_object(
        self, body: bytes, content_type: str, *, if_absent: bool, if_match: Any
    ) -> str | None:
        extra: dict[str, Any] = {}
        if if_absent and self.conditional_put_supported():
            extra["IfNoneMatch"] = "*"
        if if_match:
            extra["IfMatch"] = if_match
        response = s3_client().put_object(
            Bucket=self.bucket, Key=self.key, Body=body, ContentType=content_type, **extra
        )
        return etag_revision(response.get("ETag"))

    def _object_exists(self) -> bool:
        try:
            s3_client().head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            if aws.error_code(err) in NOT_FOUND_CODES:
                return False
            raise
        return True

    def _delete_object(self, *, if_match: Any) -> None:
        extra = {"IfMatch": if_match} if if_match else {}
        s3_client().delete_object(Bucket=self.bucket, Key=self.key, **extra)

    def _list_object_keys(self, prefix: str) -> list[str]:
        pages = (
            s3_client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def _classify(self, err: Exception) -> tuple[Failure, str] | None:
        if isinstance(err, BotoCoreError):  # no answer (connection, timeout, credentials)
            return Failure.FAILED, str(err)
        if not isinstance(err, ClientError):
            return None
        code = aws.error_code(err)
        detail = f"{code}: {err.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        if code in FAILURE_OF_CODE:
            return FAILURE_OF_CODE[code], detail
        if aws.is_auth_error(err):
            return Failure.ACCESS_DENIED, detail
        return Failure.FAILED, detail

    # ------------------------------------------------------------------ precondition support
    def _probe_precondition(
        self, cache: dict[tuple[str, str], bool], name: str, first: bytes, **second: Any
    ) -> bool:
        """Whether the server refuses a second PutObject of a probe object carrying the
        precondition `second` (an If-None-Match or a wrong If-Match). Probed once per endpoint
        and bucket, with a probe object that is deleted afterwards."""
        client = s3_client()
        cache_key = (client.meta.endpoint_url, self.bucket)
        with _support_lock:
            known = cache.get(cache_key)
        if known is not None:
            return known
        probe = f"{self.key}.{name}-probe-{uuid.uuid4().hex}"
        supported = False
        try:
            client.put_object(Bucket=self.bucket, Key=probe, Body=first)
            try:
                client.put_object(Bucket=self.bucket, Key=probe, Body=b"1", **second)
            except ClientError as err:
                if aws.error_code(err) not in EXISTS_CODES:
                    raise
                supported = True
        except ClientError as err:
            # A server that rejects the header outright (501) does not support it either.
            if aws.status_code(err) != 501 and aws.error_code(err) != "NotImplemented":
                raise
        finally:
            try:
                client.delete_object(Bucket=self.bucket, Key=probe)
            except ClientError as err:
                # The write itself can go on; say where the leftover probe is.
                logger.warning(
                    "could not delete the probe object s3://%s/%s: %s", self.bucket, probe, err
                )
        with _support_lock:
            cache[cache_key] = supported
        return supported

    def conditional_put_supported(self) -> bool:
        """Whether the server refuses a PutObject with `If-None-Match: *` over an existing
        object (what makes `write(overwrite=False)` atomic)."""
        return self._probe_precondition(
            _conditional_support, "conditional-put", b"", IfNoneMatch="*"
        )

    def conditional_replace_supported(self) -> bool:
        """Whether the server refuses a PutObject whose `If-Match` names another ETag (what
        keeps concurrent updates from overwriting each other); a server that does not is
        logged once."""
        known = (s3_client().meta.endpoint_url, self.bucket) in _if_match_support
        supported = self._probe_precondition(_if_match_support, "if-match", b"", IfMatch='"0"')
        if not supported and not known:
            logger.warning(
                "the S3 server at %s ignores If-Match on PutObject (bucket %s): concurrent "
                "updates of one mosaic there can overwrite each other (AWS S3 and moto honour it)",
                s3_client().meta.endpoint_url,
                self.bucket,
            )
        return supported

    @contextmanager
    def _write_guard(self) -> Iterator[None]:
        # No lock: the conditional put is the guard. Checked once so a server that ignores
        # it is reported instead of silently losing updates.
        with self._translated("probe"):
            self.conditional_replace_supported()
        yield
