"""The writer lease: one writer per mosaic at a time, and never two after a crash.

Writers hold a lease: an item of the partition `{mosaic}#lock` (a name no mosaic can have),
with a short expiry (`MOSAIC_AWS_WRITE_LOCK_SECONDS`, 30 s) renewed by a heartbeat while the
writer works. A writer whose heartbeat stops (SIGKILL, lost network) blocks others at most that
long; a writer that cannot renew stops before its lease could be taken over. A second writer of
the same mosaic is refused at once (MosaicConflictError; MosaicExistsError for a create).
"""

import logging
import threading
import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_handler.backends import aws
from lambda_handler.backends.dynamodb.items import ConditionFailedError, MosaicTable
from lambda_handler.backends.dynamodb.records import LOCK_QUADKEY, LOCK_SUFFIX, key_of
from lambda_handler.errors import MosaicConflictError, MosaicExistsError, MosaicWriteError
from lambda_handler.settings import aws_settings

logger = logging.getLogger(__name__)


class Lease:
    """A writer lock held in the table with a short expiry, renewed by a heartbeat while the
    writer works. The writer stops (`check`) before the lease could expire unrenewed, so a
    writer that took over an expired lease never races a living one."""

    def __init__(self, table: MosaicTable, operation: str):
        self.table = table
        self.operation = operation
        self.token = uuid.uuid4().hex
        self.seconds = aws_settings().write_lock_seconds
        self.lost: str | None = None
        self.took_over: dict[str, Any] | None = None  # the expired lease of a dead writer
        self.valid_until = 0.0  # time.monotonic() after which this writer must stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> dict[str, Any]:
        """The table key of the lock item."""
        return key_of(self.table.mosaic_name + LOCK_SUFFIX, LOCK_QUADKEY)

    def _safe_until(self, started: float) -> float:
        # A margin below the expiry others see: for clock skew and a slow last request.
        return started + self.seconds * 0.75

    def acquire(self, exists_error: bool) -> None:
        """Take the lock (a free or expired one), or raise MosaicExistsError (a create) /
        MosaicConflictError (another writer holds it)."""
        started = time.monotonic()
        now = time.time()
        item = {
            **self.key,
            "token": {"S": self.token},
            "operation": {"S": self.operation},
            "expires": {"N": f"{now + self.seconds:.3f}"},
        }
        try:
            answer = self.table.put_if(
                item,
                "attribute_not_exists(#m) OR expires < :now",
                {":now": {"N": f"{now:.3f}"}},
                return_old=True,
            )
        except ConditionFailedError as err:
            raise self._held_error(now, exists_error) from err
        self.valid_until = self._safe_until(started)
        self.took_over = answer.get("Attributes") or None
        if self.took_over:
            logger.warning(
                "took over the expired writer lock of %s (a writer died during %s)",
                self.table.uri,
                self.took_over.get("operation", {}).get("S", "a write"),
            )
        self._thread = threading.Thread(target=self._renew, name="dynamodb-lease", daemon=True)
        self._thread.start()

    def _held_error(self, now: float, exists_error: bool) -> Exception:
        """The error of a writer meeting another writer's lease (its expiry read back)."""
        holder = self.table.call("get_item", Key=self.key, ConsistentRead=True).get("Item")
        until = float(holder["expires"]["N"]) if holder else now
        what = holder["operation"]["S"] if holder else "write"
        message = (
            f"mosaic {self.table.mosaic_name!r} in table {self.table.table_name!r} is "
            f"being written by another writer ({what}; its lock expires in "
            f"{max(0.0, until - now):.0f} s unless renewed): nothing was written, retry later"
        )
        return (MosaicExistsError if exists_error else MosaicConflictError)(message)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            started = time.monotonic()
            try:
                self.table.call(
                    "update_item",
                    Key=self.key,
                    UpdateExpression="SET expires = :e",
                    ConditionExpression="#t = :t",
                    ExpressionAttributeNames={"#t": "token"},
                    ExpressionAttributeValues={
                        ":e": {"N": f"{time.time() + self.seconds:.3f}"},
                        ":t": {"S": self.token},
                    },
                )
            except (ClientError, BotoCoreError) as err:
                if isinstance(err, ClientError) and (
                    aws.error_code(err) == "ConditionalCheckFailedException"
                ):
                    self.lost = "another writer took the lock over"
                    return
                continue  # transient: the next beat retries; `valid_until` bounds the wait
            if self.lost:
                return
            self.valid_until = self._safe_until(started)

    @property
    def valid(self) -> bool:
        """Whether the writer may still write. Once lapsed, never valid again: a renewal that
        succeeds late must not let a writer go on after it skipped work."""
        if not self.lost and time.monotonic() >= self.valid_until:
            self.lost = "the writer lock could not be renewed in time"
        return not self.lost

    def check(self) -> None:
        """Raise if the lease was lost or could not be renewed in time."""
        if not self.valid:
            raise MosaicWriteError(f"write of {self.table.uri} stopped: {self.lost}")

    def release(self) -> None:
        """Stop renewing and delete the lock (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.table.call(
                "delete_item",
                Key=self.key,
                ConditionExpression="#t = :t",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":t": {"S": self.token}},
            )
        except (ClientError, BotoCoreError) as err:
            # The operation itself is done; the lease simply expires soon.
            logger.warning("could not release the writer lock of %s: %s", self.table.uri, err)
