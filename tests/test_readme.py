"""The README's examples, run as written against `mosaic-tiler demo`'s data.

Every fenced `bash` or `python` block is run, in document order, in one folder where the
Quick start's demo runs, unless its first line says why not:

- `# needs AWS ...` or `# needs the internet ...`: not run here (no credentials, no network);
- `# serves until Ctrl-C`: a server; started with `--port <free port>` appended, checked to
  answer, then stopped with Ctrl-C (SIGINT). The Quick start's `mosaic-tiler demo` is the one
  the other blocks talk to, as `$H`.

Shell blocks run under `bash -euo pipefail` with `curl` failing on HTTP errors (`--fail`), so a
documented URL that answers 404 fails here.
"""

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port
from tests.terminal import Server, assert_clean_stop, environment, start_server

README = Path(__file__).resolve().parent.parent / "README.md"
SKIP_MARKS = ("# needs AWS", "# needs the internet")
SERVER_MARK = "# serves until Ctrl-C"
API_KEY = "readme-example-key"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
# curl as a shell function: HTTP errors fail the block, progress meters stay quiet.
BASH_PRELUDE = 'curl() { command curl --fail-with-body --silent --show-error "$@"; }\n'


@dataclass(frozen=True)
class Block:
    """One fenced example of the README."""

    line: int
    lang: str
    text: str

    @property
    def mark(self) -> str:
        """The first line if it is a comment saying how (or whether) to run the block."""
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        for mark in (*SKIP_MARKS, SERVER_MARK):
            if first.startswith(mark):
                return mark
        return ""

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang}"


def readme_blocks() -> list[Block]:
    """The shell and Python blocks of the README, in document order."""
    text = README.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        lang = match.group(1).lower()
        if lang in ("bash", "sh", "shell", "console"):
            lang = "bash"
        if lang not in ("bash", "python"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(line, lang, match.group(2)))
    return blocks


BLOCKS = readme_blocks()
RUNNABLE = [block for block in BLOCKS if not block.mark]
SERVERS = [block for block in BLOCKS if block.mark == SERVER_MARK]
DEMO = next(block for block in SERVERS if "mosaic-tiler demo" in block.text)


def server_command(block: Block) -> str:
    """The block's one command (after the mark), as a single line."""
    lines = [line for line in block.text.splitlines()[1:] if line.strip()]
    assert len(lines) == 1, f"{block.id}: a server block holds one command"
    return lines[0].split(" #")[0].strip()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A fresh folder with `.venv` standing for the environment the tests run in."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def demo(workdir) -> Iterator[tuple[str, Server]]:
    """The Quick start's demo command, with writes allowed by a key: (base URL, server)."""
    port = free_port()
    env = environment(workdir, MOSAIC_API_API_KEY=API_KEY)
    server = start_server(f"{server_command(DEMO)} --port {port}", workdir, env)
    try:
        server.wait_for(r"Demo mosaic ready: open http://127\.0\.0\.1:\d+/")
        yield f"http://127.0.0.1:{port}", server
    finally:
        code = server.interrupt()
    assert_clean_stop(code, server)


def test_the_demo_says_which_data_it_serves(demo, workdir):
    base, server = demo
    output = "".join(server.output)
    assert (
        f"Demo data: 4 generated 8-bit RGB scenes around 78W 45N ({workdir.resolve()}/demo/cogs/"
        in output
    )
    assert httpx.get(f"{base}/mosaics/demo/info", timeout=30).json()["name"] == "demo"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_example(block, demo, workdir):
    base, server = demo
    env = environment(workdir, H=base, MOSAIC_API_API_KEY=API_KEY)
    if block.lang == "bash":
        command = ["bash", "-euo", "pipefail", "-c", BASH_PRELUDE + block.text]
    else:
        command = [sys.executable, "-c", block.text]
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (
        f"{block.id} failed (mark it '# needs AWS' or '# needs the internet' if it cannot run "
        f"offline):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n"
        f"server: {''.join(server.output)[-3000:]}"
    )


@pytest.mark.parametrize("block", [b for b in SERVERS if b is not DEMO], ids=lambda b: b.id)
def test_server_example(block, demo, workdir):
    """Other server commands start, answer, and stop on Ctrl-C."""
    port = free_port()
    server = start_server(f"{server_command(block)} --port {port}", workdir, environment(workdir))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/mosaics", timeout=5)
                break
            except httpx.TransportError:
                assert server.process.poll() is None, "".join(server.output)
                assert time.monotonic() < deadline, "".join(server.output)
                time.sleep(0.2)
        assert response.status_code == 200, response.text
    finally:
        code = server.interrupt()
    assert_clean_stop(code, server)


def test_the_documented_examples_are_among_those_run():
    """The extractor sees the examples the README is about (a broken fence would hide them)."""
    runnable = "\n".join(block.text for block in RUNNABLE)
    for fragment in (
        "mosaic-tiler create",
        "mosaic-tiler export",
        "/tiles/WebMercatorQuad/9/144/183",
        "/point/-78.4,45.2",
        "colormap_name=viridis",
        "MosaicBackend(",
    ):
        assert fragment in runnable, fragment
    assert server_command(DEMO) == ".venv/bin/mosaic-tiler demo"
    for block in BLOCKS:
        if block.mark in SKIP_MARKS:
            # the reason is said to the reader, not just a bare tag
            assert len(block.text.splitlines()[0].strip()) > len(block.mark) + 3, block.id
