from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import actions
from .access import admin_required
from .forms import ApiClientForm, EditUserForm, NewUserForm
from .models import ROLE_ORDER, ApiClient


@require_GET
@admin_required
def team(request):
    users = list(get_user_model().objects.order_by("username").prefetch_related("groups"))
    for user in users:
        user.role = group_role(user)
    clients = ApiClient.objects.order_by("-is_active", "name")
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
    form = EditUserForm(request.POST or None, initial={"role": group_role(user), "is_active": user.is_active})
    if request.method == "POST" and form.is_valid():
        try:
            actions.change_user(user, **form.cleaned_data, by=request.user)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
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
