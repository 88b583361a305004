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
from lambda_handler.backends.base import MosaicJSONBackend
from lambda_handler.backends.compression import decode_document, encode_document, is_gzip_name
from lambda_handler.errors import (
    InvalidMosaicError,
    MosaicChangedError,
    MosaicError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.model import MosaicJSON

logger = logging.getLogger(__name__)

NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Both mean "an object is already there": 412 for a plain conflict, 409 when a concurrent
# conditional write of the same key is in flight.
EXISTS_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})

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
class S3Backend(MosaicJSONBackend):
    """A MosaicJSON document in an S3 object."""

    bucket: str = attr.ib(init=False)
    key: str = attr.ib(init=False)

    _backend_name: ClassVar[str] = "S3"

    def __attrs_post_init__(self) -> None:
        """Parse the URI, then read the document (unless one was given)."""
        self.bucket, self.key = parse_s3_uri(self.input)
        super().__attrs_post_init__()

    def _error(self, err: Exception, doing: str, default: type[MosaicError]) -> MosaicError:
        if isinstance(err, ClientError):
            code = aws.error_code(err)
            if code == "NoSuchBucket":
                return MosaicNotFoundError(f"S3 bucket {self.bucket!r} not found ({self.input})")
            if code in NOT_FOUND_CODES:
                return MosaicNotFoundError(f"mosaic not found: {self.input}")
        return aws.map_error(err, f"{doing} {self.input}", default=default)

    def _read(self) -> MosaicJSON:
        return self._read_for_write()[0]

    def _read_for_write(self) -> tuple[MosaicJSON, str | None]:
        """The document and its ETag (also its store revision)."""
        try:
            response = s3_client().get_object(Bucket=self.bucket, Key=self.key)
            body = response["Body"].read()
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, "reading", MosaicError) from err
        etag = response.get("ETag")
        document = decode_document(body, self.input)
        return document.with_store_revision(etag.strip('"') if etag else None), etag

    def _exists(self) -> bool:
        try:
            s3_client().head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            if aws.error_code(err) in NOT_FOUND_CODES:
                return False
            raise
        return True

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
        try:
            self.conditional_replace_supported()
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, "probing", MosaicWriteError) from err
        yield

    def write(self, overwrite: bool = False) -> None:
        """Upload the document (one PUT: readers see the old or the new one, never a mix)."""
        body = encode_document(self.mosaic_def, self.key)
        # No Content-Encoding for .gz: HTTP clients would inflate it behind the reader's back.
        gz = is_gzip_name(self.key)
        extra: dict[str, Any] = {}
        try:
            if not overwrite:
                if self._exists():
                    raise self._exists_error()
                if self.conditional_put_supported():
                    extra["IfNoneMatch"] = "*"
            elif self._expected_token:
                # Replace only the copy this read-modify-write started from.
                extra["IfMatch"] = self._expected_token
            response = s3_client().put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ContentType="application/gzip" if gz else "application/json",
                **extra,
            )
        except ClientError as err:
            if aws.error_code(err) in EXISTS_CODES:
                if not overwrite:
                    raise self._exists_error() from err
                if "IfMatch" in extra:
                    raise self._changed_error("write") from err
            raise self._error(err, "writing", MosaicWriteError) from err
        except BotoCoreError as err:
            raise self._error(err, "writing", MosaicWriteError) from err
        finally:
            self._invalidate()
        etag = response.get("ETag")
        self.mosaic_def.with_store_revision(etag.strip('"') if etag else None)

    def _changed_error(self, doing: str) -> MosaicChangedError:
        return MosaicChangedError(
            f"mosaic {self.input} changed since it was read (If-Match refused the {doing})"
        )

    def _exists_error(self) -> MosaicExistsError:
        return MosaicExistsError(f"mosaic already exists: {self.input} (use overwrite=True)")

    def delete(self) -> None:
        """Remove the object (MosaicNotFoundError if it does not exist)."""
        extra = {"IfMatch": self._expected_token} if self._expected_token else {}
        try:
            if not self._exists():
                raise MosaicNotFoundError(f"mosaic not found: {self.input}")
            s3_client().delete_object(Bucket=self.bucket, Key=self.key, **extra)
        except ClientError as err:
            if extra and aws.error_code(err) in EXISTS_CODES:
                raise self._changed_error("delete") from err
            raise self._error(err, "deleting", MosaicWriteError) from err
        except BotoCoreError as err:
            raise self._error(err, "deleting", MosaicWriteError) from err
        finally:
            self._invalidate()
