"""The deadline of one request, and the assets it is reading.

`DeadlineMiddleware` (routes/middleware.py) gives every HTTP request a `Deadline`: when it
passes, the client gets a 504 naming the assets still being read, and the reads not started
yet are not started (`Deadline.check`). A thread blocked in GDAL cannot be interrupted: GDAL's
own HTTP timeouts (settings) bound how long it keeps running after the 504.
"""

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from lambda_handler.errors import MosaicError

# Scope key of the request's Deadline.
DEADLINE_KEY = "lambda_handler.deadline"


class DeadlineExceededError(MosaicError):
    """The request ran out of time (answered 504, naming the assets being read)."""


class Deadline:
    """A point in time after which the request's answer is a 504."""

    def __init__(self, seconds: float, setting: str = "MOSAIC_API_REQUEST_TIMEOUT"):
        self.seconds = seconds
        self.setting = setting
        self.expires_at = time.monotonic() + seconds
        self._reading: Counter[str] = Counter()
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left (negative once past)."""
        return self.expires_at - time.monotonic()

    def remaining_whole_seconds(self, cap: int) -> int:
        """Seconds left rounded up, at least 1 and at most `cap` (a GDAL timeout value)."""
        return max(1, min(cap, math.ceil(self.remaining())))

    @property
    def reading(self) -> list[str]:
        """Assets being read right now."""
        with self._lock:
            return sorted(self._reading)

    @contextmanager
    def read(self, asset: str) -> Iterator[None]:
        """Mark `asset` as being read for the duration of the block (after a `check`)."""
        self.check(asset)
        with self._lock:
            self._reading[asset] += 1
        try:
            yield
        finally:
            with self._lock:
                self._reading[asset] -= 1
                if self._reading[asset] <= 0:
                    del self._reading[asset]

    def message(self) -> str:
        """What the 504 says."""
        text = f"the request did not finish within {self.seconds:g} s ({self.setting})"
        assets = self.reading
        if assets:
            shown = ", ".join(assets[:5]) + (
                f" and {len(assets) - 5} more" if len(assets) > 5 else ""
            )
            text += f"; still reading asset(s): {shown}"
        return text

    def check(self, asset: str | None = None) -> None:
        """DeadlineExceededError when the deadline has passed (naming `asset`, not started)."""
        if self.remaining() <= 0:
            text = self.message()
            if asset:
                text += f"; asset {asset} was not read"
            raise DeadlineExceededError(text)
