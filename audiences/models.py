"""Customers, the catalogue, what customers do, and the personas built from it.

Activity is the big table (tens of millions of rows): kinds are small integers,
the natural key is a 64-bit hash with a unique index (re-imports upsert instead of
duplicating), and only the indexes the hot queries need exist.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from ml.models import Job


class Gender(models.TextChoices):
    FEMALE = "f", "Female"
    MALE = "m", "Male"
    OTHER = "x", "Other"
    UNKNOWN = "", "Unknown"


class CustomerQuerySet(models.QuerySet):
    def search(self, text: str):
        """Customers whose external id or region contains the text."""
        text = (text or "").strip()
        if not text:
            return self
        return self.filter(Q(external_id__icontains=text) | Q(region__icontains=text))

    def active_since(self, since):
        """Customers with any activity at or after `since`."""
        return self.filter(persona__last_active_at__gte=since)

    def in_audience(self, audience: "Audience"):
        """Customers in the audience now (a rule is evaluated live): one SQL statement, however deep the rule."""
        from .rules import compile_rule

        if audience.is_materialised:  # lists and lookalikes are their stored members
            return self.in_snapshot(audience)
        return self.filter(compile_rule(audience.rule, Audience.rule_of))

    def in_snapshot(self, audience: "Audience"):
        """Customers in the audience's last materialised membership (see refresh_membership)."""
        return self.filter(pk__in=AudienceMember.objects.filter(audience=audience).values("customer_id"))


class Customer(models.Model):
    external_id = models.CharField(max_length=64, unique=True)
    birth_year = models.PositiveSmallIntegerField(null=True, blank=True)
    gender = models.CharField(max_length=1, choices=Gender.choices, blank=True, default="")
    region = models.CharField(max_length=64, blank=True, default="", db_index=True)
    city_tier = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 = largest cities")
    signup_date = models.DateField(null=True, blank=True)
    is_subscriber = models.BooleanField(default=False, db_index=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["external_id"]

    def __str__(self) -> str:
        return self.external_id

    @property
    def age(self) -> int | None:
        return timezone.now().year - self.birth_year if self.birth_year else None


class ItemKind(models.TextChoices):
    TRACK = "track", "Track"
    ALBUM = "album", "Album"
    ARTIST = "artist", "Artist"
    PLAYLIST = "playlist", "Playlist"
    CONCERT = "concert", "Concert"
    PRODUCT = "product", "Product"


class Item(models.Model):
    """One entry of the catalogue: what customers play, follow or buy."""

    external_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=ItemKind.choices, default=ItemKind.TRACK, db_index=True)
    title = models.CharField(max_length=300)
    artist = models.CharField(max_length=200, blank=True, default="", db_index=True)
    genres = models.JSONField(default=list, blank=True)
    language = models.CharField(max_length=16, blank=True, default="", db_index=True)
    moods = models.JSONField(default=list, blank=True)
    release_date = models.DateField(null=True, blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return f"{self.title} — {self.artist}" if self.artist else self.title


class ActivityKind(models.IntegerChoices):
    PLAY = 1, "play"
    COMPLETE = 2, "complete"
    SKIP = 3, "skip"
    FAVOURITE = 4, "favourite"
    SHARE = 5, "share"
    SEARCH = 6, "search"
    PURCHASE = 7, "purchase"
    SUBSCRIBE = 8, "subscribe"


REVENUE_KINDS = (ActivityKind.PURCHASE, ActivityKind.SUBSCRIBE)


class Activity(models.Model):
    """Something a customer did, optionally with an item; `key` makes re-imports idempotent."""

    id = models.BigAutoField(primary_key=True)
    key = models.BigIntegerField(unique=True, help_text="64-bit hash of the event id or the natural key")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="activities", db_index=False)
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.PositiveSmallIntegerField(choices=ActivityKind.choices)
    quantity = models.FloatField(default=1.0)
    value = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [
            # customer page, personas, "did X in the last D days" rules
            models.Index(fields=["customer", "occurred_at"], name="activity_customer_time"),
            # behaviour on an item / artist, item pages
            models.Index(fields=["item", "occurred_at"], name="activity_item_time"),
            # Time windows: "did X in the last D days" rules, analytics, the persona window slide.
            # Covering, so a window is read from the index alone (PostgreSQL; SQLite ignores INCLUDE):
            # on 21M rows a 7-day behaviour count went from 2.5 s (heap pages) to 1.1 s.
            models.Index(fields=["occurred_at", "kind"], include=["customer", "item", "value"], name="activity_time_cover"),
        ]
        verbose_name_plural = "activities"

    def __str__(self) -> str:
        return f"{self.customer_id} {self.get_kind_display()} {self.item_id} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class Segment(models.TextChoices):
    LOYAL = "loyal", "Loyal"
    ACTIVE = "active", "Active"
    CASUAL = "casual", "Casual"


class Persona(models.Model):
    """What we know of a customer, rebuilt from activity; audience rules query these columns in SQL.

    Preference maps hold shares that sum to 1 per dimension (top N kept), so
    "hip-hop affinity ≥ 0.3" reads as "at least 30 % of the decayed engagement".
    """

    customer = models.OneToOneField(Customer, primary_key=True, on_delete=models.CASCADE, related_name="persona")
    artists = models.JSONField(default=dict)
    genres = models.JSONField(default=dict)
    languages = models.JSONField(default=dict)
    moods = models.JSONField(default=dict)
    top_artist = models.CharField(max_length=200, blank=True, default="", db_index=True)
    top_genre = models.CharField(max_length=100, blank=True, default="", db_index=True)
    top_language = models.CharField(max_length=16, blank=True, default="")
    top_mood = models.CharField(max_length=100, blank=True, default="")
    plays_7d = models.PositiveIntegerField(default=0)
    plays_30d = models.PositiveIntegerField(default=0)
    plays_90d = models.PositiveIntegerField(default=0)
    activities_7d = models.PositiveIntegerField(default=0)
    activities_30d = models.PositiveIntegerField(default=0)
    activities_90d = models.PositiveIntegerField(default=0)
    purchases_90d = models.PositiveIntegerField(default=0)
    spend_90d = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    last_active_at = models.DateTimeField(null=True, blank=True, db_index=True)
    segment = models.CharField(max_length=8, choices=Segment.choices, default=Segment.CASUAL, db_index=True)
    stale = models.BooleanField(
        default=False, db_default=False, help_text="An activity of this customer was changed in place; rebuild next time"
    )
    as_of = models.DateTimeField(help_text="The time the decay and windows were computed at")

    def __str__(self) -> str:
        return f"persona of {self.customer_id}"


class PersonaSnapshot(models.Model):
    """A customer's persona as it stood from `valid_from` until their next snapshot.

    Written by every persona build for the customers it changed, so models learn from the
    features a decision saw at its time, never from what the customer became later
    (ml.automodel.assemble joins decisions to the latest snapshot at or before them).
    `features` holds the columns of ml.automodel.SNAPSHOT_COLUMNS (see personas.snapshot_of).
    """

    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    valid_from = models.DateTimeField()
    features = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["customer", "valid_from"], name="snapshot_customer_time")]

    def __str__(self) -> str:
        return f"persona of {self.customer_id} from {self.valid_from:%Y-%m-%d %H:%M}"


class PersonaSettings(models.Model):
    """The one row of persona parameters, editable by marketers."""

    half_life_days = models.FloatField("half-life (days)", default=30.0, help_text="Engagement loses half its weight after this many days.")
    loyal_revenue_share = models.FloatField(
        "loyal share of revenue",
        default=0.55, help_text="The most frequent buyers who bring this share of revenue are Loyal."
    )
    active_revenue_share = models.FloatField(
        "active share of revenue",
        default=0.25, help_text="The next buyers who bring this further share of revenue are Active."
    )
    top_n = models.PositiveSmallIntegerField("preferences kept", default=10, help_text="Top artists, genres, languages and moods kept per customer.")
    kind_weights = models.JSONField(default=dict, blank=True, help_text="Weight of each activity kind.")
    last_built_at = models.DateTimeField(null=True, blank=True)
    last_activity_id = models.BigIntegerField(default=0, help_text="Activities up to this id are in the personas.")
    build_started_at = models.DateTimeField(null=True, blank=True, help_text="Set while a build runs (a lock)")
    build_job_id = models.BigIntegerField(null=True, blank=True, help_text="The job holding the build lock")

    BUILD_LOCK_TIMEOUT = timedelta(hours=6)

    DEFAULT_KIND_WEIGHTS = {
        "play": 1.0,
        "complete": 1.5,
        "skip": 0.0,
        "favourite": 3.0,
        "share": 2.0,
        "search": 0.5,
        "purchase": 4.0,
        "subscribe": 0.0,
    }

    class Meta:
        verbose_name_plural = "persona settings"

    @classmethod
    def load(cls) -> "PersonaSettings":
        obj, _ = cls.objects.get_or_create(pk=1, defaults={"kind_weights": dict(cls.DEFAULT_KIND_WEIGHTS)})
        return obj

    @classmethod
    def claim_build(cls, job_id: int) -> bool:
        """Take the build lock for this job; False when another build holds it (hourly and nightly may overlap).

        The same job may take it again (a redelivered task after its worker died), and a lock
        older than BUILD_LOCK_TIMEOUT belongs to a dead worker and is taken over.
        """
        cls.load()
        now = timezone.now()
        free = Q(build_started_at__isnull=True) | Q(build_started_at__lt=now - cls.BUILD_LOCK_TIMEOUT) | Q(build_job_id=job_id)
        return cls.objects.filter(free, pk=1).update(build_started_at=now, build_job_id=job_id) == 1

    @classmethod
    def release_build(cls, job_id: int) -> None:
        cls.objects.filter(pk=1, build_job_id=job_id).update(build_started_at=None, build_job_id=None)

    def weights(self) -> dict[str, float]:
        return {**self.DEFAULT_KIND_WEIGHTS, **(self.kind_weights or {})}


class ImportKind(models.TextChoices):
    CUSTOMERS = "customers", "Customers"
    ITEMS = "items", "Catalogue items"
    ACTIVITIES = "activities", "Activities"


class DataImport(models.Model):
    """An uploaded file, its column mapping and the outcome of loading it."""

    class Status(models.TextChoices):
        MAPPING = "mapping", "Waiting for column mapping"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=12, choices=ImportKind.choices)
    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=8)
    columns = models.JSONField(default=list, help_text="Columns found in the file")
    preview = models.JSONField(default=list, help_text="First rows, for the mapping page")
    mapping = models.JSONField(default=dict, help_text="Target field -> source column")
    keep_extra = models.BooleanField(default=True, help_text="Store unmapped columns as attributes")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.MAPPING)
    job = models.OneToOneField(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="data_import")
    rows_total = models.PositiveIntegerField(default=0)
    rows_ok = models.PositiveIntegerField(default=0)
    rows_failed = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0, help_text="Good rows that were new (the rest updated)")
    errors = models.JSONField(default=list, help_text="First errors: row, column, value, reason")
    error_report = models.FileField(upload_to="imports/errors/", blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.original_name}"

    @property
    def rows_updated(self) -> int:
        """Good rows that changed an existing record (a file repeating an id counts each repeat)."""
        return max(self.rows_ok - self.rows_created, 0)

    @property
    def loaded_summary(self) -> str:
        return f"{self.rows_created:,} new · {self.rows_updated:,} updated"


class AudienceQuerySet(models.QuerySet):
    def rule_based(self):
        """Audiences defined by a rule tree (their snapshots follow the hourly persona update)."""
        return self.filter(kind=Audience.Kind.RULES)

    def seedable(self):
        """Audiences that can seed a lookalike: at least LOOKALIKE_MIN_SEED members at their last count."""
        return self.filter(size__gte=Lookalike.MIN_SEED)


class Audience(models.Model):
    """A group of customers, defined by a rule tree over personas and behaviour (see rules.py)."""

    class Kind(models.TextChoices):
        RULES = "rules", "Rules"
        LIST = "list", "Uploaded list"
        LOOKALIKE = "lookalike", "Lookalike"

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.RULES)
    rule = models.JSONField(default=dict)
    size = models.PositiveIntegerField(null=True, blank=True, help_text="Members at size_at")
    size_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AudienceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def rule_of(audience_id: int) -> dict | None:
        """What `in_audience` of this id means: a rule audience's rule, the members of a list or lookalike, or None."""
        found = Audience.objects.filter(pk=audience_id).values_list("kind", "rule").first()
        if found is None:
            return None
        kind, rule = found
        if kind == Audience.Kind.LOOKALIKE:
            # The seed travels along so validation can refuse a rule that includes its own lookalike.
            seed = Lookalike.objects.filter(pk=audience_id).values_list("seed_id", flat=True).first()
            return {"list": audience_id, "seed": seed} if seed else {"list": audience_id}
        return rule if kind == Audience.Kind.RULES else {"list": audience_id}

    @property
    def is_materialised(self) -> bool:
        """Lists and lookalikes are their stored members; rule audiences are evaluated (and snapshotted)."""
        return self.kind != Audience.Kind.RULES


class AudienceMember(models.Model):
    """Who is in an audience: the members of an uploaded list, or a rule audience's snapshot at size_at."""

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="members", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="audience_memberships")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["audience", "customer"], name="audience_member_once")]


class Lookalike(models.Model):
    """How a lookalike audience is made: its seed, the share of the base picked, and the last model's evidence.

    A Celery job trains a classifier (seed vs a sample of everyone else) on persona features,
    scores the non-seed base, and keeps the ranked top MAX_PCT % in LookalikeScore; the
    audience's members are the top `size_pct` % of them, so changing the size needs no retraining.
    """

    MIN_SEED = 100
    MIN_PCT, MAX_PCT = 1.0, 10.0

    audience = models.OneToOneField(Audience, primary_key=True, on_delete=models.CASCADE, related_name="lookalike")
    seed = models.ForeignKey(Audience, on_delete=models.PROTECT, related_name="lookalikes")
    size_pct = models.FloatField(default=5.0, help_text="Share of the non-seed base to include, 1–10 %")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    trained_at = models.DateTimeField(null=True, blank=True)
    holdout_auc = models.FloatField(null=True, blank=True, help_text="Out-of-fold AUC, seed vs sampled non-seed")
    n_seed = models.PositiveIntegerField(default=0, help_text="Seed members the model learnt from")
    n_negatives = models.PositiveIntegerField(default=0, help_text="Non-seed customers sampled as the contrast")
    n_candidates = models.PositiveIntegerField(default=0, help_text="Non-seed customers scored")
    top_features = models.JSONField(default=list, blank=True)
    curve = models.JSONField(default=list, blank=True, help_text="Per % of the non-seed base: size, recall, precision, lift")

    def __str__(self) -> str:
        return f"lookalike of {self.seed_id} ({self.size_pct:g} %)"

    @property
    def selected(self) -> int:
        """How many ranked candidates the chosen size takes (before removing today's seed members)."""
        return round(self.n_candidates * self.size_pct / 100)

    def point(self, pct: float | None = None) -> dict | None:
        """The curve at a size (linear between the stored whole percents)."""
        pct = self.size_pct if pct is None else pct
        points = sorted(self.curve or [], key=lambda p: p["pct"])
        if not points:
            return None
        below = [p for p in points if p["pct"] <= pct] or points[:1]
        above = [p for p in points if p["pct"] >= pct] or points[-1:]
        lo, hi = below[-1], above[0]
        if hi["pct"] == lo["pct"]:
            return dict(lo, pct=pct)
        t = (pct - lo["pct"]) / (hi["pct"] - lo["pct"])
        return {k: lo[k] + t * (hi[k] - lo[k]) if isinstance(lo[k], (int, float)) else lo[k] for k in lo} | {"pct": pct}


class LookalikeScore(models.Model):
    """A ranked candidate of a lookalike (only the top MAX_PCT % of the non-seed base is kept)."""

    lookalike = models.ForeignKey(Lookalike, on_delete=models.CASCADE, related_name="scores", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    rank = models.PositiveIntegerField(help_text="1 = most like the seed")
    score = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["lookalike", "rank"], name="lookalike_score_rank")]
        indexes = [models.Index(fields=["customer", "lookalike"], name="lookalike_score_customer")]


# -- music intelligence: recommendations, audio, release forecasts ----------------------------------------------


class Recommendations(models.Model):
    """A customer's top items from the serving recommender, best first (one indexed read on the decision path)."""

    customer = models.OneToOneField(Customer, primary_key=True, on_delete=models.CASCADE, related_name="recommendations")
    items = models.JSONField(default=list, help_text="Item ids, best first")
    scores = models.JSONField(default=list)
    model_key = models.CharField(max_length=60, help_text='The registry key that made them, e.g. "recsys:als"')
    built_at = models.DateTimeField()


class SimilarItems(models.Model):
    """An item's nearest items by the serving recommender (co-listening or, for a new item, its tags)."""

    item = models.OneToOneField(Item, primary_key=True, on_delete=models.CASCADE, related_name="similar")
    items = models.JSONField(default=list, help_text="Item ids, most similar first")
    scores = models.JSONField(default=list)
    model_key = models.CharField(max_length=60)
    cold_start = models.BooleanField(default=False, help_text="Placed by its tags: nobody had played it yet")
    built_at = models.DateTimeField()


class AudioAnalysis(models.Model):
    """An uploaded recording of a catalogue item and what the audio job found in it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Analysing"
        SUCCEEDED = "succeeded", "Analysed"
        FAILED = "failed", "Failed"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="audio")
    file = models.FileField(upload_to="audio/%Y/%m/")
    original_name = models.CharField(max_length=255)
    offset = models.FloatField(null=True, blank=True, help_text="Chorus start chosen by the operator, in seconds")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    job = models.ForeignKey("ml.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="duration, chorus, descriptors, tags, hit score, spectrogram")
    hit_score = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class StreamForecast(models.Model):
    """A release's predicted cumulative plays at day 60, from its first `horizon` days."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="forecasts")
    horizon = models.PositiveSmallIntegerField(help_text="Days of plays the forecast saw: 3, 7, 14 or 30")
    p10 = models.FloatField()
    p50 = models.FloatField()
    p90 = models.FloatField()
    naive = models.FloatField(help_text="The naive baseline's forecast, for comparison")
    curve = models.JSONField(default=list, help_text="Expected cumulative plays per day from the horizon to day 60")
    model_version = models.ForeignKey("ml.ModelVersion", null=True, on_delete=models.SET_NULL, related_name="+")
    made_at = models.DateTimeField()

    class Meta:
        ordering = ["item", "horizon"]
        constraints = [models.UniqueConstraint(fields=["item", "horizon"], name="stream_forecast_once_per_horizon")]
