"""One access path per delivery object: fetch it for a user, 404 when it does not exist, 403 when the user may not change it.

Roles are global (analysts read everything, marketers and admins change it), so the check is the
role; the page decorators check it too, and these keep every view honest when a page gains a POST.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import WRITE_ROLES, role_of

from .models import Ad, BudgetScenario, Campaign, Channel, FrequencyCap, MixDataset, MixModel, Placement


def _get(queryset: QuerySet, user, pk: int, write: bool) -> Model:
    found = get_object_or_404(queryset, pk=pk)
    if write and role_of(user) not in WRITE_ROLES:
        raise PermissionDenied("Your role can read delivery settings but not change them.")
    return found


def get_campaign_for_user(user, pk: int, *, write: bool = False) -> Campaign:
    return _get(Campaign.objects.select_related("owner"), user, pk, write)


def get_ad_for_user(user, pk: int, *, write: bool = False) -> Ad:
    return _get(Ad.objects.select_related("campaign", "promoted_item"), user, pk, write)


def get_channel_for_user(user, pk: int, *, write: bool = False) -> Channel:
    return _get(Channel.objects.all(), user, pk, write)


def get_placement_for_user(user, pk: int, *, write: bool = False) -> Placement:
    return _get(Placement.objects.select_related("channel"), user, pk, write)


def get_cap_for_user(user, pk: int, *, write: bool = False) -> FrequencyCap:
    return _get(FrequencyCap.objects.select_related("ad", "campaign", "placement", "channel"), user, pk, write)


def get_dataset_for_user(user, pk: int, *, write: bool = False) -> MixDataset:
    return _get(MixDataset.objects.select_related("created_by"), user, pk, write)


def get_mix_model_for_user(user, pk: int, *, write: bool = False) -> MixModel:
    return _get(MixModel.objects.select_related("dataset", "job", "created_by"), user, pk, write)


def get_scenario_for_user(user, pk: int, *, write: bool = False) -> BudgetScenario:
    return _get(BudgetScenario.objects.select_related("model__dataset", "created_by", "applied_by"), user, pk, write)
