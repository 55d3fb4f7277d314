"""Model registry actions: register a candidate, promote it, roll back.

Every change to which version serves takes row locks on all versions of the key
(`select_for_update`), so two operators promoting at once serialise instead of both
demoting the same champion; the partial unique constraint on ModelVersion is the last
line of defence. Serving is told after commit (see ml.serving.forget).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from .models import ModelVersion

EXTENSIONS = {ModelVersion.Kind.XGBOOST: ".ubj", ModelVersion.Kind.FTRL: ".npz"}


class Refused(Exception):
    """The registry cannot make this change (nothing to roll back to, already champion …)."""


def model_dir() -> Path:
    """MODEL_DIR when set, else a `models` folder beside the other artefacts."""
    configured = getattr(settings, "MODEL_DIR", None)
    return Path(configured) if configured else Path(settings.ARTIFACT_DIR) / "models"


def artefact_path(version: ModelVersion) -> Path:
    return model_dir() / version.artefact


def _write_atomically(target: Path, source: bytes | str | os.PathLike) -> None:
    """Temp file in the same folder, fsync, rename: a reader never sees half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, (bytes, bytearray, memoryview)):
                out.write(source)
            else:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _event(action: str, by) -> dict:
    return {"action": action, "by": getattr(by, "username", None) or (str(by) if by else None), "at": timezone.now().isoformat()}


def register_candidate(
    key: str,
    kind: str,
    artefact: bytes | str | os.PathLike,
    *,
    metrics: dict | None = None,
    features: list | None = None,
    parent: ModelVersion | None = None,
    trained_on: dict | None = None,
    notes: str = "",
    report: dict | None = None,
    suffix: str | None = None,
    by=None,
    **subject_ids: int | None,
) -> ModelVersion:
    """Store the artefact (bytes or a file to copy) and record it as the key's next candidate version.

    subject_ids: campaign_id, ad_id, audience_id. `suffix` overrides the file type the kind implies
    (".pkl" for a pickled scorer that bundles its transform with an xgboost model). The file is written before the row so a
    row never points at a missing file; a failed insert removes the file again.
    """
    if kind not in ModelVersion.Kind.values:
        raise ValueError(f"Unknown model kind {kind!r}; known: {', '.join(ModelVersion.Kind.values)}")
    unknown = set(subject_ids) - {"campaign_id", "ad_id", "audience_id"}
    if unknown:
        raise TypeError(f"Unexpected arguments: {sorted(unknown)}")
    folder = re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-.") or "model"
    relative = f"{folder}/{uuid.uuid4().hex}{suffix or EXTENSIONS.get(kind, '.pkl')}"
    target = model_dir() / relative
    _write_atomically(target, artefact)
    try:
        for attempt in range(3):  # two registrations for a new key can pick the same number
            try:
                with transaction.atomic():
                    latest = ModelVersion.objects.select_for_update().filter(key=key).aggregate(n=Max("version"))["n"]
                    return ModelVersion.objects.create(
                        key=key, kind=kind, version=(latest or 0) + 1, artefact=relative, metrics=metrics or {},
                        features=features or [], parent=parent, trained_on=trained_on or {}, notes=notes, report=report or {},
                        history=[_event("registered", by)], **subject_ids,
                    )
            except IntegrityError:
                if attempt == 2:
                    raise
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    raise AssertionError("unreachable")


def _lock_key(key: str) -> list[ModelVersion]:
    return list(ModelVersion.objects.select_for_update().filter(key=key).order_by("pk"))


def _make_champion(new: ModelVersion, rows: list[ModelVersion], action: str, by) -> ModelVersion:
    now = timezone.now()
    for old in rows:
        if old.status == ModelVersion.Status.CHAMPION:
            # Demote first: the partial unique index is checked per statement.
            old.status = ModelVersion.Status.RETIRED
            old.retired_at = now
            if action == "rolled back to":
                old.rolled_back_at = now
            old.history = [*old.history, _event("rolled back" if action == "rolled back to" else "retired", by)]
            old.save(update_fields=["status", "retired_at", "rolled_back_at", "history"])
    new.status = ModelVersion.Status.CHAMPION
    new.promoted_at = now
    new.retired_at = None
    new.rolled_back_at = None
    new.history = [*new.history, _event(action, by)]
    new.save(update_fields=["status", "promoted_at", "retired_at", "rolled_back_at", "history"])

    from . import serving

    transaction.on_commit(lambda: serving.forget(new.key))
    return new


def promote(version: ModelVersion, *, by=None) -> ModelVersion:
    """Make `version` its key's champion; the current champion, if any, retires."""
    with transaction.atomic():
        rows = _lock_key(version.key)
        current = next((r for r in rows if r.pk == version.pk), None)
        if current is None:
            raise Refused(f"Version {version.version} of {version.key} no longer exists.")
        if current.status == ModelVersion.Status.CHAMPION:
            raise Refused(f"Version {current.version} of {current.key} is already the champion.")
        return _make_champion(current, rows, "promoted", by)


def roll_back(key: str, *, by=None) -> ModelVersion:
    """Bring back the champion before the current one (by promoted_at); the current one is withdrawn.

    Versions withdrawn by an earlier roll back are skipped, so rolling back twice goes two
    champions back instead of bouncing between the last two.
    """
    with transaction.atomic():
        rows = _lock_key(key)
        previous = [
            r for r in rows
            if r.status == ModelVersion.Status.RETIRED and r.promoted_at is not None and r.rolled_back_at is None
        ]
        if not previous:
            raise Refused(f"{key} has no earlier champion to roll back to.")
        return _make_champion(max(previous, key=lambda r: (r.promoted_at, r.pk)), rows, "rolled back to", by)


def rewrite(version: ModelVersion, artefact: bytes, *, trained_on: dict) -> ModelVersion:
    """Replace an online model's artefact in place (atomically) and bump its revision, so serving reloads it.

    For models updated continuously (FTRL between retrains): one version per batch champion,
    not one per minute. The file is replaced before the row, so a reader that sees the new
    revision finds the new file.
    """
    from django.db.models import F

    _write_atomically(artefact_path(version), artefact)
    ModelVersion.objects.filter(pk=version.pk).update(revision=F("revision") + 1, trained_on=trained_on)
    version.refresh_from_db(fields=["revision", "trained_on"])
    return version
