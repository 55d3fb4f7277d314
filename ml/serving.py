"""The champion model of a key, loaded once per process and reloaded when the champion changes.

A process asks the database which version is champion at most once every CHECK_SECONDS
per key (one indexed query), so a promotion made by another process (the web, a worker), or
an online model rewritten in place (its revision moves), is picked up within that time
whatever the cache backend; in the process that promoted,
the registry calls `forget` after commit and the change is seen at once.

Heavy libraries (xgboost, sklearn through pickle) are imported only when a model loads, except
in a web server, which imports them at start-up (`warm`, called by config/wsgi.py).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.held import refreshed

CHECK_SECONDS = 1.0


class UnknownKind(LookupError):
    """No loader is registered for a model version's kind."""


def _load_pickle(path: Path) -> Any:
    # Only files the registry wrote under the model directory are loaded; pickle is trusted here.
    with open(path, "rb") as f:
        return pickle.load(f)


def _load_xgboost(path: Path) -> Any:
    if path.suffix == ".pkl":
        return _load_pickle(path)
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(str(path))
    return booster


def _load_ftrl(path: Path) -> Any:
    if path.suffix == ".pkl":  # an automodel.Online: FTRL with the batch version it corrects
        return _load_pickle(path)
    from .ftrl import FTRL

    return FTRL.from_bytes(path.read_bytes())


LOADERS: dict[str, Callable[[Path], Any]] = {
    "logistic": _load_pickle,
    "gbdt_lr": _load_pickle,
    "xgboost": _load_xgboost,
    "ftrl": _load_ftrl,
}


def load(kind: str, path: Path) -> Any:
    """Load one artefact with the loader for its kind."""
    try:
        loader = LOADERS[kind]
    except KeyError:
        raise UnknownKind(f"No loader for model kind {kind!r}; known kinds: {', '.join(sorted(LOADERS))}") from None
    return loader(path)


@dataclass
class _Loaded:
    version_id: int | None
    model: Any
    checked_at: float
    number: int | None = None
    revision: int = 0


_loaded: dict[str, _Loaded] = {}
_lock = threading.Lock()  # one thread loads a model file
_checking = threading.Lock()  # one thread asks the database whether a loaded champion or challenger is still current


def _champion_id(key: str) -> tuple[int, int] | None:
    """(id, revision) of the key's champion: a new champion, or an online model rewritten in place, reloads."""
    from .models import ModelVersion

    return ModelVersion.objects.champions().filter(key=key).values_list("pk", "revision").first()


def champion(key: str) -> Any | None:
    """The loaded champion model of `key`, or None when the key has no champion yet.

    When a check is due, one thread of the process asks the database; the others go on with the
    loaded model meanwhile (it is at most one check old). Without that, every thread of a busy
    worker that met the due check asked too.
    """
    entry = _loaded.get(key)
    now = time.monotonic()
    if entry is not None and now - entry.checked_at < CHECK_SECONDS:
        return entry.model
    if entry is None:
        return _check_champion(key, entry, now)
    return refreshed(_checking, entry.model, lambda: _check_champion(key, entry, now))


def _check_champion(key: str, entry: _Loaded | None, now: float) -> Any | None:
    found = _champion_id(key)
    version_id, revision = found if found is not None else (None, 0)
    if entry is not None and (entry.version_id, entry.revision) == (version_id, revision):
        entry.checked_at = now
        return entry.model
    with _lock:  # one thread loads; the others wait for it rather than load the same file
        entry = _loaded.get(key)
        if entry is not None and (entry.version_id, entry.revision) == (version_id, revision):
            return entry.model
        model = number = None
        if version_id is not None:
            from .models import ModelVersion
            from .registry import artefact_path

            version = ModelVersion.objects.get(pk=version_id)
            model = load(version.kind, artefact_path(version))
            number = version.version
        _loaded[key] = _Loaded(version_id, model, time.monotonic(), number, revision)
        return model


def warm() -> None:
    """Import what loading and scoring a champion needs, so a new web worker's first model-ranked decision
    does not pay for it (~2 s, mostly scikit-learn, which the pickled scorers reference)."""
    import sklearn.linear_model  # noqa: F401
    import xgboost  # noqa: F401
    from scipy import special  # noqa: F401  (ml.bandits' quadrature)


def champion_version_id(key: str) -> int | None:
    """The id of the version `champion(key)` last returned (for logging which model decided)."""
    entry = _loaded.get(key)
    return entry.version_id if entry else None


def champion_number(key: str) -> int | None:
    """The version number (1, 2 …) of the champion `champion(key)` last returned."""
    entry = _loaded.get(key)
    return entry.number if entry else None


def forget(key: str | None = None) -> None:
    """Drop the loaded model of `key` (all keys when None): the next `champion` call reloads."""
    with _lock:
        if key is None:
            _loaded.clear()
            _challengers.clear()
        else:
            _loaded.pop(key, None)
            _challengers.pop(key, None)


@dataclass
class Challenger:
    """The newest candidate of a key registered after its champion was promoted, and both versions' live traffic."""

    version_id: int
    number: int
    model: Any
    champion_traffic: tuple[int, int]  # (served, responded) by the champion since the challenger came
    traffic: tuple[int, int]
    prior_rate: float = 0.05  # the champion's response rate at validation: both versions' prior mean


_challengers: dict[str, tuple[float, Challenger | None]] = {}


def challenger(key: str) -> Challenger | None:
    """The key's challenger (None when it has none), re-read at most every CHECK_SECONDS, its model loaded once.

    Traffic counts come from `metrics["traffic"]` of both versions (written by the minute's refresh).
    """
    now = time.monotonic()
    held = _challengers.get(key)
    if held is not None and now - held[0] < CHECK_SECONDS:
        return held[1]
    if held is None:
        return _check_challenger(key, held, now)
    return refreshed(_checking, held[1], lambda: _check_challenger(key, held, now))


def _check_challenger(key: str, held: tuple[float, Challenger | None] | None, now: float) -> Challenger | None:
    from .models import ModelVersion
    from .registry import artefact_path

    champion = (ModelVersion.objects.champions().filter(key=key)
                .values_list("promoted_at", "metrics__traffic", "metrics__base_rate").first())
    found = None
    if champion is not None and champion[0] is not None:
        found = (ModelVersion.objects.candidates().filter(key=key, created_at__gt=champion[0]).order_by("-version")
                 .values_list("pk", "version", "kind", "artefact", "metrics__traffic").first())
    if found is None:
        _challengers[key] = (now, None)
        return None
    pk, number, kind, artefact, traffic = found
    previous = held[1] if held is not None else None
    model = previous.model if previous is not None and previous.version_id == pk else None
    if model is None:
        version = ModelVersion(pk=pk, key=key, kind=kind, artefact=artefact)
        model = load(kind, artefact_path(version))

    def counts(value) -> tuple[int, int]:
        value = value or {}
        return int(value.get("served", 0)), int(value.get("responded", 0))

    rate = champion[2] if isinstance(champion[2], (int, float)) and 0 < champion[2] < 1 else 0.05
    entry = Challenger(pk, number, model, counts(champion[1]), counts(traffic), float(rate))
    _challengers[key] = (now, entry)
    return entry
