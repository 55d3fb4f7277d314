"""Registry and serving: register → promote → served, promote again → reloaded, roll back → restored."""

import pickle

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from sklearn.linear_model import LogisticRegression

from ml import registry, serving
from ml.models import ModelVersion
from tests.threads import while_one_works

KEY = "campaign:12"


@pytest.fixture(autouse=True)
def committed(db, django_capture_on_commit_callbacks, monkeypatch):
    """Run promote / roll back as if their transaction committed, so serving hears of it."""
    for name in ("promote", "roll_back"):
        action = getattr(registry, name)

        def run(*args, _action=action, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return _action(*args, **kwargs)

        monkeypatch.setattr(registry, name, run)


@pytest.fixture(autouse=True)
def model_dir(settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    serving.forget()
    yield settings.MODEL_DIR
    serving.forget()


def fitted(sign: int) -> bytes:
    """A logistic regression that says 1 for x > 0 (sign=1) or for x < 0 (sign=-1)."""
    x = np.linspace(-3, 3, 60).reshape(-1, 1)
    return pickle.dumps(LogisticRegression().fit(x, (sign * x[:, 0] > 0).astype(int)))


def register(sign=1, **kwargs):
    return registry.register_candidate(KEY, "logistic", fitted(sign), metrics={"auc": 0.8}, **kwargs)


def served_prediction() -> int:
    return int(serving.champion(KEY).predict([[2.0]])[0])


def test_it_numbers_versions_per_key_and_writes_the_artefact_under_the_model_dir(model_dir):
    first, second = register(), register()
    other = registry.register_candidate("lookalike:3", "logistic", fitted(1))
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.status == ModelVersion.Status.CANDIDATE
    path = registry.artefact_path(first)
    assert path.parent.parent == model_dir and path.is_file()
    assert not first.artefact.startswith("/")
    assert not list(model_dir.rglob(".tmp-*")), "no temporary file is left behind"
    assert pickle.loads(path.read_bytes()).predict([[2.0]])[0] == 1


def test_it_copies_an_artefact_given_as_a_path(tmp_path):
    source = tmp_path / "trained.pkl"
    source.write_bytes(fitted(1))
    version = registry.register_candidate(KEY, "gbdt_lr", source, campaign_id=12)
    assert registry.artefact_path(version).read_bytes() == source.read_bytes()
    assert version.campaign_id == 12


def test_a_failed_write_leaves_neither_a_file_nor_a_row(model_dir, monkeypatch):
    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(registry.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        register()
    assert not [p for p in model_dir.rglob("*") if p.is_file()]
    assert not ModelVersion.objects.exists()


def test_it_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="Unknown model kind"):
        registry.register_candidate(KEY, "magic", b"x")


def test_a_key_without_a_champion_serves_nothing():
    register()
    assert serving.champion(KEY) is None


def test_the_promoted_candidate_is_served_and_a_later_promotion_replaces_it(mark):
    first = register(sign=1)
    registry.promote(first, by=mark)
    assert served_prediction() == 1
    model = serving.champion(KEY)
    assert serving.champion(KEY) is model, "loaded once, not per call"

    second = register(sign=-1, parent=first)
    registry.promote(second, by=mark)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == ModelVersion.Status.RETIRED and first.retired_at is not None
    assert second.status == ModelVersion.Status.CHAMPION and second.promoted_at is not None
    assert second.parent == first
    assert served_prediction() == 0
    assert serving.champion_version_id(KEY) == second.pk
    assert second.history[-1]["action"] == "promoted" and second.history[-1]["by"] == "mark"


def test_another_process_promotion_is_seen_after_the_check_interval(monkeypatch):
    first, second = register(sign=1), register(sign=-1)
    registry.promote(first)
    assert served_prediction() == 1
    # Another process promotes: no forget() here, the database is the only signal.
    ModelVersion.objects.filter(pk=first.pk).update(status=ModelVersion.Status.RETIRED)
    ModelVersion.objects.filter(pk=second.pk).update(status=ModelVersion.Status.CHAMPION)
    assert served_prediction() == 1, "within CHECK_SECONDS the loaded model is kept"
    monkeypatch.setattr(serving, "CHECK_SECONDS", 0.0)
    assert served_prediction() == 0


def test_roll_back_restores_the_previous_champion_and_goes_further_back_when_repeated(alice):
    v1, v2, v3 = register(sign=1), register(sign=-1), register(sign=1)
    for v in (v1, v2, v3):
        registry.promote(v)
    assert served_prediction() == 1

    restored = registry.roll_back(KEY, by=alice)
    assert restored.pk == v2.pk
    assert served_prediction() == 0
    v3.refresh_from_db()
    assert v3.status == ModelVersion.Status.RETIRED and v3.rolled_back_at is not None
    assert v3.history[-1] == {**v3.history[-1], "action": "rolled back", "by": "alice"}

    assert registry.roll_back(KEY).pk == v1.pk
    assert served_prediction() == 1
    with pytest.raises(registry.Refused, match="no earlier champion"):
        registry.roll_back(KEY)
    assert ModelVersion.objects.champions().get(key=KEY).pk == v1.pk


def test_it_refuses_to_promote_the_champion_again():
    version = register()
    registry.promote(version)
    with pytest.raises(registry.Refused, match="already the champion"):
        registry.promote(version)


def test_roll_back_without_history_is_refused():
    registry.promote(register())
    with pytest.raises(registry.Refused):
        registry.roll_back(KEY)


def test_the_database_allows_at_most_one_champion_per_key():
    a, b = register(), register()
    ModelVersion.objects.filter(pk=a.pk).update(status=ModelVersion.Status.CHAMPION)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=b.pk).update(status=ModelVersion.Status.CHAMPION)
    other = registry.register_candidate("campaign:13", "logistic", fitted(1))
    ModelVersion.objects.filter(pk=other.pk).update(status=ModelVersion.Status.CHAMPION)  # another key: fine
    assert ModelVersion.objects.champions().count() == 2


def test_an_unknown_kind_fails_to_load_with_a_clear_error(model_dir):
    version = register()
    ModelVersion.objects.filter(pk=version.pk).update(kind="mystery", status=ModelVersion.Status.CHAMPION)
    with pytest.raises(serving.UnknownKind, match="mystery"):
        serving.champion(KEY)


def test_an_ftrl_model_round_trips_through_the_registry():
    from ml.ftrl import FTRL

    model = FTRL(bits=8)
    version = registry.register_candidate(KEY, "ftrl", model.to_bytes())
    registry.promote(version)
    assert isinstance(serving.champion(KEY), FTRL)


def test_one_thread_asks_whether_the_champion_is_current_while_the_others_serve_it(monkeypatch):
    import threading
    import time

    registry.promote(register(sign=1))
    model = serving.champion(KEY)
    entry = serving._loaded[KEY]
    entry.checked_at -= serving.CHECK_SECONDS + 1  # the check is due
    asked, started = [], threading.Event()

    def slow_check(key):  # no query: the threads' connections would not see the test's rows
        asked.append(key)
        started.set()
        time.sleep(0.2)
        return entry.version_id, entry.revision

    monkeypatch.setattr(serving, "_champion_id", slow_check)
    got = while_one_works(lambda: serving.champion(KEY), started)
    assert asked == [KEY] and len(got) == 8 and all(g is model for g in got)
    assert time.monotonic() - serving._loaded[KEY].checked_at < 1  # the check was recorded: none due now
    serving.champion(KEY)
    assert asked == [KEY]


def test_one_thread_asks_for_the_challenger_while_the_others_use_the_one_held(monkeypatch):
    import threading
    import time

    held = serving.Challenger(1, 2, object(), (0, 0), (0, 0))
    serving._challengers[KEY] = (time.monotonic() - serving.CHECK_SECONDS - 1, held)  # due
    asked, started = [], threading.Event()

    def slow_check(key, held_, now):
        asked.append(key)
        started.set()
        time.sleep(0.2)
        serving._challengers[key] = (now, held_[1])
        return held_[1]

    monkeypatch.setattr(serving, "_check_challenger", slow_check)
    got = while_one_works(lambda: serving.challenger(KEY), started)
    assert asked == [KEY] and len(got) == 8 and all(g is held for g in got)
