"""The one Celery app. Tasks live in <app>/tasks.py; ML work runs on its own `ml` queue."""

import os

from celery import Celery
from celery.schedules import crontab
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("encore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Hourly: only customers whose activity or rolling windows changed since the last build.
    "personas-incremental": {
        "task": "audiences.build_personas",
        "schedule": crontab(minute=5),
        "kwargs": {"full": False},
    },
    # The analytics copy DuckDB answers the analytics page from (a no-op while the base is small).
    "analytics-copy": {"task": "audiences.sync_analytics_copy", "schedule": settings.ANALYTICS_COPY_MINUTES * 60.0},
    # Audience snapshots follow the hourly persona update.
    "audiences-refresh": {"task": "audiences.refresh_audiences", "schedule": crontab(minute=20)},
    # Jobs whose worker died (the filesystem broker cannot redeliver) are marked failed.
    "reap-jobs": {"task": "ml.reap_jobs", "schedule": crontab(minute="*/15")},
    # Nightly: everyone, so segment thresholds and decay stay consistent across the base.
    "personas-full": {
        "task": "audiences.build_personas",
        "schedule": crontab(hour=3, minute=30),
        "kwargs": {"full": True},
    },
    # Nightly, after the full persona build: lookalikes learn from their seeds as they are now.
    "lookalikes-retrain": {"task": "audiences.retrain_lookalikes", "schedule": crontab(hour=4, minute=30)},
    # Delivery-list reservations held in batch arrays are written out as served-ad rows (see DeliveryBatch).
    # A run not started within its period is dropped: the next one does its work.
    "delivery-list-ledger": {"task": "marketing.compact_reservations", "schedule": 10.0, "options": {"expires": 10.0}},
    # Every minute: response rates for "ranked by model" and the fit check; explorations that are done end.
    "delivery-rates": {"task": "marketing.refresh_rates", "schedule": 60.0},
    # Campaign models learn again from the latest logs (the end of an exploration also starts one at once).
    "campaign-uplift-models": {"task": "marketing.retrain_uplift_models", "schedule": crontab(hour=3, minute=30)},
    "campaign-online-models": {"task": "marketing.update_online_models", "schedule": 60.0},
    # Nightly music jobs: recommendations from the day's plays, then forecasts of recent releases.
    "recommendations": {"task": "audiences.build_recommendations", "schedule": crontab(hour=2, minute=0)},
    "stream-forecasts": {"task": "audiences.train_forecaster", "schedule": crontab(hour=2, minute=45)},
    "campaign-models": {"task": "marketing.retrain_models", "schedule": settings.RETRAIN_HOURS * 3600.0},
}
