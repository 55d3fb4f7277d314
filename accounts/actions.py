"""Changes to users, roles and API clients (the Team page and the commands call these)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from .models import ApiClient, Role, set_role


@transaction.atomic
def create_user(*, username: str, email: str, password: str, role: str, by=None):
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    set_role(user, role)
    return user


@transaction.atomic
def change_user(user, *, role: str, is_active: bool, by) -> None:
    """Set role and active flag; an admin cannot lock themselves out."""
    if user == by and (role != Role.ADMIN or not is_active):
        raise ValueError("You cannot remove your own Admin role or deactivate yourself; ask another admin.")
    set_role(user, role)
    if user.is_active != is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])


def issue_api_client(*, name: str, scopes: list[str], requests_per_minute: int | None = None, by=None) -> tuple[ApiClient, str]:
    client, token = ApiClient.issue(name, scopes, by=by)
    if requests_per_minute:
        client.requests_per_minute = requests_per_minute
        client.save(update_fields=["requests_per_minute"])
    return client, token


def revoke_api_client(client: ApiClient, *, by) -> None:
    client.is_active = False
    client.save(update_fields=["is_active"])
