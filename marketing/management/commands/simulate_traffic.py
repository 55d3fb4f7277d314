"""Drive decisions and events against the demo, as the service's apps would (see marketing/simulator.py).

    manage.py simulate_traffic [--rate 5] [--duration SECONDS] [--seed N] [--once N]

Runs until Ctrl-C or SIGTERM unless --duration or --once says otherwise; a one-line summary
every 30 seconds and at the end.
"""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError

from marketing.simulator import Simulator


class Command(BaseCommand):
    help = "Simulate listeners meeting placements: decisions through the engine, their answers as events."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=5.0, help="Decisions per second (default 5).")
        parser.add_argument("--duration", type=float, default=None, help="Stop after this many seconds (default: never).")
        parser.add_argument("--seed", type=int, default=None, help="Same seed, same choices of listeners and answers.")
        parser.add_argument("--once", type=int, default=None, metavar="N",
                            help="Make N decisions as fast as possible, post their events, and stop.")
        parser.add_argument("--summary-every", type=float, default=30.0, help="Seconds between summary lines (default 30).")

    def handle(self, *args, rate, duration, seed, once, summary_every, **options):
        if rate <= 0:
            raise CommandError("--rate must be positive.")
        if duration is not None and duration <= 0:
            raise CommandError("--duration must be positive.")
        if once is not None and once < 1:
            raise CommandError("--once must be at least 1.")

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()  # a log file sees each line at once

        stop = []
        handlers = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[signum] = signal.signal(signum, lambda *_: stop.append(True))
            except ValueError:  # not the main thread (called from a test runner's thread): no signals then
                pass
        try:
            simulator = Simulator(rate=rate, seed=seed, log=log, summary_every=summary_every)
            if once is None:
                log(f"simulator: {rate:g} decisions/s" + (f" for {duration:g} s" if duration else " until stopped"))
            try:
                simulator.run(duration=duration, once=once, should_stop=lambda: bool(stop))
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
