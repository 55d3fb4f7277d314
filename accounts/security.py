"""Sign-in hardening: the lockout answer of django-axes, the client address it counts by, and Django admin's door.

The two-step sign-in itself (password, then the code of a confirmed authenticator) is in views.py.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from .models import needs_second_factor


def client_ip(request) -> str | None:
    """The address failures are counted against.

    Behind LOGIN_TRUSTED_PROXIES load balancers, the address the last of them saw (counted from the
    right of X-Forwarded-For, which a client can only prepend to); otherwise REMOTE_ADDR. Trusting
    more proxies than there are would let a client choose its own address and dodge the lockout.
    """
    proxies = settings.LOGIN_TRUSTED_PROXIES
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def lockout_minutes() -> int:
    """How long a locked-out sign-in waits. Each attempt during a lockout starts the cool-off again
    (axes' AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so at the moment we answer it is the whole cool-off."""
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


LOCKOUT_MESSAGE = "Too many failed attempts for this account; try again in {minutes} minute{s}."


def lockout_message() -> str:
    minutes = lockout_minutes()
    return LOCKOUT_MESSAGE.format(minutes=minutes, s="" if minutes == 1 else "s")


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the login page again, with the lockout message, answered 429."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    return render(request, "registration/login.html", {"form": form, "locked_out": lockout_message(),
                                                       "next": request.POST.get(REDIRECT_FIELD_NAME, "")}, status=429)


class EncoreAdminSite(admin.AdminSite):
    """Django admin, entered only through Encore's sign-in (lockout, second factor), never its own login form."""

    def has_permission(self, request) -> bool:
        return super().has_permission(request) and not needs_second_factor(request.user)

    def login(self, request, extra_context=None):
        if request.user.is_authenticated and not needs_second_factor(request.user):
            raise PermissionDenied("Django admin is for Admins.")  # signed in without the right: no login loop
        return redirect_to_login(request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index"))


WRONG_CODE = "That code is not right, or was already used. Enter the one your app shows now."


def code_problem(device, code: str) -> str | None:
    """None when `code` is the device's code now (it is then spent); otherwise what to tell the user.

    django-otp slows guessing down by itself: after n wrong codes in a row the device refuses every
    code for 2^(n-1) seconds, so a quick retry must say "wait", not "wrong".
    """
    allowed, info = device.verify_is_allowed()
    if not allowed:
        wait = max(1, math.ceil((info["locked_until"] - timezone.now()).total_seconds())) if info and info.get("locked_until") else 1
        return f"Too many wrong codes in a row: wait {wait} second{'' if wait == 1 else 's'}, then enter the code your app shows."
    return None if device.verify_token(code) else WRONG_CODE
