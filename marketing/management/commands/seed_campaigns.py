"""Add the demo's delivery to the demo listeners: channels, placements, three campaigns, caps, plans.

    manage.py seed_campaigns [--reset]

Run after `manage.py seed_demo` (the plans' audiences are rules over its listeners). Running it
again creates nothing that is already there; --reset first removes the demo campaigns with their
history (served ads, events, spend) and builds them afresh.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from marketing import demo


class Command(BaseCommand):
    help = "Create the demo campaigns (premium-upsell push, new-release banner, win-back e-mail) with caps and plans."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true",
                            help="First delete the demo campaigns, their placements, plans, history and channels.")

    def handle(self, *args, reset: bool = False, **options):
        if reset:
            deleted = demo.delete_demo_campaigns()
            if options["verbosity"] >= 1:
                self.stdout.write("reset: deleted " + ", ".join(f"{n} {kind}" for kind, n in deleted.items()))
        made = demo.store_demo_campaigns()
        if demo.store_demo_mix() and options["verbosity"] >= 1:
            self.stdout.write("Demo marketing history for the Budget page stored; its first model is fitting.")
        if options["verbosity"] >= 1:
            if any(made.values()):
                self.stdout.write("Demo campaigns: created " + ", ".join(f"{n} {kind}" for kind, n in made.items() if n))
            else:
                self.stdout.write("Demo campaigns already there.")
