#!/usr/bin/env bash
# Encore container entrypoint. The first argument is the role:
#
#   web      wait for services, migrate (unless MIGRATE_ON_START=false), run gunicorn
#   worker   wait for services, run a Celery worker on the default and ml queues
#   beat     wait for services, run Celery beat (exactly one per deployment)
#   migrate  wait for services, apply migrations, exit
#   manage   wait for services, run `python manage.py <the rest>`
#
# Anything else is executed as given (`python manage.py createsuperuser`, `bash`);
# a `python manage.py ...` command waits for the database first.
# Extra arguments after a role are passed on to gunicorn / celery / migrate.
set -Eeuo pipefail

APP_DIR="${APP_DIR:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$APP_DIR"

log() { printf '[entrypoint] %s\n' "$*" >&2; }

is_true() {
    case "${1,,}" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

wait_for_services() {
    if is_true "${WAIT_FOR_SERVICES:-true}"; then
        python "$APP_DIR/docker/wait_for_services.py"
    fi
}

remember_role() {
    # Read by docker/healthcheck.py; best effort (a read-only /tmp just skips it).
    printf '%s\n' "$1" >/tmp/encore-role 2>/dev/null || true
}

role="${1:-web}"
if [[ $# -gt 0 ]]; then
    shift
fi

case "$role" in
    web)
        remember_role web
        wait_for_services
        if is_true "${MIGRATE_ON_START:-true}"; then
            log "applying migrations (set MIGRATE_ON_START=false when a migrate job does this)"
            python manage.py migrate --noinput
        fi
        log "starting gunicorn"
        exec gunicorn config.wsgi:application --config "$APP_DIR/docker/gunicorn.conf.py" "$@"
        ;;
    worker)
        remember_role worker
        wait_for_services
        args=(-A config worker -Q "${CELERY_QUEUES:-default,ml}" -l "${CELERY_LOG_LEVEL:-info}")
        if [[ -n "${CELERY_CONCURRENCY:-}" ]]; then
            args+=(--concurrency "$CELERY_CONCURRENCY")
        fi
        if [[ -n "${CELERY_MAX_TASKS_PER_CHILD:-}" ]]; then
            args+=(--max-tasks-per-child "$CELERY_MAX_TASKS_PER_CHILD")
        fi
        if [[ -n "${CELERY_MAX_MEMORY_PER_CHILD:-}" ]]; then
            args+=(--max-memory-per-child "$CELERY_MAX_MEMORY_PER_CHILD")
        fi
        log "starting celery worker"
        exec celery "${args[@]}" "$@"
        ;;
    beat)
        remember_role beat
        wait_for_services
        schedule="${CELERY_BEAT_SCHEDULE:-${ENCORE_VAR_DIR:-/var/lib/encore}/celerybeat-schedule}"
        mkdir -p "$(dirname "$schedule")"
        log "starting celery beat (schedule file $schedule)"
        exec celery -A config beat -l "${CELERY_LOG_LEVEL:-info}" --schedule "$schedule" "$@"
        ;;
    migrate)
        remember_role migrate
        wait_for_services
        log "applying migrations"
        exec python manage.py migrate --noinput "$@"
        ;;
    manage)
        remember_role manage
        wait_for_services
        exec python manage.py "$@"
        ;;
    *)
        # Not a role: run the command itself (role is its first word).
        if [[ "$role" == python* && "${1:-}" == manage.py ]]; then
            wait_for_services
        fi
        exec "$role" "$@"
        ;;
esac
