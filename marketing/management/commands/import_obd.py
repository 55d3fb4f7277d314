"""Import the Open Bandit Dataset's logs as decisions and click events (see marketing/obd.py for the mapping).

    manage.py import_obd [--campaign all] [--policies random,bts] [--limit N] [--data-dir PATH]

Idempotent: a second run adds nothing. Prints `name: value` lines per policy.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from marketing.obd import DEFAULT_DATA_DIR, POLICIES, import_obd


class Command(BaseCommand):
    help = "Import the Open Bandit Dataset (ZOZOTOWN) logs as decisions and events of ended campaigns."

    def add_arguments(self, parser):
        parser.add_argument("--campaign", default="all", choices=["all", "men", "women"])
        parser.add_argument("--policies", default="random,bts", help="Comma-separated behaviour policies (random, bts).")
        parser.add_argument("--limit", type=int, default=None, metavar="N", help="Only the first N rows of each log.")
        parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)

    def handle(self, *args, campaign, policies, limit, data_dir, **options):
        chosen = tuple(p.strip() for p in policies.split(",") if p.strip())
        if not chosen or set(chosen) - set(POLICIES):
            raise CommandError(f"--policies takes a comma-separated list of: {', '.join(POLICIES)}.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        if not (data_dir / chosen[0] / campaign / f"{campaign}.csv").is_file():
            raise CommandError(f"No OBD log at {data_dir / chosen[0] / campaign}; pass --data-dir.")
        started = time.perf_counter()
        for result in import_obd(campaign=campaign, policies=chosen, limit=limit, data_dir=data_dir):
            name = result.policy
            self.stdout.write(f"{name}_rows: {result.rows}")
            self.stdout.write(f"{name}_new_decisions: {result.new_decisions}")
            self.stdout.write(f"{name}_new_events: {result.new_events}")
            self.stdout.write(f"{name}_decisions: {result.decisions}")
            self.stdout.write(f"{name}_events: {result.events}")
            self.stdout.write(f"{name}_click_rate: {result.click_rate:.5f}")
        self.stdout.write(f"seconds: {time.perf_counter() - started:.1f}")
