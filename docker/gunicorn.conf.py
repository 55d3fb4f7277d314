"""Gunicorn settings for the `web` role, read from the environment.

Loaded by docker/entrypoint.sh with `--config /app/docker/gunicorn.conf.py`. Every
knob has a container-friendly default; set the variable to change it. An empty
value counts as unset, so compose can pass `${VAR:-}` through untouched.

Gunicorn also reads, by itself: FORWARDED_ALLOW_IPS (which peers may set
X-Forwarded-* headers; default 127.0.0.1,::1) and GUNICORN_CMD_ARGS (extra flags).
"""

import os


def _int(name: str, default: int, minimum: int = 0) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name}={value!r} is not an integer.") from None
    if number < minimum:
        raise SystemExit(f"gunicorn.conf.py: {name}={number} must be at least {minimum}.")
    return number


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours cpusets (docker --cpuset-cpus)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


bind = os.environ.get("GUNICORN_BIND", "").strip() or f"0.0.0.0:{_int('PORT', 8000, 1)}"

# Each worker is a full Django process. 2*CPU+1 is gunicorn's rule of thumb, capped
# because os.sched_getaffinity sees the host's CPUs, not a CPU quota.
workers = _int("GUNICORN_WORKERS", _int("WEB_CONCURRENCY", min(2 * _cpus() + 1, 9), 1), 1)
# gthread: a slow client (a large CSV upload) holds a thread, not a whole worker,
# and the worker keeps its heartbeat while a long request runs.
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4, 1)
timeout = _int("GUNICORN_TIMEOUT", 120, 1)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30, 1)
keepalive = _int("GUNICORN_KEEPALIVE", 5, 0)

# The master imports the application (config/wsgi.py warms it: views, decision engine, the model
# libraries) before forking, so every worker — the ones max_requests recycles too — starts warm and
# shares those pages. Code changes need a restart, not a HUP.
preload_app = True

# Recycle workers now and then so slow leaks (pandas, numpy buffers) cannot grow forever.
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000, 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 100, 0)

# The heartbeat file must not live on the container's overlay filesystem (it can
# block on fchmod); /dev/shm is a tmpfs in every Docker container.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Logs go to the container's stdout/stderr; the platform collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "").strip() or "info"
access_log_format = (
    '%(h)s "%({x-forwarded-for}i)s" %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
)
capture_output = True
