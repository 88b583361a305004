"""Run a server command as a user does in a terminal: in its own session, its output lines
collected as they come, stopped with Ctrl-C (SIGINT) and checked to have shut down cleanly.

The README's server examples and the CLI's `demo` tests run their servers this way.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue


def environment(workdir: Path, **extra: str) -> dict[str, str]:
    """The test's own interpreter and scripts first on PATH, as an activated venv would."""
    env = {**os.environ, **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Server:
    """A README server command running in its own process group."""

    process: subprocess.Popen
    lines: "Queue[str]"
    output: list[str]

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match:
        """The first stdout line matching `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=0.2)
            except Empty:
                assert self.process.poll() is None, f"exited: {''.join(self.output)}"
                assert time.monotonic() < deadline, f"no {pattern!r}: {''.join(self.output)}"
                continue
            found = re.search(pattern, line)
            if found:
                return found

    def interrupt(self) -> int:
        """Ctrl-C, as in a terminal; the exit code (uvicorn re-raises SIGINT after a clean
        shutdown: 130, or 0 on older versions)."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)


def start_server(command: str, cwd: Path, env: dict[str, str]) -> Server:
    """Run a shell command in its own session, collecting its output lines."""
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # as in a terminal: a runner started in the background may pass SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: Queue[str] = Queue()
    output: list[str] = []

    def pump() -> None:
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return Server(process, lines, output)


def assert_clean_stop(code: int, server: Server) -> None:
    """Stopped by Ctrl-C after a graceful shutdown, no traceback."""
    output = "".join(server.output)
    assert code in (0, 130), output
    assert "Finished server process" in output and "Traceback" not in output, output
