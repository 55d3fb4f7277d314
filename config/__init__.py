import os

# xgboost and scikit-learn share one OpenMP runtime that reads this once, when the first of them
# loads: with the default (active) policy its idle threads spin, and on a small, busy machine
# training ran 5–25× slower. Set here, first thing in every web, worker and test process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
