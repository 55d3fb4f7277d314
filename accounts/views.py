from __future__ import annotations

import textwrap
import time
from base64 import b32encode
from urllib.parse import urlencode

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout, user_login_failed
from django.contrib.auth.views import LoginView
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import actions, security
from .access import admin_required, viewer_required
from .forms import ApiClientForm, CodeForm, EditUserForm, NewUserForm
from .models import ROLE_ORDER, ApiClient, AuditEntry, needs_second_factor


@require_GET
@admin_required
def team(request):
    users = list(get_user_model().objects.order_by("username").prefetch_related("groups"))
    for user in users:
        user.role = group_role(user)
    clients = ApiClient.objects.order_by("-is_active", "name")
    with_codes = set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))
    for user in users:
        user.two_factor = user.pk in with_codes
    return render(request, "accounts/team.html", {"users": users, "clients": clients,
                                                   "active_users": sum(u.is_active for u in users),
                                                   "active_clients": sum(c.is_active for c in clients),
                                                   "default_rate": settings.API_CLIENT_RATE_PER_MINUTE})


def group_role(user) -> str | None:
    """The role a user holds, whether or not the account is active (role_of says None when inactive)."""
    names = {g.name for g in user.groups.all()}
    return "Admin" if user.is_superuser else next((r.value for r in ROLE_ORDER if r in names), None)


@require_http_methods(["GET", "POST"])
@admin_required
def user_new(request):
    form = NewUserForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = actions.create_user(**form.cleaned_data, by=request.user)
        messages.success(request, f"{user.username} can now log in as {form.cleaned_data['role']}.")
        return redirect("team:overview")
    return render(request, "accounts/user_form.html", {"form": form, "title": "Add a user"}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@admin_required
def user_edit(request, pk: int):
    user = get_object_or_404(get_user_model(), pk=pk)
    has_codes = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    form = EditUserForm(request.POST or None, initial={"role": group_role(user), "is_active": user.is_active},
                        two_factor=has_codes, locked=actions.is_locked_out(user))
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        remove_codes = data.pop("remove_two_factor", False)
        if data.pop("unlock", False):
            actions.unlock_sign_in(user, by=request.user)
        try:
            actions.change_user(user, **data, by=request.user)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            if remove_codes:
                actions.remove_second_factor(user, by=request.user)
            messages.success(request, f"{user.username} updated.")
            return redirect("team:overview")
    return render(request, "accounts/user_form.html", {"form": form, "title": f"Edit {user.username}", "edited": user},
                  status=400 if form.errors else 200)


@never_cache  # the response shows a plain token once; no cache may keep it
@require_http_methods(["GET", "POST"])
@admin_required
def client_new(request):
    form = ApiClientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        client, token = actions.issue_api_client(**form.cleaned_data, by=request.user)
        # The token is shown once, on this response; only its hash is stored.
        return render(request, "accounts/client_token.html", {"client": client, "token": token})
    return render(request, "accounts/client_form.html", {"form": form}, status=400 if form.errors else 200)


@require_POST
@admin_required
def client_revoke(request, pk: int):
    client = get_object_or_404(ApiClient, pk=pk)
    actions.revoke_api_client(client, by=request.user)
    messages.success(request, f"The token of '{client.name}' no longer works.")
    return redirect("team:overview")


# -- two-step sign-in ------------------------------------------------------------------------------------------------

PENDING = "encore_pending_sign_in"


class SignInView(LoginView):
    """Step one, the password (django-axes counts failures and locks out). A user with a confirmed
    authenticator is not signed in yet: the session remembers who, for LOGIN_CODE_SECONDS, and the
    code page (login_verify) finishes the sign-in."""

    redirect_authenticated_user = True

    def dispatch(self, request, *args, **kwargs):
        if needs_second_factor(request.user):
            logout(request)  # a session that never gave its code starts again here
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        user = form.get_user()
        if not user_has_device(user, confirmed=True):
            return super().form_valid(form)
        self.request.session[PENDING] = {"user": user.pk, "backend": user.backend, "next": self.get_success_url(),
                                         "until": time.time() + settings.LOGIN_CODE_SECONDS}
        return redirect("login_verify")


def _pending_user(request):
    pending = request.session.get(PENDING)
    if not pending or pending.get("until", 0) < time.time():
        return None, None
    user = get_user_model().objects.filter(pk=pending["user"], is_active=True).first()
    return user, pending


@never_cache
@require_http_methods(["GET", "POST"])
def login_verify(request):
    """Step two: the code of the user's authenticator; wrong codes count as failed sign-ins for the lockout."""
    user, pending = _pending_user(request)
    if user is None:
        request.session.pop(PENDING, None)
        messages.info(request, "Sign in again: the code step waits a few minutes only.")
        return redirect("login")
    credentials = {"username": user.get_username()}
    if not AxesProxyHandler.is_allowed(request, credentials):
        request.session.pop(PENDING, None)
        return security.lockout_response(request, credentials=credentials)
    form = CodeForm(request.POST or None)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if request.method == "POST" and form.is_valid() and device is not None:
        problem = security.code_problem(device, form.cleaned_data["code"])
        if problem is None:
            del request.session[PENDING]
            login(request, user, backend=pending["backend"])
            otp_login(request, device)
            return redirect(pending["next"])
        form.add_error("code", problem)
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        if getattr(request, "axes_locked_out", False):
            request.session.pop(PENDING, None)
            return security.lockout_response(request, credentials=credentials)
    return render(request, "registration/login_verify.html", {"form": form, "pending_user": user},
                  status=400 if form.errors else 200)


# -- the user's own authenticator ------------------------------------------------------------------------------------


@never_cache  # the page shows the secret while enrolling
@require_http_methods(["GET", "POST"])
@viewer_required
def two_factor(request):
    """Turn on sign-in codes: scan the QR (or type the secret) into an app, confirm with a code."""
    confirmed = TOTPDevice.objects.filter(user=request.user, confirmed=True).first()
    if confirmed is not None:
        return render(request, "accounts/two_factor.html", {"device": confirmed, "form": CodeForm()})
    device = actions.pending_totp_device(request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        problem = actions.confirm_second_factor(device, form.cleaned_data["code"], by=request.user)
        if problem is None:
            otp_login(request, device)  # this session has just given a code
            messages.success(request, "Two-factor sign-in is on: from now on, signing in asks for a code from your app.")
            return redirect("two_factor")
        form.add_error("code", problem)
    url = device.config_url
    return render(request, "accounts/two_factor.html", {
        "form": form, "otpauth_url": url, "qr_svg": qr_svg(url),
        "secret": " ".join(textwrap.wrap(b32encode(device.bin_key).decode(), 4))}, status=400 if form.errors else 200)


def qr_svg(text: str) -> str:
    """The QR code of `text` as inline SVG markup (no image file, no external service)."""
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")


@require_POST
@viewer_required
def two_factor_remove(request):
    """Turn sign-in codes off; asks for a current code, so a session left open cannot do it alone."""
    form = CodeForm(request.POST)
    device = TOTPDevice.objects.filter(user=request.user, confirmed=True).first()
    if device is None:
        messages.info(request, "Two-factor sign-in is already off.")
        return redirect("two_factor")
    if form.is_valid():
        problem = security.code_problem(device, form.cleaned_data["code"])
        if problem is None:
            actions.remove_second_factor(request.user, by=request.user)
            messages.success(request, "Two-factor sign-in is off. You can turn it on again with a new app entry.")
            return redirect("two_factor")
        form.add_error("code", problem)
    return render(request, "accounts/two_factor.html", {"device": device, "form": form}, status=400)


# -- audit log -------------------------------------------------------------------------------------------------------


@require_GET
@admin_required
def audit_log(request):
    """Every recorded change, newest first; filter by action, by who, by object (type, or type:id)."""
    entries = AuditEntry.objects.select_related("user", "client")
    action, actor, obj = (request.GET.get(k, "").strip() for k in ("action", "actor", "object"))
    if action:
        entries = entries.filter(action=action) if "." in action else entries.filter(action__startswith=f"{action}.")
    if actor:
        entries = entries.filter(actor=actor)
    if obj:
        kind, _, pk = obj.partition(":")
        entries = entries.filter(object_type=kind, **({"object_id": pk} if pk else {}))
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    context = {"page_obj": page, "action": action, "actor": actor, "object": obj, "filtered": bool(action or actor or obj),
               "query": urlencode({k: v for k, v in {"action": action, "actor": actor, "object": obj}.items() if v})}
    if request.htmx:
        return render(request, "accounts/audit_log.html#table", context)
    known = AuditEntry.objects.order_by()
    context["actions"] = sorted(set(known.values_list("action", flat=True).distinct()))
    context["actors"] = sorted(set(known.values_list("actor", flat=True).distinct()))
    return render(request, "accounts/audit_log.html", context)
