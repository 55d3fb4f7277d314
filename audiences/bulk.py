"""Fast upserts of DataFrames into our tables: COPY on PostgreSQL, batched executemany elsewhere.

Both paths end in one `INSERT … ON CONFLICT (key) DO UPDATE`, so loading the same
rows twice updates them instead of duplicating. Callers pass frames whose
columns are model field columns, already validated and typed; a frame must not
repeat a conflict key (PostgreSQL refuses to update one row twice in a statement).
"""

from __future__ import annotations

import io
import json
from contextlib import contextmanager
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd
from django.db import connection, models, transaction
from django.utils import timezone


_JSON = json.JSONEncoder(ensure_ascii=False)  # one encoder: json.dumps builds a new one per call


class Upserted(NamedTuple):
    rows: int  # rows sent
    created: int  # of which were new (the rest updated existing rows, or matched them exactly)


def _iso(series: pd.Series, unit: str) -> np.ndarray:
    """ISO 8601 text of a datetime column in UTC, None where missing (4x faster than .dt.strftime)."""
    values = series
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    raw = pd.to_datetime(values).to_numpy().astype(f"datetime64[{unit}]")
    text = np.datetime_as_string(raw, unit=unit).astype(object)
    text[pd.isna(raw)] = None
    return text


def _column_values(field: models.Field, series: pd.Series, vendor: str) -> pd.Series | np.ndarray:
    """Shape one column for the database driver (SQLite executemany or PostgreSQL COPY text)."""
    if isinstance(field, models.JSONField):
        return series.map(lambda v: None if v is None else _JSON.encode(v))
    if isinstance(field, models.DateTimeField):
        text = pd.Series(_iso(series, "us"), index=series.index)
        if vendor == "postgresql":
            return text + "+00"
        # Django stores aware datetimes in SQLite as naive UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]".
        return text.str.replace("T", " ", n=1, regex=False).str.removesuffix(".000000")
    if isinstance(field, models.DateField):
        return pd.Series(_iso(series, "D"), index=series.index)
    if isinstance(field, models.IntegerField) and series.dtype.kind == "f":
        return series.astype("Int64")  # 1950.0 would not cast to smallint
    if isinstance(field, models.BooleanField):
        return series.astype("boolean").map({True: "t", False: "f"} if vendor == "postgresql" else {True: 1, False: 0})
    return series


def upsert(
    model: type[models.Model],
    frame: pd.DataFrame,  # columns: field names, or attnames such as customer_id
    *,
    conflict: str,
    update: Iterable[str] | None = None,
    batch_size: int = 5000,
) -> Upserted:
    """Insert or update `frame` into `model`'s table; returns how many rows were sent and how many were new.

    Rows equal to what is stored are not rewritten (a re-import of an unchanged file
    touches no index). `auto_now` / `auto_now_add` timestamps are filled in here
    because raw SQL bypasses Model.save().
    """
    if frame.empty:
        return Upserted(0, 0)
    frame = frame.copy()
    now = pd.Timestamp(timezone.now())
    auto_columns = set()
    for field in model._meta.concrete_fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            frame[field.name] = pd.Series([now] * len(frame), index=frame.index, dtype="datetime64[us, UTC]")
            auto_columns.add(field.column)
    fields = [model._meta.get_field(name) for name in frame.columns]
    columns = [f.column for f in fields]
    conflict_column = model._meta.get_field(conflict).column
    updates = [
        model._meta.get_field(n).column
        for n in (update if update is not None else frame.columns)
        if n != conflict and not getattr(model._meta.get_field(n), "auto_now_add", False)
    ]
    vendor = connection.vendor
    shaped = pd.DataFrame({f.column: _column_values(f, frame[name], vendor) for name, f in zip(frame.columns, fields)})
    table = model._meta.db_table
    qn = connection.ops.quote_name
    set_clause = ", ".join(f"{qn(c)} = EXCLUDED.{qn(c)}" for c in updates) or f"{qn(conflict_column)} = EXCLUDED.{qn(conflict_column)}"
    compared = [c for c in updates if c not in auto_columns]
    distinct = "IS DISTINCT FROM" if vendor == "postgresql" else "IS NOT"
    if compared:
        set_clause += " WHERE " + " OR ".join(f"{qn(table)}.{qn(c)} {distinct} EXCLUDED.{qn(c)}" for c in compared)

    if vendor == "postgresql":
        with transaction.atomic():  # the staging table lives until commit
            created = _copy_upsert(table, fields, shaped, conflict_column, set_clause)
        return Upserted(len(frame), created)
    existing = len(existing_values(model, conflict, frame[conflict].tolist() if conflict in frame else shaped[conflict_column].tolist()))
    placeholders = ", ".join(["%s"] * len(columns))
    sql = (
        f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT ({qn(conflict_column)}) DO UPDATE SET {set_clause}"
    )
    values = shaped.astype(object).where(shaped.notna(), None)
    rows = list(values.itertuples(index=False, name=None))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch_size):
            cursor.executemany(sql, rows[start : start + batch_size])
    return Upserted(len(frame), len(frame) - existing)


def _copy_upsert(table: str, fields: list[models.Field], shaped: pd.DataFrame, conflict_column: str, set_clause: str) -> int:
    """COPY into a text staging table, then cast and upsert in one statement; returns rows inserted."""
    qn = connection.ops.quote_name
    stage = f"_stage_{table}"
    columns = [f.column for f in fields]
    selects = []
    for f in fields:
        cast = f"s.{qn(f.column)}::{f.db_type(connection)}"
        # CSV COPY reads an empty field as NULL; NOT NULL text columns want ''.
        if isinstance(f, (models.CharField, models.TextField)) and not f.null:
            cast = f"COALESCE(s.{qn(f.column)}, '')"
        selects.append(cast)
    buffer = io.StringIO()
    shaped.to_csv(buffer, index=False, header=False, na_rep="")
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {qn(stage)}")
        cursor.execute(
            f"CREATE TEMP TABLE {qn(stage)} ({', '.join(f'{qn(c)} text' for c in columns)}) ON COMMIT DROP"
        )
        with cursor.cursor.copy(f"COPY {qn(stage)} ({', '.join(qn(c) for c in columns)}) FROM STDIN WITH (FORMAT csv)") as copy:
            while block := buffer.read(1 << 20):
                copy.write(block)
        # xmax = 0 marks a freshly inserted row; rows equal to the stored ones are skipped by the WHERE.
        cursor.execute(
            f"WITH written AS (INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {', '.join(selects)} FROM {qn(stage)} s "
            f"ON CONFLICT ({qn(conflict_column)}) DO UPDATE SET {set_clause} "
            f"RETURNING (xmax = 0) AS inserted) SELECT count(*) FILTER (WHERE inserted) FROM written"
        )
        created = cursor.fetchone()[0]
        cursor.execute(f"DROP TABLE {qn(stage)}")
    return created


def _matching(model: type[models.Model], field: str, values: list, select: str) -> list[tuple]:
    """Rows whose `field` is one of `values`: one array parameter on PostgreSQL, chunked IN lists elsewhere."""
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    column = qn(model._meta.get_field(field).column)
    found: list[tuple] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT {select} FROM {table} WHERE {column} = ANY(%s)", [values])
            return cursor.fetchall()
        for start in range(0, len(values), 5000):  # under SQLite's bound-variable limit
            part = values[start : start + 5000]
            cursor.execute(f"SELECT {select} FROM {table} WHERE {column} IN ({', '.join(['%s'] * len(part))})", part)
            found.extend(cursor.fetchall())
    return found


def lookup_ids(model: type[models.Model], external_ids: Iterable[str]) -> dict[str, int]:
    """Map external ids to primary keys."""
    unique = [str(i) for i in dict.fromkeys(i for i in external_ids if i)]
    if not unique:
        return {}
    return dict(_matching(model, "external_id", unique, "external_id, id"))


def existing_values(model: type[models.Model], field: str, values: Iterable) -> set:
    """Which of `values` already exist in `model.field`."""
    values = [v.item() if hasattr(v, "item") else v for v in values]
    if not values:
        return set()
    column = connection.ops.quote_name(model._meta.get_field(field).column)
    return {row[0] for row in _matching(model, field, values, column)}


def ensure_indexes(model: type[models.Model]) -> list[str]:
    """Create any of the model's Meta.indexes that are missing (a bulk load killed mid-way leaves them dropped)."""
    with connection.cursor() as cursor:
        present = set(connection.introspection.get_constraints(cursor, model._meta.db_table))
    missing = [index for index in model._meta.indexes if index.name not in present]
    with connection.schema_editor(atomic=False) as editor:
        for index in missing:
            editor.add_index(model, index)
    return [index.name for index in missing]


@contextmanager
def indexes_built_after(model: type[models.Model]):
    """For a bulk load into an empty table: drop the secondary indexes, rebuild them at the end.

    Building an index once over sorted data is several times cheaper than maintaining it
    row by row. Unique constraints stay (the upserts need them).
    """
    ensure_indexes(model)
    with connection.schema_editor(atomic=False) as editor:
        for index in model._meta.indexes:
            editor.remove_index(model, index)
    try:
        yield
    finally:
        ensure_indexes(model)
