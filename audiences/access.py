"""One access path per catalogue object: 404 when it does not exist, 403 when the user may not change it.

Roles are global (analysts read everything, marketers and admins change it), as in marketing/access.py.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from accounts.models import WRITE_ROLES, role_of

from .models import Item


def get_item_for_user(user, pk: int, *, write: bool = False) -> Item:
    item = get_object_or_404(Item, pk=pk)
    if write and role_of(user) not in WRITE_ROLES:
        raise PermissionDenied("Your role can read the catalogue but not change it.")
    return item
