"""Admins manage users, roles and API clients on the Team page and with commands."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accounts.models import ApiClient, Role, hash_token, role_of


def test_an_admin_adds_a_marketer_who_can_then_log_in(client, alice):
    client.force_login(alice)
    response = client.post(reverse("team:user_new"), {"username": "mia", "email": "mia@example.com", "role": "Marketer",
                                                      "password": "a-long-enough-secret-7"})
    assert response.status_code == 302
    mia = get_user_model().objects.get(username="mia")
    assert role_of(mia) == Role.MARKETER and not mia.is_staff
    client.logout()
    # Through the login page: django-axes checks every sign-in against its request (client.login has none).
    assert client.post(reverse("login"), {"username": "mia", "password": "a-long-enough-secret-7"}).status_code == 302


def test_adding_a_user_explains_what_is_wrong(client, alice, mark):
    client.force_login(alice)
    response = client.post(reverse("team:user_new"), {"username": "MARK", "role": "Analyst", "password": "123"})
    page = response.content.decode()
    assert response.status_code == 400
    assert "A user named &#x27;MARK&#x27; already exists." in page
    assert "This password is too short" in page


def test_an_admin_changes_a_role_and_deactivates_a_user(client, alice, mark):
    client.force_login(alice)
    response = client.post(reverse("team:user_edit", args=[mark.pk]), {"role": "Analyst"})
    assert response.status_code == 302
    mark.refresh_from_db()
    assert not mark.is_active
    assert {g.name for g in mark.groups.all()} == {"Analyst"}


def test_admins_cannot_demote_or_lock_out_themselves(client, alice):
    client.force_login(alice)
    response = client.post(reverse("team:user_edit", args=[alice.pk]), {"role": "Analyst", "is_active": "on"})
    assert response.status_code == 400 and "cannot remove your own Admin role" in response.content.decode()
    alice.refresh_from_db()
    assert role_of(alice) == Role.ADMIN


def test_promoting_to_admin_opens_django_admin_and_demoting_closes_it(client, alice, mark):
    client.force_login(alice)
    client.post(reverse("team:user_edit", args=[mark.pk]), {"role": "Admin", "is_active": "on"})
    mark.refresh_from_db()
    assert mark.is_staff and mark.is_superuser
    client.post(reverse("team:user_edit", args=[mark.pk]), {"role": "Marketer", "is_active": "on"})
    mark.refresh_from_db()
    assert not mark.is_staff and not mark.is_superuser


def test_a_new_api_client_shows_its_token_once_and_stores_only_a_hash(client, alice):
    client.force_login(alice)
    response = client.post(reverse("team:client_new"), {"name": "CRM sync", "scopes": ["customers:read", "jobs:read"]})
    assert response.status_code == 200
    token = response.context["token"]
    assert token.startswith("enc_") and token in response.content.decode()
    stored = ApiClient.objects.get(name="CRM sync")
    assert stored.token_hash == hash_token(token) and token not in str(stored.__dict__)
    assert stored.scopes == ["customers:read", "jobs:read"]
    team = client.get(reverse("team:overview")).content.decode()
    assert token not in team and stored.token_hint in team


def test_a_client_gets_its_own_rate_limit_shown_on_the_team_page(client, alice):
    client.force_login(alice)
    response = client.post(reverse("team:client_new"), {"name": "Push sender", "scopes": ["delivery-lists:read"],
                                                        "requests_per_minute": "0"})
    assert response.status_code == 400 and "greater than or equal to 1" in response.content.decode()
    client.post(reverse("team:client_new"), {"name": "Push sender", "scopes": ["delivery-lists:read"], "requests_per_minute": "120"})
    client.post(reverse("team:client_new"), {"name": "Events", "scopes": ["events:write"]})
    assert dict(ApiClient.objects.values_list("name", "requests_per_minute")) == {"Push sender": 120, "Events": None}
    team = client.get(reverse("team:overview")).content.decode()
    assert "120/min" in team and "default (60,000/min)" in team


def test_revoking_a_client_stops_its_token(client, alice):
    api_client, token = ApiClient.issue("crm", ["customers:read"])
    assert client.get("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    client.force_login(alice)
    client.post(reverse("team:client_revoke", args=[api_client.pk]))
    client.logout()
    assert client.get("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_the_command_prints_a_working_token_once(db):
    out, err = StringIO(), StringIO()
    call_command("create_api_client", "Warehouse", "--scopes", "activities:write,jobs:read", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert ApiClient.objects.get(token_hash=hash_token(token)).scopes == ["activities:write", "jobs:read"]
    assert "shown only now" in err.getvalue()


def test_the_command_refuses_unknown_scopes_and_duplicate_names(db):
    with pytest.raises(CommandError, match="unknown scopes: everything"):
        call_command("create_api_client", "X", "--scopes", "everything")
    call_command("create_api_client", "Y", "--scopes", "jobs:read", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_api_client", "y", "--scopes", "jobs:read")


def test_ensure_admin_prints_a_login_that_works(db, client):
    out = StringIO()
    call_command("ensure_admin", "--username", "boss", stdout=out)
    username, password = out.getvalue().strip().removeprefix("Login: ").split(" / ")
    assert client.post(reverse("login"), {"username": username, "password": password}).status_code == 302
    assert role_of(get_user_model().objects.get(username="boss")) == Role.ADMIN
