from .models import WRITE_ROLES, Role, role_of


def roles(request) -> dict:
    role = role_of(getattr(request, "user", None))
    match = getattr(request, "resolver_match", None)
    return {
        "user_role": role,
        "can_write": role in WRITE_ROLES,
        "is_admin": role == Role.ADMIN,
        "section": (match.namespace or match.url_name) if match else "",
    }
