"""Delivery's background work: response rates and the end of exploration (every minute)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="marketing.refresh_rates", acks_late=True, ignore_result=True)
def refresh_rates() -> dict:
    """Recount response rates per ad and segment and close finished explorations (idempotent: a recount)."""
    from . import rates

    return rates.refresh()
