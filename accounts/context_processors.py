from .models import WRITE_ROLES, Role, role_of


def roles(request) -> dict:
    role = role_of(getattr(request, "user", None))
    return {"user_role": role, "can_write": role in WRITE_ROLES, "is_admin": role == Role.ADMIN}
