"""The demo's delivery: channels, placements, the story's three campaigns, their caps and plans.

`manage.py seed_campaigns` writes them on top of the listeners of `manage.py seed_demo`
(audiences/demo.py), and `manage.py simulate_traffic` (simulator.py) serves them. The story
(DESIGN.md, "The demo story"):

- **Premium upsell — push** (goal: conversions; daily and total budget, target CPA): free-plan
  K-pop fans get the ad-free K-pop offer (targeted, one ad), everyone else three plan offers ranked
  by model — plan c of issue 4 item 3.
- **New release: Supernova Heart** (goal: streams; every ad promotes the K-pop single
  ``trk-kpop-single``): on the home banner, K-pop fans get two creatives ranked by model and
  everyone else the other two by priority (plan b); in the player, the young hip-hop fans of the
  south get the dance-challenge crossover and nobody else anything (plan a).
- **Win-back e-mail** (goal: clicks): lapsed listeners get three e-mails ranked by model.

Caps at every level the story needs: at most 12 ads a day per listener across the service, pushes
at least 4 hours apart, 3 upsell pushes and 2 win-back e-mails a week, the chart-debut banner 3
times in a lifetime. Campaigns start exploring; short explorations (100–200 impressions of each
ranked ad) let the simulator turn them into model-ranked campaigns within minutes.

Idempotent: objects are found by their natural keys (channel name, placement slug, campaign name,
ad name within its campaign, the plan of a placement) and only missing ones are created — what an
operator changed since is left alone. `delete_demo_campaigns` removes what this module made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from audiences import demo as audience_demo
from audiences.models import Audience, Item

from .models import Ad, Campaign, Channel, DeliveryPlan, Event, FrequencyCap, Placement, PlanRule

# -- what the demo holds ------------------------------------------------------------------------------

CHANNELS = [  # name, kind, cost model, unit cost
    ("App push", Channel.Kind.PUSH, Channel.CostModel.SEND, Decimal("0.01")),
    ("In-app banner", Channel.Kind.BANNER, Channel.CostModel.CPM, Decimal("3.00")),
    ("In-player", Channel.Kind.PLAYER, Channel.CostModel.CPM, Decimal("8.00")),
    ("E-mail", Channel.Kind.EMAIL, Channel.CostModel.SEND, Decimal("0.002")),
]
PLACEMENTS = [  # slug, name, channel, slots
    ("push", "App push notification", "App push", 1),
    ("home-banner", "Home screen banner", "In-app banner", 1),
    ("player-preroll", "Player pre-roll", "In-player", 1),
    ("email", "Marketing e-mail", "E-mail", 1),
]

YOUNG_HIP_HOP_SOUTH = audience_demo.DEMO_AUDIENCES[0][0]  # "Young hip-hop fans in the south, active this week"
KPOP_FREE = audience_demo.DEMO_AUDIENCES[1][0]  # "K-pop listeners who are not subscribers"
LAPSED = audience_demo.DEMO_AUDIENCES[2][0]  # "Lapsed listeners"
KPOP_FANS = "K-pop fans"
AUDIENCES = {name: (description, rule) for name, description, rule in audience_demo.DEMO_AUDIENCES}
AUDIENCES[KPOP_FANS] = (
    "New-release banner: listeners for whom K-pop is a real share of their listening, or their top genre.",
    {"any": [{"pref": "genres", "key": "k-pop", "op": "gte", "value": 0.1}, {"field": "top_genre", "op": "eq", "value": "k-pop"}]},
)


@dataclass(frozen=True)
class AdSpec:
    name: str
    title: str
    body: str
    landing_url: str
    placements: tuple[str, ...]
    priority: int = 0
    promotes_single: bool = False
    payload: dict = field(default_factory=dict)
    # Exploration chooses among ads at random; an ad only ever served by a targeted rule or by priority
    # has nothing to choose against, and would keep its campaign from going live for explore_days.
    ranked: bool = True


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    goal: str
    ads: tuple[AdSpec, ...]
    total_budget: Decimal | None = None
    daily_budget: Decimal | None = None
    target_cpa: Decimal | None = None
    explore_impressions: int = 200
    explore_days: int = 3
    attribution_minutes: int = 10  # the simulator's listeners answer within seconds: models can train minutes after launch
    control_share: float = 0.1  # a tenth of the listeners held out, so the campaign's effect can be measured


UPSELL = "Premium upsell — push"
RELEASE = "New release: Supernova Heart"
WINBACK = "Win-back e-mail"
SITE = "https://encore.example"

CAMPAIGNS = (
    CampaignSpec(UPSELL, Campaign.Goal.CONVERSION, total_budget=Decimal("30000"), daily_budget=Decimal("1500"),
                 target_cpa=Decimal("8.00"), explore_impressions=200, ads=(
        AdSpec("Student discount", "Premium for students: 5.99 a month", "Ad-free, offline, unlimited skips — at half price.",
               f"{SITE}/premium?offer=student", ("push",), payload={"cta": "Get the discount"}),
        AdSpec("Family plan", "Premium Family: six accounts, one bill", "Everyone at home gets their own Premium for 16.99.",
               f"{SITE}/premium?offer=family", ("push",), payload={"cta": "Upgrade to Family"}),
        AdSpec("Duo for two", "Premium Duo: two accounts for 14.99", "Share Premium with the one you share everything with.",
               f"{SITE}/premium?offer=duo", ("push",), payload={"cta": "Try Duo"}),
        AdSpec("K-pop without ads", "Your K-pop, no interruptions", "Go Premium and never miss a comeback: 10.99 a month.",
               f"{SITE}/premium?offer=kpop", ("push",), payload={"cta": "Go Premium"}, ranked=False),
    )),
    CampaignSpec(RELEASE, Campaign.Goal.STREAM, total_budget=Decimal("5000"), explore_impressions=100, explore_days=1, ads=(
        AdSpec("Out now: Supernova Heart", "NOVA9 — Supernova Heart, out now", "The single everyone is talking about.",
               f"{SITE}/track/{audience_demo.KPOP_SINGLE_ID}", ("home-banner",), promotes_single=True,
               payload={"cta": "Play now", "style": "hero"}),
        AdSpec("Dance challenge", "Can you keep up? The #SupernovaHeart challenge", "Learn the moves, post your take.",
               f"{SITE}/track/{audience_demo.KPOP_SINGLE_ID}?from=challenge", ("home-banner", "player-preroll"),
               promotes_single=True, payload={"cta": "Watch the moves", "style": "video"}),
        AdSpec("Chart debut", "Straight in at number 1", "NOVA9's Supernova Heart tops this week's chart.",
               f"{SITE}/charts", ("home-banner",), priority=5, promotes_single=True, payload={"cta": "See the chart"},
               ranked=False),
        AdSpec("Lyric card", "“Supernova heart, burning through the dark”", "Read along while you listen.",
               f"{SITE}/track/{audience_demo.KPOP_SINGLE_ID}?lyrics=1", ("home-banner",), priority=1, promotes_single=True,
               payload={"cta": "Sing along"}, ranked=False),
    )),
    CampaignSpec(WINBACK, Campaign.Goal.CLICK, explore_impressions=100, ads=(
        AdSpec("We miss you", "It's been a while", "Your library is right where you left it.",
               f"{SITE}/welcome-back", ("email",), payload={"subject": "We miss you"}),
        AdSpec("Your mixes are waiting", "Fresh mixes, made for you", "We refreshed your Daily Mixes with what's new in your genres.",
               f"{SITE}/mixes", ("email",), payload={"subject": "Your Daily Mixes are ready"}),
        AdSpec("3 months for 0.99", "Come back: 3 months of Premium for 0.99", "Only this week, only for you.",
               f"{SITE}/premium?offer=comeback", ("email",), payload={"subject": "3 months of Premium for 0.99"}),
    )),
)


@dataclass(frozen=True)
class CapSpec:
    level: str
    target: str | None  # channel name, placement slug, campaign name or "campaign/ad name"; None for the service
    max_count: int | None = None
    window: int = FrequencyCap.Window.DAY
    min_gap_seconds: int | None = None


CAPS = (
    CapSpec(FrequencyCap.Level.SERVICE, None, max_count=12, window=FrequencyCap.Window.DAY),
    CapSpec(FrequencyCap.Level.CHANNEL, "App push", min_gap_seconds=4 * 3600),
    CapSpec(FrequencyCap.Level.PLACEMENT, "home-banner", max_count=6, window=FrequencyCap.Window.HOUR),
    CapSpec(FrequencyCap.Level.CAMPAIGN, UPSELL, max_count=3, window=FrequencyCap.Window.WEEK),
    CapSpec(FrequencyCap.Level.CAMPAIGN, WINBACK, max_count=2, window=FrequencyCap.Window.WEEK),
    CapSpec(FrequencyCap.Level.AD, f"{RELEASE}/Chart debut", max_count=3, window=FrequencyCap.Window.LIFETIME),
)


@dataclass(frozen=True)
class RuleSpec:
    audience: str
    mode: str
    ads: tuple[str, ...]  # "campaign/ad name"


@dataclass(frozen=True)
class PlanSpec:
    placement: str
    rest: str
    rules: tuple[RuleSpec, ...]
    epsilon: float = 0.1


PLANS = (
    # c) a targeted audience gets one specified ad, everyone else the other ads ranked by model.
    PlanSpec("push", DeliveryPlan.Rest.MODEL, (RuleSpec(KPOP_FREE, PlanRule.Mode.ONE_AD, (f"{UPSELL}/K-pop without ads",)),)),
    # b) a targeted audience gets several ads ranked by model, everyone else the others by priority.
    PlanSpec("home-banner", DeliveryPlan.Rest.PRIORITY, (
        RuleSpec(KPOP_FANS, PlanRule.Mode.RANKED, (f"{RELEASE}/Out now: Supernova Heart", f"{RELEASE}/Dance challenge")),)),
    # a) a targeted audience gets one specified ad (and nobody else anything).
    PlanSpec("player-preroll", DeliveryPlan.Rest.NOTHING, (
        RuleSpec(YOUNG_HIP_HOP_SOUTH, PlanRule.Mode.ONE_AD, (f"{RELEASE}/Dance challenge",)),)),
    # The win-back: only the lapsed, with the three e-mails ranked by model.
    PlanSpec("email", DeliveryPlan.Rest.NOTHING, (
        RuleSpec(LAPSED, PlanRule.Mode.RANKED, (f"{WINBACK}/We miss you", f"{WINBACK}/Your mixes are waiting",
                                                f"{WINBACK}/3 months for 0.99")),)),
)


# -- writing --------------------------------------------------------------------------------------------


def ensure_audiences(names) -> tuple[dict[str, Audience], int]:
    """The named demo audiences, created (and their members materialised) when missing; existing ones are left as they are."""
    from audiences.actions import save_audience

    found = {a.name: a for a in Audience.objects.filter(name__in=list(names))}
    created = 0
    for name in names:
        if name not in found:
            description, rule = AUDIENCES[name]
            found[name] = save_audience(Audience(name=name, description=description, rule=rule), by=None)
            created += 1
    return found, created


@transaction.atomic
def store_demo_campaigns() -> dict[str, int]:
    """Create whatever of the demo's delivery is missing; returns how many objects of each kind were made."""
    made = dict.fromkeys(("channels", "placements", "audiences", "campaigns", "ads", "caps", "plans", "rules"), 0)
    channels = {}
    for name, kind, cost_model, unit_cost in CHANNELS:
        channels[name], new = Channel.objects.get_or_create(name=name, defaults={
            "kind": kind, "cost_model": cost_model, "unit_cost": unit_cost})
        made["channels"] += new
    placements = {}
    for slug, name, channel, slots in PLACEMENTS:
        placements[slug], new = Placement.objects.get_or_create(slug=slug, defaults={
            "name": name, "channel": channels[channel], "slots": slots})
        made["placements"] += new

    single = Item.objects.filter(external_id=audience_demo.KPOP_SINGLE_ID).first()
    ads: dict[str, Ad] = {}
    campaigns: dict[str, Campaign] = {}
    now = timezone.now()
    for spec in CAMPAIGNS:
        campaign, new = Campaign.objects.get_or_create(name=spec.name, defaults={
            "goal": spec.goal, "status": Campaign.Status.EXPLORING, "total_budget": spec.total_budget,
            "daily_budget": spec.daily_budget, "target_cpa": spec.target_cpa,
            "explore_impressions": spec.explore_impressions, "explore_days": spec.explore_days,
            "attribution_minutes": spec.attribution_minutes, "control_share": spec.control_share})
        campaigns[spec.name] = campaign
        made["campaigns"] += new
        for ad_spec in spec.ads:
            ad, new = Ad.objects.get_or_create(campaign=campaign, name=ad_spec.name, defaults={
                "title": ad_spec.title, "body": ad_spec.body, "landing_url": ad_spec.landing_url,
                "priority": ad_spec.priority, "payload": ad_spec.payload,
                "promoted_item": single if ad_spec.promotes_single else None,
                "explored_at": None if ad_spec.ranked else now})
            if new:
                ad.placements.set([placements[slug] for slug in ad_spec.placements])
            ads[f"{spec.name}/{ad_spec.name}"] = ad
            made["ads"] += new

    for cap in CAPS:
        target = {"channel": channels, "placement": placements, "campaign": campaigns, "ad": ads}.get(cap.level)
        _, new = FrequencyCap.objects.get_or_create(
            level=cap.level, max_count=cap.max_count, window=cap.window, min_gap_seconds=cap.min_gap_seconds,
            **({cap.level: target[cap.target]} if target is not None else {}))
        made["caps"] += new

    audiences, made["audiences"] = ensure_audiences({r.audience for plan in PLANS for r in plan.rules})
    for spec in PLANS:
        plan, new = DeliveryPlan.objects.get_or_create(placement=placements[spec.placement], defaults={
            "rest": spec.rest, "epsilon": spec.epsilon})
        if not new:  # an existing plan is the operator's: its rules stay as they are
            continue
        made["plans"] += 1
        for position, rule_spec in enumerate(spec.rules):
            rule = PlanRule.objects.create(plan=plan, position=position, audience=audiences[rule_spec.audience],
                                           mode=rule_spec.mode)
            rule.ads.set([ads[name] for name in rule_spec.ads])
            made["rules"] += 1
    return made


@transaction.atomic
def delete_demo_campaigns() -> dict[str, int]:
    """Remove the demo's campaigns (with their ads, caps, served ads, spend and events), placements, plans and channels.

    The demo audiences stay: they belong to the audiences app and may serve other plans.
    """
    campaigns = Campaign.objects.filter(name__in=[c.name for c in CAMPAIGNS])
    placements = Placement.objects.filter(slug__in=[p[0] for p in PLACEMENTS])
    deleted = {"events": Event.objects.filter(campaign__in=campaigns).delete()[0]}
    # Plans first: their rules hold the demo ads, and a placement's decisions go with it.
    deleted["plans"] = DeliveryPlan.objects.filter(placement__in=placements).count()
    DeliveryPlan.objects.filter(placement__in=placements).delete()
    deleted["campaigns"] = campaigns.count()
    campaigns.delete()
    for cap in CAPS:
        if cap.level == FrequencyCap.Level.SERVICE:
            FrequencyCap.objects.filter(level=cap.level, max_count=cap.max_count, window=cap.window,
                                        min_gap_seconds=cap.min_gap_seconds).delete()
    deleted["placements"] = placements.count()
    placements.delete()
    channels = Channel.objects.filter(name__in=[c[0] for c in CHANNELS], placements__isnull=True)
    deleted["channels"] = channels.count()
    channels.delete()
    return deleted


# -- the budget page's history ---------------------------------------------------------------------------------

MIX_NAME = "Demo: three years of weekly subscription revenue"
# Weekly spend level, carryover θ, half-saturation K (in units of the mean spend), Hill shape S and β (the most
# the channel can add per week): push is cheap and already saturated, in-player has room to grow, paid social
# (an external platform, linked to no channel here) carries over for weeks.
MIX_TRUTH = {
    "App push": (900, 0.1, 0.6, 1.1, 5200),
    "In-app banner": (2400, 0.3, 1.0, 1.6, 9000),
    "In-player": (3200, 0.4, 2.2, 1.8, 21000),
    "E-mail": (300, 0.2, 0.5, 1.0, 2600),
    "Paid social": (5000, 0.6, 1.4, 2.2, 17000),
}


def demo_mix_series(weeks: int = 156, seed: int = 11):
    """Weekly spend per channel and subscription revenue from known curves, with a December peak and promotions."""
    import numpy as np

    from ml import mmm

    from .mix_data import MixSeries

    rng = np.random.default_rng(seed)
    start = date(2024, 12, 2) - timedelta(weeks=weeks)
    t = np.arange(weeks)
    promo = (rng.random(weeks) < 0.08).astype(float)
    revenue = 60000 + 4000 * t / weeks + 6000 * np.cos(2 * np.pi * (t - 4) / 52.18) + 9000 * promo
    spend = {}
    for name, (level, theta, k, s, beta) in MIX_TRUTH.items():
        flighted = (rng.random(weeks) < 0.85) * level * rng.lognormal(0, 0.45, weeks)
        spend[name] = np.round(flighted, 2)
        carried = mmm.adstock(spend[name], "geometric", theta, 0, 13) / spend[name][spend[name] > 0].mean()
        revenue = revenue + beta * mmm.hill(carried, k, s)
    revenue = np.round(revenue + rng.normal(0, 1200, weeks), 2)
    return MixSeries(dates=[start + timedelta(weeks=i) for i in range(weeks)], frequency="week",
                     channels=list(spend), spend=spend, outcome=revenue, outcome_name="subscription revenue",
                     outcome_kind="revenue", controls={"promotion": promo}, name=MIX_NAME, file_name="")


def store_demo_mix() -> int:
    """The demo's marketing history with its first fit queued; 0 when it is there already."""
    from . import mix
    from .mix_data import store_dataset
    from .models import MixDataset

    if MixDataset.objects.filter(name=MIX_NAME).exists():
        return 0
    channels = dict(Channel.objects.filter(name__in=list(MIX_TRUTH)).values_list("name", "pk"))
    dataset = store_dataset(demo_mix_series(), name=MIX_NAME, source=MixDataset.Source.UPLOAD, by=None,
                            channel_map=channels)
    mix.queue_fit(dataset, by=None, options={"bootstrap": 40})
    return 1
