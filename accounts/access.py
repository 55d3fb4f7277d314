"""Role checks for HTML views: anonymous users go to the login page, the wrong role gets 403.

A session that gave its password but not yet the code of its authenticator counts as anonymous
(the sign-in view makes none; this stops one made any other way).
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from .models import ALL_ROLES, WRITE_ROLES, Role, needs_second_factor, role_of


def _role_required(allowed: frozenset):
    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated or needs_second_factor(request.user):
                return redirect_to_login(request.get_full_path())
            if role_of(request.user) not in allowed:
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


viewer_required = _role_required(ALL_ROLES)
"""Any role: Analysts read everything."""

writer_required = _role_required(WRITE_ROLES)
"""Marketers and Admins: changes data, starts jobs."""

admin_required = _role_required(frozenset({Role.ADMIN}))
"""Admins only: users, roles, API clients."""
