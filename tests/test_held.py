"""config.held.refreshed: one thread refreshes a held value, the others go on with it."""

import threading

import pytest

from config.held import refreshed


def test_a_free_lock_refreshes_and_is_free_again_even_when_the_refresh_fails():
    lock = threading.Lock()
    assert refreshed(lock, "old", lambda: "new") == "new" and not lock.locked()
    with pytest.raises(RuntimeError):
        refreshed(lock, "old", lambda: (_ for _ in ()).throw(RuntimeError("the query failed")))
    assert not lock.locked()  # the next thread may refresh


def test_while_another_thread_refreshes_the_held_value_is_returned_without_refreshing():
    lock = threading.Lock()
    calls = []
    with lock:  # another thread's refresh
        assert refreshed(lock, "old", lambda: calls.append(1) or "new") == "old"
    assert calls == []
