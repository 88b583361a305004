"""Start, poll and stop the server processes of the tests (and of the benchmarks).

Every server the suite runs in a process of its own goes through `ServerProcess`, so that none
can hang the suite: the start waits for an HTTP answer with a deadline and puts the tail of the
server's log in the error, and the stop kills what does not exit in time.
"""

import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.waiting import wait_for

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file (for error messages)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def answers_http(url: str, status: int | None = None) -> bool:
    """Whether `url` answers HTTP now: with `status`, or with any status when None (even a 4xx
    means the server is serving)."""
    try:
        # trust_env=False: a proxy configured for the outside world must not see loopback URLs.
        response = httpx.get(url, timeout=2.0, trust_env=False)
    except httpx.TransportError:
        return False
    return status is None or response.status_code == status


class ServerProcess:
    """One server command run in its own process, its output appended to `log`.

    It can be started again after a stop or a kill (same command, same port), as tests of
    crashes need.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.name = name
        self.command = list(command)
        self.log = log
        self.cwd = cwd
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> "ServerProcess":
        """Launch the command (without waiting for it to serve)."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def wait_until_answering(
        self, url: str, *, status: int | None = None, timeout: float = START_TIMEOUT
    ) -> None:
        """Return once `url` answers (see `answers_http`); raise RuntimeError with the log's
        tail when the process exits first or `timeout` s pass (the process is then stopped)."""

        def answering() -> bool:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(
                    f"{self.name} exited with {code} before answering {url}:\n{log_tail(self.log)}"
                )
            return answers_http(url, status)

        try:
            wait_for(answering, timeout=timeout, what=f"{self.name} to answer {url}", interval=0.1)
        except AssertionError as error:
            self.stop()
            raise RuntimeError(f"{error}:\n{log_tail(self.log)}") from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate the process; kill it when it has not exited after `timeout` s."""
        if not self.running:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.running:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def serving(
    server: ServerProcess,
    url: str,
    *,
    status: int | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[ServerProcess]:
    """Start `server`, wait until `url` answers, and stop it when the block ends."""
    server.start()
    try:
        server.wait_until_answering(url, status=status, timeout=timeout)
        yield server
    finally:
        server.stop()
