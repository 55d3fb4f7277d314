import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts import actions
from accounts.models import Role


class Command(BaseCommand):
    help = "Create the admin user if missing (or reset its password with --reset) and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", help="default: a random one, printed")
        parser.add_argument("--reset", action="store_true", help="set a new password if the user exists")
        parser.add_argument("--remove-2fa", action="store_true", dest="remove_2fa",
                            help="with --reset: also remove the admin's authenticator (a lost phone)")

    def handle(self, username, password, reset, remove_2fa, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user and not reset:
            self.stdout.write(f"Admin '{username}' exists (use --reset for a new password).")
            return
        password = password or secrets.token_urlsafe(12)
        if user is None:
            actions.create_user(username=username, email=f"{username}@example.com", password=password, role=Role.ADMIN)
        elif actions.reset_admin(user, password=password, remove_devices=remove_2fa):
            self.stdout.write(f"Removed the two-factor authenticator of '{username}'.")
        self.stdout.write(f"Login: {username} / {password}")
