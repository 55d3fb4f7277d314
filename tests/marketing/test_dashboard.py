"""The dashboard's daily trend: plays, the listeners who played them, and revenue."""

from datetime import timedelta
from decimal import Decimal

from django.core.cache import cache
from django.utils import timezone

from audiences.models import Activity, ActivityKind, Customer
from marketing.views.dashboard import activity_trend


def test_listeners_are_the_customers_who_played_that_day_and_revenue_counts_purchases(db):
    cache.clear()
    ann, bob, cat = (Customer.objects.create(external_id=n) for n in ("ann", "bob", "cat"))
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    rows = [(ann, ActivityKind.PLAY, 0), (ann, ActivityKind.PLAY, 0), (bob, ActivityKind.PLAY, 0),
            (cat, ActivityKind.SKIP, 0), (cat, ActivityKind.PURCHASE, "9.99"), (bob, ActivityKind.SUBSCRIBE, "4.99")]
    Activity.objects.bulk_create([Activity(key=i, customer=c, kind=k, value=Decimal(v), occurred_at=noon + timedelta(minutes=i))
                                  for i, (c, k, v) in enumerate(rows)])
    trend = activity_trend()
    assert trend["plays"] == [3] and trend["listeners"] == [2]  # cat skipped and bought, but played nothing
    assert trend["revenue"] == [14.98] and len(trend["days"]) == 1
