"""Values a process holds in memory for a while, refreshed by one thread at a time.

A web worker runs several threads. When a held value (a placement's set-up, a champion check,
campaign spend, response rates) expires, every thread that meets it before the first has finished
refreshing it would refresh it too: the same query, once per thread. With `refreshed`, one thread
refreshes while the others go on with the value held, which is then old by at most the refresh's
own duration beyond its time to live.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def refreshed(lock: threading.Lock, held: T, refresh: Callable[[], T]) -> T:
    """`refresh()` when no other thread holds `lock` (held for the refresh), else `held`."""
    if not lock.acquire(blocking=False):
        return held
    try:
        return refresh()
    finally:
        lock.release()
