"""The analytics copy: the tables analytics reads, as Parquet files, queried with DuckDB.

Why: at 1M customers the analytics page's one statement joins about 5M activities of a 30-day
window to a million customers and counts distinct items. On PostgreSQL (a row store) that takes
about 9 s on two cores however the SQL is written (bench/analytics.py, README). DuckDB, a columnar,
vectorised engine in-process, runs the very same statement over a Parquet copy of those tables in
well under a second. The copy follows the DESIGN's scaling note ("DuckDB over Parquet exports for a
smaller team") without a server to run.

What is copied (`TABLES`): customers, personas, items, audience memberships and activities, with
every column of a plain type (JSON and arrays are left out; analytics reads none of them), typed as
PostgreSQL types them, so `NUMERIC(12, 2)` stays exact and the results equal the live ones.

How it stays fresh (`sync`, run by Celery beat every ANALYTICS_COPY_MINUTES, and by
`manage.py sync_analytics`):
- customers, personas, items and memberships are copied whole each time (a few seconds at 1M);
- activities are appended: rows up to the highest id the previous sync saw are *sealed* in chunks
  that are never rewritten; the rows after it form the *tail*, copied again each time. A row whose
  transaction was still open when the sync after it ran (two syncs apart, minutes) could fall behind
  the seal: the full rebuild every ANALYTICS_COPY_REBUILD_HOURS takes it in, and also drops activities
  deleted since (a deleted customer's activities drop out at once: every statement starts from the
  customers).
- a sync writes new files and then replaces `manifest.json` in one rename, so a reader sees one
  whole copy or the one before; files no manifest names any more are deleted a sync later.

When it is used (`records`): on PostgreSQL, when a copy exists and is younger than
ANALYTICS_COPY_MAX_AGE minutes; otherwise, or if DuckDB fails on a statement, the page asks the
database as before. Small bases need no copy: with ANALYTICS_COPY=auto (the default) a sync builds
one only once the activity table holds ANALYTICS_COPY_MIN_ROWS rows. The page says which source
answered and how old the copy is.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

log = logging.getLogger(__name__)

ACTIVITY = "audiences_activity"
# Copied whole at every sync; the activity table is appended (see the module's docstring).
WHOLE = ("audiences_customer", "audiences_persona", "audiences_item", "audiences_audiencemember")
TABLES = (*WHOLE, ACTIVITY)
MANIFEST = "manifest.json"
CHUNK_IDS = 4_000_000  # activity ids per sealed file: a full build stages and sorts at most this many rows at a time

# PostgreSQL types → DuckDB types; a column of any other type (jsonb, arrays, bytea) is not copied.
TYPES = {
    "smallint": "SMALLINT", "integer": "INTEGER", "bigint": "BIGINT", "boolean": "BOOLEAN",
    "character varying": "VARCHAR", "text": "VARCHAR", "character": "VARCHAR", "date": "DATE",
    "timestamp with time zone": "TIMESTAMPTZ", "timestamp without time zone": "TIMESTAMP",
    "double precision": "DOUBLE", "real": "FLOAT", "uuid": "UUID",
}


@dataclass(frozen=True)
class Copy:
    """The manifest of the current copy."""

    folder: Path
    synced_at: datetime
    built_at: datetime  # the last full rebuild
    sealed: int  # activity ids up to this one are in sealed chunks
    seen: int  # the highest activity id this sync copied
    files: dict[str, list[str]]  # table → its Parquet files (relative to folder)
    rows: dict[str, int]  # table → rows copied
    sealed_rows: int  # of them, activities in sealed files (the next sync adds the tail's to these)

    @property
    def age(self) -> timedelta:
        return timezone.now() - self.synced_at


def folder() -> Path:
    return Path(settings.ANALYTICS_COPY_DIR)


def current() -> Copy | None:
    """The copy the manifest names, or None when there is none (or it cannot be read)."""
    path = folder() / MANIFEST
    try:
        data = json.loads(path.read_text())
        return Copy(folder(), datetime.fromisoformat(data["synced_at"]), datetime.fromisoformat(data["built_at"]),
                    int(data["sealed"]), int(data["seen"]), {k: list(v) for k, v in data["files"].items()},
                    {k: int(v) for k, v in data["rows"].items()}, int(data["sealed_rows"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def usable() -> Copy | None:
    """The copy, when analytics should read it now: PostgreSQL, copies enabled, and fresh enough."""
    if connection.vendor != "postgresql" or settings.ANALYTICS_COPY == "off":
        return None
    found = current()
    if found is None or found.age > timedelta(minutes=settings.ANALYTICS_COPY_MAX_AGE):
        return None
    return found


# --- reading ----------------------------------------------------------------------------------

def _connect():
    """An in-memory DuckDB: its threads and memory bounded, spilling into the copy's folder, never downloading."""
    import duckdb

    return duckdb.connect(config={
        "threads": settings.ANALYTICS_COPY_THREADS or os.cpu_count() or 1, "memory_limit": settings.ANALYTICS_COPY_MEMORY,
        "temp_directory": str(folder() / ".spill"), "autoinstall_known_extensions": False, "TimeZone": settings.TIME_ZONE})


def _duckdb(copy: Copy):
    db = _connect()
    for table, files in copy.files.items():
        paths = ", ".join(_literal(copy.folder / f) for f in files)
        db.execute(f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet([{paths}])')
    return db


def statement(qs: QuerySet) -> tuple[str, Any]:
    """The queryset's SQL as PostgreSQL would run it, with its parameters quoted in (psycopg's own quoting),
    and its compiler (whose converters turn raw values into what the queryset would give)."""
    compiler = qs.query.get_compiler(using=qs.db)
    return _quoted(*compiler.as_sql()), compiler


def _quoted(sql: str, params) -> str:
    import psycopg

    connection.ensure_connection()
    return psycopg.ClientCursor(connection.connection).mogrify(sql, params)


def run(copy: Copy, sql: str, params=None) -> tuple[list[str], list[tuple]]:
    """Column names and rows of a PostgreSQL-dialect statement, run by DuckDB over the copy's files."""
    db = _duckdb(copy)
    try:
        cursor = db.execute(_quoted(sql, params) if params else sql)
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        db.close()


def records(qs: QuerySet) -> tuple[list[dict[str, Any]], Copy] | None:
    """The rows of a `.values()` queryset, computed by DuckDB over the copy; None: ask the database instead."""
    copy = usable()
    if copy is None:
        return None
    try:
        text, compiler = statement(qs)
        names, rows = run(copy, text)
        # As the queryset's own iteration does: e.g. a day truncated in SQL comes back as a date, not a datetime.
        converters = compiler.get_converters([column for column, _, _ in compiler.select[:compiler.col_count]])
        if converters:
            rows = compiler.apply_converters(rows, converters)
        return [dict(zip(names, row)) for row in rows], copy
    except Exception:  # a statement DuckDB cannot run, or files gone mid-read: the database answers
        log.exception("analytics copy: DuckDB could not answer; asking the database")
        return None


# --- writing ----------------------------------------------------------------------------------

def _columns(table: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of the table's copied columns, in table order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
                       "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position", [table])
        found = []
        for name, kind, precision, scale in cursor.fetchall():
            if kind == "numeric":
                found.append((name, f"DECIMAL({precision}, {scale})" if precision and precision <= 38 else "DOUBLE"))
            elif kind in TYPES:
                found.append((name, TYPES[kind]))
        return found


def _export(db, table: str, where: str, params: list, out: Path, order: str = "") -> int:
    """Copy `SELECT columns FROM table WHERE …` from PostgreSQL into the Parquet file `out`; the rows copied."""
    columns = _columns(table)
    names = ", ".join(f'"{c}"' for c, _ in columns)
    with tempfile.NamedTemporaryFile(suffix=".csv", dir=out.parent, delete=False) as staged:
        try:
            with connection.cursor() as cursor:
                query = f'COPY (SELECT {names} FROM "{table}" {where}) TO STDOUT (FORMAT csv)'
                with cursor.cursor.copy(_quoted(query, params) if params else query) as copy:  # psycopg's COPY streams
                    for block in copy:
                        staged.write(block)
            staged.close()
            if os.path.getsize(staged.name):
                types = ", ".join(f"'{c}': '{t}'" for c, t in columns)
                # PostgreSQL's CSV: NULL is an empty unquoted field, an empty string is "".
                rows = (f"SELECT * FROM read_csv({_literal(staged.name)}, columns = {{{types}}}, header = false, "
                        "delim = ',', quote = '\"', escape = '\"', allow_quoted_nulls = false)")
            else:  # no rows: an empty file of the same columns
                rows = "SELECT " + ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns) + " WHERE false"
            db.execute(f"COPY ({rows} {order}) TO {_literal(out)} (FORMAT parquet)")
            return db.execute(f"SELECT count(*) FROM read_parquet({_literal(out)})").fetchone()[0]
        finally:
            Path(staged.name).unlink(missing_ok=True)


def _literal(path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def wanted() -> bool:
    """Whether this database should have a copy (ANALYTICS_COPY: on, off, or auto = once activities are many)."""
    if connection.vendor != "postgresql" or settings.ANALYTICS_COPY == "off":
        return False
    if settings.ANALYTICS_COPY == "on":
        return True
    with connection.cursor() as cursor:  # the planner's estimate: no count of millions of rows
        cursor.execute("SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass", [ACTIVITY])
        estimate = cursor.fetchone()[0]
    return estimate >= settings.ANALYTICS_COPY_MIN_ROWS


def sync(full: bool = False) -> Copy | None:
    """Bring the copy up to date (see the module's docstring); None when this database should have none."""
    if not wanted():
        forget()
        return None
    base = folder()
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        try:  # one sync at a time (beat and a command may overlap); the other one's copy will do
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return current()
        return _sync(base, full)


def _sync(base: Path, full: bool) -> Copy | None:
    before = current()
    now = timezone.now()
    full = full or before is None or now - before.built_at > timedelta(hours=settings.ANALYTICS_COPY_REBUILD_HOURS)
    tag = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    db = _connect()
    files: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    try:
        for table in WHOLE:
            name = f"{table}-{tag}.parquet"
            rows[table] = _export(db, table, "", [], base / name)
            files[table] = [name]
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{ACTIVITY}"')
            seen = cursor.fetchone()[0]
        # Sealed: what the previous sync saw (a full build seals all it copies). The tail after it is copied again.
        sealed = seen if full else max(before.sealed, min(before.seen, seen))
        chunks = [] if full else [f for f in before.files[ACTIVITY] if "-tail-" not in f]
        low = 0 if full else before.sealed
        sealed_rows = 0 if full else before.sealed_rows
        with connection.cursor() as cursor:  # from the first id there is (ids may start far above the last seal)
            cursor.execute(f'SELECT MIN(id) FROM "{ACTIVITY}" WHERE id > %s', [low])
            first = cursor.fetchone()[0]
        for start in range(max(low, (first or sealed + 1) - 1), sealed, CHUNK_IDS):  # newly sealed rows, by time so a window reads few row groups
            end = min(start + CHUNK_IDS, sealed)
            name = f"{ACTIVITY}-{start + 1}-{end}-{tag}.parquet"
            sealed_rows += _export(db, ACTIVITY, "WHERE id > %s AND id <= %s", [start, end], base / name,
                                     "ORDER BY occurred_at")
            chunks.append(name)
        name = f"{ACTIVITY}-tail-{tag}.parquet"
        tail = _export(db, ACTIVITY, "WHERE id > %s", [sealed], base / name, "ORDER BY occurred_at")
        chunks.append(name)
        files[ACTIVITY] = chunks
        rows[ACTIVITY] = sealed_rows + tail
    finally:
        db.close()
    manifest = {"synced_at": now.isoformat(), "built_at": (now if full else before.built_at).isoformat(),
                "sealed": sealed, "seen": seen, "files": files, "rows": rows, "sealed_rows": sealed_rows}
    staged = base / f"{MANIFEST}.{tag}"
    staged.write_text(json.dumps(manifest, indent=1))
    os.replace(staged, base / MANIFEST)
    _tidy(base, keep={*sum(files.values(), []), *(sum(before.files.values(), []) if before else [])})
    return current()


def _tidy(base: Path, keep: set[str]) -> None:
    """Delete Parquet files neither this copy nor the one before names (a reader may still be on the one before)."""
    for path in base.glob("*.parquet"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
    for path in base.glob("*.csv"):  # staging left by a sync that was killed
        if time.time() - path.stat().st_mtime > 3600:
            path.unlink(missing_ok=True)


def forget() -> None:
    """Remove the copy (analytics asks the database again)."""
    shutil.rmtree(folder(), ignore_errors=True)
