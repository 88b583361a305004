"""Progress of an export: callbacks the runner makes; the CLI shows them with rich."""

import time


class ProgressSink:
    """Progress callbacks; the Python API may ignore them (this class does nothing)."""

    def start(self, total: int, already_done: int) -> None:
        """The export starts: `total` tiles, `already_done` of them kept from an earlier run."""

    def advance(self, failed: bool) -> None:
        """One tile finished (or failed for good)."""

    def stop(self) -> None:
        """Rendering is over (finished, failed or interrupted)."""


class RichProgress(ProgressSink):
    """A rich progress bar: tiles done/failed, throughput and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("Tiles"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:.1f} tiles/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._failed = 0
        self._done = 0
        self._started = time.perf_counter()

    def start(self, total: int, already_done: int) -> None:
        """Show the bar, counting the tiles kept from an earlier run as done."""
        self._progress.start()
        self._task = self._progress.add_task(
            "export", total=total, completed=already_done, failed=0, rate=0.0
        )
        self._started = time.perf_counter()

    def advance(self, failed: bool) -> None:
        """Advance the bar, the failure count and the throughput."""
        self._done += 1
        self._failed += int(failed)
        rate = self._done / max(1e-9, time.perf_counter() - self._started)
        self._progress.update(self._task, advance=1, failed=self._failed, rate=rate)

    def stop(self) -> None:
        """Remove the bar from the terminal's live display."""
        self._progress.stop()
