"""Thread helpers for tests of what a busy web worker's threads do at the same moment."""

from __future__ import annotations

import threading
from typing import Callable


def while_one_works(ask: Callable[[], object], started: threading.Event, others: int = 7) -> list:
    """Call `ask` in one thread and, once it has `started` its slow work, in `others` more threads: every answer.

    The first answer is the first thread's (the rest in the order they came back).
    """
    first_answer, answers, errors = [], [], []

    def run(into: list) -> None:
        try:
            into.append(ask())
        except Exception as exc:  # surfaced below: a failed thread must fail the test
            errors.append(exc)

    first = threading.Thread(target=run, args=(first_answer,))
    first.start()
    assert started.wait(5), "the first thread never started its work"
    rest = [threading.Thread(target=run, args=(answers,)) for _ in range(others)]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join()
    assert not errors, errors[:3]
    return first_answer + answers
