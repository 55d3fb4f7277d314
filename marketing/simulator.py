"""The traffic simulator: listeners meet placements, the decision engine serves them, and they answer.

`manage.py simulate_traffic` runs it against the demo (marketing/demo.py) in-process, through the
same entry points external systems use: `decisions.decide` for every request and
`api.record_events` for what followed (source "simulator").

Who arrives: in-app placements (banner, player) see listeners in proportion to their recent
activity, so loyal and active listeners come often and lapsed ones rarely; outbound placements
(push, e-mail) are sends, so anyone may be picked.

How they answer — the hidden ground truth the platform has to learn: each ad has a true click
probability and true follow-up probabilities (a conversion, a play, a purchase) that depend on
the listener's persona (value segment, age, taste, region, plan). Some ads are truly better for
some segments: the student discount converts young casual listeners, the family plan loyal ones,
the duo plan active ones; the hero banner plays best with K-pop fans, the dance challenge with
young (and hip-hop) listeners; the comeback offer wins back free listeners. Every served ad gets
an impression event; clicks and follow-ups come seconds later, each once (the event id is the
decision, the ad and the type, so a resent batch adds nothing).

What they do anyway — the organic baseline that control groups measure against: within a
campaign's attribution window a listener may answer its goal without any ad (free listeners
subscribe now and then, the more engaged the likelier; K-pop fans play the new single anyway;
nobody clicks an ad they were not shown). The chance depends on the listener, never on the ad, and
is the same in both groups: a held-out listener's organic outcome is tied to the control decision
(no ad), a served listener's to the decision and the ad (as an app attributing by last touch
would); a served listener who answers the ad as well does it once. So the campaign's true effect
is P(answer the ad) × (1 − P(organic)), and the dashboard's incremental lift can find it.

Robust by design: each decision is its own transaction; a busy database (SQLite's single writer
while the web server and the worker write) or a lost connection backs off and goes on; events
wait in a bounded buffer until they are due and are retried when a batch fails. Memory stays
flat: counters, the due events, and two arrays of the customers (reloaded every 10 minutes).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from django.db import DatabaseError, OperationalError, close_old_connections, connection
from django.utils import timezone

from audiences.models import Customer, Persona

from .api import record_events
from .decisions import decide
from .models import Campaign, Channel, Decision, Placement

logger = logging.getLogger(__name__)

SOURCE = "simulator"
# Share of requests per placement slug; placements the demo does not know get a small share each.
PLACEMENT_WEIGHTS = {"home-banner": 0.45, "push": 0.25, "email": 0.20, "player-preroll": 0.10}
OTHER_PLACEMENT_WEIGHT = 0.05
OUTBOUND = {Channel.Kind.PUSH, Channel.Kind.EMAIL, Channel.Kind.SMS}
RELOAD_SECONDS = 600
MAX_PENDING = 50_000  # due events kept while the database is busy; beyond it the oldest are dropped
BATCH_EVENTS = 500
ORGANIC_WITHIN = 300.0  # seconds: organic outcomes come within 5 minutes (inside a shorter window: within 90 % of it)


# -- who the listener is ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What the ground truth looks at: a customer's persona, reduced to a few traits."""

    segment: str = "casual"
    age: int | None = None
    region: str = ""
    subscriber: bool = False
    top_genre: str = ""
    kpop: float = 0.0  # share of K-pop in their listening
    hiphop: float = 0.0  # share of hip-hop, trap and drill
    lapsed: bool = False  # no activity in 30 days

    @classmethod
    def of(cls, customer: Customer) -> "Profile":
        try:
            persona = customer.persona
        except Persona.DoesNotExist:
            persona = None
        genres = (persona.genres if persona else None) or {}
        return cls(
            segment=(persona.segment if persona else "") or "casual",
            age=customer.age,
            region=customer.region,
            subscriber=customer.is_subscriber,
            top_genre=persona.top_genre if persona else "",
            kpop=float(genres.get("k-pop", 0.0)),
            hiphop=float(sum(genres.get(g, 0.0) for g in ("hip-hop", "trap", "drill"))),
            lapsed=persona is None or persona.activities_30d == 0,
        )

    @property
    def young(self) -> bool:
        return self.age is not None and self.age <= 24


# -- how they answer: the hidden ground truth -----------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """P(click | impression), then for each follow-up (type, P(it | click), value)."""

    click: float
    then: tuple[tuple[str, float, float], ...] = ()


SEGMENT = {"loyal": 0, "active": 1, "casual": 2}


def _by_segment(p: Profile, loyal: float, active: float, casual: float) -> float:
    return (loyal, active, casual)[SEGMENT.get(p.segment, 2)]


def _student(p: Profile) -> Truth:
    # Half-price Premium: irresistible to young listeners on the free plan, pointless to subscribers.
    if p.subscriber:
        return Truth(0.02)
    return Truth(0.14 if p.young else 0.04, (("conversion", 0.40 if p.young else 0.08, 5.99),))


def _family(p: Profile) -> Truth:
    # An upgrade for households: loyal (already paying, older) listeners take it.
    age = 1.3 if (p.age or 0) >= 30 else 0.3 if p.young else 1.0
    return Truth(_by_segment(p, 0.12, 0.07, 0.03), (("conversion", min(0.9, _by_segment(p, 0.35, 0.15, 0.04) * age), 16.99),))


def _duo(p: Profile) -> Truth:
    return Truth(_by_segment(p, 0.06, 0.10, 0.035), (("conversion", _by_segment(p, 0.15, 0.25, 0.08), 14.99),))


def _kpop_premium(p: Profile) -> Truth:
    return Truth(0.06 + 0.3 * p.kpop, (("conversion", 0.0 if p.subscriber else 0.22, 10.99),))


def _out_now(p: Profile) -> Truth:
    # The hero banner of the single: K-pop fans play it, and some buy the lightstick.
    return Truth(0.02 + 0.25 * p.kpop, (("play", 0.75, 0.0), ("purchase", 0.02 + 0.1 * p.kpop, 49.99)))


def _dance(p: Profile) -> Truth:
    # The crossover: young listeners, hip-hop fans (and the south) join the challenge.
    click = (0.09 if p.young else 0.02) * (1.4 if p.hiphop >= 0.2 else 1.0) * (1.2 if p.region == "south" else 1.0)
    return Truth(click + 0.1 * p.kpop, (("play", 0.55, 0.0),))


def _chart(p: Profile) -> Truth:
    return Truth(0.015 + 0.1 * p.kpop, (("play", 0.6, 0.0),))


def _lyrics(p: Profile) -> Truth:
    return Truth(0.01 + 0.08 * p.kpop, (("play", 0.5, 0.0),))


def _miss_you(p: Profile) -> Truth:
    return Truth(0.05 if p.lapsed else 0.02, (("play", 0.5, 0.0),))


def _mixes(p: Profile) -> Truth:
    # Personal mixes bring back those with a clear taste, more so the ones who used to pay.
    click = (0.07 if p.top_genre else 0.03) * _by_segment(p, 1.3, 1.2, 1.0)
    return Truth(click, (("play", 0.7, 0.0),))


def _comeback(p: Profile) -> Truth:
    # A price offer: free listeners bite, former subscribers much less.
    return Truth(_by_segment(p, 0.03, 0.03, 0.09), (("conversion", 0.25, 2.97), ("play", 0.4, 0.0)))


TRUTHS: dict[str, Callable[[Profile], Truth]] = {
    "Student discount": _student, "Family plan": _family, "Duo for two": _duo, "K-pop without ads": _kpop_premium,
    "Out now: Supernova Heart": _out_now, "Dance challenge": _dance, "Chart debut": _chart, "Lyric card": _lyrics,
    "We miss you": _miss_you, "Your mixes are waiting": _mixes, "3 months for 0.99": _comeback,
}
# Ads the demo does not know (an operator's own) answer at a plain rate for their campaign's goal.
DEFAULT_FOLLOW_UP = {
    Campaign.Goal.STREAM: (("play", 0.5, 0.0),),
    Campaign.Goal.CONVERSION: (("conversion", 0.1, 9.99),),
    Campaign.Goal.REVENUE: (("purchase", 0.1, 24.99),),
    Campaign.Goal.CLICK: (),
}


def truth(ad_name: str, goal: str, profile: Profile) -> Truth:
    """The true response of this listener to this ad (what the platform never sees)."""
    known = TRUTHS.get(ad_name)
    return known(profile) if known else Truth(0.02, DEFAULT_FOLLOW_UP.get(goal, ()))


def answer(ad_name: str, goal: str, profile: Profile, rng: random.Random) -> list[tuple[str, float, float]]:
    """What one listener does after seeing an ad: [(event type, value, seconds after the impression)]."""
    true = truth(ad_name, goal, profile)
    done = [("impression", 0.0, 0.0)]
    if rng.random() >= min(true.click, 1.0):
        return done
    clicked_after = rng.uniform(1.0, 20.0)
    done.append(("click", 0.0, clicked_after))
    for kind, probability, value in true.then:
        if rng.random() < probability:
            done.append((kind, value, clicked_after + rng.uniform(5.0, 90.0)))
    return done


# -- what they do anyway: the organic baseline ----------------------------------------------------------


def baseline(goal: str, profile: Profile) -> tuple[tuple[str, float, float], ...]:
    """What this listener does by themselves within a campaign's window, ad or no ad: ((type, P, value), ...)."""
    if goal in (Campaign.Goal.CONVERSION, Campaign.Goal.REVENUE):
        # Free listeners subscribe to the standard plan now and then, the engaged ones likelier; payers rarely upgrade.
        if profile.subscriber:
            chance = 0.003
        elif profile.lapsed:
            chance = 0.006
        else:
            chance = _by_segment(profile, 0.03, 0.02, 0.012)
        return (("conversion", chance, 9.99),)
    if goal == Campaign.Goal.STREAM:
        return (("play", 0.015 + 0.15 * profile.kpop, 0.0),)  # fans find the single by themselves
    return ()  # a click needs the ad


def organic(goal: str, profile: Profile, rng: random.Random, window_seconds: float) -> list[tuple[str, float, float]]:
    """What one listener does anyway after a decision: [(event type, value, seconds after it)], inside the window."""
    latest = max(1.0, min(ORGANIC_WITHIN, 0.9 * window_seconds))
    return [(kind, value, rng.uniform(min(5.0, latest), latest))
            for kind, chance, value in baseline(goal, profile) if rng.random() < chance]


def _reconnect_if_broken() -> None:
    """Drop a connection the error left unusable; the next query opens a fresh one (never inside a caller's transaction)."""
    if not connection.in_atomic_block:
        close_old_connections()


# -- the loop -----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts since the start (and since the last summary, for the rate)."""

    decisions: int = 0
    served: int = 0
    events: int = 0  # created
    sent: int = 0  # posted (a replay is sent but not created)
    busy: int = 0
    errors: int = 0
    dropped: int = 0
    reasons: Counter = field(default_factory=Counter)
    types: Counter = field(default_factory=Counter)


class Simulator:
    """Makes decisions at a steady rate and posts the listeners' answers when they are due."""

    def __init__(self, *, rate: float = 5.0, seed: int | None = None, log: Callable[[str], None] = logger.info,
                 summary_every: float = 30.0):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.rng = random.Random(seed)
        self.log = log
        self.summary_every = summary_every
        self.tally = Tally()
        self._pending: list[tuple[float, int, dict]] = []  # (due, seq, event item), a heap
        self._seq = itertools.count()
        self._loaded_at = -RELOAD_SECONDS
        self._backoff = 0.0
        self._placements: list[Placement] = []
        self._placement_cum: list[float] = []
        self._campaigns: dict[int, tuple[str, int]] = {}  # goal and attribution minutes, for control decisions

    # what there is to simulate
    def load(self) -> None:
        """Placements and customers with their arrival weights (again every RELOAD_SECONDS: imports add customers)."""
        import numpy as np

        placements = list(Placement.objects.select_related("channel").order_by("slug"))
        weights = [PLACEMENT_WEIGHTS.get(p.slug, OTHER_PLACEMENT_WEIGHT) for p in placements]
        self._placements, self._placement_cum = placements, list(itertools.accumulate(weights))
        self._campaigns = {pk: (goal, minutes) for pk, goal, minutes in
                           Campaign.objects.values_list("pk", "goal", "attribution_minutes")}
        rows = np.array(list(Customer.objects.order_by("pk").values_list("pk", "persona__activities_30d")), dtype=float)
        if len(rows) == 0:
            self._customers, self._active_cum = np.zeros(0, dtype=np.int64), np.zeros(0)
        else:
            self._customers = rows[:, 0].astype(np.int64)
            activity = np.nan_to_num(rows[:, 1], nan=0.0)
            # In-app visits follow recent activity; a lapsed listener still opens the app now and then.
            self._active_cum = np.cumsum(0.2 + activity)
        self._loaded_at = time.monotonic()

    def pick(self) -> tuple[Placement, int] | None:
        """A placement and the customer it asks for."""
        if not self._placements or not len(self._customers):
            return None
        placement = self._placements[bisect.bisect_right(self._placement_cum, self.rng.random() * self._placement_cum[-1])]
        if placement.channel.kind in OUTBOUND:
            index = self.rng.randrange(len(self._customers))
        else:
            index = int(self._active_cum.searchsorted(self.rng.random() * self._active_cum[-1], side="right"))
            index = min(index, len(self._customers) - 1)
        return placement, int(self._customers[index])

    # one request
    def step(self, now: datetime | None = None) -> bool:
        """One decision and its answers (queued until due). False when the database said no."""
        if time.monotonic() - self._loaded_at >= RELOAD_SECONDS:
            self.load()
        picked = self.pick()
        if picked is None:
            return False
        placement, customer_id = picked
        decide_rng = random.Random(self.rng.random())
        answer_rng = random.Random(self.rng.random())
        try:
            customer = Customer.objects.select_related("persona").filter(pk=customer_id).first()
            if customer is None:  # deleted since the last load
                self._loaded_at = -RELOAD_SECONDS
                return False
            now = now or timezone.now()
            decision, ads = decide(customer, placement, now=now, rng=decide_rng)
        except OperationalError as exc:
            self._busy(exc)
            return False
        except DatabaseError as exc:  # e.g. a customer deleted mid-decision: count it, go on
            self.tally.errors += 1
            logger.warning("simulator: decision failed: %s", exc)
            _reconnect_if_broken()
            return False
        self._backoff = 0.0
        self.tally.decisions += 1
        self.tally.reasons[decision.reason] += 1
        self.tally.served += len(ads)
        profile = Profile.of(customer)
        due = time.monotonic()

        def queue(key: str, kind: str, value: float, after: float, ad_id: int | None) -> None:
            item = {"id": key, "type": kind, "customer": customer.external_id, "decision": str(decision.pk),
                    "ad": ad_id, "value": f"{value:.2f}", "occurred_at": (now + timedelta(seconds=after)).isoformat()}
            heapq.heappush(self._pending, (due + after, next(self._seq), item))

        for ad in ads:
            answered = answer(ad.name, ad.campaign.goal, profile, answer_rng)
            for kind, value, after in answered:
                queue(f"sim:{decision.pk}:{ad.pk}:{kind}", kind, value, after, ad.pk)
            window = ad.campaign.attribution_minutes * 60
            for kind, value, after in organic(ad.campaign.goal, profile, answer_rng, window):
                if kind not in {k for k, _, _ in answered}:  # who answered the ad as well does it once
                    queue(f"sim:{decision.pk}:{ad.pk}:organic:{kind}", kind, value, after, ad.pk)
        held = decision.context.get("control") if decision.reason == Decision.Reason.CONTROL else None
        if held and (campaign := self._campaign(held["campaign"])):
            goal, minutes = campaign
            for kind, value, after in organic(goal, profile, answer_rng, minutes * 60):
                queue(f"sim:{decision.pk}:organic:{kind}", kind, value, after, None)
        while len(self._pending) > MAX_PENDING:  # the database has been away for long: forget the oldest
            heapq.heappop(self._pending)
            self.tally.dropped += 1
        return True

    def _campaign(self, pk: int) -> tuple[str, int] | None:
        """A campaign's goal and attribution minutes (one created since the last load is read once)."""
        if pk not in self._campaigns:
            try:
                found = Campaign.objects.filter(pk=pk).values_list("goal", "attribution_minutes").first()
            except DatabaseError:  # busy or gone: this decision's organic outcome is lost, the run goes on
                _reconnect_if_broken()
                return None
            if found is None:
                return None
            self._campaigns[pk] = found
        return self._campaigns[pk]

    def flush(self, *, everything: bool = False) -> bool:
        """Post the events that are due (all of them with `everything`); False when the database was busy."""
        now = time.monotonic()
        while self._pending and (everything or self._pending[0][0] <= now):
            batch = []
            while self._pending and len(batch) < BATCH_EVENTS and (everything or self._pending[0][0] <= now):
                batch.append(heapq.heappop(self._pending))
            try:
                body, _ = record_events([item for _, _, item in batch], source=SOURCE)
            except OperationalError as exc:
                for entry in batch:  # they go back and are sent again: their ids make the retry harmless
                    heapq.heappush(self._pending, entry)
                self._busy(exc)
                return False
            self.tally.sent += len(batch)
            self.tally.events += body.get("created", 0)
            for _, _, item in batch:
                self.tally.types[item["type"]] += 1
            if body.get("rejected"):
                self.tally.errors += len(body["rejected"])
                logger.warning("simulator: %d events rejected, first: %s", len(body["rejected"]), body["rejected"][0])
        return True

    def _busy(self, exc: Exception) -> None:
        self.tally.busy += 1
        _reconnect_if_broken()
        self._backoff = min(max(self._backoff * 2, 0.25), 10.0)
        logger.info("simulator: database busy (%s), backing off %.2f s", exc, self._backoff)
        time.sleep(self._backoff)

    def summary(self, elapsed: float, since: "Tally | None" = None) -> str:
        t = self.tally
        recent = t.decisions - (since.decisions if since else 0)
        reasons = " ".join(f"{k}={v}" for k, v in sorted(t.reasons.items())) or "-"
        types = " ".join(f"{k}={v}" for k, v in sorted(t.types.items())) or "-"
        return (f"simulator: {t.decisions} decisions ({recent / max(elapsed, 1e-9):.1f}/s), {t.served} ads served, "
                f"{t.events} events created ({types}); reasons {reasons}; busy {t.busy}, errors {t.errors}"
                + (f", dropped {t.dropped}" if t.dropped else "") + f", waiting {len(self._pending)}")

    def run(self, *, duration: float | None = None, once: int | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> Tally:
        """Until `duration` seconds have passed, `once` decisions were made, or should_stop() says so.

        With `once` the decisions follow each other at once (tests); otherwise at `rate` per second,
        without catching up in a burst after a stall.
        """
        self.load()
        if not self._placements or not len(self._customers):
            raise RuntimeError("nothing to simulate: run `manage.py seed_demo` and `manage.py seed_campaigns` first")
        started = last_summary = last_flush = time.monotonic()
        marker = Tally()
        next_at = started
        while not should_stop():
            clock = time.monotonic()
            if duration is not None and clock - started >= duration:
                break
            if once is not None:
                if self.tally.decisions >= once:
                    break
            elif clock < next_at:
                time.sleep(min(next_at - clock, 0.25))
                continue
            else:
                next_at = max(next_at + 1.0 / self.rate, clock - 1.0)
            self.step()
            if len(self._pending) >= BATCH_EVENTS or clock - last_flush >= 1.0:
                self.flush()
                last_flush = clock
            if clock - last_summary >= self.summary_every:
                self.log(self.summary(clock - last_summary, marker))
                marker = Tally(decisions=self.tally.decisions)
                last_summary = clock
        for _ in range(5):  # the rest, due or not: the run is over
            if self.flush(everything=True):
                break
        self.log(self.summary(time.monotonic() - last_summary, marker))
        return self.tally
