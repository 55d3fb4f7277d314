import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import Role, set_role


class Command(BaseCommand):
    help = "Create the admin user if missing (or reset its password with --reset) and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", help="default: a random one, printed")
        parser.add_argument("--reset", action="store_true", help="set a new password if the user exists")

    def handle(self, username, password, reset, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user and not reset:
            self.stdout.write(f"Admin '{username}' exists (use --reset for a new password).")
            return
        password = password or secrets.token_urlsafe(12)
        if user is None:
            user = User.objects.create_user(username, f"{username}@example.com", password)
        else:
            user.set_password(password)
            user.is_active = True
            user.save()
        set_role(user, Role.ADMIN)
        self.stdout.write(f"Login: {username} / {password}")
