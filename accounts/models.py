"""Roles (Django groups) and API clients with hashed, scoped tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    """A user's role is the Django group of this name; superusers count as Admin."""

    ADMIN = "Admin", "Admin"
    MARKETER = "Marketer", "Marketer"
    ANALYST = "Analyst", "Analyst"


ROLE_ORDER = [Role.ADMIN, Role.MARKETER, Role.ANALYST]
WRITE_ROLES = frozenset({Role.ADMIN, Role.MARKETER})
ALL_ROLES = frozenset(ROLE_ORDER)

ROLE_DESCRIPTIONS = {
    Role.ADMIN: "Everything, plus users, roles and API clients.",
    Role.MARKETER: "Imports data, builds audiences and campaigns, runs jobs.",
    Role.ANALYST: "Reads every page and report; changes nothing.",
}

# What an API token may do. Later features add their scopes here.
SCOPES = {
    "customers:read": "Read customers and their personas",
    "customers:write": "Create and update customers",
    "catalogue:read": "Read catalogue items",
    "catalogue:write": "Create and update catalogue items",
    "activities:write": "Post activity batches",
    "jobs:read": "Read background job progress",
    "audiences:read": "Read audiences, their members and why a customer is in or out",
    "decisions": "Ask which ads to show a customer (what is served counts toward frequency caps)",
    "events:write": "Post impressions, clicks, conversions and other events",
    "delivery-lists:read": "Fetch a push or e-mail campaign's delivery list (fetching reserves frequency caps)",
    "spend:write": "Post daily spend per channel or campaign from external platforms",
}


def role_of(user) -> str | None:
    """The most privileged role of an active, fully signed-in user; None for anonymous and role-less users,
    and for a session still waiting for its one-time code."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    if needs_second_factor(user):
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    cached = getattr(user, "_encore_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True)) if hasattr(user, "groups") else set()
    role = next((r for r in ROLE_ORDER if r in names), None)
    user._encore_role = role
    return role


def set_role(user, role: str) -> None:
    """Replace the user's role groups with exactly `role`."""
    if role not in ALL_ROLES:
        raise ValueError(f"unknown role {role!r}")
    user.groups.remove(*Group.objects.filter(name__in=list(ALL_ROLES)))
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    # Admins also manage data in Django admin, which checks is_staff and model permissions.
    admin = role == Role.ADMIN
    if user.is_staff != admin or user.is_superuser != admin:
        user.is_staff = user.is_superuser = admin
        user.save(update_fields=["is_staff", "is_superuser"])
    user._encore_role = role


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is safe; a slow KDF would only add latency per request.
    return hashlib.sha256(token.encode()).hexdigest()


class ApiClientQuerySet(models.QuerySet):
    def active(self):
        """Clients whose tokens are accepted."""
        return self.filter(is_active=True)


class ApiClient(models.Model):
    TOKEN_PREFIX = "enc_"
    LAST_USED_RESOLUTION = timedelta(minutes=1)

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_hint = models.CharField(max_length=16, editable=False, help_text="First characters, to recognise a token.")
    scopes = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="This client's API rate limit; empty: the site default (API_CLIENT_RATE_PER_MINUTE).")
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    objects = ApiClientQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def issue(cls, name: str, scopes: list[str], *, by=None) -> tuple["ApiClient", str]:
        """Create a client and return it with its plain token, which is never stored."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)} (known: {', '.join(SCOPES)})")
        token = cls.TOKEN_PREFIX + secrets.token_urlsafe(32)
        client = cls.objects.create(
            name=name,
            token_hash=hash_token(token),
            token_hint=token[:10],
            scopes=sorted(set(scopes)),
            created_by=by,
        )
        return client, token

    def has_scope(self, scope: str) -> bool:
        return self.is_active and scope in self.scopes

    def touch(self) -> None:
        """Record use, at most once a minute, so every request does not write a row."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at > self.LAST_USED_RESOLUTION:
            ApiClient.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now


def needs_second_factor(user) -> bool:
    """Signed in with a password, holds a confirmed one-time-password device, and has not given its code.

    OTPMiddleware gives request users `is_verified`; users loaded elsewhere (commands, tasks) have
    none and are not asked. The device lookup is remembered on the user object for the request.
    """
    is_verified = getattr(user, "is_verified", None)
    if is_verified is None or not getattr(user, "is_authenticated", False) or is_verified():
        return False
    cached = getattr(user, "_encore_has_device", None)
    if cached is None:
        from django_otp import user_has_device

        cached = user._encore_has_device = user_has_device(user, confirmed=True)
    return cached


class AuditEntryQuerySet(models.QuerySet):
    def for_object(self, object_type: str, object_id) -> "AuditEntryQuerySet":
        """One object's history, newest first."""
        return self.filter(object_type=object_type, object_id=str(object_id))


class AuditEntry(models.Model):
    """Who changed what and when: written by the action functions, in the transaction of the change."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    client = models.ForeignKey(ApiClient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as text too, so the entry still names its author after the user or client is deleted.
    actor = models.CharField(max_length=160, help_text="Username, api:<client name>, or 'system' (commands, tasks).")
    action = models.CharField(max_length=50, db_index=True, help_text="object.verb, e.g. campaign.status")
    object_type = models.CharField(max_length=30)
    object_id = models.CharField(max_length=40, blank=True)
    object_label = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder,
                               help_text="{field: [before, after]}; before is null on creation.")
    note = models.CharField(max_length=300, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id", "-at"], name="audit_object_idx")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_label}"

    @property
    def change_rows(self) -> list[tuple[str, str | None, str]]:
        """(field, before, after) as text for pages; before is None on creation, where there was no before."""
        creation = self.action.endswith(".create")
        return [(field, None if creation else _as_text(pair[0]), _as_text(pair[1]))
                for field, pair in self.changes.items() if isinstance(pair, list) and len(pair) == 2]


def _as_text(value) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)
