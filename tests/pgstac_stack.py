"""A real STAC API on 127.0.0.1 for the tests and the benchmark: a throw-away PostgreSQL
cluster with PostGIS and pgstac, served by stac-fastapi-pgstac under uvicorn.

It works without pytest (`benchmarks/bench_stac.py` uses it); `tests/servers_stac.py` wraps it
in a session fixture.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import LOOPBACK, ServerProcess, free_port
from tests.stac_catalog import QUERYABLES, write_ndjson

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
COMMAND_TIMEOUT = 300.0


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as another user, run the command directly.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], env: dict | None = None, cwd: Path | None = None) -> None:
    # A deadline, so a stuck initdb/pg_ctl/pypgstac fails the session instead of hanging it.
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}): {result.stdout}{result.stderr}"
        )


@dataclass
class StacStack:
    """PostgreSQL + pgstac + stac-fastapi-pgstac on 127.0.0.1."""

    workdir: Path
    pg_port: int
    password: str = "stac-test-password"
    api_port: int = 0
    api: ServerProcess | None = None
    started: list[str] = field(default_factory=list)

    @property
    def pg_data(self) -> Path:
        """PostgreSQL data directory."""
        return self.workdir / "data"

    @property
    def pg_env(self) -> dict[str, str]:
        """Environment for libpq clients (pypgstac) and stac-fastapi-pgstac."""
        return {
            **os.environ,
            "PGHOST": LOOPBACK,
            "PGPORT": str(self.pg_port),
            "PGUSER": "postgres",
            "PGPASSWORD": self.password,
            "PGDATABASE": "postgres",
        }

    @property
    def root_url(self) -> str:
        """Landing page of the STAC API."""
        return f"http://{LOOPBACK}:{self.api_port}"

    @property
    def search_url(self) -> str:
        """The `/search` endpoint."""
        return f"{self.root_url}/search"

    def start_postgres(self) -> None:
        """initdb + pg_ctl start (as the postgres user when we are root)."""
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        password_file = self.workdir / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        _run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.pg_data),
                    "-U",
                    "postgres",
                    f"--pwfile={password_file}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        )
        options = (
            f"-c listen_addresses={LOOPBACK} -c port={self.pg_port} -c fsync=off "
            f"-c full_page_writes=off -c synchronous_commit=off "
            f"-c unix_socket_directories={self.workdir}"
        )
        _run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-o",
                    options,
                    "-l",
                    str(self.workdir / "postgres.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        )
        self.started.append("postgres")

    def pypgstac(self, *args: str) -> None:
        """Run the `pypgstac` command against the database."""
        _run([sys.executable, "-m", "pypgstac.pypgstac", *args], env=self.pg_env, cwd=self.workdir)

    def migrate(self) -> None:
        """Install the pgstac schema."""
        self.pypgstac("migrate")

    def load(self, collections: Sequence[dict], items: Sequence[dict]) -> None:
        """Load the queryables, collections then items (`pypgstac load … --method
        insert_ignore`)."""
        name = f"load{len(self.started)}"
        # Without a numeric queryable, pgstac sorts eo:cloud_cover as text ("5" after "45").
        queryables_file = self.workdir / f"{name}_queryables.json"
        queryables_file.write_text(json.dumps(QUERYABLES))
        collections_file = write_ndjson(self.workdir / f"{name}_collections.ndjson", collections)
        items_file = write_ndjson(self.workdir / f"{name}_items.ndjson", items)
        self.pypgstac("load_queryables", str(queryables_file))
        self.pypgstac("load", "collections", str(collections_file), "--method", "insert_ignore")
        self.pypgstac("load", "items", str(items_file), "--method", "insert_ignore")
        self.started.append(name)

    def start_api(self) -> None:
        """Serve stac-fastapi-pgstac with uvicorn on a free port."""
        self.api_port = free_port()
        command = [
            sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
            "--host", LOOPBACK, "--port", str(self.api_port), "--log-level", "warning",
        ]  # fmt: skip
        env = {**self.pg_env, "ENABLE_TRANSACTIONS_EXTENSIONS": "false"}
        # cwd: the work directory, so no stray .env file is read.
        self.api = ServerProcess(
            "stac-fastapi-pgstac", command, self.workdir / "api.log", cwd=self.workdir, env=env
        ).start()
        self.api.wait_until_answering(f"{self.root_url}/_mgmt/ping", status=200, timeout=90.0)

    def stop(self) -> None:
        """Stop uvicorn and PostgreSQL, remove the data."""
        if self.api is not None:
            self.api.stop(timeout=15)
        if "postgres" in self.started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run(
                    _as_postgres(
                        [
                            str(PG_BIN / "pg_ctl"),
                            "-D",
                            str(self.pg_data),
                            "-m",
                            "fast",
                            "-w",
                            "stop",
                        ]
                    )
                )
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_stac_stack(collections: Sequence[dict], items: Sequence[dict]) -> StacStack:
    """Start PostgreSQL, migrate pgstac, load the records and serve the API. Call `.stop()`."""
    # A directory of its own under /tmp: the postgres user must be able to reach it.
    stack = StacStack(workdir=Path(tempfile.mkdtemp(prefix="lmt-pgstac-")), pg_port=free_port())
    try:
        stack.start_postgres()
        stack.migrate()
        stack.load(collections, items)
        stack.start_api()
    except BaseException:
        stack.stop()
        raise
    return stack
