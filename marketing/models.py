"""Channels, placements, campaigns, ads, frequency caps, and what was served to whom.

The first part of the delivery release: the objects a delivery plan works with, and the
record of served ads that frequency caps count (see caps.py). Decisions, plans, budgets and
the API build on these.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from audiences.models import Customer, Item


class Channel(models.Model):
    """Where ads reach people, and what reaching them costs."""

    class Kind(models.TextChoices):
        PUSH = "push", "App push"
        BANNER = "banner", "In-app banner"
        PLAYER = "player", "In-player"
        EMAIL = "email", "E-mail"
        SMS = "sms", "SMS"
        PAID = "paid", "Paid external"

    class CostModel(models.TextChoices):
        CPM = "cpm", "Per 1,000 impressions"
        CPC = "cpc", "Per click"
        CPA = "cpa", "Per conversion"
        SEND = "send", "Per send"

    name = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    cost_model = models.CharField(max_length=4, choices=CostModel.choices, default=CostModel.CPM)
    unit_cost = models.DecimalField(max_digits=10, decimal_places=4, default=0, validators=[MinValueValidator(0)])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Placement(models.Model):
    """A slot in the product that asks for ads (a home banner, the pre-roll of the player, a push)."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="placements")
    slots = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(10)],
                                             help_text="Ads returned per request")

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


def new_salt() -> int:
    """A campaign's control salt: random, so campaigns hold out independent groups (marketing/control.py)."""
    import secrets

    return secrets.randbelow(2**31 - 1) + 1


class Campaign(models.Model):
    class Goal(models.TextChoices):
        CLICK = "click", "Clicks"
        STREAM = "stream", "Streams"
        CONVERSION = "conversion", "Conversions"
        REVENUE = "revenue", "Revenue"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        EXPLORING = "exploring", "Exploring"
        LIVE = "live", "Live"
        PAUSED = "paused", "Paused"
        ENDED = "ended", "Ended"

    # Which status may follow which: ended is final, a draft cannot skip exploration.
    TRANSITIONS = {
        Status.DRAFT: {Status.EXPLORING, Status.ENDED},
        Status.EXPLORING: {Status.LIVE, Status.PAUSED, Status.ENDED},
        Status.LIVE: {Status.PAUSED, Status.ENDED},
        Status.PAUSED: {Status.EXPLORING, Status.LIVE, Status.ENDED},
        Status.ENDED: set(),
    }
    SERVING = (Status.EXPLORING, Status.LIVE)

    name = models.CharField(max_length=120, unique=True)
    goal = models.CharField(max_length=12, choices=Goal.choices, default=Goal.CONVERSION)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    total_budget = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)])
    daily_budget = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)])
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    target_cpa = models.DecimalField("target CPA", max_digits=10, decimal_places=2, null=True, blank=True,
                                     validators=[MinValueValidator(0)])
    explore_impressions = models.PositiveIntegerField(
        "exploration impressions", default=1000, validators=[MinValueValidator(1)],
        help_text="A new ad is served at random among the eligible ads until it has this many impressions …")
    explore_days = models.PositiveSmallIntegerField(
        "exploration days", default=3, validators=[MinValueValidator(1), MaxValueValidator(90)],
        help_text="… or until it is this many days old, whichever comes first")
    attribution_minutes = models.PositiveIntegerField(
        "attribution window (minutes)", default=1440, validators=[MinValueValidator(1), MaxValueValidator(43200)],
        help_text="A response counts for the ad served if it comes within this many minutes; models train on decisions "
                  "whose window has closed")
    control_share = models.FloatField(
        "control group", default=0.0, validators=[MinValueValidator(0), MaxValueValidator(0.5)],
        help_text="Share of customers held out (e.g. 0.1 for 10 %): they get nothing from this campaign, and their "
                  "decisions are logged as “control” so the campaign's effect can be measured against them")
    control_salt = models.PositiveIntegerField(default=new_salt, editable=False,
                                               help_text="Makes this campaign's control group its own")
    uplift_targeting = models.BooleanField(
        "target by uplift", default=False,
        help_text="Serve only the customers the ad persuades: ranked by predicted uplift × value − cost, kept while the "
                  "predicted incremental CPA stays under the target CPA, never those it would not change. Needs a control "
                  "group and an uplift model; until the first one exists everyone is served.")
    persuadable = models.ForeignKey("audiences.Audience", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                    editable=False, help_text="Who the latest uplift model chose (kept by the uplift job)")
    model_job = models.ForeignKey("ml.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                  editable=False, help_text="The latest training of the campaign's model")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "name"]

    def __str__(self) -> str:
        return self.name

    def can_move_to(self, status: str) -> bool:
        return status in self.TRANSITIONS[self.Status(self.status)]

    def clean(self) -> None:
        # Every form (admin today, the campaign pages later) runs this: the lifecycle is enforced once, here.
        was = Campaign.objects.filter(pk=self.pk).values_list("status", flat=True).first() if self.pk else None
        if was is not None and was != self.status and self.status not in self.TRANSITIONS[self.Status(was)]:
            allowed = ", ".join(sorted(self.TRANSITIONS[self.Status(was)])) or "none: it is final"
            raise ValidationError({"status": f"A {was} campaign cannot become {self.status} (allowed: {allowed})."})
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "The flight must end after it starts."})
        if self.total_budget is not None and self.daily_budget is not None and self.daily_budget > self.total_budget:
            raise ValidationError({"daily_budget": "The daily budget cannot exceed the total budget."})


class AdQuerySet(models.QuerySet):
    def servable(self, placement: Placement, now):
        """Active ads of exploring or live campaigns inside their flight, for this placement."""
        return self.filter(
            placements=placement, status=Ad.Status.ACTIVE, campaign__status__in=Campaign.SERVING,
        ).filter(
            models.Q(campaign__starts_at__isnull=True) | models.Q(campaign__starts_at__lte=now),
            models.Q(campaign__ends_at__isnull=True) | models.Q(campaign__ends_at__gt=now),
        )


class Ad(models.Model):
    """A creative of a campaign, for one or more placements."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="ads")
    name = models.CharField(max_length=120)
    title = models.CharField(max_length=200, blank=True)
    body = models.TextField(blank=True)
    image_url = models.URLField(blank=True)
    landing_url = models.URLField(blank=True)
    promoted_item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(default=dict, blank=True, help_text="Anything the client app needs to render the ad")
    dynamic_items = models.JSONField(default=list, blank=True, help_text=(
        "Item ids: the ad promotes the customer's best recommended item among them (a dynamic creative)"))
    placements = models.ManyToManyField(Placement, related_name="ads")
    priority = models.SmallIntegerField(default=0, help_text="Higher first when ads are served by priority")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    explored_at = models.DateTimeField(null=True, blank=True, editable=False,
                                       help_text="When its random exploration ended (see marketing.tasks.close_exploration)")

    objects = AdQuerySet.as_manager()

    class Meta:
        ordering = ["-priority", "pk"]

    def __str__(self) -> str:
        return f"{self.campaign} · {self.name}"


class FrequencyCap(models.Model):
    """At most `max_count` served ads per customer in a rolling window, and/or a minimum gap, at one level."""

    class Level(models.TextChoices):
        AD = "ad", "Ad"
        CAMPAIGN = "campaign", "Campaign"
        PLACEMENT = "placement", "Placement"
        CHANNEL = "channel", "Channel"
        SERVICE = "service", "Whole service"

    class Window(models.IntegerChoices):
        HOUR = 3600, "per rolling hour"
        DAY = 86400, "per rolling day"
        WEEK = 604800, "per rolling week"
        LIFETIME = 0, "in a lifetime"

    level = models.CharField(max_length=10, choices=Level.choices)
    ad = models.ForeignKey(Ad, null=True, blank=True, on_delete=models.CASCADE, related_name="caps")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="caps")
    placement = models.ForeignKey(Placement, null=True, blank=True, on_delete=models.CASCADE, related_name="caps")
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.CASCADE, related_name="caps")
    max_count = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    window = models.PositiveIntegerField(choices=Window.choices, default=Window.DAY)
    min_gap_seconds = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                  help_text="At least this long between two served ads at this level")

    def __str__(self) -> str:
        target = f" {self.target}" if self.target else ""
        return f"{self.get_level_display()}{target}: {self.limits}"

    @property
    def limits(self) -> str:
        """What the cap allows, in words: "3 per rolling week, 4 h apart"."""
        parts = []
        if self.max_count:
            parts.append(f"{self.max_count} {self.get_window_display()}")
        if self.min_gap_seconds:
            gap = self.min_gap_seconds
            parts.append(f"{gap // 3600} h apart" if gap % 3600 == 0 else f"{gap // 60} min apart" if gap % 60 == 0 else f"{gap} s apart")
        return ", ".join(parts)

    @property
    def target(self):
        return {"ad": self.ad, "campaign": self.campaign, "placement": self.placement, "channel": self.channel}.get(self.level)

    def clean(self) -> None:
        targets = {"ad": self.ad_id, "campaign": self.campaign_id, "placement": self.placement_id, "channel": self.channel_id}
        for level, target in targets.items():
            if level == self.level and target is None:
                raise ValidationError({level: f"A {self.get_level_display().lower()} cap needs its {level}."})
            if level != self.level and target is not None:
                raise ValidationError({level: f"A {self.get_level_display().lower()} cap names no {level}."})
        if not self.max_count and not self.min_gap_seconds:
            raise ValidationError("Give a maximum count, a minimum gap, or both.")


class CapLock(models.Model):
    """One row per customer that decisions lock (SELECT … FOR UPDATE) while they check and record caps.

    Locking the customer, not a counter, makes every cap exact at once — rolling windows, several
    levels, several slots — under any number of concurrent requests, and it serialises only
    requests for the same customer.
    """

    customer = models.OneToOneField(Customer, primary_key=True, on_delete=models.CASCADE, related_name="+")


class ServedAd(models.Model):
    """An ad served to a customer (what caps count); the level keys are copied so caps need no joins."""

    id = models.BigAutoField(primary_key=True)
    # Not indexed: nothing looks served ads up by decision alone (a list batch replays by its customer range),
    # and a random-UUID index costs every insert a random page write — most of a delivery list's WAL.
    decision = models.UUIDField(default=uuid.uuid4)
    # No database constraints on the keys of this ledger: PostgreSQL checks a foreign key with a query per
    # inserted row, which was half of a delivery list's time (4 µs a row for the ad's alone). Every row is
    # written for a customer read in the same statement or transaction and an ad of the set-up being served;
    # the level keys below are copies of the ad's. Django still cascades deletes through all of them
    # (tests/marketing/test_delivery_lists.py); a row written while its ad is being deleted stays, and still
    # counts toward the customer's caps, as what was served.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="served", db_constraint=False)
    # Copies of the ad's keys, so caps count without joins.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="served", db_index=False, db_constraint=False)
    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="served", db_index=False, db_constraint=False)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="served", db_index=False, db_constraint=False)
    served_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["customer", "served_at"], name="served_customer_time")]




class DeliveryPlan(models.Model):
    """How a placement's traffic is served: ordered audience rules, then everyone else."""

    class Rest(models.TextChoices):
        PRIORITY = "priority", "By priority"
        MODEL = "model", "Ranked by model"
        NOTHING = "nothing", "Nothing"

    placement = models.OneToOneField(Placement, on_delete=models.CASCADE, related_name="plan")
    rest = models.CharField("everyone else", max_length=8, choices=Rest.choices, default=Rest.PRIORITY)
    rest_ads = models.ManyToManyField(Ad, blank=True, related_name="+",
                                      help_text="Ads for everyone else; none named: every servable ad of the placement")
    epsilon = models.FloatField("ε (keep exploring)", default=0.05, validators=[MinValueValidator(0), MaxValueValidator(1)],
                                help_text="Share of model-ranked traffic that keeps exploring at random after exploration")
    fit_threshold = models.FloatField(
        "fit check", null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Deliver a model-ranked ad only when the customer's predicted response is at least this "
                  "(e.g. 0.02 for 2 %); exploration is exempt so new ads can learn. Empty: no check.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"plan of {self.placement}"

    def rest_pool(self, servable: dict[int, "Ad"]) -> list["Ad"]:
        """The ads everyone else may get: those named (that are servable), or else every servable ad no rule uses.

        The one definition the decision engine, delivery lists and the end of exploration share
        (rules and their ads are expected prefetched).
        """
        named = [a.pk for a in self.rest_ads.all()]
        if named:
            return [servable[pk] for pk in named if pk in servable]
        in_rules = {a.pk for r in self.rules.all() for a in r.ads.all()}
        return [ad for pk, ad in servable.items() if pk not in in_rules]


class PlanRule(models.Model):
    """An audience of a plan and what it gets: one specified ad, or a set of ads ranked by model."""

    class Mode(models.TextChoices):
        ONE_AD = "one", "One specified ad"
        RANKED = "ranked", "Ads ranked by model"

    plan = models.ForeignKey(DeliveryPlan, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveSmallIntegerField(default=0)
    audience = models.ForeignKey("audiences.Audience", on_delete=models.PROTECT, related_name="+")
    mode = models.CharField(max_length=6, choices=Mode.choices, default=Mode.ONE_AD)
    ads = models.ManyToManyField(Ad, related_name="+")

    class Meta:
        ordering = ["position", "pk"]


class Decision(models.Model):
    """What one request was served and why: the log that exploration and off-policy evaluation read."""

    class Reason(models.TextChoices):
        TARGETED = "targeted", "Targeted"
        MODEL = "model", "Model"
        EXPLORE = "explore", "Explore"
        PRIORITY = "priority", "Priority"
        CONTROL = "control", "Control"
        NONE = "none", "Nothing servable"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="decisions")
    eligible = models.JSONField(default=list, help_text="Ad ids the caps allowed")
    chosen = models.JSONField(default=list, help_text="Ad ids served, in slot order")
    reason = models.CharField(max_length=8, choices=Reason.choices)
    propensity = models.FloatField(help_text="Probability that the first slot got this ad under the logging policy")
    rule = models.ForeignKey(PlanRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_version = models.CharField(max_length=40, blank=True)
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["customer", "created_at"], name="decision_customer_time"),
                   models.Index(fields=["created_at"], name="decision_time")]  # the decision log, newest first


class Event(models.Model):
    """Something a customer did in answer to (or after) an ad, as posted by an external system.

    Idempotent by the sender's event id: (source, key) is unique, so a replayed batch adds nothing.
    """

    class Type(models.TextChoices):
        IMPRESSION = "impression", "Impression"
        CLICK = "click", "Click"
        CONVERSION = "conversion", "Conversion"
        PLAY = "play", "Play"
        PURCHASE = "purchase", "Purchase"
        SUBSCRIBE = "subscribe", "Subscribe"
        DISMISS = "dismiss", "Dismiss"

    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=100, help_text="The API client (or user) that sent it")
    key = models.CharField(max_length=100, help_text="The sender's event id")
    type = models.CharField(max_length=12, choices=Type.choices)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    decision = models.ForeignKey(Decision, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    ad = models.ForeignKey(Ad, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    value = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "key"], name="event_once_per_source")]
        indexes = [models.Index(fields=["campaign", "occurred_at"], name="event_campaign_time"),
                   models.Index(fields=["customer", "occurred_at"], name="event_customer_time")]


class ResponseRate(models.Model):
    """How often an ad's served customers of one value segment responded (the campaign's goal), refreshed every minute.

    The interim ranking model until auto-modelling trains one per campaign: a smoothed response
    rate per ad and segment, read by the decision engine for "ranked by model" and the fit check.
    """

    ad = models.ForeignKey(Ad, on_delete=models.CASCADE, related_name="rates")
    segment = models.CharField(max_length=8, blank=True, help_text="Empty: all segments together")
    served = models.PositiveIntegerField(default=0)
    responded = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ad", "segment"], name="response_rate_once")]


class IdArray(ArrayField):
    """A bigint[] column on PostgreSQL. On SQLite, which has no arrays and never fills it, a plain nullable column."""

    def __init__(self, **kwargs):
        kwargs.setdefault("base_field", models.BigIntegerField())
        super().__init__(**kwargs)

    def db_type(self, connection):
        return super().db_type(connection) if connection.vendor == "postgresql" else "text"

    def get_placeholder(self, value, compiler, connection):
        return super().get_placeholder(value, compiler, connection) if connection.vendor == "postgresql" else "%s"


class DeliveryBatch(models.Model):
    """One batch of a campaign's delivery list: the customers after `after` up to `last`, reserved once.

    A list is named by its key (the client's, e.g. "2026-11-23-evening"); its batches follow each
    other by customer id, and the cursor a client resumes from is the `last` of a batch. Fetching a
    batch again replays the served ads recorded under `token` instead of reserving caps twice.
    """

    id = models.BigAutoField(primary_key=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="batches")
    placement = models.ForeignKey(Placement, on_delete=models.CASCADE, related_name="+")
    key = models.CharField("list", max_length=100)
    after = models.BigIntegerField(help_text="Customers with a greater id …")
    last = models.BigIntegerField(help_text="… up to and including this one")
    size = models.PositiveIntegerField()
    targeted = models.PositiveIntegerField(default=0, help_text="Customers the plan picked in the batch's block")
    rows = models.PositiveIntegerField(default=0, help_text="Customers reserved (the others were capped or over budget)")
    token = models.UUIDField(default=uuid.uuid4, unique=True, help_text="The decision id of its served ads")
    created_at = models.DateTimeField()
    # On PostgreSQL a batch keeps what it reserved here, the customers and their ads in two arrays, until
    # delivery_lists.compact() writes them out as ServedAd rows (a beat task, seconds later): a heap row and
    # its index entries per customer were most of a list's time. Until then caps, later batches and replays
    # read the arrays as served ads (caps.history, delivery_lists), so a reservation counts from the moment it
    # commits. NULL once written out, and always on SQLite, where a batch writes its rows at once.
    pending_customers = IdArray(null=True, editable=False)
    pending_ads = IdArray(null=True, editable=False)
    # The placement's channel when the batch reserved: what its served ads count toward (and are written out under).
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+", null=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "placement", "key", "after"], name="delivery_batch_once")]
        # A decision finds the pending batches covering its customer (after < customer <= last) in the index alone.
        indexes = [models.Index(fields=["last", "after"], name="delivery_batch_pending",
                                condition=models.Q(pending_customers__isnull=False))]


class CampaignSpend(models.Model):
    """What a campaign spent on one day, accrued through its channels' cost models (see spend.py).

    A day's spend is split over up to SPEND_SHARDS rows (`shard`: the customer id modulo it, for
    decisions): every decision updates its campaign's row of the day and holds that row's lock until
    it commits, so one row would make a campaign's concurrent decisions queue. Readers sum the rows.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="spend")
    day = models.DateField()
    shard = models.PositiveSmallIntegerField(default=0)
    amount = models.DecimalField(max_digits=14, decimal_places=4, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "day", "shard"], name="campaign_spend_once_a_day_and_shard")]


class ExternalSpend(models.Model):
    """What an external platform says was spent on one day, per channel and/or campaign (`POST /api/v1/spend`).

    Idempotent per sender, day and scope: posting the same day and channel (or campaign) again
    replaces the amount — platforms restate yesterday's numbers — instead of adding to it. A
    campaign's external spend counts toward its budgets (spend.py) beside what the cost model accrues.
    """

    source = models.CharField(max_length=100, help_text="The API client (or user) that sent it")
    day = models.DateField()
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.CASCADE, related_name="external_spend")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="external_spend")
    scope = models.CharField(max_length=40, help_text='"channel:3", "campaign:5" or "channel:3/campaign:5": unique per day and sender')
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "day", "scope"], name="external_spend_once")]
        indexes = [models.Index(fields=["campaign", "day"], name="external_spend_campaign_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.scope}: {self.amount}"


class MixDataset(models.Model):
    """Spend per channel and one outcome per period: what a marketing-mix model is fitted on (see mix_data.py).

    Uploaded as CSV or built from the platform's own spend and conversions. The series is small
    (a few hundred periods × a few channels), so it is kept whole in `data`, written once: a
    rejected upload stores nothing, and a model's inputs never change under it.
    """

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded CSV"
        PLATFORM = "platform", "Platform spend and outcomes"

    class Frequency(models.TextChoices):
        DAY = "day", "Daily"
        WEEK = "week", "Weekly"
        MONTH = "month", "Monthly"

    class OutcomeKind(models.TextChoices):
        REVENUE = "revenue", "Revenue (money)"
        COUNT = "count", "Count (conversions, streams …)"

    name = models.CharField(max_length=120)
    source = models.CharField(max_length=10, choices=Source.choices)
    frequency = models.CharField(max_length=6, choices=Frequency.choices)
    outcome_name = models.CharField(max_length=100)
    outcome_kind = models.CharField(max_length=8, choices=OutcomeKind.choices, default=OutcomeKind.REVENUE)
    channels = models.JSONField(default=list, help_text="Spend column names, in file order")
    controls = models.JSONField(default=list, blank=True, help_text="Control variable column names")
    channel_map = models.JSONField(default=dict, blank=True, help_text='{"spend column": platform channel id}: what applying a scenario sets')
    data = models.JSONField(default=dict, help_text='{"dates": [iso], "spend": {channel: [...]}, "outcome": [...], "controls": {name: [...]}}')
    periods = models.PositiveIntegerField()
    start = models.DateField()
    end = models.DateField()
    file_name = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class MixModel(models.Model):
    """One fit of a marketing-mix model on a dataset: parameters, validation, and the page's report."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Fitting"
        SUCCEEDED = "succeeded", "Fitted"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(MixDataset, on_delete=models.CASCADE, related_name="models")
    number = models.PositiveIntegerField(help_text="1, 2, 3 … per dataset")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    job = models.ForeignKey("ml.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    options = models.JSONField(default=dict, blank=True, help_text="adstock, seasonality, bootstrap, plateau threshold …")
    params = models.JSONField(default=dict, blank=True, help_text="The fitted curves (and bootstrap draws) the allocator uses")
    metrics = models.JSONField(default=dict, blank=True, help_text="r2, nrmse and mape on the fit and the holdout")
    report = models.JSONField(default=dict, blank=True, help_text="Contributions, ROI, curves, carryover for the page")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="mix_model_number_once")]

    def __str__(self) -> str:
        return f"{self.dataset} · fit {self.number}"


class BudgetScenario(models.Model):
    """An allocation of a total budget per period across a fitted model's channels, kept to compare and apply."""

    class Objective(models.TextChoices):
        RESPONSE = "response", "Maximum response"
        EFFICIENCY = "efficiency", "Target efficiency"

    class BoundsMode(models.TextChoices):
        RELATIVE = "relative", "Relative to history (%)"
        ABSOLUTE = "absolute", "Absolute per period"

    model = models.ForeignKey(MixModel, on_delete=models.CASCADE, related_name="scenarios")
    name = models.CharField(max_length=120)
    objective = models.CharField(max_length=10, choices=Objective.choices, default=Objective.RESPONSE)
    total = models.FloatField(help_text="Budget per period (the dataset's frequency)")
    target = models.FloatField(null=True, blank=True, help_text="Minimum ROI (revenue outcomes) or maximum CPA (count outcomes)")
    bounds_mode = models.CharField(max_length=8, choices=BoundsMode.choices, default=BoundsMode.RELATIVE)
    bounds = models.JSONField(default=dict, help_text='{"channel": [low, high]} as entered')
    result = models.JSONField(default=dict, help_text="Per channel: from, to, response, marginal ROI, why; totals, warnings")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    applied = models.JSONField(default=list, blank=True, help_text='[{"campaign": id, "from": …, "to": …}] as set')

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name
