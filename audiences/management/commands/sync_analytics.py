"""manage.py sync_analytics [--full] [--remove]: bring the analytics copy (audiences/columnar.py) up to date now."""

import time

from django.core.management.base import BaseCommand

from audiences import columnar


class Command(BaseCommand):
    help = "Bring the Parquet copy the analytics page reads with DuckDB up to date (see audiences/columnar.py)."

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="rebuild every file, activities included")
        parser.add_argument("--remove", action="store_true", help="delete the copy: the page asks the database again")

    def handle(self, *args, full=False, remove=False, **options):
        if remove:
            columnar.forget()
            self.stdout.write("Analytics copy removed.")
            return
        started = time.perf_counter()
        copy = columnar.sync(full=full)
        if copy is None:
            self.stdout.write("No analytics copy: it needs PostgreSQL and ANALYTICS_COPY=on, or =auto with at least "
                              "ANALYTICS_COPY_MIN_ROWS activities.")
            return
        rows = ", ".join(f"{table.removeprefix('audiences_')} {n:,}" for table, n in copy.rows.items())
        self.stdout.write(f"Analytics copy synced in {time.perf_counter() - started:.1f} s ({rows}) in {copy.folder}.")
