"""Spend per channel and one outcome per period: the series a marketing-mix model is fitted on.

Two ways in, one shape out (`MixSeries`, stored whole as a `MixDataset`):

- `read_upload`: a CSV with a date column, one spend column per channel, the outcome, and any
  control variables. Every problem is collected and reported by spreadsheet row (the header is
  row 1; blank lines count) and column, so a marketer fixes the file in one pass. Nothing is
  stored from a file with a problem: `import_csv` raises before it writes.
- `platform_series`: the platform's own spend per channel and outcome per day or ISO week, from
  a handful of grouped SQL aggregates (see its docstring for how spend finds its channel).

The model needs a regular calendar (adstock carries spend from one period into the next, so a
missing week would shift everything after it), spend that varies (a channel that never spends
cannot be measured), and enough periods for seasonality, carry-over and a 20 % holdout.
"""

from __future__ import annotations

import calendar
import io
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate

from . import roi
from .models import CampaignSpend, Channel, Event, ExternalSpend, MixDataset

# Seasonality needs the year's pattern to show, adstock needs the periods carried over from, and a
# 20 % holdout must still leave a fit: fewer periods than these give a model that only memorises.
MIN_PERIODS = {"day": 56, "week": 26, "month": 18}
UNITS = {"day": "days", "week": "weeks", "month": "months"}
MAX_ERRORS = 200  # listed; the count says how many there were in all
SHOWN = 5  # in str(error)
MAX_BYTES = 10 * 1024 * 1024  # a decade of daily rows × dozens of channels is a few MB
DELIMITERS = (",", ";", "\t")
DATE_NAMES = ("date", "day", "week", "month", "dt", "ds", "period", "week_start", "date_week", "week_starting")
OUTCOME_NAMES = ("revenue", "sales", "conversions", "outcome", "kpi")
REVENUE_WORDS = ("revenue", "sales", "value", "income", "gmv", "turnover")
DATE_FORMATS = "YYYY-MM-DD (or YYYY-MM for months; DD/MM/YYYY and MM/DD/YYYY only where a day above 12 shows which)"
PLATFORM_OUTCOMES = {"conversions": roi.CONVERSIONS, "streams": (Event.Type.PLAY,), "clicks": (Event.Type.CLICK,),
                     "revenue": None}
EXTERNAL = "external"  # campaign-only external spend on a day the campaign served nothing to split it by
UNASSIGNED = "unassigned"  # cost-model spend of a day on which its campaign served nothing

ISO = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T]00:00(?::00)?)?")
YEAR_MONTH = re.compile(r"(\d{4})-(\d{1,2})")
SLASHED = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})")
GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")  # 1,234.5: a comma every three digits
DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")


# -- errors ------------------------------------------------------------------------------------------------


def problem(message: str, row: int | None = None, column: str | None = None) -> dict:
    """One thing wrong with the data: the spreadsheet row (counting the header and blank lines) and column, where known."""
    return {"row": row, "column": column, "message": message}


def _where(error: dict) -> str:
    parts = [f"row {error['row']}" if error["row"] is not None else "", error["column"] or ""]
    return ", ".join(p for p in parts if p)


class MixDataError(ValueError):
    """Data a mix model cannot use; `errors` lists each problem (at most MAX_ERRORS), `total` counts them all."""

    def __init__(self, errors: list[dict], total: int | None = None):
        self.errors = errors[:MAX_ERRORS]
        self.total = len(errors) if total is None else total
        lines = [f"{_where(e)}: {e['message']}" if _where(e) else e["message"] for e in self.errors[:SHOWN]]
        more = [f"… and {self.total - SHOWN} more"] if self.total > SHOWN else []
        super().__init__("; ".join([line.rstrip(".") for line in lines] + more) + ".")


def _raise_if(errors: list[dict]) -> None:
    """File-level problems first, then by row, as a reader goes through the spreadsheet."""
    if errors:
        errors = sorted(errors, key=lambda e: (e["row"] is not None, e["row"] or 0))
        raise MixDataError(errors)


# -- the series --------------------------------------------------------------------------------------------


@dataclass
class MixSeries:
    """Spend per channel, the outcome and the controls over a regular calendar, oldest period first."""

    dates: list[date]
    frequency: str
    channels: list[str]
    spend: dict[str, np.ndarray]
    outcome: np.ndarray
    outcome_name: str
    outcome_kind: str
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""
    file_name: str = ""
    channel_ids: dict[str, int] = field(default_factory=dict)  # spend column → platform Channel pk

    @property
    def periods(self) -> int:
        return len(self.dates)

    def as_data(self) -> dict:
        """The JSON kept in MixDataset.data."""
        return {"dates": [d.isoformat() for d in self.dates],
                "spend": {c: [float(v) for v in self.spend[c]] for c in self.channels},
                "outcome": [float(v) for v in self.outcome],
                "controls": {c: [float(v) for v in values] for c, values in self.controls.items()}}


def check_series(series: MixSeries) -> list[dict]:
    """What makes a series unusable however it was built: too short, a channel that never spends, no outcome."""
    errors = []
    short = _too_few(len(set(series.dates)), series.frequency or None)
    if short:
        errors.append(problem(short))
    if not series.channels:
        errors.append(problem("No spend columns: a mix model needs at least one channel's spend."))
    for channel in series.channels if series.periods else ():
        if not np.any(series.spend[channel]):
            errors.append(problem(f"{channel} has no spend in any period: a channel that never spends cannot be "
                                  "measured — leave it out.", column=channel))
    if series.periods and not np.any(series.outcome):
        errors.append(problem(f"{series.outcome_name} is 0 in every period: there is nothing to explain.",
                              column=series.outcome_name))
    return errors


def _too_few(periods: int, frequency: str | None) -> str | None:
    why = "seasonality, adstock (carry-over from earlier periods) and a 20 % holdout to validate the fit need them"
    if frequency in MIN_PERIODS:
        need = MIN_PERIODS[frequency]
        if periods < need:
            return f"Only {periods} {UNITS[frequency]} of data: at least {need} are needed — {why}."
        return None
    if periods < min(MIN_PERIODS.values()):
        return (f"Only {periods} periods of data: at least {MIN_PERIODS['day']} days, {MIN_PERIODS['week']} weeks "
                f"or {MIN_PERIODS['month']} months are needed — {why}.")
    return None


# -- reading an upload -------------------------------------------------------------------------------------


@dataclass
class Table:
    """A CSV as text cells: the header's names, and the non-blank rows with their spreadsheet row numbers."""

    columns: list[str]
    cells: pd.DataFrame  # str cells, columns named as in `columns`
    rows: np.ndarray  # spreadsheet row number of each row of `cells`
    delimiter: str
    header_row: int = 1  # later where blank lines come first


def _read_bytes(file: Any) -> tuple[bytes, str]:
    """The file's bytes and its name, from a path, bytes, or an uploaded / open file."""
    if isinstance(file, (bytes, bytearray)):
        return bytes(file), ""
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        if path.stat().st_size > MAX_BYTES:
            raise MixDataError([problem(f"The file is larger than {MAX_BYTES // 2**20} MB.")])
        return path.read_bytes(), path.name
    stream: BinaryIO = file
    if hasattr(stream, "seek"):
        stream.seek(0)
    data = stream.read(MAX_BYTES + 1)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_BYTES:
        raise MixDataError([problem(f"The file is larger than {MAX_BYTES // 2**20} MB.")])
    return data, Path(getattr(file, "name", "") or "").name


def _decode(data: bytes) -> str:
    """Text with one kind of line end; Excel's own formats and other binaries are named, not misread."""
    if data[:4] == b"PK\x03\x04" or data[:4] == b"\xd0\xcf\x11\xe0":
        raise MixDataError([problem("This is an Excel workbook, not CSV: save it as “CSV (comma delimited)” and upload that.")])
    if b"\x00" in data[:4096]:
        raise MixDataError([problem("This is not a text file: upload the data as CSV.")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # Excel on Windows; only names can hold non-ASCII
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _delimiter(header: str) -> str:
    """The separator the header line uses most (outside quotes): names hold no numbers to confuse it."""
    unquoted = re.sub(r'"[^"]*"', "", header)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def read_table(text: str) -> Table:
    """Parse the CSV into text cells, keeping spreadsheet row numbers through blank lines."""
    lines = text.split("\n")
    skipped = next((i for i, line in enumerate(lines) if line.strip()), None)
    if skipped is None:
        raise MixDataError([problem("The file is empty: it needs a header row and one row per period.")])
    body = "\n".join(lines[skipped:])
    delimiter = _delimiter(lines[skipped])
    try:
        frame = pd.read_csv(io.StringIO(body), sep=delimiter, header=None, dtype=str, keep_default_na=False,
                            skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if not found:
            raise MixDataError([problem(f"The file could not be read as CSV: {exc}")]) from None
        expected, line, saw = (int(g) for g in found.groups())
        raise MixDataError([problem(f"{saw} cells, but the header has {expected} columns (a value with a "
                                    f"“{delimiter}” in it needs quotes).", row=line + skipped)]) from None
    frame = frame.fillna("").apply(lambda column: column.str.strip())
    columns = [name or f"column {_column_letter(i)}" for i, name in enumerate(frame.iloc[0].tolist())]
    cells = frame.iloc[1:]
    cells = cells[cells.ne("").any(axis=1)]
    cells.columns = columns
    return Table(columns=columns, cells=cells.reset_index(drop=True),
                 rows=cells.index.to_numpy() + 1 + skipped, delimiter=delimiter, header_row=1 + skipped)


def _repeated_columns(table: Table) -> list[dict]:
    counts = Counter(table.columns)
    return [problem(f"Two or more columns are named “{name}” (columns "
                    f"{', '.join(_column_letter(i) for i, c in enumerate(table.columns) if c == name)}): rename one.",
                    row=table.header_row, column=name) for name, n in counts.items() if n > 1]


def _find(columns: list[str], wanted: str) -> str | None:
    """The column called `wanted`: as spelt, else the one whose name differs only in case."""
    if wanted in columns:
        return wanted
    folded = [c for c in columns if c.casefold() == wanted.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def _listing(columns: Iterable[str]) -> str:
    return ", ".join(columns)


# -- numbers -----------------------------------------------------------------------------------------------


def _parse_numbers(raw: pd.Series, delimiter: str) -> np.ndarray:
    """Floats (NaN where a cell is not a number); 1,234.5 reads as 1234.5 only where the commas cannot be decimals.

    In a comma-separated file a comma inside a cell was quoted on purpose, so it groups digits; with
    ";" or tabs "1,234" may be a decimal comma (1.234), so grouping needs a point or a second comma.
    """
    grouped = raw.str.fullmatch(GROUPED.pattern)
    if delimiter != ",":
        grouped &= raw.str.contains(".", regex=False) | (raw.str.count(",") >= 2)
    cleaned = raw.where(~grouped, raw.str.replace(",", "", regex=False))
    values = np.array(pd.to_numeric(cleaned, errors="coerce"), dtype=float)  # a copy: pandas hands out read-only views
    values[~np.isfinite(values)] = np.nan
    return values


def _not_a_number(raw: str) -> str:
    shown = raw if len(raw) <= 40 else raw[:39] + "…"
    message = f"“{shown}” is not a number"
    if DECIMAL_COMMA.fullmatch(raw) or re.fullmatch(r"[+-]?\d{1,3}(\.\d{3})+,\d+", raw):
        return message + ": write decimals with a point (1234.5), and thousands without separators or as 1,234.5."
    if re.search(r"[€$£¥%]", raw):
        return message + ": leave out currency signs and %."
    return message + "."


EMPTY = {"spend": "empty: write 0 for a period with no spend.",
         "outcome": "empty: every period needs its outcome (write 0 if there was none).",
         "control": "empty: a control variable needs a value in every period."}


def numbers(table: Table, column: str, role: str) -> tuple[np.ndarray, list[dict]]:
    """A column as floats, with an error per empty, non-numeric or (for spend and the outcome) negative cell."""
    raw = table.cells[column]
    values = _parse_numbers(raw, table.delimiter)
    errors = []
    for i in np.flatnonzero(np.isnan(values)):
        text = raw.iat[i]
        errors.append(problem(EMPTY[role] if text == "" else _not_a_number(text), int(table.rows[i]), column))
    if role != "control":
        for i in np.flatnonzero(values < 0):
            what = "spend" if role == "spend" else "outcome"
            errors.append(problem(f"negative {what} ({raw.iat[i]}): {what} can't be below 0.", int(table.rows[i]), column))
    return values, errors


def _mostly_numeric(table: Table, column: str) -> bool:
    """Most filled cells are numbers: a column with a typo is still taken (and its typo reported), a text column is not."""
    raw = table.cells[column]
    filled = raw[raw != ""]
    return len(filled) > 0 and np.count_nonzero(~np.isnan(_parse_numbers(filled, table.delimiter))) * 2 > len(filled)


# -- dates -------------------------------------------------------------------------------------------------


def _slash_order(raw: list[str], rows: np.ndarray, column: str) -> tuple[str | None, list[dict]]:
    """'dm' or 'md' for D/M/Y-style cells, decided by a part above 12; ambiguous or contradictory → an error."""
    found = [(i, SLASHED.fullmatch(text)) for i, text in enumerate(raw)]
    parts = [(i, int(m.group(1)), int(m.group(2))) for i, m in found if m]
    if not parts:
        return None, []
    day_first = any(a > 12 for _, a, _ in parts)
    month_first = any(b > 12 for _, _, b in parts)
    if day_first != month_first:
        return ("dm" if day_first else "md"), []
    first = parts[0][0]
    why = "some read as day first and some as month first" if day_first else "no day above 12 shows which part is the day"
    return None, [problem(f"Dates like “{raw[first]}” are ambiguous ({why}): write them as YYYY-MM-DD.",
                          int(rows[first]), column)]


def _parse_date(text: str, order: str | None) -> date | str:
    """The date in a cell, or why not."""
    try:
        if m := ISO.fullmatch(text):
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if m := YEAR_MONTH.fullmatch(text):
            return date(int(m.group(1)), int(m.group(2)), 1)
        if (m := SLASHED.fullmatch(text)) and order:
            a, b, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
            return date(year, b, a) if order == "dm" else date(year, a, b)
    except ValueError as exc:
        return f"“{text}” is not a date ({exc})."
    if SLASHED.fullmatch(text):
        return ""  # reported once for the column by _slash_order
    return f"“{text[:40]}” is not a date: write {DATE_FORMATS}."


def dates(table: Table, column: str) -> tuple[list[date | None], list[dict]]:
    """Each row's date (None where it has none), with an error per empty or unreadable cell."""
    raw = table.cells[column].tolist()
    order, errors = _slash_order(raw, table.rows, column)
    found: list[date | None] = []
    for text, row in zip(raw, table.rows):
        parsed = _parse_date(text, order) if text else "empty: every row needs its date."
        if isinstance(parsed, date):
            found.append(parsed)
            continue
        found.append(None)
        if parsed:
            errors.append(problem(parsed, int(row), column))
    return found, errors


def _duplicates(found: list[date | None], rows: np.ndarray, column: str) -> list[dict]:
    where: dict[date, list[int]] = defaultdict(list)
    for day, row in zip(found, rows):
        if day is not None:
            where[day].append(int(row))
    errors = []
    for day, at in where.items():
        if len(at) > 1:
            listed = ", ".join(str(r) for r in at[:-1]) + f" and {at[-1]}"
            errors.append(problem(f"{day.isoformat()} appears in rows {listed}: one row per period.", at[1], column))
    return errors


def _months(day: date) -> int:
    return day.year * 12 + day.month


def _month_end(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def _add_months(day: date, n: int, month_end: bool) -> date:
    year, month = divmod(_months(day) - 1 + n, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, last if month_end else min(day.day, last))


def _guess_frequency(days: list[date]) -> str | None:
    """The spacing most steps have: 1 day, 7 days or about a month (gaps only lengthen steps)."""
    steps = Counter((b - a).days for a, b in zip(days, days[1:]))
    step = steps.most_common(1)[0][0]
    return {1: "day", 7: "week"}.get(step) or ("month" if 28 <= step <= 31 else None)


def frequency(days: list[date], row_of: dict[date, int], column: str) -> tuple[str | None, list[dict]]:
    """The series' frequency from its sorted, distinct dates, with an error per gap or irregular step."""
    if len(days) < 2:
        return None, []
    freq = _guess_frequency(days)
    if freq is None:
        steps = Counter((b - a).days for a, b in zip(days, days[1:]))
        return None, [problem(f"The dates are not daily, weekly or monthly: most are {steps.most_common(1)[0][0]} days "
                              "apart.", column=column)]
    month_end = freq == "month" and all(_month_end(d) for d in days)
    errors = []
    for a, b in zip(days, days[1:]):
        message = _step_problem(a, b, freq, month_end)
        if message:
            errors.append(problem(message, row_of[b], column))
    return freq, errors


def _step_problem(a: date, b: date, freq: str, month_end: bool) -> str | None:
    """What is wrong between two neighbouring dates of a `freq` series, if anything."""
    if freq == "month":
        steps = _months(b) - _months(a)
        regular = (_month_end(a) and _month_end(b)) if month_end else a.day == b.day
        if not regular or steps < 1:
            return (f"{b.isoformat()} does not follow {a.isoformat()} by whole months: monthly dates fall on the same "
                    "day of each month (or each month's last day).")
        missing = [_add_months(a, k, month_end) for k in range(1, steps)]
    else:
        unit = 1 if freq == "day" else 7
        gap = (b - a).days
        if gap % unit:
            return (f"{b.isoformat()} is {gap} days after {a.isoformat()}: weekly dates must be 7 days apart "
                    "(each week starting on the same weekday).")
        missing = [a + timedelta(days=unit * k) for k in range(1, gap // unit)]
    if not missing:
        return None
    between = f"between {a.isoformat()} and {b.isoformat()}"
    if len(missing) == 1:
        return f"{missing[0].isoformat()} is missing {between}."
    if len(missing) <= 3:
        return f"{', '.join(d.isoformat() for d in missing[:-1])} and {missing[-1].isoformat()} are missing {between}."
    return f"{missing[0].isoformat()} and {len(missing) - 1} more periods are missing {between}."


# -- choosing the columns ----------------------------------------------------------------------------------


@dataclass
class Roles:
    date: str
    outcome: str
    channels: list[str]
    controls: list[str]


def _date_column(table: Table, given: str | None) -> str:
    if given:
        found = _find(table.columns, given)
        if found is None:
            raise MixDataError([problem(f"There is no column “{given}” for the dates; the file has: "
                                        f"{_listing(table.columns)}.", column=given)])
        return found
    for name in DATE_NAMES:
        found = _find(table.columns, name)
        if found:
            return found
    named = [c for c in table.columns if "date" in c.casefold()]
    if len(named) == 1:
        return named[0]
    raise MixDataError([problem("No date column: call it date (or week, month, day) or choose it; the file has: "
                                f"{_listing(table.columns)}.")])


def _outcome_column(table: Table, given: str | None) -> str:
    if given:
        found = _find(table.columns, given)
        if found is None:
            raise MixDataError([problem(f"There is no column “{given}” for the outcome; the file has: "
                                        f"{_listing(table.columns)}.", column=given)])
        return found
    candidates = [c for c in (_find(table.columns, n) for n in OUTCOME_NAMES) if c]
    if len(candidates) > 1:
        raise MixDataError([problem(f"Both {' and '.join(candidates)} could be the outcome: choose one.")])
    if not candidates:
        raise MixDataError([problem(f"No outcome column: call it {', '.join(OUTCOME_NAMES[:-1])} or {OUTCOME_NAMES[-1]}, "
                                    f"or choose it; the file has: {_listing(table.columns)}.")])
    return candidates[0]


def _named_columns(table: Table, given: list[str], what: str) -> tuple[list[str], list[dict]]:
    found, errors = [], []
    for name in given:
        column = _find(table.columns, name)
        if column is None:
            errors.append(problem(f"There is no column “{name}” for {what}; the file has: {_listing(table.columns)}.",
                                  column=name))
        elif column not in found:
            found.append(column)
    return found, errors


def _looks_like_spend(name: str) -> bool:
    """Robyn's tv_S, or a name with 'spend' in it."""
    return name.endswith("_S") or "spend" in name.casefold()


def _spend_columns(table: Table, taken: set[str]) -> list[str]:
    """Columns named as spend (their bad cells are reported, not the column dropped); failing those, every other
    mostly numeric column."""
    free = [c for c in table.columns if c not in taken]
    return [c for c in free if _looks_like_spend(c)] or [c for c in free if _mostly_numeric(table, c)]


def choose_columns(table: Table, *, date_column: str | None, outcome: str | None, channels: list[str] | None,
                   controls: list[str] | None) -> Roles:
    """Which column is which, as given or guessed; a column given twice or not in the file is an error."""
    day = _date_column(table, date_column)
    target = _outcome_column(table, outcome)
    errors = []
    if target == day:
        errors.append(problem(f"{target} cannot be both the dates and the outcome.", column=target))
    extra, missing = _named_columns(table, controls or [], "a control variable")
    errors += missing
    if channels:
        spend, missing = _named_columns(table, channels, "spend")
        errors += missing
    else:
        spend = _spend_columns(table, {day, target, *extra})
        if not spend:
            errors.append(problem("No spend columns: choose them, or end their names with _spend; the file has: "
                                  f"{_listing(table.columns)}."))
    for column in spend:
        if column in (day, target) or column in extra:
            role = "the dates" if column == day else "the outcome" if column == target else "a control variable"
            errors.append(problem(f"{column} cannot be both spend and {role}.", column=column))
    for column in extra:
        if column in (day, target):
            errors.append(problem(f"{column} cannot be a control variable: it is {'the dates' if column == day else 'the outcome'}.",
                                  column=column))
    _raise_if(errors)
    return Roles(date=day, outcome=target, channels=spend, controls=extra)


def _outcome_kind(given: str | None, outcome: str) -> str:
    if given:
        if given not in MixDataset.OutcomeKind.values:
            raise MixDataError([problem(f"Outcome kind “{given}” is not one of {', '.join(MixDataset.OutcomeKind.values)}.")])
        return given
    revenue = any(word in outcome.casefold() for word in REVENUE_WORDS)
    return MixDataset.OutcomeKind.REVENUE if revenue else MixDataset.OutcomeKind.COUNT


# -- the upload --------------------------------------------------------------------------------------------


def read_upload(file: Any, *, name: str = "", outcome: str | None = None, outcome_kind: str | None = None,
                channels: list[str] | None = None, controls: list[str] | None = None,
                date_column: str | None = None) -> MixSeries:
    """The series in an uploaded CSV, or MixDataError listing every problem (see the module docstring).

    `file`: a path, bytes, or an uploaded / open file. `name`: the dataset's name (the file's stem
    when empty). Columns not given are guessed: the date from its name, the outcome from
    OUTCOME_NAMES, spend from names ending in _S or holding "spend" (else every other numeric
    column). Controls are only ever the ones given. `outcome_kind`: revenue or count, guessed from
    the outcome's name when not given.
    """
    data, file_name = _read_bytes(file)
    table = read_table(_decode(data))
    _raise_if(_repeated_columns(table))
    if len(table.columns) < 3:
        raise MixDataError([problem(f"Only {len(table.columns)} column(s) ({_listing(table.columns)}) read with "
                                    f"“{table.delimiter}” between them: the file needs a date, spend per channel and "
                                    "an outcome, separated by commas, semicolons or tabs.", row=table.header_row)])
    roles = choose_columns(table, date_column=date_column, outcome=outcome, channels=channels, controls=controls)
    kind = _outcome_kind(outcome_kind, roles.outcome)
    series, errors = _assemble(table, roles, kind)
    series.name = (name or "").strip() or Path(file_name).stem or "Uploaded data"
    series.file_name = file_name[:200]
    _raise_if(errors)
    return series


def _assemble(table: Table, roles: Roles, kind: str) -> tuple[MixSeries, list[dict]]:
    """The rows sorted by date, and every problem with their cells and their calendar."""
    found, unreadable = dates(table, roles.date)
    errors = unreadable + _duplicates(found, table.rows, roles.date)
    columns = {c: numbers(table, c, "spend") for c in roles.channels}
    target, bad = numbers(table, roles.outcome, "outcome")
    extra = {c: numbers(table, c, "control") for c in roles.controls}
    for _, bad_cells in [*columns.values(), *extra.values()]:
        errors += bad_cells
    errors += bad
    row_of: dict[date, int] = {}
    for day, row in zip(found, table.rows):
        if day is not None and day not in row_of:
            row_of[day] = int(row)
    # An unreadable date leaves the calendar unknown: gaps, the count of periods and all-zero columns wait for it.
    freq, spacing = frequency(sorted(row_of), row_of, roles.date) if not unreadable else (None, [])
    errors += spacing
    order = sorted((i for i, day in enumerate(found) if day), key=lambda i: found[i])
    series = MixSeries(dates=[found[i] for i in order], frequency=freq or "", channels=roles.channels,
                       spend={c: values[order] for c, (values, _) in columns.items()}, outcome=target[order],
                       outcome_name=roles.outcome, outcome_kind=kind,
                       controls={c: values[order] for c, (values, _) in extra.items()})
    if not unreadable:  # the series is whole: judge it (a column with bad cells is not also judged all-zero)
        reported = {e["column"] for e in errors}
        errors += [e for e in check_series(series) if e["column"] is None or e["column"] not in reported]
    return series, errors


# -- the platform's own spend and outcomes -----------------------------------------------------------------


def _whole_periods(start: date, end: date, frequency: str) -> tuple[date, date]:
    """The range trimmed to whole ISO weeks (Monday to Sunday): a part week would look like a drop in spend."""
    if frequency == "week":
        start += timedelta(days=(7 - start.weekday()) % 7)
        end -= timedelta(days=(end.weekday() + 1) % 7)
    return start, end


def _check_platform_request(start: date, end: date, frequency: str, outcome: str) -> None:
    errors = []
    if frequency not in ("day", "week"):
        errors.append(problem("Choose daily or weekly periods.", column="frequency"))
    if outcome not in PLATFORM_OUTCOMES:
        errors.append(problem(f"The outcome is one of {', '.join(PLATFORM_OUTCOMES)}.", column="outcome"))
    first, last = _whole_periods(start, end, frequency)
    if end < start:
        errors.append(problem("The range must end on or after its first day.", column="end"))
    elif first > last:
        errors.append(problem("The range holds no whole week (Monday to Sunday).", column="start"))
    _raise_if(errors)


def _split(amount: float, shares: dict[Any, float]) -> dict[Any, float]:
    total = sum(shares.values())
    return {k: amount * v / total for k, v in shares.items() if v > 0}


def _shares(first: date, last: date) -> dict[tuple[int, date], dict[int, float]]:
    """Per campaign and day, each channel's weight: what its cost model charged, else its impressions.

    The same cells the ROI page splits a campaign's spend by (roi.cells), so both pages agree.
    """
    cells = roi.cells(roi.RoiQuery(start=first, end=last, group="channel"), "channel", sliced=False)
    paid: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    shown: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    for (channel, campaign, day), (measures, charged) in cells.items():
        if channel is not None:
            paid[(campaign, day)][channel] += charged
            shown[(campaign, day)][channel] += measures.impressions
    keys = set(paid) | set(shown)
    return {k: (dict(paid[k]) if sum(paid[k].values()) > 0 else dict(shown[k])) for k in keys}


def platform_spend(first: date, last: date) -> dict[tuple[Any, date], float]:
    """Spend per channel (its pk, or EXTERNAL / UNASSIGNED) and day, from grouped aggregates.

    - cost-model spend (CampaignSpend, per campaign and day) is split over the campaign's channels
      by what each channel's cost model charged that day (served ads, CPC clicks, CPA conversions),
      or by impressions where they charge nothing; a day the campaign served nothing is UNASSIGNED;
    - external spend reported for a channel goes to that channel (with or without a campaign);
    - external spend reported for a campaign alone is split like cost-model spend, or is EXTERNAL.
    """
    shares = _shares(first, last)
    spent: dict[tuple[Any, date], float] = defaultdict(float)

    def campaign_day(campaign: int, day: date, amount: float, fallback: str) -> None:
        weights = shares.get((campaign, day))
        if weights and sum(weights.values()) > 0:
            for channel, part in _split(amount, weights).items():
                spent[(channel, day)] += part
        else:
            spent[(fallback, day)] += amount

    for campaign, day, amount in (CampaignSpend.objects.filter(day__gte=first, day__lte=last).order_by()
                                  .values("campaign_id", "day").annotate(a=Sum("amount")).values_list("campaign_id", "day", "a")):
        campaign_day(campaign, day, float(amount or 0), UNASSIGNED)
    external = (ExternalSpend.objects.filter(day__gte=first, day__lte=last).order_by()
                .values("channel_id", "campaign_id", "day").annotate(a=Sum("amount"))
                .values_list("channel_id", "campaign_id", "day", "a"))
    for channel, campaign, day, amount in external:
        if channel is not None:
            spent[(channel, day)] += float(amount or 0)
        else:
            campaign_day(campaign, day, float(amount or 0), EXTERNAL)
    return spent


def platform_outcome(first: date, last: date, outcome: str) -> dict[date, float]:
    """The outcome per local day: every event of its types (or the value of every event, for revenue).

    All of them, attributed or not, control groups' too: a mix model explains the whole outcome
    as a baseline plus what each channel's spend adds.
    """
    start, end = roi.RoiQuery(start=first, end=last).bounds()
    found = Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end).order_by()
    types = PLATFORM_OUTCOMES[outcome]
    measure = Sum("value") if types is None else Count("id")
    if types is not None:
        found = found.filter(type__in=types)
    per_day = found.values(d=TruncDate("occurred_at")).annotate(x=measure).values_list("d", "x")
    return {day: float(x or 0) for day, x in per_day}


def platform_series(*, start: date, end: date, frequency: str = "week", outcome: str = "conversions") -> MixSeries:
    """The platform's own spend per channel and outcome per day or ISO week (Monday), every period filled.

    A week range is trimmed to whole weeks. Channels with no spend in the range are left out (they
    cannot be measured); `channel_ids` maps each channel's name to its pk for MixDataset.channel_map.
    Raises MixDataError for a bad request or a series a model cannot use (see check_series).
    """
    _check_platform_request(start, end, frequency, outcome)
    first, last = _whole_periods(start, end, frequency)
    step = 7 if frequency == "week" else 1
    labels = [first + timedelta(days=k) for k in range(0, (last - first).days + 1, step)]
    spent = platform_spend(first, last)
    ids = {k for k, _ in spent if isinstance(k, int)}
    names = {k: f"channel {k}" for k in ids} | dict(Channel.objects.filter(pk__in=ids).values_list("pk", "name"))
    keys = sorted(ids, key=lambda k: names[k].casefold())
    keys += [k for k in (UNASSIGNED, EXTERNAL) if any(key == k for key, _ in spent)]
    label_of = {k: _free_name(k, names) if isinstance(k, str) else names[k] for k in keys}
    spend = {label_of[k]: np.zeros(len(labels)) for k in keys}
    for (key, day), amount in spent.items():
        spend[label_of[key]][(day - first).days // step] += amount
    target = np.zeros(len(labels))
    for day, value in platform_outcome(first, last, outcome).items():
        target[(day - first).days // step] += value
    channels = [c for c in spend if np.any(spend[c])]
    series = MixSeries(dates=labels, frequency=frequency, channels=channels, spend={c: spend[c] for c in channels},
                       outcome=target, outcome_name=outcome,
                       outcome_kind=MixDataset.OutcomeKind.REVENUE if outcome == "revenue" else MixDataset.OutcomeKind.COUNT,
                       channel_ids={names[k]: k for k in keys if isinstance(k, int) and names[k] in channels})
    _raise_if(check_series(series))
    return series


def _free_name(bucket: str, names: dict[int, str]) -> str:
    """A bucket's column name that no real channel already has."""
    taken = {n.casefold() for n in names.values()}
    return bucket if bucket not in taken else f"{bucket} (no channel)"


# -- storing -----------------------------------------------------------------------------------------------


def store_dataset(series: MixSeries, *, name: str, source: str, by, channel_map: dict | None = None) -> MixDataset:
    """Keep the series as a dataset, whole and once; a series a model cannot use is refused (MixDataError)."""
    errors = check_series(series)
    name = (name or series.name or "").strip()
    if not name:
        errors.append(problem("Give the dataset a name.", column="name"))
    elif len(name) > 120:
        errors.append(problem("The name is longer than 120 characters.", column="name"))
    if source not in MixDataset.Source.values:
        errors.append(problem(f"Source “{source}” is not one of {', '.join(MixDataset.Source.values)}.", column="source"))
    _raise_if(errors)
    with transaction.atomic():
        return MixDataset.objects.create(
            name=name, source=source, frequency=series.frequency, outcome_name=series.outcome_name[:100],
            outcome_kind=series.outcome_kind, channels=list(series.channels), controls=list(series.controls),
            channel_map=dict(series.channel_ids if channel_map is None else channel_map), data=series.as_data(),
            periods=series.periods, start=series.dates[0], end=series.dates[-1], file_name=series.file_name[:200],
            created_by=by)


def import_csv(file: Any, *, by, **options) -> MixDataset:
    """Read an uploaded CSV (options as read_upload's) and store it; a file with any problem stores nothing."""
    series = read_upload(file, **options)
    return store_dataset(series, name=series.name, source=MixDataset.Source.UPLOAD, by=by)
