from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, roles and API clients"

    def ready(self) -> None:
        from . import schema  # noqa: F401  registers the bearer scheme with drf-spectacular
