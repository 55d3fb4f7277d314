"""The one Celery app. Tasks live in <app>/tasks.py; ML work runs on its own `ml` queue; the beat schedule is
CELERY_BEAT_SCHEDULE in config/settings.py (read with the rest of the settings, not when this module is imported)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("encore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
