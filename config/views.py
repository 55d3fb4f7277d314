from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request):
    """Liveness for load balancers and container checks: the process runs and the database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database error means not healthy
        return JsonResponse({"status": "error", "database": type(exc).__name__}, status=503)
    return JsonResponse({"status": "ok"})


def api_not_found(request, *args, **kwargs):
    """An API URL that names nothing: clients parse JSON, so they get `detail` as from any API view."""
    return JsonResponse({"detail": "Not found."}, status=404)
