"""Sign-in: failures lock an account out for a while; an authenticator app adds a code step."""

from datetime import timedelta
from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AuditEntry
from accounts.security import client_ip
from tests.conftest import PASSWORD


def sign_in(client, username, password=PASSWORD, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def code_for(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code the user's app shows now (or `steps_ahead` 30-second steps later: a code is good only once)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time += steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def later(device: TOTPDevice) -> None:
    """Let a minute pass for the device's guessing brake (a retry right after a wrong code must wait)."""
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=timezone.now() - timedelta(minutes=1))


def wrong_code(device: TOTPDevice) -> str:
    good = {code_for(device, s) for s in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in good)


# -- lockout ---------------------------------------------------------------------------------------------------------


def test_five_failures_lock_the_account_out_with_a_message(client, mark):
    for _ in range(4):
        response = sign_in(client, "mark", "nope")
        assert response.status_code == 200 and b"Please enter a correct username and password" in response.content
    response = sign_in(client, "mark", "nope")
    assert response.status_code == 429
    assert "Too many failed attempts for this account; try again in 15 minutes." in response.content.decode()
    response = sign_in(client, "mark")  # the right password does not help while locked
    assert response.status_code == 429 and not client.session.get("_auth_user_id")


def test_the_limit_and_the_cool_off_are_settings(client, mark, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    sign_in(client, "mark", "nope")
    response = sign_in(client, "mark", "nope")
    assert response.status_code == 429 and "try again in 1 minute." in response.content.decode()


def test_the_lock_lifts_after_the_cool_off(client, mark, settings):
    settings.AXES_FAILURE_LIMIT = 2
    sign_in(client, "mark", "nope")
    sign_in(client, "mark", "nope")
    assert sign_in(client, "mark").status_code == 429
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16))
    response = sign_in(client, "mark")
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")


def test_a_lock_holds_one_username_at_one_address_only(client, mark, ann, settings):
    settings.AXES_FAILURE_LIMIT = 2
    sign_in(client, "mark", "nope")
    assert sign_in(client, "mark", "nope").status_code == 429
    # A colleague at the same address, and mark from elsewhere, still get in: a guesser cannot lock people out.
    assert sign_in(client, "ann").status_code == 302
    client.post(reverse("logout"))
    assert sign_in(client, "mark", REMOTE_ADDR="10.0.0.9").status_code == 302


def test_a_successful_sign_in_forgets_earlier_typos(client, mark, settings):
    settings.AXES_FAILURE_LIMIT = 3
    sign_in(client, "mark", "nope")
    sign_in(client, "mark", "nope")
    assert sign_in(client, "mark").status_code == 302
    client.post(reverse("logout"))
    sign_in(client, "mark", "nope")
    sign_in(client, "mark", "nope")
    assert sign_in(client, "mark").status_code == 302


def test_the_counted_address_is_the_one_the_trusted_proxy_saw(settings):
    request = RequestFactory().post("/login/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    settings.LOGIN_TRUSTED_PROXIES = 0
    assert client_ip(request) == "10.1.1.1"  # no proxy trusted: a client could write any X-Forwarded-For
    settings.LOGIN_TRUSTED_PROXIES = 1
    assert client_ip(request) == "203.0.113.7"  # what the load balancer appended, not what the client prepended


def test_django_admin_has_no_login_form_of_its_own(client):
    response = client.get(reverse("admin:login"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


# -- enrolling an authenticator --------------------------------------------------------------------------------------


def test_an_admin_turns_on_two_factor_with_a_code_from_the_app(client, alice):
    client.force_login(alice)
    response = client.get(reverse("two_factor"))
    page = response.content.decode()
    device = TOTPDevice.objects.get(user=alice)
    assert response.status_code == 200 and not device.confirmed
    assert "otpauth://totp/Encore%3Aalice?secret=" in page and "<svg" in page
    response = client.post(reverse("two_factor"), {"code": wrong_code(device)})
    assert response.status_code == 400 and "That code is not right" in response.content.decode()
    later(device)
    response = client.post(reverse("two_factor"), {"code": code_for(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert client.get(reverse("dashboard")).status_code == 200  # the enrolling session has given a code
    entry = AuditEntry.objects.get(action="user.2fa_on")
    assert (entry.user, entry.object_label, entry.changes) == (alice, "alice", {"two_factor": [False, True]})


def test_every_role_may_turn_it_on_and_people_without_one_may_not(client, ann, nora):
    client.force_login(ann)
    assert client.get(reverse("two_factor")).status_code == 200
    client.force_login(nora)
    assert client.get(reverse("two_factor")).status_code == 403
    client.logout()
    assert client.get(reverse("two_factor"))["Location"].startswith(reverse("login"))


# -- signing in with a code ------------------------------------------------------------------------------------------


@pytest.fixture
def alice_device(alice):
    return TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)


def test_with_an_authenticator_the_password_alone_does_not_sign_in(client, alice_device):
    response = sign_in(client, "alice")
    assert response.status_code == 302 and response["Location"] == reverse("login_verify")
    assert client.get(reverse("dashboard")).status_code == 302
    page = client.get(reverse("login_verify")).content.decode()
    assert "Hello alice" in page
    response = client.post(reverse("login_verify"), {"code": wrong_code(alice_device)})
    assert response.status_code == 400 and "That code is not right" in response.content.decode()
    assert client.get(reverse("dashboard")).status_code == 302
    later(alice_device)
    response = client.post(reverse("login_verify"), {"code": code_for(alice_device)})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.get(reverse("team:overview")).status_code == 200


def test_the_code_step_keeps_where_the_user_was_going(client, alice_device):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD, "next": reverse("team:overview")})
    assert response["Location"] == reverse("login_verify")
    response = client.post(reverse("login_verify"), {"code": code_for(alice_device)})
    assert response["Location"] == reverse("team:overview")


def test_the_code_step_expires(client, alice_device, settings):
    settings.LOGIN_CODE_SECONDS = -1
    sign_in(client, "alice")
    response = client.post(reverse("login_verify"), {"code": code_for(alice_device)})
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert client.get(reverse("dashboard")).status_code == 302


def test_the_code_page_without_a_password_first_goes_back_to_login(client, alice_device):
    assert client.get(reverse("login_verify"))["Location"] == reverse("login")


def test_a_quick_retry_after_a_wrong_code_is_asked_to_wait(client, alice_device):
    sign_in(client, "alice")
    client.post(reverse("login_verify"), {"code": wrong_code(alice_device)})
    response = client.post(reverse("login_verify"), {"code": code_for(alice_device)})
    assert response.status_code == 400 and "Too many wrong codes in a row: wait 1 second" in response.content.decode()


def test_wrong_codes_count_toward_the_lockout(client, alice_device, settings):
    settings.AXES_FAILURE_LIMIT = 2
    sign_in(client, "alice")
    assert client.post(reverse("login_verify"), {"code": wrong_code(alice_device)}).status_code == 400
    response = client.post(reverse("login_verify"), {"code": wrong_code(alice_device)})
    assert response.status_code == 429 and "Too many failed attempts" in response.content.decode()
    assert sign_in(client, "alice").status_code == 429


def test_a_session_that_skipped_the_code_is_refused_everywhere(client, alice_device):
    client.force_login(alice_device.user)  # a session made without the code step (the sign-in view never does this)
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("login"))
    assert client.get(reverse("team:audit")).status_code == 302
    assert client.get("/api/v1/audiences").status_code in (401, 403)
    response = client.get(reverse("admin:index"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    # The login page starts such a session again instead of sending it back where it came from.
    response = client.get(reverse("login"))
    assert response.status_code == 200 and not client.session.get("_auth_user_id")


# -- turning it off --------------------------------------------------------------------------------------------------


def test_turning_two_factor_off_needs_a_current_code(client, alice_device):
    sign_in(client, "alice")
    client.post(reverse("login_verify"), {"code": code_for(alice_device)})
    response = client.post(reverse("two_factor_remove"), {"code": wrong_code(alice_device)})
    assert response.status_code == 400 and TOTPDevice.objects.filter(user=alice_device.user).exists()
    later(alice_device)
    # The code just used to sign in is spent; the next step's code (the app shows it 30 s later) works.
    response = client.post(reverse("two_factor_remove"), {"code": code_for(alice_device, steps_ahead=1)})
    assert response.status_code == 302 and not TOTPDevice.objects.filter(user=alice_device.user).exists()
    assert AuditEntry.objects.get(action="user.2fa_off").changes == {"two_factor": [True, False]}
    client.post(reverse("logout"))
    assert sign_in(client, "alice")["Location"] == reverse("dashboard")


def test_an_admin_removes_the_authenticator_of_a_user_who_lost_their_phone(client, alice, mark):
    TOTPDevice.objects.create(user=mark, name="phone", confirmed=True)
    client.force_login(alice)
    assert "Remove two-factor sign-in" in client.get(reverse("team:user_edit", args=[mark.pk])).content.decode()
    response = client.post(reverse("team:user_edit", args=[mark.pk]), {"role": "Marketer", "is_active": "on",
                                                                        "remove_two_factor": "on"})
    assert response.status_code == 302 and not TOTPDevice.objects.filter(user=mark).exists()
    entry = AuditEntry.objects.get(action="user.2fa_off")
    assert (entry.user, entry.object_label) == (alice, "mark")


def test_ensure_admin_reset_can_remove_the_authenticator(alice_device, client):
    out = StringIO()
    call_command("ensure_admin", "--username", "alice", "--reset", "--remove-2fa", stdout=out)
    assert "Removed the two-factor authenticator of 'alice'." in out.getvalue()
    password = out.getvalue().strip().splitlines()[-1].split(" / ")[1]
    assert not TOTPDevice.objects.filter(user=alice_device.user).exists()
    assert sign_in(client, "alice", password)["Location"] == reverse("dashboard")
    assert AuditEntry.objects.get(action="user.reset").actor == "system"


def test_ensure_admin_reset_keeps_the_authenticator_unless_asked(alice_device):
    call_command("ensure_admin", "--username", "alice", "--reset", stdout=StringIO())
    assert TOTPDevice.objects.filter(user=alice_device.user, confirmed=True).exists()


def test_ensure_admin_reset_lifts_a_lockout(client, alice):
    for _ in range(5):
        sign_in(client, "alice", "nope")
    assert sign_in(client, "alice").status_code == 429
    out = StringIO()
    call_command("ensure_admin", "--username", "alice", "--reset", stdout=out)
    password = out.getvalue().strip().splitlines()[-1].split(" / ")[1]
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert sign_in(client, "alice", password)["Location"] == reverse("dashboard")


def test_an_admin_lifts_a_users_lockout_from_the_edit_page(client, mark, alice):
    for _ in range(5):
        sign_in(client, "mark", "nope")
    assert sign_in(client, "mark").status_code == 429
    admin = client.__class__()
    admin.force_login(alice)
    url = reverse("team:user_edit", kwargs={"pk": mark.pk})
    assert "Lift the sign-in lock now" in admin.get(url).content.decode()
    response = admin.post(url, {"role": "Marketer", "is_active": "on", "unlock": "on"})
    assert response.status_code == 302
    assert sign_in(client, "mark")["Location"] == reverse("dashboard")
    entry = AuditEntry.objects.get(action="user.unlock")
    assert entry.actor == "alice" and entry.object_id == str(mark.pk)
    assert "Lift the sign-in lock now" not in admin.get(url).content.decode()  # offered only while locked
