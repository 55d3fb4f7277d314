from django.core.management.base import BaseCommand, CommandError

from accounts.actions import issue_api_client
from accounts.models import SCOPES, ApiClient


class Command(BaseCommand):
    help = "Create an API client and print its token once. Scopes: " + ", ".join(SCOPES)

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scopes", required=True, help="comma-separated, e.g. customers:read,activities:write")

    def handle(self, name, scopes, **options):
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        if ApiClient.objects.filter(name__iexact=name).exists():
            raise CommandError(f"An API client named '{name}' already exists.")
        try:
            client, token = issue_api_client(name=name, scopes=wanted)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Created API client '{client.name}' with scopes {', '.join(client.scopes)}. The token is shown only now:")
        self.stdout.write(token)
