"""The cast: alice is an Admin, mark a Marketer, ann an Analyst, nora has no role."""

import contextlib
import os

os.environ.setdefault("DEBUG", "true")

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from accounts.models import Role, set_role

PASSWORD = "correct-horse-battery-staple"

# Hashing with PBKDF2 would dominate the run time of the access matrix.
django_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(username: str, role: str | None):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)
    if role:
        set_role(user, role)
    return user


@pytest.fixture
def alice(db):
    return make_user("alice", Role.ADMIN)


@pytest.fixture
def mark(db):
    return make_user("mark", Role.MARKETER)


@pytest.fixture
def ann(db):
    return make_user("ann", Role.ANALYST)


@pytest.fixture
def nora(db):
    return make_user("nora", None)


@pytest.fixture
def client_for(client):
    """client_for(user) logs the test client in as `user`."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture(autouse=True)
def _eager_celery(settings, tmp_path):
    """Unit tests run tasks in-process; tests marked `worker` start a real worker instead."""
    from config.celery import app

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DELIVERY_SETUP_SECONDS = 0  # tests change delivery rows with .update() too; test_setup.py covers the cache
    settings.BUDGET_CHECK_SECONDS = 0
    # Loaded champions and rates are per process and keyed by ids a later test may reuse: start clean.
    from marketing import rates
    from ml import serving

    serving.forget()
    rates.forget()
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False


def _database_url_for_subprocess() -> str:
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def celery_worker_process(transactional_db, settings, tmp_path):
    """A real `celery worker` process on the test database and the configured broker."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from config.celery import app

    app.conf.task_always_eager = False
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": _database_url_for_subprocess(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # Same broker folders as this process. `make test` points ENCORE_VAR_DIR at a fresh
        # folder, so a developer's running worker cannot take the tests' tasks.
        env["ENCORE_VAR_DIR"] = str(settings.VAR_DIR)
    log = open(tmp_path / "worker.log", "w+")
    hostname = f"test-{os.getpid()}@%h"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,ml", "--pool", "solo",
         "-n", hostname, "-l", "info", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=Path(__file__).resolve().parent.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        log.seek(0)
        if "ready." in log.read():
            break
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    log.seek(0)
    output = log.read()
    if "ready." not in output:
        proc.kill()
        raise RuntimeError(f"Celery worker did not start:\n{output[-3000:]}")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    app.conf.task_always_eager = True


@contextlib.contextmanager
def removing_new_jobs():
    """Around a module fixture's committed data: the jobs and audit entries made meanwhile go too.

    seed_demo records its persona build as a job and its demo audiences in the audit log. Otherwise they
    outlive the module, and a later test that asserts "no job was queued" or reads the audit log finds them.
    """
    from accounts.models import AuditEntry
    from ml.models import Job

    last_job = Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    last_entry = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    try:
        yield
    finally:
        Job.objects.filter(pk__gt=last_job).delete()
        AuditEntry.objects.filter(pk__gt=last_entry).delete()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25):
    """Poll until predicate() is truthy; returns its value or fails with a clear message."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def pytest_sessionfinish(session, exitstatus):
    """Django removes the SQLite test database but not its WAL side files."""
    from django.conf import settings

    for path in settings.VAR_DIR.glob(f"test-encore-{os.getpid()}.sqlite3*"):
        path.unlink(missing_ok=True)
