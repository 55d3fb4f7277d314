"""Block until the database (and Redis, when configured) accept connections.

Run by docker/entrypoint.sh before any role starts. The services are read from
the same Django settings the application uses (DATABASE_URL, CELERY_BROKER_URL,
REDIS_URL), so there is nothing to configure twice. A settings error
(ImproperlyConfigured) fails at once with its message; an unreachable service is
retried until SERVICE_WAIT_TIMEOUT seconds (default 90) have passed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project root, for `config`
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def log(message: str) -> None:
    print(f"[wait] {message}", file=sys.stderr, flush=True)


def redacted(url: str) -> str:
    """host:port/path of a URL, never its password."""
    parts = urlsplit(url)
    host = parts.hostname or parts.path or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path if parts.hostname else ''}"


def wait(name: str, attempt, deadline: float) -> None:
    last_report = 0.0
    while True:
        try:
            attempt()
        except Exception as exc:  # noqa: BLE001 - any failure to connect means "not yet"
            now = time.monotonic()
            if now >= deadline:
                log(f"{name} still unreachable, giving up: {exc}")
                raise SystemExit(1) from None
            if now - last_report >= 5:
                log(f"waiting for {name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
                last_report = now
            time.sleep(1)
        else:
            log(f"{name} is up")
            return


def main() -> None:
    try:
        timeout = float(os.environ.get("SERVICE_WAIT_TIMEOUT", "").strip() or 90)
    except ValueError:
        log(f"SERVICE_WAIT_TIMEOUT={os.environ['SERVICE_WAIT_TIMEOUT']!r} is not a number")
        raise SystemExit(2) from None
    deadline = time.monotonic() + timeout

    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        log(f"configuration error: {exc}")
        raise SystemExit(2) from None

    from django.db import connections

    def database() -> None:
        connection = connections["default"]
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connection.close()

    db = settings.DATABASES["default"]
    where = db.get("HOST") or db.get("NAME")
    wait(f"database ({db['ENGINE'].rsplit('.', 1)[-1]} at {where})", database, deadline)

    redis_urls = []
    for url in (settings.CELERY_BROKER_URL, getattr(settings, "REDIS_URL", None)):
        if url and url.startswith(("redis://", "rediss://", "unix://")) and url not in redis_urls:
            redis_urls.append(url)
    for url in redis_urls:
        import redis

        def ping(url: str = url) -> None:
            client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
            try:
                client.ping()
            finally:
                client.close()

        wait(f"redis ({redacted(url)})", ping, deadline)


if __name__ == "__main__":
    main()
