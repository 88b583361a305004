"""Timing helper shared by the benchmarks."""

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(
    function: Callable[[], T], repeat: int, before: Callable[[], None] | None = None
) -> tuple[float, T]:
    """Median seconds of `repeat` calls of `function` (each after `before`, untimed), and the
    last call's result."""
    times: list[float] = []
    result: T
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
