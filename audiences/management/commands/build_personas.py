from django.core.management.base import BaseCommand

from audiences.actions import persona_job
from ml.models import running


class Command(BaseCommand):
    help = "Build personas here (the scheduled Celery job does the same on a worker)."

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="rebuild every customer, not only those that changed")

    def handle(self, full, **options):
        from audiences.personas import build_personas

        job = persona_job(full=full, by=None)
        with running(job.pk) as tracked:
            summary = build_personas(full=full, progress=tracked.report)
            tracked.result = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, dict, list))}
            tracked.message = f"{summary.get('customers_rebuilt', 0):,} personas rebuilt"
        self.stdout.write(f"Personas: {summary}")
