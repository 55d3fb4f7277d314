"""Container health check (the image's HEALTHCHECK), aware of the container's role.

The role comes from ENCORE_ROLE when set, else from /tmp/encore-role, which
docker/entrypoint.sh writes when it starts a role.

- web:    GET /healthz on the local gunicorn must answer 200. The Host header is
          the first ALLOWED_HOSTS entry (Django answers 400 to any other), and
          X-Forwarded-Proto: https keeps SECURE_SSL_REDIRECT from answering 301.
- worker: the local Celery node must answer a broadcast ping (Redis/AMQP brokers only;
          the filesystem transport has no broadcast, so there it is skipped).
- beat, migrate, one-off commands: healthy while running (nothing to probe).

Exit status 0 is healthy, 1 unhealthy.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
from pathlib import Path

ROLE_FILE = Path("/tmp/encore-role")


def role() -> str:
    value = os.environ.get("ENCORE_ROLE", "").strip()
    if value:
        return value
    try:
        return ROLE_FILE.read_text().strip()
    except OSError:
        return ""


def host_header() -> str:
    for host in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = host.strip()
        if not host or host == "*":
            continue
        return host.lstrip(".")  # ".example.com" allows example.com itself
    return "localhost"


def check_web() -> int:
    port = int(os.environ.get("PORT", "").strip() or 8000)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "GET",
            "/healthz",
            headers={"Host": host_header(), "X-Forwarded-Proto": "https", "User-Agent": "encore-healthcheck"},
        )
        status = connection.getresponse().status
    except OSError as exc:
        print(f"web: no answer on port {port}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"web: /healthz answered {status}", file=sys.stderr)
        return 1
    return 0


def check_worker() -> int:
    broker = os.environ.get("CELERY_BROKER_URL", "").strip() or "filesystem://"
    if broker.startswith(("filesystem://", "memory://")):
        return 0  # no broadcast on these transports
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.celery import app

    node = f"celery@{socket.gethostname()}"
    try:
        replies = app.control.ping(destination=[node], timeout=5.0)
    except Exception as exc:  # noqa: BLE001 - broker down or misconfigured: unhealthy
        print(f"worker: ping failed: {exc}", file=sys.stderr)
        return 1
    if not any(node in reply for reply in replies):
        print(f"worker: {node} did not answer a ping", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    current = role()
    if current == "web":
        return check_web()
    if current == "worker":
        return check_worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
