from django.apps import AppConfig


class MarketingConfig(AppConfig):
    name = "marketing"
    verbose_name = "Campaigns and delivery"

    def ready(self) -> None:
        from . import setup

        setup.connect()
