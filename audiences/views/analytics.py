"""Analytics page: measures by up to two dimensions, for an audience or the whole base (see audiences/analytics.py)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from accounts.access import viewer_required

from ..analytics import AnalyticsError, chart, check_query, csv_lines, form_choices, form_state, run_query


@require_GET
@viewer_required
def analytics(request):
    """The request lives in the GET parameters (a shareable URL); htmx asks for the results partial only."""
    context = {"errors": {}, "copy_minutes": settings.ANALYTICS_COPY_MINUTES}
    try:
        query = check_query(request.GET)
    except AnalyticsError as exc:
        context.update(errors=exc.errors, state=form_state(request.GET, errors=exc.errors))
    else:
        result = run_query(query)
        context.update(result=result, chart=chart(result), state=form_state(request.GET, query))
    if request.htmx:
        # htmx does not swap a 4xx answer, so the partial naming the wrong parameters comes back as 200;
        # the address bar gets the request without the form's empty fields.
        response = render(request, "audiences/analytics.html#results", context)
        return push_url(response, f"?{query.params()}") if not context["errors"] else response
    context["choices"] = form_choices()
    return render(request, "audiences/analytics.html", context, status=400 if context["errors"] else 200)


@require_GET
@viewer_required
def analytics_csv(request):
    """Every group of the same request as CSV, streamed."""
    try:
        query = check_query(request.GET)
    except AnalyticsError as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(csv_lines(query), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="analytics-{query.start}-to-{query.end}.csv"'
    return response
