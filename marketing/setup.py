"""A placement's delivery set-up — its servable ads, plan and caps — held in-process for a few seconds.

The decision path must not rebuild the same configuration from six queries on every request
(DESIGN, "The hot paths"). Each process keeps the set-up per placement for
`DELIVERY_SETUP_SECONDS` and also drops it once a shared version number in the cache
(Redis in production) moves: the process reads the version at most every VERSION_READ_SECONDS
(50 ms), so a request does not pay a cache round trip for it, let alone two (the API checks the
placement, then routes on it), and a change reaches every process within 50 ms of its commit.
Every save or delete of a channel, placement, campaign, ad, cap, plan or rule moves it — through model signals, so admin edits, pages, the API and scripts all
invalidate alike (the one place we use signals: a missed invalidation would serve a stale plan),
and code that changes these rows with queryset `.update()` calls `changed()` itself.

What depends on the clock (flight dates) or on traffic (budgets, caps, memberships) is still
read per request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Prefetch, Q
from django.db.models.signals import m2m_changed, post_delete, post_save

from config.held import refreshed

from .models import Ad, Campaign, Channel, DeliveryPlan, FrequencyCap, Placement, PlanRule

VERSION_KEY = "delivery:setup-version"
VERSION_READ_SECONDS = 0.05


@dataclass
class Setup:
    placement: Placement
    ads: list[Ad]  # active ads of exploring or live campaigns on this placement (flight checked per request)
    plan: DeliveryPlan | None
    caps: list[FrequencyCap]  # every cap that can bear on serving these ads here

    def servable(self, now: datetime) -> list[Ad]:
        """The set-up's ads whose campaign is inside its flight now (Ad.objects.servable, without a query)."""
        return [a for a in self.ads if (a.campaign.starts_at is None or a.campaign.starts_at <= now)
                and (a.campaign.ends_at is None or a.campaign.ends_at > now)]


_held: dict[str, tuple[float, object, Setup | None]] = {}
_version: tuple[float, object] = (0.0, None)  # (read again after, the shared version read)
_reloading = threading.Lock()


def setup_for(slug: str) -> Setup | None:
    """The placement's set-up (None: no such placement), from this process's copy while it is fresh.

    One thread of the process reloads it at a time (a load is ~6 ms of CPU): when a copy only
    expires, the other threads go on with it until the new one is in; when the shared version
    moved (an edit), they wait for the new one. Without this, every thread that met the expired
    copy reloaded it too — 4 % of a decision's Python in bench/decisions.py's 8-thread workers.
    """
    ttl = settings.DELIVERY_SETUP_SECONDS
    if not ttl:
        return load(slug)
    version = _shared_version()
    held = _held.get(slug)
    if held and held[1] == version:
        if held[0] > time.monotonic():
            return held[2]
        return refreshed(_reloading, held[2], lambda: _reload(slug, version, ttl))  # expired: old, not wrong
    with _reloading:  # edited, or never read: wait for whoever reloads, then look again
        return _reload(slug, version, ttl)


def _reload(slug: str, version: object, ttl: int) -> Setup | None:
    held = _held.get(slug)
    if held and held[1] == version and held[0] > time.monotonic():
        return held[2]
    found = load(slug)
    _held[slug] = (time.monotonic() + ttl, version, found)
    return found


def _shared_version() -> object:
    global _version
    now = time.monotonic()
    if now >= _version[0]:
        _version = (now + VERSION_READ_SECONDS, cache.get(VERSION_KEY, 0))
    return _version[1]


def _forget() -> None:
    global _version
    _held.clear()
    _version = (0.0, None)


def load(slug: str) -> Setup | None:
    placement = Placement.objects.select_related("channel").filter(slug=slug).first()
    if placement is None:
        return None
    ads = list(Ad.objects.filter(placements=placement, status=Ad.Status.ACTIVE, campaign__status__in=Campaign.SERVING)
               .select_related("campaign", "promoted_item"))
    plan = (DeliveryPlan.objects.filter(placement=placement)
            .prefetch_related(Prefetch("rules", PlanRule.objects.select_related("audience")), "rules__ads", "rest_ads").first())
    caps = list(FrequencyCap.objects.filter(
        Q(level=FrequencyCap.Level.SERVICE)
        | Q(level=FrequencyCap.Level.CHANNEL, channel_id=placement.channel_id)
        | Q(level=FrequencyCap.Level.PLACEMENT, placement_id=placement.pk)
        | Q(level=FrequencyCap.Level.CAMPAIGN, campaign_id__in={a.campaign_id for a in ads})
        | Q(level=FrequencyCap.Level.AD, ad_id__in=[a.pk for a in ads])))
    return Setup(placement, ads, plan, caps)


def changed(**_) -> None:
    """This process drops its set-ups at once, every process once the change commits (the shared version moves).

    After the commit, not before: a process reloading in between would otherwise keep the old
    rows under the new version until its copy expires.
    """
    _forget()
    transaction.on_commit(_move_version)


def _move_version() -> None:
    _forget()
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # no version yet
        cache.set(VERSION_KEY, 1, timeout=None)


def connect() -> None:
    for model in (Channel, Placement, Campaign, Ad, FrequencyCap, DeliveryPlan, PlanRule):
        post_save.connect(changed, sender=model, dispatch_uid=f"setup-{model.__name__}-save")
        post_delete.connect(changed, sender=model, dispatch_uid=f"setup-{model.__name__}-delete")
    for through in (Ad.placements.through, PlanRule.ads.through, DeliveryPlan.rest_ads.through):
        m2m_changed.connect(changed, sender=through, dispatch_uid=f"setup-{through.__name__}")
