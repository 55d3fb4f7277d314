from .models import WRITE_ROLES, Role, role_of


def roles(request) -> dict:
    role = role_of(getattr(request, "user", None))
    match = getattr(request, "resolver_match", None)
    return {
        "user_role": role,
        "can_write": role in WRITE_ROLES,
        "is_admin": role == Role.ADMIN,
        "section": _section(match),
    }


# Delivery set-up lives in the campaigns namespace but has its own navigation entry.
DELIVERY_PAGES = {"delivery", "channel_new", "channel_edit", "placement_new", "placement_edit", "plan", "simulate"}


def _section(match) -> str:
    """The navigation entry a page belongs to: its URL namespace, except analytics, which has its own entry."""
    if match is None:
        return ""
    if match.namespace == "audiences" and match.url_name.startswith("analytics"):
        return "analytics"
    if match.namespace == "campaigns" and match.url_name in DELIVERY_PAGES:
        return "delivery"
    if match.namespace == "campaigns" and match.url_name == "decisions":
        return "decisions"
    return match.namespace or match.url_name
