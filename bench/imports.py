"""Import bench: load a CSV of simulated activities through the real import path and time it.

    .venv/bin/python bench/imports.py [--rows 1000000] [--natural-key] [--keep]

Runs on whatever DATABASE_URL names (default: the SQLite file under var/), without a
Celery worker: it calls `imports.run_import` in-process, exactly as the import task
does. Its customers and items have external ids starting with `bench-` (and
attributes.source == "bench"); they, their activities and the DataImport rows are
deleted at the end, also after a failure, unless --keep. The CSV lives in a temporary
directory that is used as MEDIA_ROOT for this process and removed afterwards.

Prints `name: value` lines; bench/README.md says what each means.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench-"
SOURCE = "bench"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="activities in the file (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--natural-key", action="store_true",
                        help="leave out the event_id column, so keys hash (customer, item, kind, time)")
    parser.add_argument("--keep", action="store_true", help="keep the bench rows and the CSV (prints where)")
    parser.add_argument("--profile", action="store_true",
                        help="run the first import under cProfile and print the top functions to stderr")
    return parser.parse_args()


def say(name: str, value) -> None:
    print(f"{name}: {value}", flush=True)


class Phases:
    """Wall time spent inside chosen functions of the import path (wrapped in place, cheap)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, module, name: str, label: str | None = None, generator: bool = False) -> None:
        original = getattr(module, name)
        label = label or name
        phases = self

        if generator:
            def timed(*args, **kwargs):
                iterator = original(*args, **kwargs)
                while True:
                    start = time.perf_counter()
                    try:
                        value = next(iterator)
                    except StopIteration:
                        phases.seconds[label] = phases.seconds.get(label, 0.0) + time.perf_counter() - start
                        return
                    phases.seconds[label] = phases.seconds.get(label, 0.0) + time.perf_counter() - start
                    yield value
        else:
            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    phases.seconds[label] = phases.seconds.get(label, 0.0) + time.perf_counter() - start

        setattr(module, name, timed)
        self._undo.append((module, name, original))

    def reset(self) -> None:
        self.seconds = {}

    def restore(self) -> None:
        for module, name, original in reversed(self._undo):
            setattr(module, name, original)


@contextmanager
def timer(into: dict, name: str):
    start = time.perf_counter()
    yield
    into[name] = time.perf_counter() - start


def write_csv(path: Path, rows: int, seed: int, natural_key: bool):
    """Simulate listeners until `rows` activities exist and write them as a typical event export.

    Returns the catalogue and the customers the file refers to (the bench stores them first).
    """
    import numpy as np
    import pandas as pd

    from audiences import demo

    config = demo.DemoConfig(seed=seed, customers=max(100, math.ceil(rows / 18)), as_of=date(2025, 6, 1),
                             id_prefix=PREFIX, source=SOURCE)
    cat = demo.catalogue(config)
    frames, customers = [], []
    for chunk in demo.simulate(config, cat):
        customers.append(chunk.customers)
        frames.append(chunk.activities)
    acts = pd.concat(frames, ignore_index=True)
    if len(acts) < rows:
        raise SystemExit(f"the simulator made {len(acts)} activities, fewer than --rows {rows}")
    acts = acts.iloc[:rows]
    stamps = np.datetime_as_string(acts["occurred_at"].dt.tz_convert(None).to_numpy().astype("datetime64[s]"), unit="s")
    table = {
        "event_id": "evt-" + acts["key"].astype("uint64").map("{:016x}".format) if not natural_key else None,
        "customer_id": acts["customer"],
        "item_id": acts["item"].fillna(""),
        "kind": demo.activity_label(acts["kind"]),
        "quantity": acts["quantity"],
        "value": acts["value"],
        "timestamp": pd.Series(stamps, index=acts.index) + "Z",
    }
    pd.DataFrame({k: v for k, v in table.items() if v is not None}).to_csv(path, index=False)
    return cat, pd.concat(customers, ignore_index=True)


def main() -> int:
    args = parse_args()
    if args.rows < 1:
        raise SystemExit("--rows must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="encore-bench-"))
    os.environ["MEDIA_ROOT"] = str(workdir)  # the DataImport file is read from MEDIA_ROOT
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from audiences import bulk, demo, imports
    from audiences.models import Activity, Customer, DataImport, ImportKind

    call_command("migrate", interactive=False, verbosity=0)
    say("database", f"{connection.vendor} {connection.settings_dict['NAME']}")
    say("activities_rows", args.rows)
    t: dict[str, float] = {}
    phases = Phases()
    bench_customers = Customer.objects.filter(external_id__startswith=PREFIX)
    data_imports: list = []
    try:
        demo.delete_demo(source=SOURCE)  # leftovers of an interrupted run
        csv_path = workdir / "bench-activities.csv"
        with timer(t, "csv"):
            cat, customers = write_csv(csv_path, args.rows, args.seed, args.natural_key)
        say("csv_bytes", csv_path.stat().st_size)
        say("csv_seconds", round(t["csv"], 2))
        with timer(t, "setup"):
            demo.store_catalogue(cat)
            with transaction.atomic():
                bulk.upsert(Customer, customers, conflict="external_id")
        say("setup_customers", len(customers))
        say("setup_items", len(cat.items))
        say("setup_seconds", round(t["setup"], 2))

        columns, _ = imports.inspect_file(csv_path, "csv")
        mapping = imports.guess_mapping(ImportKind.ACTIVITIES, columns)
        problems = imports.check_mapping(ImportKind.ACTIVITIES, mapping, columns)
        if problems:
            raise SystemExit(f"mapping problems: {problems}")

        def new_import():
            data_import = DataImport.objects.create(
                kind=ImportKind.ACTIVITIES, file=csv_path.name, original_name=csv_path.name, file_format="csv",
                columns=columns, mapping=mapping, status=DataImport.Status.RUNNING,
            )
            data_imports.append(data_import)
            return data_import

        phases.wrap(imports, "read_chunks", "read_csv", generator=True)
        phases.wrap(imports, "parse_chunk", "parse")
        phases.wrap(imports, "activity_keys", "activity_keys")
        phases.wrap(bulk, "lookup_ids", "lookup_ids")
        phases.wrap(bulk, "existing_values", "existing_keys")
        phases.wrap(bulk, "upsert", "upsert")
        phases.wrap(bulk, "_copy_upsert", "upsert_copy_and_insert")

        data_import = new_import()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        with timer(t, "import"):
            first = imports.run_import(data_import)
        if profiler:
            import pstats

            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)
        loaded = Activity.objects.filter(customer__in=bench_customers).count()
        say("import_seconds", round(t["import"], 2))
        say("activities_rows_per_s", round(args.rows / t["import"]))
        say("rows_ok", first.rows_ok)
        say("rows_failed", first.rows_failed)
        say("rows_created", first.rows_created)
        say("rows_in_table", loaded)
        for name, seconds in phases.seconds.items():
            say(f"phase_{name}_seconds", round(seconds, 2))
        if first.rows_failed:
            say("first_errors", first.errors[:3])

        phases.reset()
        with timer(t, "reimport"):
            again = imports.run_import(new_import())
        reloaded = Activity.objects.filter(customer__in=bench_customers).count()
        say("reimport_seconds", round(t["reimport"], 2))
        say("reimport_rows_per_s", round(args.rows / t["reimport"]))
        say("reimport_rows_created", again.rows_created)
        say("reimport_duplicates", reloaded - loaded)
        for name, seconds in phases.seconds.items():
            say(f"reimport_phase_{name}_seconds", round(seconds, 2))
        ok = first.rows_ok == args.rows and loaded == args.rows and reloaded == loaded
        return 0 if ok else 1
    finally:
        phases.restore()
        if args.keep:
            say("kept", f"bench rows (external ids {PREFIX}*) and {workdir}")
        else:
            with timer(t, "cleanup"):
                for data_import in data_imports:
                    DataImport.objects.filter(pk=data_import.pk).delete()
                demo.delete_demo(source=SOURCE)
                shutil.rmtree(workdir, ignore_errors=True)
            say("cleanup_seconds", round(t["cleanup"], 2))


if __name__ == "__main__":
    sys.exit(main())
