"""SQLite backend: many mosaics in one file (`sqlite:///{file.db}:{mosaic}`).

Layout (cogeo-mosaic's, so files stay readable by both): a `mosaicjson_metadata` table with one
row per mosaic, one table per mosaic named after it with `quadkey TEXT, assets JSON`, and
`PRAGMA user_version = 3`. We add an index on `quadkey` (cogeo-mosaic scans the table), and a
`store_revision` column (a fresh token per write, which cogeo-mosaic ignores) so HTTP ETags change
with every write.

Concurrent writers: every write, and every update's read-merge-write, is one `BEGIN IMMEDIATE`
transaction; other writers wait for it (the busy timeout, `MOSAIC_WRITE_LOCK_TIMEOUT`) and are
refused with MosaicConflictError only if it outlasts that. SQLite table names are
case-insensitive: a mosaic whose name differs from a stored one only by case is the same table,
so creating, replacing or deleting it is refused (MosaicExistsError) instead of overwriting.
"""

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import attr

from lambda_handler.backends.base import MosaicJSONBackend, validate_mosaic_name
from lambda_handler.errors import (
    InvalidMosaicError,
    InvalidMosaicNameError,
    MosaicConflictError,
    MosaicExistsError,
    MosaicNotFoundError,
    MosaicWriteError,
)
from lambda_handler.mosaic.model import MosaicJSON
from lambda_handler.settings import write_settings

LAYOUT_VERSION = 3
METADATA_TABLE = "mosaicjson_metadata"
# Column -> SQL type of the metadata table (JSON columns hold JSON text).
METADATA_COLUMNS: dict[str, str] = {
    "mosaicjson": "TEXT NOT NULL",
    "name": "TEXT NOT NULL",
    "description": "TEXT",
    "version": "TEXT NOT NULL",
    "attribution": "TEXT",
    "minzoom": "INTEGER NOT NULL",
    "maxzoom": "INTEGER NOT NULL",
    "quadkey_zoom": "INTEGER",
    "bounds": "JSON NOT NULL",
    "center": "JSON",
    "tilematrixset": "JSON",
    "asset_type": "TEXT",
    "asset_prefix": "TEXT",
    "data_type": "TEXT",
    "colormap": "JSON",
    "layers": "JSON",
}
JSON_COLUMNS = {name for name, kind in METADATA_COLUMNS.items() if kind.startswith("JSON")}
# Our column, not a MosaicJSON field: a new random token at every write of the mosaic.
REVISION_COLUMN = "store_revision"
_CHUNK = 500  # SQLite's default limit of host parameters is 999


def parse_sqlite_uri(uri: str) -> tuple[str, str]:
    """(database path, mosaic name) of `sqlite:///{path}:{name}`."""
    if not uri.startswith("sqlite:///"):
        raise InvalidMosaicError(f"not an SQLite mosaic URI: {uri!r}")
    rest = uri[len("sqlite:///") :]
    path, sep, name = rest.rpartition(":")
    if not sep or not path:
        raise InvalidMosaicError(
            f"invalid SQLite mosaic URI {uri!r}: expected sqlite:///{{file.db}}:{{mosaic}}"
        )
    validate_mosaic_name(name)
    # Table names are case-insensitive: 'MOSAICJSON_METADATA' is the metadata table too.
    if name.lower() == METADATA_TABLE or name.lower().startswith("sqlite_"):
        raise InvalidMosaicNameError(f"{name!r} is a reserved table name")
    return path, name


def _quote(identifier: str) -> str:
    # Names are validated (no quotes possible), quoting still guards keywords like "order".
    return '"' + identifier.replace('"', '""') + '"'


def _is_busy(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return "database is locked" in text or "database is busy" in text


def _index_name(table: str) -> str:
    # ':' cannot appear in mosaic names, so the index never collides with a mosaic table.
    return _quote(f"idx:{table}:quadkey")


@attr.s
class SQLiteBackend(MosaicJSONBackend):
    """Mosaics in an SQLite file; every write is one transaction."""

    db_path: str = attr.ib(init=False)
    mosaic_name: str = attr.ib(init=False)

    _backend_name: ClassVar[str] = "SQLite"
    _tiles_in_document: ClassVar[bool] = False

    def __attrs_post_init__(self) -> None:
        """Parse the URI, open the database, read the metadata (unless writing)."""
        self.db_path, self.mosaic_name = parse_sqlite_uri(self.input)
        if self.mosaic_def is None and not Path(self.db_path).exists():
            raise MosaicNotFoundError(f"SQLite database not found: {self.db_path}")
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._depth = 0  # nesting of _transaction: only the outermost begins and commits
        if self.mosaic_def is not None and self.mosaic_def.name != self.mosaic_name:
            self.mosaic_def = self.mosaic_def.model_copy(update={"name": self.mosaic_name})
        super().__attrs_post_init__()

    # ------------------------------------------------------------------ connection
    @property
    def db(self) -> sqlite3.Connection:
        """The connection (opened on first use; autocommit, transactions are explicit)."""
        if self._db is None:
            try:
                # The busy timeout: a writer waits this long for another writer's transaction.
                self._db = sqlite3.connect(
                    self.db_path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=write_settings().lock_timeout,
                )
            except sqlite3.Error as err:
                raise MosaicWriteError(
                    f"cannot open SQLite database {self.db_path}: {err}"
                ) from err
            self._db.row_factory = sqlite3.Row
        return self._db

    def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`: the write lock is taken before anything is
        read, so a read-modify-write inside cannot interleave with another writer's); nested
        uses join the outer one."""
        with self._lock:
            db = self.db
            if self._depth:
                self._depth += 1
                try:
                    yield db
                finally:
                    self._depth -= 1
                return
            self._locked(db, "BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield db
            except BaseException:
                self._rollback(db)
                raise
            else:
                try:
                    self._locked(db, "COMMIT")
                except BaseException:
                    self._rollback(db)
                    raise
            finally:
                self._depth = 0

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        # SQLite may have rolled back already (some errors end the transaction): a second
        # ROLLBACK would raise and hide the error that matters.
        if db.in_transaction:
            db.execute("ROLLBACK")

    def _locked(self, db: sqlite3.Connection, statement: str) -> None:
        """Run BEGIN/COMMIT; a lock still held by another writer after the busy timeout is a
        refused concurrent write, not a broken store."""
        try:
            db.execute(statement)
        except sqlite3.OperationalError as err:
            if _is_busy(err):
                raise MosaicConflictError(
                    f"mosaic {self.mosaic_name!r} in {self.db_path} is being written by another "
                    f"writer: still locked after {write_settings().lock_timeout:g} s "
                    f"({statement.split()[0]}); nothing was written, retry later"
                ) from err
            raise

    @contextmanager
    def _write_guard(self) -> Iterator[None]:
        try:
            with self._transaction():
                yield
        except sqlite3.Error as err:
            raise MosaicWriteError(f"could not write {self.input}: {err}") from err

    def _refuse_collision(self, db: sqlite3.Connection) -> None:
        """MosaicExistsError if another mosaic's table has our name up to case (SQLite would
        treat both names as one table: writing ours would replace or drop the other)."""
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE name = ? COLLATE NOCASE AND name != ?",
            (self.mosaic_name, self.mosaic_name),
        ).fetchall()
        if rows:
            raise MosaicExistsError(
                f"mosaic {self.mosaic_name!r} collides with the stored {rows[0][0]!r} in "
                f"{self.db_path}: SQLite table names are case-insensitive, so ids differing only "
                "by case are the same mosaic there; use another id"
            )

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as err:
                if "no such table" in str(err):
                    raise MosaicNotFoundError(
                        f"mosaic {self.mosaic_name!r} not found in {self.db_path}"
                    ) from err
                raise

    def _table_exists(self, db: sqlite3.Connection, name: str) -> bool:
        row = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?", (name,)
        ).fetchone()
        return row[0] == 1

    # ------------------------------------------------------------------ reads
    def _read(self) -> MosaicJSON:
        try:
            rows = self._query(f"SELECT * FROM {METADATA_TABLE} WHERE name=?", (self.mosaic_name,))
        except MosaicNotFoundError:
            rows = []
        if not rows or not self._table_exists(self.db, self.mosaic_name):
            raise MosaicNotFoundError(f"mosaic {self.mosaic_name!r} not found in {self.db_path}")
        meta = {k: v for k, v in dict(rows[0]).items() if v is not None}
        revision = meta.pop(REVISION_COLUMN, None)
        for column in JSON_COLUMNS & meta.keys():
            if isinstance(meta[column], str):
                meta[column] = json.loads(meta[column])
        return MosaicJSON.parse(meta, source=self.input).with_store_revision(revision)

    def _fetch_quadkeys(self, keys: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        table = _quote(self.mosaic_name)
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                f"SELECT quadkey, assets FROM {table} WHERE quadkey IN ({marks})", chunk
            ):
                found[row["quadkey"]] = json.loads(row["assets"])
        return found

    def _fetch_prefix(self, prefix: str) -> dict[str, list[str]]:
        rows = self._query(
            f"SELECT quadkey, assets FROM {_quote(self.mosaic_name)} "
            "WHERE quadkey >= ? AND quadkey < ? ORDER BY quadkey",
            (prefix, prefix + "4"),
        )
        return {row["quadkey"]: json.loads(row["assets"]) for row in rows}

    def _list_quadkeys(self) -> list[str]:
        rows = self._query(f"SELECT quadkey FROM {_quote(self.mosaic_name)} ORDER BY quadkey")
        return [row["quadkey"] for row in rows]

    def _all_tiles(self) -> dict[str, list[str]]:
        rows = self._query(
            f"SELECT quadkey, assets FROM {_quote(self.mosaic_name)} ORDER BY quadkey"
        )
        return {row["quadkey"]: json.loads(row["assets"]) for row in rows}

    # ------------------------------------------------------------------ writes
    def _metadata_row(self, document: MosaicJSON) -> dict[str, Any]:
        data = document.model_dump(exclude={"tiles"}, mode="json")
        data["name"] = self.mosaic_name
        row = {}
        for column in METADATA_COLUMNS:
            value = data.get(column)
            row[column] = (
                json.dumps(value) if column in JSON_COLUMNS and value is not None else value
            )
        return row

    def _ensure_metadata_table(self, db: sqlite3.Connection) -> None:
        columns = ", ".join(f"{name} {kind}" for name, kind in METADATA_COLUMNS.items())
        db.execute(f"CREATE TABLE IF NOT EXISTS {METADATA_TABLE} ({columns})")
        # Files written by older cogeo-mosaic versions lack the 0.0.3 columns: add them.
        existing = {row[1] for row in db.execute(f"PRAGMA table_info({METADATA_TABLE})")}
        for name, kind in METADATA_COLUMNS.items():
            if name not in existing:
                db.execute(f"ALTER TABLE {METADATA_TABLE} ADD COLUMN {name} {kind.split()[0]}")
        if REVISION_COLUMN not in existing:
            db.execute(f"ALTER TABLE {METADATA_TABLE} ADD COLUMN {REVISION_COLUMN} TEXT")
        db.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")

    def _drop(self, db: sqlite3.Connection) -> None:
        db.execute(f"DELETE FROM {METADATA_TABLE} WHERE name=?", (self.mosaic_name,))
        db.execute(f"DROP TABLE IF EXISTS {_quote(self.mosaic_name)}")

    def write(self, overwrite: bool = False) -> None:
        """Create (or replace) the mosaic in one transaction: all of it or nothing."""
        table = _quote(self.mosaic_name)
        revision = uuid.uuid4().hex
        try:
            with self._transaction() as db:
                self._refuse_collision(db)
                exists = self._table_exists(db, self.mosaic_name)
                if exists and not overwrite:
                    raise MosaicExistsError(
                        f"mosaic {self.mosaic_name!r} already exists in {self.db_path} "
                        "(use overwrite=True)"
                    )
                self._ensure_metadata_table(db)
                self._drop(db)
                db.execute(f"CREATE TABLE {table} (quadkey TEXT NOT NULL, assets JSON NOT NULL)")
                db.execute(f"CREATE INDEX {_index_name(self.mosaic_name)} ON {table} (quadkey)")
                row = {**self._metadata_row(self.mosaic_def), REVISION_COLUMN: revision}
                names = ", ".join(row)
                marks = ", ".join(f":{k}" for k in row)
                db.execute(f"INSERT INTO {METADATA_TABLE} ({names}) VALUES ({marks})", row)
                db.executemany(
                    f"INSERT INTO {table} (quadkey, assets) VALUES (?, ?)",
                    ((qk, json.dumps(assets)) for qk, assets in self.mosaic_def.tiles.items()),
                )
        except sqlite3.Error as err:
            raise MosaicWriteError(f"could not write {self.input}: {err}") from err
        finally:
            self._invalidate()
        # Once stored, the index lives in the table: keep only the metadata in memory.
        self.mosaic_def = self.mosaic_def.model_copy(update={"tiles": {}}).with_store_revision(
            revision
        )

    def _persist_update(self, document: MosaicJSON, changed: dict[str, list[str]]) -> None:
        table = _quote(self.mosaic_name)
        revision = uuid.uuid4().hex
        try:
            with self._transaction() as db:
                if not self._table_exists(db, self.mosaic_name):
                    raise MosaicNotFoundError(
                        f"mosaic {self.mosaic_name!r} not found in {self.db_path}"
                    )
                self._ensure_metadata_table(db)
                row = {**self._metadata_row(document), REVISION_COLUMN: revision}
                assignments = ", ".join(f"{k} = :{k}" for k in row if k != "name")
                db.execute(f"UPDATE {METADATA_TABLE} SET {assignments} WHERE name = :name", row)
                for quadkey, assets in changed.items():
                    encoded = json.dumps(assets)
                    cursor = db.execute(
                        f"UPDATE {table} SET assets = ? WHERE quadkey = ?", (encoded, quadkey)
                    )
                    if cursor.rowcount == 0:
                        db.execute(
                            f"INSERT INTO {table} (quadkey, assets) VALUES (?, ?)",
                            (quadkey, encoded),
                        )
                # Older files have no index yet: add it now that we write anyway.
                db.execute(
                    f"CREATE INDEX IF NOT EXISTS {_index_name(self.mosaic_name)} ON {table} (quadkey)"
                )
        except sqlite3.Error as err:
            raise MosaicWriteError(f"could not update {self.input}: {err}") from err
        finally:
            self._invalidate()
        document.with_store_revision(revision)

    def delete(self) -> None:
        """Remove the mosaic's table and metadata row."""
        try:
            with self._transaction() as db:
                # Exact names only: a case variant of another mosaic is not found (never dropped).
                if not self._table_exists(db, self.mosaic_name):
                    raise MosaicNotFoundError(
                        f"mosaic {self.mosaic_name!r} not found in {self.db_path}"
                    )
                self._drop(db)
        except sqlite3.Error as err:
            raise MosaicWriteError(f"could not delete {self.input}: {err}") from err
        finally:
            self._invalidate()

    # ------------------------------------------------------------------ listing
    @classmethod
    def list_mosaics_in_db(cls, db: str) -> list[str]:
        """Names of the mosaics in a database file (`sqlite:///file.db` or a path)."""
        path = db[len("sqlite:///") :] if db.startswith("sqlite:///") else db
        path = path.rstrip(":")
        if not Path(path).exists():
            raise MosaicNotFoundError(f"SQLite database not found: {path}")
        with sqlite3.connect(path) as connection:
            tables = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if METADATA_TABLE not in tables:
                return []
            names = [row[0] for row in connection.execute(f"SELECT name FROM {METADATA_TABLE}")]
        connection.close()
        return sorted(name for name in names if name in tables)
