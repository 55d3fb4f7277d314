from django.core.management.base import BaseCommand

from audiences.actions import persona_job
from audiences.tasks import build_personas
from ml.models import Job


class Command(BaseCommand):
    help = "Build personas in this process (the scheduled Celery job runs the same task on a worker)."

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="rebuild every customer, not only those that changed")

    def handle(self, full, **options):
        job = persona_job(full=full, by=None)
        build_personas(job_id=job.pk, full=full)  # the task body, run here
        job = Job.objects.get(pk=job.pk)
        self.stdout.write(f"{job.message} {job.result}")
