from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, roles and API clients"

    def ready(self) -> None:
        from . import schema  # noqa: F401  registers the bearer scheme with drf-spectacular


class EncoreAdminConfig(admin_apps.AdminConfig):
    """Django admin with Encore's site: no login form of its own, and no way round the second factor."""

    default = False  # named in INSTALLED_APPS; AccountsConfig stays this module's default
    default_site = "accounts.security.EncoreAdminSite"
