"""Deadlines for the waits of the tests: a wait that never ends fails, naming what it awaited.

A test that polls (a server starting, a job finishing, a page cursor running out) without a
deadline hangs the whole suite when the awaited thing never happens; with one, it fails with a
message that says what did not happen.
"""

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    """A point in time after which a wait has failed.

    `check()` inside any loop turns it into a bounded one: it raises AssertionError naming
    `what` once `seconds` have passed since the Deadline was made.
    """

    def __init__(self, seconds: float, what: str):
        self.seconds = seconds
        self.what = what
        self._ends = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        """Whether the time is up."""
        return time.monotonic() >= self._ends

    def check(self, detail: str = "") -> None:
        """Raise AssertionError when the time is up (`detail`: what was seen last)."""
        if self.passed:
            suffix = f" ({detail})" if detail else ""
            raise AssertionError(f"waited {self.seconds:g} s for {self.what}{suffix}")


def wait_for(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Call `condition` every `interval` s until it returns something truthy, and return that;
    raise AssertionError naming `what` after `timeout` s."""
    deadline = Deadline(timeout, what)
    while True:
        result = condition()
        if result:
            return result
        deadline.check()
        time.sleep(interval)


def join_all(threads: list[threading.Thread], *, timeout: float, what: str) -> None:
    """Join every thread within `timeout` s in all; AssertionError naming `what` for any left
    running (a deadlocked writer fails the test instead of hanging the suite)."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    running = [thread.name for thread in threads if thread.is_alive()]
    if running:
        raise AssertionError(f"waited {timeout:g} s for {what}: {running} still running")
