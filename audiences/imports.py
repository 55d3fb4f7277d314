"""Importing customers, catalogue items and activities from CSV or Parquet.

A file is read in chunks; each column is parsed and validated with vectorised
pandas operations; every bad cell becomes an error (row, column, value, reason)
and only its row is dropped; good rows are upserted by external id (or, for
activities, by the hash of the event id or natural key), so importing the same
file twice changes nothing. Row numbers are spreadsheet rows: the header is row 1.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F

from . import bulk
from .models import Activity, ActivityKind, Customer, DataImport, ImportKind, Item, ItemKind, Persona

CHUNK_ROWS = 100_000
ERRORS_KEPT = 500  # in the database; the full list goes to the error report file
LIST_ENTRY_MAX = 100  # a genre or mood name; Persona.top_genre / top_mood hold 100 characters


class Missing:
    """Marker for 'no value in this cell'."""


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    parse: str  # text, int, float, money, bool, date, datetime, gender, kind, activity_kind, list, json
    required: bool = False
    aliases: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""


FIELDS: dict[str, list[Field]] = {
    ImportKind.CUSTOMERS: [
        Field("external_id", "Customer id", "text", True, ("customer_id", "user_id", "userid", "id", "customer"), 64),
        Field("birth_year", "Birth year", "int", aliases=("year_of_birth", "born"), minimum=1900, maximum=2030),
        Field("gender", "Gender", "gender", aliases=("sex",), help="f/m/x, female/male/other"),
        Field("region", "Region", "text", aliases=("state", "area", "province"), max_length=64),
        Field("city_tier", "City tier", "int", aliases=("tier",), minimum=1, maximum=9),
        Field("signup_date", "Signup date", "date", aliases=("signup", "registered", "joined", "created")),
        Field("is_subscriber", "Subscriber", "bool", aliases=("subscriber", "premium", "is_premium")),
        Field("attributes", "Attributes (JSON object)", "json", aliases=("attrs", "extra")),
    ],
    ImportKind.ITEMS: [
        Field("external_id", "Item id", "text", True, ("item_id", "track_id", "id", "sku"), 64),
        Field("kind", "Kind", "kind", aliases=("type", "item_type"), help=", ".join(ItemKind.values)),
        Field("title", "Title", "text", True, ("name", "track", "track_name", "item_name"), 300),
        Field("artist", "Artist / creator", "text", aliases=("artist_name", "creator", "artist(s)_name", "brand"), max_length=200),
        Field("genres", "Genres", "list", aliases=("genre", "tags"), help="separated by | ; or ,"),
        Field("language", "Language", "text", aliases=("lang",), max_length=16),
        Field("moods", "Mood tags", "list", aliases=("mood",), help="separated by | ; or ,"),
        Field("release_date", "Release date", "date", aliases=("released", "release")),
        Field("price", "Price", "money", aliases=("cost", "amount"), minimum=0, maximum=99_999_999.99),  # numeric(10, 2)
        Field("attributes", "Attributes (JSON object)", "json", aliases=("attrs", "extra")),
    ],
    ImportKind.ACTIVITIES: [
        Field("external_id", "Event id", "text", aliases=("event_id", "activity_id", "id"), max_length=128,
              help="optional; without it the natural key (customer, item, kind, time) identifies a row"),
        Field("customer", "Customer id", "text", True, ("customer_id", "user_id", "userid", "user"), 64),
        Field("item", "Item id", "text", aliases=("item_id", "track_id", "artist_id", "sku"), max_length=64),
        Field("kind", "Activity kind", "activity_kind", True, ("action", "event", "type", "event_type"),
              help=", ".join(ActivityKind.labels)),
        Field("quantity", "Quantity", "float", aliases=("count", "qty", "plays", "weight"), minimum=0, maximum=1e9),
        Field("value", "Value (money)", "money", aliases=("revenue", "amount", "price"),
              minimum=-9_999_999_999.99, maximum=9_999_999_999.99),  # numeric(12, 2); refunds are negative
        Field("occurred_at", "Time", "datetime", True, ("timestamp", "time", "ts", "date", "datetime", "event_time")),
    ],
}

_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}
_GENDERS = {
    "f": "f", "female": "f", "w": "f", "woman": "f",
    "m": "m", "male": "m", "man": "m",
    "x": "x", "other": "x", "nonbinary": "x", "non-binary": "x", "diverse": "x",
    "u": "", "unknown": "",
}
_ACTIVITY_KINDS = {label: value for value, label in ActivityKind.choices} | {
    "listen": ActivityKind.PLAY, "stream": ActivityKind.PLAY, "like": ActivityKind.FAVOURITE,
    "favorite": ActivityKind.FAVOURITE, "buy": ActivityKind.PURCHASE, "order": ActivityKind.PURCHASE,
}


def normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9()]+", "_", str(name).strip().lower()).strip("_")


def guess_mapping(kind: str, columns: list[str]) -> dict[str, str]:
    """Target field -> source column, by name or alias; each column is used once."""
    by_name = {normalise(c): c for c in columns}
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for f in FIELDS[kind]:
        for candidate in (f.name, *f.aliases):
            column = by_name.get(normalise(candidate))
            if column and column not in used:
                mapping[f.name] = column
                used.add(column)
                break
    return mapping


def check_mapping(kind: str, mapping: dict[str, str], columns: list[str]) -> dict[str, str]:
    """Errors per target field: required ones unmapped, unknown columns, a column used twice."""
    errors: dict[str, str] = {}
    seen: dict[str, str] = {}
    known = {f.name for f in FIELDS[kind]}
    for name, column in mapping.items():
        if name not in known:
            errors[name] = f"'{name}' is not a field of {kind}."
        elif column not in columns:
            errors[name] = f"The file has no column '{column}'."
        elif column in seen:
            errors[name] = f"Column '{column}' is already mapped to '{seen[column]}'."
        else:
            seen[column] = name
    for f in FIELDS[kind]:
        if f.required and not mapping.get(f.name):
            errors.setdefault(f.name, f"Required: choose the column that holds the {f.label.lower()}.")
    return errors


# -- reading -------------------------------------------------------------------------------------


def file_format(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise ValueError(f"'{name}' is neither CSV (.csv, .tsv, .txt) nor Parquet (.parquet).")


def _sniff_delimiter(path: Path) -> str:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        sample = fh.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_chunks(path: Path, fmt: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Yield chunks of all-text columns ('' for empty), each indexed by spreadsheet row number."""
    first_row = 2
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            frame = frame.astype(object).where(frame.notna(), "").astype(str)
            frame.index = pd.RangeIndex(first_row, first_row + len(frame))
            first_row += len(frame)
            yield frame
        return
    reader = pd.read_csv(
        path,
        sep=_sniff_delimiter(path),
        dtype=str,
        keep_default_na=False,
        chunksize=chunk_rows,
        encoding="utf-8-sig",
        encoding_errors="replace",
        skipinitialspace=True,
        skip_blank_lines=False,  # keep blank lines while numbering, so row numbers match the file
    )
    for frame in reader:
        frame.index = pd.RangeIndex(first_row, first_row + len(frame))
        first_row += len(frame)
        frame = frame.fillna("")
        yield frame[frame.ne("").any(axis=1)]


def count_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(0, lines - 1 + (last != b"\n"))


def inspect_file(path: Path, fmt: str, rows: int = 8) -> tuple[list[str], list[list[str]]]:
    """Columns and the first rows, for the mapping page. Raises ValueError when unreadable."""
    try:
        first = next(read_chunks(path, fmt, chunk_rows=rows), None)
    except Exception as exc:  # pandas / pyarrow raise many types for a damaged file
        raise ValueError(f"The file could not be read as {fmt.upper()}: {exc}") from None
    if first is None or len(first.columns) == 0 or len(first) == 0:
        raise ValueError("The file is empty: it needs a header row and at least one data row.")
    columns = [str(c) for c in first.columns]
    if fmt == "csv":  # pandas renames a repeated header ("a", "a.1"); read the raw header instead
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            header = next(csv.reader(fh, delimiter=_sniff_delimiter(path)), [])
        columns_raw = [c.strip() for c in header]
    else:
        columns_raw = columns
    if len(set(columns_raw)) != len(columns_raw):
        raise ValueError("The header repeats a column name; every column needs its own name.")
    return columns, first.head(rows).values.tolist()


# -- parsing -------------------------------------------------------------------------------------


@dataclass
class Parsed:
    values: dict[str, pd.Series] = field(default_factory=dict)
    bad: pd.Series | None = None  # True where the row has an error
    errors: list[pd.DataFrame] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)  # target field -> source column, to name columns in errors

    def flag(self, f_column: str, raw: pd.Series, mask: pd.Series, reason: str | pd.Series) -> None:
        if not mask.any():
            return
        reasons = reason[mask] if isinstance(reason, pd.Series) else reason
        self.errors.append(
            pd.DataFrame({"row": raw.index[mask], "column": f_column,
                          # shown, never stored as data: NUL cannot go into PostgreSQL text or jsonb
                          "value": raw[mask].astype(str).str.slice(0, 80).str.replace("\x00", "\u2400", regex=False),
                          "reason": reasons})
        )
        self.bad |= mask


def _parse_numbers(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text.str.replace(",", "", regex=False) if text.str.contains(",", regex=False).any() else text, errors="coerce")


def _split_list(text: str) -> list[str]:
    if not text:
        return []
    parts = re.split(r"[|;,]", text) if not text.startswith("[") else json.loads(text)
    return [str(p).strip() for p in parts if str(p).strip()]


def _parse_json_object(text: str):
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        return Missing
    return value if isinstance(value, dict) else Missing


def parse_column(f: Field, column: str, raw: pd.Series, parsed: Parsed) -> None:
    """Parse one source column into parsed.values[f.name], flagging bad cells."""
    text = raw.astype(str).str.strip()
    empty = text.eq("")
    if f.required:
        parsed.flag(column, raw, empty, "required: the cell is empty")
    kind = f.parse
    if kind in ("text", "list", "json"):
        # PostgreSQL text cannot hold NUL; one such cell must not sink the whole chunk.
        parsed.flag(column, raw, text.str.contains("\x00", regex=False), "contains a NUL character")
    if kind == "text":
        if f.max_length:
            parsed.flag(column, raw, text.str.len() > f.max_length, f"longer than {f.max_length} characters")
        value = text
    elif kind in ("int", "float", "money"):
        number = _parse_numbers(text)
        parsed.flag(column, raw, ~empty & number.isna(), "not a number")
        parsed.flag(column, raw, number.notna() & ~np.isfinite(number.astype(float)), "not a finite number")
        if kind == "int":
            parsed.flag(column, raw, number.notna() & (number % 1 != 0), "not a whole number")
        if f.minimum is not None:
            parsed.flag(column, raw, number < f.minimum, f"below the minimum of {f.minimum:g}")
        if f.maximum is not None:
            parsed.flag(column, raw, number > f.maximum, f"above the maximum of {f.maximum:g}")
        value = number.round(2) if kind == "money" else number
    elif kind == "bool":
        lowered = text.str.lower()
        parsed.flag(column, raw, ~empty & ~lowered.isin(_TRUE | _FALSE), "not yes/no (use true/false, 1/0, yes/no)")
        value = lowered.isin(_TRUE)
    elif kind in ("date", "datetime"):
        stamp = pd.to_datetime(text.where(~empty), errors="coerce", utc=True, format="ISO8601")
        needs_retry = ~empty & stamp.isna()
        if needs_retry.any():  # e.g. "2024/05/01" or "05 Jan 2024": slower, per-cell inference
            retried = pd.to_datetime(text[needs_retry], errors="coerce", utc=True, format="mixed")
            stamp = stamp.copy()
            stamp[needs_retry] = retried
        hint = "YYYY-MM-DD" if kind == "date" else "ISO 8601, e.g. 2024-05-01T13:45:00Z"
        parsed.flag(column, raw, ~empty & stamp.isna(), f"not a {'date' if kind == 'date' else 'time'} ({hint})")
        value = stamp
    elif kind == "gender":
        lowered = text.str.lower()
        parsed.flag(column, raw, ~empty & ~lowered.isin(_GENDERS), "not a gender (f, m, x or empty)")
        value = lowered.map(_GENDERS).fillna("")
    elif kind == "kind":
        lowered = text.str.lower()
        parsed.flag(column, raw, ~empty & ~lowered.isin(ItemKind.values), f"not an item kind ({', '.join(ItemKind.values)})")
        value = lowered.where(~empty, ItemKind.TRACK)
    elif kind == "activity_kind":
        lowered = text.str.lower()
        parsed.flag(column, raw, ~empty & ~lowered.isin(_ACTIVITY_KINDS), f"not an activity kind ({', '.join(ActivityKind.labels)})")
        value = lowered.map(_ACTIVITY_KINDS)
    elif kind == "list":
        def safe_split(t: str):
            try:
                return _split_list(t)
            except (ValueError, RecursionError):
                return Missing

        value = text.map(safe_split)
        parsed.flag(column, raw, value.map(lambda v: v is Missing), "not a list (use a|b|c or a JSON array)")
        # Entries become persona keys and top_* columns of 100 characters.
        too_long = value.map(lambda v: v is not Missing and any(len(e) > LIST_ENTRY_MAX for e in v))
        parsed.flag(column, raw, too_long, f"an entry is longer than {LIST_ENTRY_MAX} characters")
    elif kind == "json":
        value = text.map(_parse_json_object)
        parsed.flag(column, raw, value.map(lambda v: v is Missing), 'not a JSON object (e.g. {"plan": "family"})')
    else:  # pragma: no cover - a programming error in FIELDS
        raise ValueError(f"unknown parser {kind}")
    parsed.values[f.name] = value


def parse_chunk(kind: str, frame: pd.DataFrame, mapping: dict[str, str]) -> Parsed:
    parsed = Parsed(bad=pd.Series(False, index=frame.index), mapping=mapping)
    for f in FIELDS[kind]:
        column = mapping.get(f.name)
        if column:
            parse_column(f, column, frame[column], parsed)
        elif f.required:  # a batch item without the field (files are refused earlier by check_mapping)
            parsed.flag(f.name, pd.Series("", index=frame.index), pd.Series(True, index=frame.index), "required: the field is missing")
    return parsed


def activity_keys(event_ids: pd.Series, customers: pd.Series, items: pd.Series, kinds: pd.Series, times: pd.Series) -> np.ndarray:
    """A stable signed 64-bit key per activity: from the event id when given, else the natural key.

    The text hashed must never change (re-imports of old files would duplicate rows):
    "id:<event id>" or "nk:<customer>|<item>|<kind>|<UTC time, YYYY-MM-DDTHH:MM:SS.ffffff>".
    """
    event_ids = event_ids.to_numpy()
    natural = np.array([not e for e in event_ids])
    stamps = np.empty(len(event_ids), dtype=object)
    if natural.any():
        utc = times[natural].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
        stamps[natural] = np.datetime_as_string(utc, unit="us")
    out = np.empty(len(event_ids), dtype=np.int64)
    blake = hashlib.blake2b
    for i, (eid, cust, item, kind, stamp) in enumerate(
        zip(event_ids, customers.to_numpy(), items.to_numpy(), kinds.to_numpy(), stamps)
    ):
        text = f"id:{eid}" if eid else f"nk:{cust}|{item}|{int(kind)}|{stamp}"
        out[i] = int.from_bytes(blake(text.encode(), digest_size=8).digest(), "big", signed=True)
    return out


# -- writing -------------------------------------------------------------------------------------


@dataclass
class ChunkResult:
    ok: int = 0
    created: int = 0
    errors: list[pd.DataFrame] = field(default_factory=list)


def _last_per_key(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    # A file may repeat a key; the last row wins, as it would if the rows came one by one.
    return frame[~frame[key].duplicated(keep="last")]


def _write_entities(model, frame: pd.DataFrame, parsed: Parsed, extra_columns: list[str]) -> ChunkResult:
    good = ~parsed.bad
    data = pd.DataFrame({name: series[good] for name, series in parsed.values.items()})
    if extra_columns:
        extras = frame.loc[good, extra_columns]
        records = extras.to_dict("records")
        base = data["attributes"] if "attributes" in data else pd.Series([{}] * len(data), index=data.index)
        data["attributes"] = [
            {**(b or {}), **{k: v for k, v in r.items() if v != ""}} for b, r in zip(base, records)
        ]
    data = _last_per_key(data, "external_id")
    # Columns the file lacks get the model's defaults on insert, but an update leaves them alone.
    mapped = list(data.columns)
    for f in model._meta.concrete_fields:
        if f.name not in data and not f.primary_key and f.has_default() and not getattr(f, "auto_now_add", False):
            data[f.name] = [f.get_default() for _ in range(len(data))]
    with transaction.atomic():
        written = bulk.upsert(model, data, conflict="external_id", update=mapped + ["updated_at"])
    return ChunkResult(ok=int(good.sum()), created=written.created)


class KnownIds:
    """External id -> primary key, remembered across the chunks of one file (activities repeat them)."""

    def __init__(self):
        self.maps: dict[type, dict[str, int]] = {}

    def resolve(self, model, external_ids) -> dict[str, int]:
        known = self.maps.setdefault(model, {})
        missing = [i for i in external_ids if i and i not in known]
        if missing:
            known.update(bulk.lookup_ids(model, missing))
        return known


def _write_activities(frame: pd.DataFrame, parsed: Parsed, ids: KnownIds) -> ChunkResult:
    values = parsed.values
    result = ChunkResult()
    customers = ids.resolve(Customer, values["customer"][~parsed.bad].unique())
    customer_ids = values["customer"].map(customers)
    parsed.flag(
        _source(parsed, "customer"), values["customer"], ~parsed.bad & customer_ids.isna(),
        "unknown customer: import it first",
    )
    items = values.get("item", pd.Series("", index=frame.index))
    item_ids = pd.Series(np.nan, index=frame.index)
    if "item" in values:
        known = ids.resolve(Item, items[~parsed.bad & items.ne("")].unique())
        item_ids = items.map(known)
        parsed.flag(_source(parsed, "item"), items, ~parsed.bad & items.ne("") & item_ids.isna(), "unknown item: import the catalogue first")
    good = ~parsed.bad
    event_ids = values.get("external_id", pd.Series("", index=frame.index))
    data = pd.DataFrame(
        {
            "key": activity_keys(event_ids[good], values["customer"][good], items[good], values["kind"][good], values["occurred_at"][good]),
            "customer": customer_ids[good].astype("int64"),
            "item": item_ids[good].astype("Int64"),
            "kind": values["kind"][good].astype("int64"),
            "quantity": values["quantity"][good].fillna(1.0) if "quantity" in values else 1.0,
            "value": values["value"][good].fillna(0.0) if "value" in values else 0.0,
            "occurred_at": values["occurred_at"][good],
        },
        index=frame.index[good],
    )
    data = _last_per_key(data, "key")
    with transaction.atomic():
        written = bulk.upsert(Activity, data.rename(columns={"customer": "customer_id", "item": "item_id"}), conflict="key")
    result.ok = int(good.sum())
    result.created = written.created
    if written.created < written.rows:
        # Some rows replaced stored ones without a new id: the incremental persona build must redo them.
        touched = data["customer"].unique().tolist()
        for start in range(0, len(touched), 5000):
            Persona.objects.filter(customer_id__in=touched[start : start + 5000], stale=False).update(stale=True)
    return result


def _source(parsed: Parsed, name: str) -> str:
    return parsed.mapping.get(name, name)


def load_chunk(kind: str, frame: pd.DataFrame, mapping: dict[str, str], keep_extra: bool, ids: KnownIds | None = None) -> ChunkResult:
    parsed = parse_chunk(kind, frame, mapping)
    if parsed.bad.all():
        return ChunkResult(errors=parsed.errors)
    if kind == ImportKind.ACTIVITIES:
        result = _write_activities(frame, parsed, ids or KnownIds())
    else:
        model = Customer if kind == ImportKind.CUSTOMERS else Item
        extra = [c for c in frame.columns if c not in set(mapping.values())] if keep_extra else []
        result = _write_entities(model, frame, parsed, extra)
    result.errors = parsed.errors
    return result


# -- the whole file ------------------------------------------------------------------------------


Progress = Callable[[float, str], None]


def _spreadsheet_safe(errors: pd.DataFrame) -> pd.DataFrame:
    """Quote cells a spreadsheet would run as a formula (=, +, -, @): the report echoes user input."""
    risky = errors["value"].astype(str).str.match(r"^[=+\-@\t\r]")
    return errors.assign(value=errors["value"].where(~risky, "'" + errors["value"].astype(str)))


def run_import(data_import: DataImport, progress: Progress | None = None, keep_extra: bool = True) -> DataImport:
    """Load the whole file; safe to run again (a retried job upserts the same rows).

    Each chunk's count of new rows is added to the DataImport in the chunk's own transaction, so an
    attempt killed after some chunks and retried still reports every row it created once: the retry
    finds those rows already there (updated, not new) and the first attempt's count is kept.
    """
    path = Path(data_import.file.path)
    fmt = data_import.file_format
    total = count_rows(path, fmt)
    ok = created = failed_rows = 0
    kept: list[dict] = []
    report_lines: list[pd.DataFrame] = []
    done = 0
    ids = KnownIds()
    for frame in read_chunks(path, fmt):
        with transaction.atomic():
            result = load_chunk(data_import.kind, frame, data_import.mapping, keep_extra, ids)
            if result.created and data_import.pk:
                DataImport.objects.filter(pk=data_import.pk).update(rows_created=F("rows_created") + result.created)
        errors = pd.concat(result.errors) if result.errors else pd.DataFrame(columns=["row", "column", "value", "reason"])
        errors = errors.sort_values(["row"], kind="stable")
        failed_rows += errors["row"].nunique()
        if len(kept) < ERRORS_KEPT:
            kept.extend(errors.head(ERRORS_KEPT - len(kept)).to_dict("records"))
        if len(errors):
            report_lines.append(errors)
        ok += result.ok
        created += result.created
        done += len(frame)
        if progress:
            progress(done / max(total, 1), f"{done:,} of {total:,} rows read, {failed_rows:,} with errors")
    data_import.rows_total = done
    data_import.rows_ok = ok
    data_import.rows_failed = failed_rows
    data_import.rows_created = (DataImport.objects.filter(pk=data_import.pk).values_list("rows_created", flat=True).first()
                                if data_import.pk else created)
    data_import.errors = [{**e, "row": int(e["row"])} for e in kept]
    fields = ["rows_total", "rows_ok", "rows_failed", "rows_created", "errors"]
    if report_lines:
        report = _spreadsheet_safe(pd.concat(report_lines)).to_csv(index=False)
        data_import.error_report.save(f"import-{data_import.pk}-errors.csv", ContentFile(report.encode()), save=False)
        fields.append("error_report")
    data_import.save(update_fields=fields)
    return data_import
