"""Changes to users, roles, API clients and second factors (the Team page and the commands call these)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from . import audit
from .models import ApiClient, Role, set_role


@transaction.atomic
def create_user(*, username: str, email: str, password: str, role: str, by=None):
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    set_role(user, role)
    audit.record("user.create", user, by=by, changes={"role": [None, role], "email": [None, email]} if email else {"role": [None, role]})
    return user


@transaction.atomic
def change_user(user, *, role: str, is_active: bool, by) -> None:
    """Set role and active flag; an admin cannot lock themselves out."""
    if user == by and (role != Role.ADMIN or not is_active):
        raise ValueError("You cannot remove your own Admin role or deactivate yourself; ask another admin.")
    before = {"role": _held_role(user), "is_active": user.is_active}
    set_role(user, role)
    if user.is_active != is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
    diff = audit.changes(before, {"role": role, "is_active": is_active})
    if diff:
        audit.record("user.role" if set(diff) == {"role"} else "user.update", user, by=by, changes=diff)


def _held_role(user) -> str | None:
    """The role held, whether or not the account is active (role_of says None when inactive)."""
    if user.is_superuser:
        return Role.ADMIN.value
    names = set(user.groups.values_list("name", flat=True))
    return next((r.value for r in (Role.ADMIN, Role.MARKETER, Role.ANALYST) if r in names), None)


@transaction.atomic
def reset_admin(user, *, password: str, remove_devices: bool = False) -> int:
    """`manage.py ensure_admin --reset`: a new password, active, Admin, not locked out; with remove_devices, no second factor either.

    Returns how many one-time-password devices were removed.
    """
    from axes.utils import reset as forget_failed_sign_ins

    forget_failed_sign_ins(username=user.username)  # a locked-out admin who resets the password can sign in at once
    user.set_password(password)
    user.is_active = True
    user.save()
    set_role(user, Role.ADMIN)
    removed = remove_second_factor(user, by=None) if remove_devices else 0
    audit.record("user.reset", user, by=None, note="manage.py ensure_admin --reset" + (" --remove-2fa" if remove_devices else ""))
    return removed


@transaction.atomic
def issue_api_client(*, name: str, scopes: list[str], requests_per_minute: int | None = None, by=None) -> tuple[ApiClient, str]:
    client, token = ApiClient.issue(name, scopes, by=by)
    if requests_per_minute:
        client.requests_per_minute = requests_per_minute
        client.save(update_fields=["requests_per_minute"])
    audit.record("client.issue", client, by=by, changes={"scopes": [None, client.scopes],
                                                         "requests_per_minute": [None, client.requests_per_minute]})
    return client, token


@transaction.atomic
def revoke_api_client(client: ApiClient, *, by) -> None:
    was_active = client.is_active
    client.is_active = False
    client.save(update_fields=["is_active"])
    audit.record("client.revoke", client, by=by, changes={"is_active": [was_active, False]})


# -- second factor (TOTP, django-otp) --------------------------------------------------------------------------------


def pending_totp_device(user):
    """The unconfirmed authenticator a user is enrolling (made on first visit, kept until confirmed or replaced)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


@transaction.atomic
def confirm_second_factor(device, token: str, *, by) -> str | None:
    """Confirm an enrolment with a code from the app; when the code is refused, nothing changes and the reason is returned."""
    from .security import code_problem

    problem = code_problem(device, token)
    if problem:
        return problem
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    # One authenticator per user: older enrolments that were never confirmed are dropped.
    type(device).objects.filter(user=device.user).exclude(pk=device.pk).delete()
    audit.record("user.2fa_on", device.user, by=by, changes={"two_factor": [False, True]})
    return None


def is_locked_out(user) -> bool:
    """Whether failed sign-ins lock this username out now (from any address)."""
    from axes.models import AccessAttempt
    from django.conf import settings
    from django.utils import timezone

    recent = timezone.now() - settings.AXES_COOLOFF_TIME
    return AccessAttempt.objects.filter(username=user.username, failures_since_start__gte=settings.AXES_FAILURE_LIMIT,
                                        attempt_time__gte=recent).exists()


@transaction.atomic
def unlock_sign_in(user, *, by) -> int:
    """Forget the user's failed sign-ins, lifting a lockout before its cool-off; returns how many records went."""
    from axes.utils import reset as forget_failed_sign_ins

    removed = forget_failed_sign_ins(username=user.username)
    if removed:
        audit.record("user.unlock", user, by=by, note=f"{removed} failed sign-in record(s) forgotten")
    return removed


@transaction.atomic
def remove_second_factor(user, *, by) -> int:
    """Remove every one-time-password device of the user; sign-in asks for the password only again."""
    from django_otp import devices_for_user

    devices = list(devices_for_user(user, confirmed=None))
    had = any(d.confirmed for d in devices)
    for device in devices:
        device.delete()
    if had:
        audit.record("user.2fa_off", user, by=by, changes={"two_factor": [True, False]})
    return len(devices)

