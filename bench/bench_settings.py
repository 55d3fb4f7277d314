"""Settings for bench/decisions.py's gunicorn: the product's settings, plus the bench's baseline URL.

Everything else (DEBUG, SECRET_KEY, ALLOWED_HOSTS, security, database, cache) still comes from the
environment through config.settings, so the bench measures the production configuration.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"
