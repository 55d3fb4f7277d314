"""The audit log: action functions call `record` inside the transaction of their change.

No signals: a change made outside the action functions (a shell, a data migration) is not
logged, and a change that rolls back leaves no entry.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Iterable

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .models import ApiClient, AuditEntry


def plain(value):
    """The JSON form a value is stored in (Decimal and dates become text), so before and after compare alike."""
    if isinstance(value, models.Model):
        value = value.pk
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def editable_fields(model) -> list[str]:
    """The fields a form may change: concrete, editable, not the primary key (auto_now fields are not editable)."""
    return [f.name for f in model._meta.concrete_fields if f.editable and not f.primary_key]


def _value(field, value):
    """A field's value as stored: a form's Decimal("50") and the row's Decimal("50.00") are one value."""
    if isinstance(field, models.DecimalField) and isinstance(value, Decimal):
        value = value.quantize(Decimal(1).scaleb(-field.decimal_places))
    return plain(value)


def snapshot(obj: models.Model, fields: Iterable[str]) -> dict:
    """The values of `fields` on the object in memory (foreign keys as ids)."""
    return {name: _value(obj._meta.get_field(name), getattr(obj, obj._meta.get_field(name).attname)) for name in fields}


def stored(obj: models.Model, fields: Iterable[str]) -> dict | None:
    """The values of `fields` in the object's row as stored now, or None for an object not saved yet."""
    if obj.pk is None:
        return None
    found = {name: obj._meta.get_field(name) for name in fields}
    row = type(obj)._default_manager.filter(pk=obj.pk).values(*(f.attname for f in found.values())).first()
    return None if row is None else {name: _value(f, row[f.attname]) for name, f in found.items()}


def changes(before: dict | None, after: dict) -> dict:
    """{field: [before, after]} of the fields that differ; on creation, every field that holds something."""
    if before is None:
        return {k: [None, v] for k, v in after.items() if v not in (None, "", [], {})}
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def _actor(by) -> tuple:
    """(user, client, actor text) of whoever acts: a user, an API client (or its request principal), or None."""
    from .authentication import ApiClientPrincipal

    if isinstance(by, ApiClientPrincipal):
        by = by.client
    if isinstance(by, ApiClient):
        return None, by, f"api:{by.name}"
    if by is not None and getattr(by, "is_authenticated", False) and by.pk is not None:
        return by, None, by.get_username()
    return None, None, "system"


def record(action: str, obj: models.Model | None = None, *, by, changes: dict | None = None, label: str | None = None,
           note: str = "", object_type: str | None = None, object_id=None) -> AuditEntry:
    """Write one entry: `action` is "<object>.<verb>"; the object type defaults to its first part."""
    user, client, actor = _actor(by)
    return AuditEntry.objects.create(
        user=user, client=client, actor=actor[:160], action=action,
        object_type=object_type or action.split(".", 1)[0],
        object_id=str(object_id if object_id is not None else (obj.pk if obj is not None else ""))[:40],
        object_label=(label if label is not None else (str(obj) if obj is not None else ""))[:200],
        changes=changes or {}, note=note[:300],
    )


def record_save(kind: str, obj: models.Model, before: dict | None, *, by, fields: Iterable[str] | None = None,
                extra: dict | None = None, label: str | None = None) -> AuditEntry | None:
    """Record "<kind>.create" or "<kind>.update" from the stored values read before saving (see `stored`).

    An update that changed nothing is not recorded. `extra` adds {field: [before, after]} pairs
    that are not columns (many-to-many links).
    """
    fields = list(fields if fields is not None else editable_fields(type(obj)))
    diff = changes(before, snapshot(obj, fields))
    for name, (old, new) in (extra or {}).items():
        if before is None and new not in (None, "", [], {}) or before is not None and old != new:
            diff[name] = [None if before is None else old, new]
    if before is not None and not diff:
        return None
    return record(f"{kind}.{'create' if before is None else 'update'}", obj, by=by, changes=diff, label=label)
