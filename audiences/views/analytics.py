"""Analytics page: measures by up to two dimensions, for an audience or the whole base."""

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from accounts.access import viewer_required


@require_GET
@viewer_required
def analytics(request):  # placeholder until the analytics page lands
    return HttpResponse("Analytics")


@require_GET
@viewer_required
def analytics_csv(request):  # placeholder until the analytics page lands
    return HttpResponse("measure\n", content_type="text/csv")
