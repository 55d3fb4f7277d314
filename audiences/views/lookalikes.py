"""Lookalike pages: create one from a seed, resize it from its curve."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import writer_required

from .. import actions
from ..forms import LookalikeForm, LookalikeSizeForm
from ..models import Audience, Lookalike


@require_http_methods(["GET", "POST"])
@writer_required
def lookalike_new(request):
    form = LookalikeForm(request.POST or None, initial={"seed": request.GET.get("seed")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        audience = actions.create_lookalike(name=data["name"], description=data["description"], seed=data["seed"],
                                            size_pct=data["size_pct"], by=request.user)
        messages.info(request, "The lookalike is training; this page follows its progress.")
        return redirect("audiences:detail", pk=audience.pk)
    return render(request, "audiences/lookalike_form.html", {"form": form, "min_seed": Lookalike.MIN_SEED},
                  status=400 if form.errors else 200)


@require_POST
@writer_required
def lookalike_resize(request, pk: int):
    lookalike = get_object_or_404(Lookalike.objects.select_related("audience"), audience__kind=Audience.Kind.LOOKALIKE, pk=pk)
    form = LookalikeSizeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Size: " + " ".join(form.errors["size_pct"]))
    elif not lookalike.trained_at:
        messages.warning(request, "The lookalike is still training; choose its size once the curve is there.")
    else:
        audience = actions.resize_lookalike(lookalike, form.cleaned_data["size_pct"], by=request.user)
        messages.success(request, f"Size set to {lookalike.size_pct:g} %: {audience.size:,} customers.")
    return redirect("audiences:detail", pk=pk)
