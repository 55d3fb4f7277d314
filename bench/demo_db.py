"""What the database benches share: Django on DATABASE_URL, a migrated database with a demo in it, medians."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def setup(description: str, count_only: bool = False) -> argparse.Namespace:
    """Parse --customers / --repeat (and --count-only), start Django, migrate, and seed the demo when the database has no customers."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000, help="demo size to seed when the database is empty")
    parser.add_argument("--repeat", type=int, default=5)
    if count_only:
        parser.add_argument("--count-only", action="store_true", help="the audience count only, not the analytics question")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.core.management import call_command

    from audiences.models import Customer

    call_command("migrate", verbosity=0)
    if not Customer.objects.exists():
        call_command("seed_demo", "--customers", str(args.customers), "--seed", "7", verbosity=0)
    return args


def median_time(run: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall seconds of `repeat` runs, and the last run's result."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def start_django_on_own_database(name: str) -> None:
    """Start Django on DATABASE_URL, or else on a fresh SQLite database (and var folder) in a temporary folder.

    For benches that write to the database they measure: without DATABASE_URL they must not touch
    the developer's `make run` database under var/.
    """
    import tempfile

    sys.path.insert(0, str(ROOT))
    if not os.environ.get("DATABASE_URL"):
        folder = tempfile.mkdtemp(prefix=f"encore-{name}-")
        os.environ["ENCORE_VAR_DIR"] = folder
        os.environ["DATABASE_URL"] = f"sqlite:///{folder}/{name}.sqlite3"
        os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
