"""Queue the demo's first music jobs: recommendations, stream forecasts and the audio models.

    manage.py seed_music

Each job is queued only while its model has no champion yet, so running it again (every `make run`)
queues nothing once the first runs have finished. The worker picks them up on the ml queue.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from ml.models import Job, ModelVersion, enqueue

JOBS = [  # registry key prefix, job kind, title, task
    ("recsys:", "recommendations", "Recommendations", "build_recommendations"),
    ("forecast:", "stream_forecast", "Stream forecasts", "train_forecaster"),
    ("audio:", "audio_training", "Train audio models", "train_audio_models"),
]


class Command(BaseCommand):
    help = "Queue the first recommendations, stream forecasts and audio models of the demo (once)."

    def handle(self, *args, **options):
        from audiences import tasks

        for prefix, kind, title, task in JOBS:
            if ModelVersion.objects.champions().filter(key__startswith=prefix).exists():
                continue
            if Job.objects.unfinished().filter(kind=kind).exists():
                continue
            with transaction.atomic():
                job = Job.objects.create(kind=kind, title=title)
                enqueue(getattr(tasks, task), job)
            if options["verbosity"] >= 1:
                self.stdout.write(f"Queued: {title} (job {job.pk})")
