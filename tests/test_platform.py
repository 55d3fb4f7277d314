"""Start-up behaviour: settings from the environment, deploy checks, and a light web process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "OMP_WAIT_POLICY", "NUMBA_CACHE_DIR",
                                                      "DATABASE_WORK_MEM", "DATABASE_PARALLEL_WORKERS"}}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)


SETUP = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"


def test_importing_the_web_urls_loads_neither_torch_nor_xgboost():
    result = run_python(SETUP + "import sys, config.urls; print(sorted(m for m in ('torch', 'xgboost', 'sklearn') if m in sys.modules))",
                        DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("warm, loaded", [("true", "['marketing.decisions', 'sklearn', 'xgboost']"), ("false", "[]")])
def test_the_wsgi_application_loads_the_decision_path_and_the_model_libraries_at_start_up(warm, loaded):
    # A worker gunicorn forks (or recycles) must not spend its first model-ranked decision importing scikit-learn.
    wanted = "('torch', 'xgboost', 'sklearn', 'marketing.decisions')"
    result = run_python(f"import sys, threading, config.wsgi; from django.db import connection; "
                        f"print(sorted(m for m in {wanted} if m in sys.modules)); print(connection.connection, threading.active_count())",
                        DEBUG="true", WSGI_WARM=warm)
    assert result.returncode == 0, result.stderr
    modules, state = result.stdout.strip().splitlines()
    assert modules == loaded  # never torch: the web process has no use for it
    assert state == "None 1"  # nothing a forked worker would share with the preloading master: no connection, no thread


@pytest.mark.parametrize("database, ledger", [("postgres://postgres@127.0.0.1:5432/encore", "marketing.compact_reservations"),
                                               ("", "none")])
def test_a_settings_module_built_on_ours_sets_up_and_keeps_the_beat_schedule(database, ledger):
    """bench.bench_settings imports config.settings; django.setup() with it must not trip over config's Celery app.

    The delivery-list write-out runs on PostgreSQL only (SQLite batches write their rows at once)."""
    result = run_python("import django; django.setup(); from config.celery import app; s = app.conf.beat_schedule; "
                        "print(s.get('delivery-list-ledger', {}).get('task', 'none'), s['analytics-copy']['schedule'])",
                        DEBUG="true", DJANGO_SETTINGS_MODULE="bench.bench_settings", ANALYTICS_COPY_MINUTES="7",
                        **({"DATABASE_URL": database} if database else {}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [ledger, "420.0"]


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "DEBUG": "false", "SECRET_KEY": "x" * 30 + "-a-long-production-secret-for-the-check",
             "ALLOWED_HOSTS": "encore.example.com"}, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout + result.stderr


@pytest.mark.parametrize("env,message", [
    ({"DEBUG": "false"}, "SECRET_KEY is required when DEBUG is off"),
    ({"DEBUG": "false", "SECRET_KEY": "short"}, "SECRET_KEY must be at least 50 characters"),
    ({"DEBUG": "false", "SECRET_KEY": "k" * 60}, "ALLOWED_HOSTS is required"),
    ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
    ({"DEBUG": "true", "DATABASE_URL": "mysql://root@localhost/encore"}, "DATABASE_URL must name PostgreSQL or SQLite"),
    ({"DEBUG": "true", "DATABASE_URL": "nonsense"}, "DATABASE_URL='nonsense' is not a valid database URL"),
    ({"DEBUG": "true", "CELERY_BROKER_URL": "kafka://x"}, "CELERY_BROKER_URL='kafka://x'"),
    ({"DEBUG": "true", "REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379' must start with redis://"),
    ({"DEBUG": "true", "DB_CONN_MAX_AGE": "-1"}, "DB_CONN_MAX_AGE=-1 must be at least 0"),
    ({"DEBUG": "true", "DATABASE_URL": "postgres://u@db/encore", "DATABASE_WORK_MEM": "lots"}, "DATABASE_WORK_MEM='lots'"),
    ({"DEBUG": "true", "DATABASE_URL": "postgres://u@db/encore", "DATABASE_PARALLEL_WORKERS": "-1"},
     "DATABASE_PARALLEL_WORKERS=-1 must be at least 0"),
    ({"DEBUG": "true", "ANALYTICS_COPY": "sometimes"}, "ANALYTICS_COPY='sometimes': use auto, on or off"),
    ({"DEBUG": "true", "ANALYTICS_COPY_MEMORY": "lots"}, "ANALYTICS_COPY_MEMORY='lots'"),
    ({"DEBUG": "true", "ANALYTICS_COPY_MINUTES": "0"}, "ANALYTICS_COPY_MINUTES=0 must be at least 1"),
])
def test_bad_settings_stop_start_up_with_a_message_naming_the_variable(env, message):
    result = run_python(SETUP, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_redis_and_postgres_are_chosen_by_environment_alone():
    result = run_python(
        SETUP + "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'], s.CELERY_BROKER_URL)",
        DEBUG="true", DATABASE_URL="postgres://u@db:5432/encore", REDIS_URL="redis://cache:6379/1", CELERY_BROKER_URL="redis://cache:6379/0",
    )
    assert result.stdout.split() == ["django.db.backends.postgresql", "config.cache.TolerantRedisCache", "redis://cache:6379/0"]


def test_postgres_connections_get_the_configured_work_mem_and_openmp_threads_wait_passively():
    result = run_python(
        SETUP + "import os; from django.conf import settings as s; print(s.DATABASES['default']['OPTIONS']['options'], os.environ['OMP_WAIT_POLICY'])",
        DEBUG="true", DATABASE_URL="postgres://u@db:5432/encore", DATABASE_WORK_MEM="128MB", DATABASE_PARALLEL_WORKERS="3",
    )
    assert result.stdout.split() == ["-c", "work_mem=128MB", "-c", "max_parallel_workers_per_gather=3", "PASSIVE"], result.stderr


def test_parallel_query_workers_default_to_half_the_hosts_cores():
    result = run_python(
        SETUP + "import os; from django.conf import settings as s; print(s.DATABASES['default']['OPTIONS']['options'], os.cpu_count())",
        DEBUG="true", DATABASE_URL="postgres://u@db:5432/encore",
    )
    *options, cores = result.stdout.split()
    assert options[-1] == f"max_parallel_workers_per_gather={max(1, int(cores) // 2)}", result.stderr


@pytest.mark.parametrize("url", ["/customers/123456789012345678901234567890/", "/campaigns/99999999999999999999/",
                                 "/api/v1/jobs/99999999999999999999"])
def test_an_id_past_64_bits_in_a_url_is_not_found(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 404


def test_numba_caches_its_kernels_under_the_var_folder(tmp_path):
    result = run_python(SETUP + "print(os.environ['NUMBA_CACHE_DIR'])", DEBUG="true", ENCORE_VAR_DIR=str(tmp_path))
    assert result.stdout.strip() == str(tmp_path.resolve() / "numba-cache"), result.stderr
