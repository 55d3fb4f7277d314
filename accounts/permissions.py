"""API permissions: a token needs the view's scope; a signed-in user needs a role."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import ALL_ROLES, WRITE_ROLES, ApiClient, role_of


class DenyAll(BasePermission):
    """Default for API views that forget to declare access: nobody gets in."""

    def has_permission(self, request, view) -> bool:
        return False


class ScopedAccess(BasePermission):
    """Views declare `scopes = {"GET": "customers:read", "POST": "activities:write"}`.

    Reading needs any role for users; writing needs Marketer or Admin.
    """

    message = "Your token or role does not allow this."

    def has_permission(self, request, view) -> bool:
        if request.method not in view.allowed_methods:
            return True  # the view answers 405, which says more than 403
        scope = getattr(view, "scopes", {}).get(request.method) or (
            getattr(view, "scopes", {}).get("GET") if request.method in ("HEAD", "OPTIONS") else None
        )
        if scope is None:
            return False
        if isinstance(request.auth, ApiClient):
            allowed = request.auth.has_scope(scope)
            if not allowed:
                self.message = f"This token lacks the '{scope}' scope."
            return allowed
        role = role_of(request.user)
        return role in (ALL_ROLES if request.method in SAFE_METHODS else WRITE_ROLES)


class AnyRoleOrToken(BasePermission):
    """Signed-in users with a role, or any active API token (the OpenAPI schema)."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ApiClient) or role_of(request.user) in ALL_ROLES
