"""Encore settings, read from the environment (12-factor).

With no environment at all the project runs on embedded defaults: SQLite and a
filesystem Celery broker under ``var/``. Production selects PostgreSQL, Redis and
strict security purely through variables. A bad value stops start-up with a
message naming the variable, instead of surfacing later as a confusing error.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def envbool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use true/false, 1/0, yes/no or on/off.")


def envint(name: str, default: int, minimum: int | None = None) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} must be at least {minimum}.")
    return number


def envfloat(name: str, default: float, minimum: float, maximum: float) -> float:
    value = env(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if not minimum <= number <= maximum:
        raise ImproperlyConfigured(f"{name}={number} must be between {minimum} and {maximum}.")
    return number


def envlist(name: str, default: list[str]) -> list[str]:
    value = env(name)
    if value is None:
        return default
    return [part.strip() for part in value.split(",") if part.strip()]


VAR_DIR = Path(env("ENCORE_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)
# librosa compiles numba kernels with cache=True. By default the cache lands in site-packages: read-only
# in the Docker image ("no locator available"), and shared by every install's processes, where two
# compiling at once left an index that no longer matched its files (a segfault in every later job).
os.environ.setdefault("NUMBA_CACHE_DIR", str(VAR_DIR / "numba-cache"))

DEBUG = envbool("DEBUG", False)


def _secret_key() -> str:
    """Use SECRET_KEY when set; otherwise, only in DEBUG, keep a generated one under var/."""
    value = env("SECRET_KEY")
    if value:
        if not DEBUG and len(value) < 50:
            raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters when DEBUG is off.")
        return value
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set DEBUG=true for local use "
            "(a key is then generated into var/secret_key)."
        )
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is off (comma-separated host names).")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "accounts.apps.EncoreAdminConfig",  # django.contrib.admin, entered only through our sign-in
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served from here: no CDN
    "django_htmx",
    "template_partials",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "accounts",
    "ml",
    "audiences",
    "marketing",
    "axes",  # last, as its docs ask: it wraps the authentication of the apps above
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): has this session given its one-time code
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out sign-in into the lockout page (429)
    "config.middleware.DatabaseUnavailableMiddleware",  # 503 + Retry-After while PostgreSQL is unreachable
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.roles",
            ],
        },
    }
]


def _database() -> dict:
    url = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'encore.sqlite3'}")
    try:
        config = dj_database_url.parse(url, conn_max_age=envint("DB_CONN_MAX_AGE", 60, minimum=0))
    except Exception as exc:  # dj-database-url raises several types for bad URLs
        raise ImproperlyConfigured(f"DATABASE_URL={url!r} is not a valid database URL: {exc}") from None
    engine = config["ENGINE"]
    if engine.endswith("sqlite3"):
        config["CONN_MAX_AGE"] = 0
        # WAL lets the web process read while the Celery worker writes; the
        # timeout waits on a writer instead of failing with "database is locked".
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # A file (not :memory:) so a Celery worker process can share it; one per run so runs don't collide.
        config["TEST"] = {"NAME": str(VAR_DIR / f"test-encore-{os.getpid()}.sqlite3")}
    elif engine.endswith("postgresql"):
        config["CONN_HEALTH_CHECKS"] = True
        # Audience counts and analytics hash-aggregate hundreds of thousands of customers; with
        # PostgreSQL's default 4MB they spill to disk (a 1M-customer count: 2.5 s → 1.1 s at 64MB).
        work_mem = env("DATABASE_WORK_MEM", "64MB")
        if not re.fullmatch(r"\d+(kB|MB|GB)", work_mem):
            raise ImproperlyConfigured(f"DATABASE_WORK_MEM={work_mem!r}: use a size such as 64MB.")
        # Parallel workers per query: PostgreSQL's default (2) plus the leader is three processes per
        # query, which on a 2-core host fight for the cores, and in an audience count each worker redoes
        # the behaviour window's aggregate (1M customers: 1.19 s with 2 workers, 0.79 s with 1).
        # Default: half this host's cores — set it to suit the database host when that is another machine.
        workers = envint("DATABASE_PARALLEL_WORKERS", max(1, (os.cpu_count() or 2) // 2), minimum=0)
        config.setdefault("OPTIONS", {})["options"] = f"-c work_mem={work_mem} -c max_parallel_workers_per_gather={workers}"
    else:
        raise ImproperlyConfigured(f"DATABASE_URL must name PostgreSQL or SQLite, not {engine}.")
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")
    # Answers as a cache miss while Redis is down (throttles fail open) instead of raising: see config/cache.py.
    CACHES = {"default": {"BACKEND": "config.cache.TolerantRedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "encore"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes stands before the model backend and refuses a locked-out sign-in before the password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
if DEBUG:
    STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise looks here even when runserver serves from finders
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
ARTIFACT_DIR = Path(env("ARTIFACT_DIR", str(VAR_DIR / "artifacts")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "audiences.uploads.LimitedUpload",  # stops anonymous and oversized uploads while they stream in
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = env("FILE_UPLOAD_TEMP_DIR")  # put it on the media volume so big uploads move by rename
IMPORT_MAX_UPLOAD_MB = envint("IMPORT_MAX_UPLOAD_MB", 2048, minimum=1)

# Security: strict unless DEBUG. `manage.py check --deploy` is clean with DEBUG off.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# How long a process keeps a placement's delivery set-up (ads, plan, caps) before reading it again;
# edits move a shared version in the cache, so this only bounds staleness when the cache is per process.
DELIVERY_SETUP_SECONDS = envint("DELIVERY_SETUP_SECONDS", 5, minimum=0)
# How often a process re-reads campaign spend to stop spent budgets (0: on every decision).
BUDGET_CHECK_SECONDS = envint("BUDGET_CHECK_SECONDS", 1, minimum=0)
# A campaign's spend of a day is kept in this many rows (by customer), so concurrent decisions do not queue on one row lock.
SPEND_SHARDS = envint("SPEND_SHARDS", 8, minimum=1)

# The analytics copy (audiences/columnar.py): Parquet files DuckDB answers the analytics page from.
# ANALYTICS_COPY: auto (build it once the activity table holds ANALYTICS_COPY_MIN_ROWS), on, or off.
ANALYTICS_COPY = env("ANALYTICS_COPY", "auto")
if ANALYTICS_COPY not in ("auto", "on", "off"):
    raise ImproperlyConfigured(f"ANALYTICS_COPY={ANALYTICS_COPY!r}: use auto, on or off.")
ANALYTICS_COPY_DIR = Path(env("ANALYTICS_COPY_DIR", str(VAR_DIR / "analytics"))).resolve()
ANALYTICS_COPY_MIN_ROWS = envint("ANALYTICS_COPY_MIN_ROWS", 2_000_000, minimum=0)
ANALYTICS_COPY_MINUTES = envint("ANALYTICS_COPY_MINUTES", 5, minimum=1)  # how often beat syncs it
ANALYTICS_COPY_MAX_AGE = envint("ANALYTICS_COPY_MAX_AGE", 30, minimum=1)  # minutes; older: the database answers
ANALYTICS_COPY_REBUILD_HOURS = envint("ANALYTICS_COPY_REBUILD_HOURS", 24, minimum=1)
ANALYTICS_COPY_THREADS = envint("ANALYTICS_COPY_THREADS", 0, minimum=0)  # DuckDB's threads (0: one per core)
ANALYTICS_COPY_MEMORY = env("ANALYTICS_COPY_MEMORY", "2GB")  # DuckDB's memory per statement; past it, it spills to disk
if not re.fullmatch(r"\d+(MB|GB)", ANALYTICS_COPY_MEMORY):
    raise ImproperlyConfigured(f"ANALYTICS_COPY_MEMORY={ANALYTICS_COPY_MEMORY!r}: use a size such as 512MB or 2GB.")

# Auto-modelling: how far back a campaign's model learns from, and at most how many decisions;
# how often serving campaigns retrain; the bandit between ads of a ranked set (see marketing/decisions.py).
MODEL_HORIZON_DAYS = envint("MODEL_HORIZON_DAYS", 30, minimum=1)
MODEL_MAX_DECISIONS = envint("MODEL_MAX_DECISIONS", 200_000, minimum=100)
RETRAIN_HOURS = envint("RETRAIN_HOURS", 6, minimum=1)
BANDIT_FLOOR = envfloat("BANDIT_FLOOR", 0.02, 0.0, 0.5)
BANDIT_MAX_STRENGTH = envint("BANDIT_MAX_STRENGTH", 200, minimum=1)
BANDIT_DRAWS = envint("BANDIT_DRAWS", 2000, minimum=100)
CHALLENGER_FLOOR = envfloat("CHALLENGER_FLOOR", 0.1, 0.0, 0.5)
CHALLENGER_CAP = envfloat("CHALLENGER_CAP", 0.5, 0.0, 1.0)
# The optional control group of every campaign (0: none); the salt picks which customers it holds out.
GLOBAL_CONTROL_SHARE = envfloat("GLOBAL_CONTROL_SHARE", 0.0, 0.0, 0.5)
GLOBAL_CONTROL_SALT = envint("GLOBAL_CONTROL_SALT", 20261123, minimum=1)

# Sign-in lockout (django-axes, attempts kept in the database so every web process sees them): after
# LOGIN_FAILURE_LIMIT failures an account is locked for LOGIN_COOLOFF_MINUTES, counted again from each
# further try. By default failures count per username *and* address together: a guesser at one address
# gets a few tries per account, while a stranger elsewhere cannot lock a colleague out (a denial of
# service), and people behind one office NAT don't lock each other out with typos.
# LOGIN_LOCKOUT_BY=username locks the account whatever the address (stops spread-out guessing, at that cost).
_LOCKOUT_BY = {"username+ip": [["username", "ip_address"]], "username": ["username"], "ip": ["ip_address"],
               "username,ip": ["username", "ip_address"]}
_lockout_by = env("LOGIN_LOCKOUT_BY", "username+ip")
if _lockout_by not in _LOCKOUT_BY:
    raise ImproperlyConfigured(f"LOGIN_LOCKOUT_BY={_lockout_by!r}: use one of {', '.join(_LOCKOUT_BY)}.")
AXES_ENABLED = envbool("LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = _LOCKOUT_BY[_lockout_by]
AXES_RESET_ON_SUCCESS = True  # a successful sign-in forgets earlier typos
AXES_LOCKOUT_CALLABLE = "accounts.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.security.client_ip"
AXES_SENSITIVE_PARAMETERS = ["password", "code"]
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged as warnings
# Load balancers in front of the web processes (0: clients connect directly; REMOTE_ADDR is theirs).
LOGIN_TRUSTED_PROXIES = envint("LOGIN_TRUSTED_PROXIES", 0, minimum=0)
# How long the code step of a two-step sign-in waits after the right password.
LOGIN_CODE_SECONDS = 300
# Second factor (django-otp TOTP): the issuer name authenticator apps show.
OTP_TOTP_ISSUER = env("OTP_ISSUER", "Encore")

# Requests per minute per API client (or signed-in user); a client's own limit overrides it.
API_CLIENT_RATE_PER_MINUTE = envint("API_CLIENT_RATE_PER_MINUTE", 60_000, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.DenyAll"],
    "DEFAULT_SCHEMA_CLASS": "config.openapi.ApiSchema",
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.ClientRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    # config.converters.IdConverter: ids in paths are integers of at most 18 digits.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}},
    "TITLE": "Encore API",
    "DESCRIPTION": (
        "Customers, catalogue, activities, audiences, decisions, events, delivery lists and jobs. "
        "Authenticate with `Authorization: Bearer <token>`; each token carries scopes (an admin issues them "
        "under Team → API clients or with `manage.py create_api_client NAME --scopes ...`). Each client has its "
        "own rate limit per minute; over it the API answers 429 with Retry-After."),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery. Default: kombu's filesystem transport under var/, so a real worker runs with no services.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if not CELERY_BROKER_URL.startswith(("filesystem://", "redis://", "rediss://", "amqp://", "pyamqp://", "memory://")):
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r}: use filesystem://, redis://, rediss:// or amqp://."
    )
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),  # else kombu writes ./control in the cwd
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # With acks_late, a task still running after the visibility timeout is handed to a second
    # worker; keep it above the longest job (big imports, training).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 6 * 3600, minimum=60)}
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"ml.*": {"queue": "ml"}, "marketing.train_campaign_model": {"queue": "ml"},
                      "marketing.train_uplift_model": {"queue": "ml"}, "marketing.fit_mix_model": {"queue": "ml"},
                      "audiences.build_personas": {"queue": "ml"}, "audiences.train_lookalike": {"queue": "ml"},
                      "audiences.build_recommendations": {"queue": "ml"}, "audiences.analyse_audio": {"queue": "ml"},
                      "audiences.train_audio_models": {"queue": "ml"}, "audiences.train_forecaster": {"queue": "ml"}}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    # Hourly: only customers whose activity or rolling windows changed since the last build.
    "personas-incremental": {
        "task": "audiences.build_personas",
        "schedule": crontab(minute=5),
        "kwargs": {"full": False},
    },
    # The analytics copy DuckDB answers the analytics page from (a no-op while the base is small).
    "analytics-copy": {"task": "audiences.sync_analytics_copy", "schedule": ANALYTICS_COPY_MINUTES * 60.0},
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
    "campaign-models": {"task": "marketing.retrain_models", "schedule": RETRAIN_HOURS * 3600.0},
}
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):  # SQLite list batches write their served-ad rows at once
    del CELERY_BEAT_SCHEDULE["delivery-list-ledger"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}

# The activity table's covering index lists INCLUDE columns for PostgreSQL's index-only scans;
# SQLite builds the same index without them, which is what we want there.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
