"""The cast: alice is an Admin, mark a Marketer, ann an Analyst, nora has no role."""

import os

os.environ.setdefault("DEBUG", "true")

import pytest
from django.contrib.auth import get_user_model

from accounts.models import Role, set_role

PASSWORD = "correct-horse-battery-staple"


def make_user(username: str, role: str | None):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)
    if role:
        set_role(user, role)
    return user


@pytest.fixture
def alice(db):
    return make_user("alice", Role.ADMIN)


@pytest.fixture
def mark(db):
    return make_user("mark", Role.MARKETER)


@pytest.fixture
def ann(db):
    return make_user("ann", Role.ANALYST)


@pytest.fixture
def nora(db):
    return make_user("nora", None)


@pytest.fixture
def client_for(client):
    """client_for(user) logs the test client in as `user`."""

    def login(user):
        client.force_login(user)
        return client

    return login
