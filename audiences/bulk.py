"""Fast upserts of DataFrames into our tables: COPY on PostgreSQL, batched executemany elsewhere.

Both paths end in one `INSERT … ON CONFLICT (key) DO UPDATE`, so loading the same
rows twice updates them instead of duplicating. Callers pass frames whose
columns are model field columns, already validated and typed; a frame must not
repeat a conflict key (PostgreSQL refuses to update one row twice in a statement).
"""

from __future__ import annotations

import io
import json
from typing import Iterable

import numpy as np
import pandas as pd
from django.db import connection, models, transaction
from django.utils import timezone


_JSON = json.JSONEncoder(ensure_ascii=False)  # one encoder: json.dumps builds a new one per call


def _sqlite_datetime(series: pd.Series) -> pd.Series:
    # Django stores aware datetimes in SQLite as naive UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]".
    text = series.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text.str.removesuffix(".000000")


def _column_values(field: models.Field, series: pd.Series, vendor: str) -> pd.Series:
    """Shape one column for the database driver (SQLite executemany or PostgreSQL COPY text)."""
    if isinstance(field, models.JSONField):
        return series.map(lambda v: None if v is None else _JSON.encode(v))
    if isinstance(field, models.DateTimeField):
        if vendor == "postgresql":
            return series.dt.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return _sqlite_datetime(series)
    if isinstance(field, models.DateField):
        return series.dt.strftime("%Y-%m-%d")
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
) -> int:
    """Insert or update `frame` (columns = field names) into `model`'s table; returns rows written.

    `auto_now` / `auto_now_add` timestamps are filled in here because raw SQL
    bypasses Model.save().
    """
    if frame.empty:
        return 0
    frame = frame.copy()
    now = pd.Timestamp(timezone.now())
    auto_fields = []
    for field in model._meta.concrete_fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            frame[field.name] = pd.Series([now] * len(frame), index=frame.index, dtype="datetime64[us, UTC]")
            auto_fields.append(field)
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

    if vendor == "postgresql":
        with transaction.atomic():  # the staging table lives until commit
            _copy_upsert(table, fields, shaped, conflict_column, set_clause)
    else:
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
    return len(frame)


def _copy_upsert(table: str, fields: list[models.Field], shaped: pd.DataFrame, conflict_column: str, set_clause: str):
    """COPY into a text staging table, then cast and upsert in one statement."""
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
        cursor.execute(
            f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {', '.join(selects)} FROM {qn(stage)} s "
            f"ON CONFLICT ({qn(conflict_column)}) DO UPDATE SET {set_clause}"
        )
        cursor.execute(f"DROP TABLE {qn(stage)}")


def lookup_ids(model: type[models.Model], external_ids: Iterable[str], chunk: int = 5000) -> dict[str, int]:
    """Map external ids to primary keys, in chunks that stay under SQLite's variable limit."""
    unique = list(dict.fromkeys(i for i in external_ids if i))
    found: dict[str, int] = {}
    for start in range(0, len(unique), chunk):
        part = unique[start : start + chunk]
        found.update(model.objects.filter(external_id__in=part).values_list("external_id", "pk"))
    return found


def existing_values(model: type[models.Model], field: str, values: np.ndarray | list, chunk: int = 5000) -> set:
    """Which of `values` already exist in `model.field` (to count created vs updated)."""
    values = list(values)
    seen: set = set()
    for start in range(0, len(values), chunk):
        seen.update(model.objects.filter(**{f"{field}__in": values[start : start + chunk]}).values_list(field, flat=True))
    return seen
