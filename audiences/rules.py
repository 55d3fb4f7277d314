"""Audience rules: a JSON tree, validated with errors that name the path, compiled to one ORM query.

Schema (every node is an object):

    {"all": [node, ...]}                      every child holds (AND); at least one child
    {"any": [node, ...]}                      some child holds (OR); at least one child
    {"not": node}                             the child does not hold
    {"field": F, "op": OP, "value": V}        a customer or persona field (FIELDS below)
    {"pref": DIM, "key": K, "op": OP, "value": X}
                                              a preference share, DIM in artists / genres /
                                              languages / moods: "hip-hop affinity >= 0.3"
                                              (a name not in the customer's map has share 0)
    {"did": KIND, "at_least": N, "in_last_days": D, "artist"|"genre"|"item": NAME}
                                              behaviour: did KIND (on that artist, genre or item
                                              external id) at least N times (default 1) in the last
                                              D days (default: ever)
    {"did_not": KIND, "in_last_days": D, "artist"|"genre"|"item": NAME}
    {"in_audience": ID} / {"not_in_audience": ID}
                                              membership of another rule audience (no cycles)

Operators: eq, ne, in, not_in, between ([low, high], inclusive), gte, lte, gt, lt,
contains (text), is_set, is_empty (no value). "ne" and "not_in" hold for a missing value.

Compilation yields a Q over Customer; behaviour and membership become subqueries, so
`Customer.objects.filter(q)` is one SQL statement however deep the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from .models import ActivityKind, Gender, Segment


class RuleError(ValueError):
    """A rule that cannot be compiled; `path` says where in the tree, e.g. all[2].any[0].value."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path or 'rule'}: {reason}")
        self.path = path or "rule"
        self.reason = reason


@dataclass(frozen=True)
class FieldSpec:
    lookup: str  # ORM path from Customer
    kind: str  # text, int, number, bool, date, datetime, choice
    label: str
    choices: tuple[str, ...] = ()


FIELDS: dict[str, FieldSpec] = {
    "external_id": FieldSpec("external_id", "text", "Customer id"),
    "age": FieldSpec("birth_year", "int", "Age"),
    "birth_year": FieldSpec("birth_year", "int", "Birth year"),
    "gender": FieldSpec("gender", "choice", "Gender", tuple(Gender.values)),
    "region": FieldSpec("region", "text", "Region"),
    "city_tier": FieldSpec("city_tier", "int", "City tier"),
    "signup_date": FieldSpec("signup_date", "date", "Signup date"),
    "is_subscriber": FieldSpec("is_subscriber", "bool", "Subscriber"),
    "segment": FieldSpec("persona__segment", "choice", "Value segment", tuple(Segment.values)),
    "top_artist": FieldSpec("persona__top_artist", "text", "Top artist"),
    "top_genre": FieldSpec("persona__top_genre", "text", "Top genre"),
    "top_language": FieldSpec("persona__top_language", "text", "Top language"),
    "top_mood": FieldSpec("persona__top_mood", "text", "Top mood"),
    **{
        f"{what}_{days}d": FieldSpec(f"persona__{what}_{days}d", "int", f"{what.capitalize()} in {days} days")
        for what in ("plays", "activities")
        for days in (7, 30, 90)
    },
    "purchases_90d": FieldSpec("persona__purchases_90d", "int", "Purchases in 90 days"),
    "spend_90d": FieldSpec("persona__spend_90d", "number", "Spend in 90 days"),
    "last_active_at": FieldSpec("persona__last_active_at", "datetime", "Last active"),
}
PREFERENCE_DIMENSIONS = ("artists", "genres", "languages", "moods")
OPS = {"eq", "ne", "in", "not_in", "between", "gte", "lte", "gt", "lt", "contains", "is_set", "is_empty"}
ORDERED_OPS = {"between", "gte", "lte", "gt", "lt"}
KINDS = {label: value for value, label in ActivityKind.choices}
MAX_DEPTH = 12


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_value(spec: FieldSpec, op: str, value: Any, path: str) -> None:
    if op in ("is_set", "is_empty"):
        return
    if op == "contains" and spec.kind != "text":
        raise RuleError(path, f"'contains' works on text fields, not on {spec.label.lower()}")
    if op in ORDERED_OPS and spec.kind in ("bool", "choice"):
        raise RuleError(path, f"'{op}' needs an ordered field; {spec.label.lower()} is not")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise RuleError(_at(path, "value"), "must be a non-empty list")
        for i, item in enumerate(value):
            _check_scalar(spec, item, _at(path, f"value[{i}]"))
        return
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(_at(path, "value"), "must be a list [low, high]")
        _check_scalar(spec, value[0], _at(path, "value[0]"))
        _check_scalar(spec, value[1], _at(path, "value[1]"))
        return
    _check_scalar(spec, value, _at(path, "value"))


def _check_scalar(spec: FieldSpec, value: Any, path: str) -> None:
    kind = spec.kind
    ok = {
        "text": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "choice": isinstance(value, str) and value in spec.choices,
        "date": isinstance(value, str) and _parse_date(value) is not None,
        "datetime": isinstance(value, str) and _parse_datetime(value) is not None,
    }[kind]
    if not ok:
        expected = {
            "text": "text", "int": "a whole number", "number": "a number", "bool": "true or false",
            "choice": "one of " + ", ".join(repr(c) for c in spec.choices),
            "date": "a date YYYY-MM-DD", "datetime": "an ISO 8601 time",
        }[kind]
        raise RuleError(path, f"{value!r} is not {expected}")


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _parse_datetime(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else timezone.make_aware(moment, timezone.utc)


AudienceLoader = Callable[[int], "dict | None"]


def validate(rule: Any, load_audience: AudienceLoader | None = None, *, audience_id: int | None = None) -> None:
    """Raise RuleError at the first problem; load_audience(id) returns another audience's rule (or None)."""
    _walk(rule, "", load_audience, (audience_id,) if audience_id else (), 0)


def _walk(node: Any, path: str, load: AudienceLoader | None, chain: tuple, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise RuleError(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict) or not node:
        raise RuleError(path, "every node must be a non-empty object")
    def here(key: str) -> str:
        return _at(path, key)

    if "all" in node or "any" in node:
        key = "all" if "all" in node else "any"
        _only(node, {key}, path)
        children = node[key]
        if not isinstance(children, list) or not children:
            raise RuleError(here(key), "a group needs at least one condition")
        for i, child in enumerate(children):
            _walk(child, f"{here(key)}[{i}]", load, chain, depth + 1)
    elif "not" in node:
        _only(node, {"not"}, path)
        _walk(node["not"], here("not"), load, chain, depth + 1)
    elif "field" in node:
        _only(node, {"field", "op", "value"}, path)
        spec = FIELDS.get(node["field"]) if isinstance(node["field"], str) else None
        if spec is None:
            raise RuleError(here("field"), f"unknown field {node['field']!r} (known: {', '.join(FIELDS)})")
        op = node.get("op")
        if op not in OPS:
            raise RuleError(here("op"), f"unknown operator {op!r} (known: {', '.join(sorted(OPS))})")
        if op not in ("is_set", "is_empty") and "value" not in node:
            raise RuleError(here("value"), "missing")
        _check_value(spec, op, node.get("value"), path)
    elif "pref" in node:
        _only(node, {"pref", "key", "op", "value"}, path)
        if node["pref"] not in PREFERENCE_DIMENSIONS:
            raise RuleError(here("pref"), f"unknown preference {node['pref']!r} (known: {', '.join(PREFERENCE_DIMENSIONS)})")
        if not isinstance(node.get("key"), str) or not node["key"]:
            raise RuleError(here("key"), "name the artist, genre, language or mood")
        if node.get("op") not in ORDERED_OPS:
            raise RuleError(here("op"), f"preferences compare with {', '.join(sorted(ORDERED_OPS))}")
        _check_value(FieldSpec("", "number", "preference share"), node["op"], node.get("value"), path)
    elif "did" in node or "did_not" in node:
        key = "did" if "did" in node else "did_not"
        _only(node, {key, "at_least", "in_last_days", "artist", "genre", "item"}, path)
        if node[key] not in KINDS:
            raise RuleError(here(key), f"unknown activity {node[key]!r} (known: {', '.join(KINDS)})")
        targets = [t for t in ("artist", "genre", "item") if t in node]
        if len(targets) > 1:
            raise RuleError(path, "name at most one of artist, genre or item")
        for t in targets:
            if not isinstance(node[t], str) or not node[t]:
                raise RuleError(here(t), "must be a non-empty name")
        if "at_least" in node:
            if key == "did_not":
                raise RuleError(here("at_least"), "'did_not' means zero times; drop at_least")
            if not isinstance(node["at_least"], int) or isinstance(node["at_least"], bool) or node["at_least"] < 1:
                raise RuleError(here("at_least"), "must be a whole number of at least 1")
        if "in_last_days" in node:
            days = node["in_last_days"]
            if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
                raise RuleError(here("in_last_days"), "must be a whole number of days between 1 and 3650")
    elif "in_audience" in node or "not_in_audience" in node:
        key = "in_audience" if "in_audience" in node else "not_in_audience"
        _only(node, {key}, path)
        target = node[key]
        if not isinstance(target, int) or isinstance(target, bool):
            raise RuleError(here(key), "must be an audience id")
        if target in chain:
            raise RuleError(here(key), f"audience {target} refers back to itself (cycle {' → '.join(map(str, chain + (target,)))})")
        rule = load(target) if load else None
        if rule is None:
            raise RuleError(here(key), f"no audience with id {target}")
        _walk(rule, f"{here(key)}<{target}>", load, chain + (target,), depth + 1)
    elif "list" in node:  # what in_audience resolves to for an uploaded list or a lookalike (with its seed)
        _only(node, {"list", "seed"}, path)
        if not isinstance(node["list"], int) or isinstance(node["list"], bool):
            raise RuleError(here("list"), "must be an audience id")
        seed = node.get("seed")
        if seed is not None:
            if seed in chain:
                raise RuleError(path, f"lookalike {node['list']} learns from audience {seed}, which would include it "
                                      f"(cycle {' → '.join(map(str, chain + (seed,)))})")
            rule = load(seed) if load else None
            if rule is not None:
                _walk(rule, f"{path}<seed {seed}>", load, chain + (seed,), depth + 1)
    else:
        raise RuleError(path, f"unknown node with keys {sorted(node)}; use all, any, not, field, pref, did, did_not or in_audience")


def _only(node: dict, allowed: set, path: str) -> None:
    extra = sorted(set(node) - allowed)
    if extra:
        raise RuleError(_at(path, extra[0]), f"not allowed here (allowed: {', '.join(sorted(allowed))})")


# -- compiling -------------------------------------------------------------------------------------


def compile_rule(rule: dict, load_audience: AudienceLoader | None = None, *, now: datetime | None = None) -> Q:
    """The Q over Customer for a validated rule (validate first: this assumes a well-formed tree)."""
    return _compile(rule, load_audience, now or timezone.now())


def _compile(node: dict, load: AudienceLoader | None, now: datetime) -> Q:
    if "all" in node:
        q = Q()
        for child in node["all"]:
            q &= _compile(child, load, now)
        return q
    if "any" in node:
        first, *rest = node["any"]
        q = _compile(first, load, now)
        for child in rest:
            q |= _compile(child, load, now)
        return q
    if "not" in node:
        return ~_compile(node["not"], load, now)
    if "field" in node:
        return _field_q(node, now)
    if "pref" in node:
        return _preference_q(node)
    if "did" in node or "did_not" in node:
        return _behaviour_q(node, now)
    if "in_audience" in node:
        return _compile(load(node["in_audience"]), load, now)
    if "list" in node:
        from .models import AudienceMember

        return Q(pk__in=AudienceMember.objects.filter(audience_id=node["list"]).values("customer_id"))
    return ~_compile(load(node["not_in_audience"]), load, now)


def _field_q(node: dict, now: datetime) -> Q:
    name, op, value = node["field"], node["op"], node.get("value")
    spec = FIELDS[name]
    lookup = spec.lookup
    if spec.kind == "date":
        value = [_parse_date(v) for v in value] if isinstance(value, list) else (_parse_date(value) if value else value)
    elif spec.kind == "datetime":
        value = [_parse_datetime(v) for v in value] if isinstance(value, list) else (_parse_datetime(value) if value else value)
    if name == "age":
        # Age is this year minus the birth year, so ages map to birth years in reverse order.
        year = now.year
        flip = {"gte": "lte", "lte": "gte", "gt": "lt", "lt": "gt"}
        if op == "between":
            low, high = value
            return _compare(lookup, "between", [year - high, year - low])
        if op in flip:
            return _compare(lookup, flip[op], year - value)
        if op in ("in", "not_in"):
            return _compare(lookup, op, [year - v for v in value])
        if op in ("eq", "ne"):
            return _compare(lookup, op, year - value)
    if lookup.startswith("persona__"):
        # Persona conditions are subqueries on the persona table: a customer without a persona
        # then simply fails the positive test, whatever joins the rest of the tree needs.
        from .models import Persona

        positive = {"ne": "eq", "not_in": "in", "is_empty": "is_set"}
        local = lookup.removeprefix("persona__")
        inner = _filled(local) if spec.kind == "text" and positive.get(op, op) == "is_set" else _compare(local, positive.get(op, op), value)
        q = Q(pk__in=Persona.objects.filter(inner).values("customer_id"))
        return ~q if op in positive else q
    if spec.kind == "text" and op in ("is_set", "is_empty"):
        return _filled(lookup) if op == "is_set" else ~_filled(lookup)
    return _compare(lookup, op, value)


def _filled(lookup: str) -> Q:
    return Q(**{f"{lookup}__isnull": False}) & ~Q(**{lookup: ""})


def _compare(lookup: str, op: str, value: Any) -> Q:
    if op == "eq":
        return Q(**{lookup: value})
    if op == "ne":
        return ~Q(**{lookup: value})
    if op == "in":
        return Q(**{f"{lookup}__in": value})
    if op == "not_in":
        return ~Q(**{f"{lookup}__in": value})
    if op == "between":
        return Q(**{f"{lookup}__gte": value[0], f"{lookup}__lte": value[1]})
    if op in ("gte", "lte", "gt", "lt"):
        return Q(**{f"{lookup}__{op}": value})
    if op == "contains":
        return Q(**{f"{lookup}__icontains": value})
    if op == "is_set":
        return Q(**{f"{lookup}__isnull": False})
    return Q(**{f"{lookup}__isnull": True})  # is_empty


def _preference_q(node: dict) -> Q:
    """A share compared with a number; a name missing from the map (or no persona) counts as a share of 0.

    SQL would read a missing JSON key as NULL, and NOT (NULL >= x) is NULL, so a "not" around
    the condition would lose those customers: the key's presence is tested explicitly, in a
    subquery on the persona table.
    """
    from .models import Persona

    dimension, key, op, value = node["pref"], node["key"], node["op"], node["value"]
    present = Q(**{f"{dimension}__has_key": key})
    compared = _compare(f"{dimension}__{key}", op, value)
    zero_holds = value[0] <= 0 <= value[1] if op == "between" else {"gte": 0 >= value, "lte": 0 <= value, "gt": 0 > value, "lt": 0 < value}[op]
    if zero_holds:  # holds unless a stored share fails the comparison
        return ~Q(pk__in=Persona.objects.filter(present & ~compared).values("customer_id"))
    return Q(pk__in=Persona.objects.filter(present & compared).values("customer_id"))


def _behaviour_q(node: dict, now: datetime) -> Q:
    from .models import Activity

    negate = "did_not" in node
    kind = KINDS[node["did_not" if negate else "did"]]
    activities = Activity.objects.filter(kind=kind)
    if "in_last_days" in node:
        activities = activities.filter(occurred_at__gte=now - timedelta(days=node["in_last_days"]))
    if "artist" in node:
        activities = activities.filter(item__artist=node["artist"])
    elif "item" in node:
        activities = activities.filter(item__external_id=node["item"])
    elif "genre" in node:
        if connection.vendor == "postgresql":
            activities = activities.filter(item__genres__contains=[node["genre"]])
        else:  # SQLite has no JSON containment; genres are stored as JSON text
            import json

            activities = activities.filter(item__genres__icontains=json.dumps(node["genre"]))
    at_least = node.get("at_least", 1)
    if at_least == 1:
        q = Q(Exists(activities.filter(customer=OuterRef("pk"))))
    else:
        # count(*), not count(id): the window is then read from the covering index alone
        counted = activities.values("customer_id").annotate(n=Count("*")).filter(n__gte=at_least).values("customer_id")
        q = Q(pk__in=counted)
    return ~q if negate else q


# -- explaining ------------------------------------------------------------------------------------


def explain(rule: dict, customer, load_audience: AudienceLoader | None = None, *, now: datetime | None = None) -> dict:
    """Which conditions held for this customer: the tree with `held` on every node (one query per leaf)."""
    from .models import Customer

    now = now or timezone.now()

    def held(q: Q) -> bool:
        return Customer.objects.filter(q, pk=customer.pk).exists()

    def walk(node: dict) -> dict:
        if "all" in node or "any" in node:
            key = "all" if "all" in node else "any"
            children = [walk(c) for c in node[key]]
            result = all(c["held"] for c in children) if key == "all" else any(c["held"] for c in children)
            return {"group": key, "held": result, "children": children}
        if "not" in node:
            child = walk(node["not"])
            return {"group": "not", "held": not child["held"], "children": [child]}
        return {"condition": node, "text": describe(node), "held": held(_compile(node, load_audience, now))}

    return walk(rule)


def explain_membership(audience, customer) -> dict:
    """Why a customer is or is not in any audience: a rule's conditions, a list's membership, a lookalike's rank."""
    from .models import Audience, AudienceMember

    if audience.kind == Audience.Kind.RULES:
        return explain(audience.rule, customer, Audience.rule_of)
    if audience.kind == Audience.Kind.LOOKALIKE:
        from .lookalikes import explain as explain_lookalike

        return explain_lookalike(audience, customer)
    member = AudienceMember.objects.filter(audience=audience, customer=customer).exists()
    return {"held": member, "kind": "list", "text": "is on the uploaded list" if member else "is not on the uploaded list"}


def outline(rule: dict) -> dict:
    """The rule as a tree of groups and conditions in words (explain() without the verdicts)."""
    if "all" in rule or "any" in rule:
        key = "all" if "all" in rule else "any"
        return {"group": key, "children": [outline(c) for c in rule[key]]}
    if "not" in rule:
        return {"group": "not", "children": [outline(rule["not"])]}
    return {"condition": rule, "text": describe(rule)}


OP_WORDS = {"eq": "is", "ne": "is not", "in": "is one of", "not_in": "is none of", "between": "is between",
            "gte": "≥", "lte": "≤", "gt": ">", "lt": "<", "contains": "contains", "is_set": "is set", "is_empty": "is empty"}


def describe(node: dict) -> str:
    """A rule condition in words, for the builder and the why view."""
    def show(value):
        if isinstance(value, list):
            return " and ".join(map(str, value)) if len(value) == 2 and node.get("op") == "between" else ", ".join(map(str, value))
        return str(value)

    if "field" in node:
        label = FIELDS[node["field"]].label if node["field"] in FIELDS else node["field"]
        words = f"{label} {OP_WORDS.get(node['op'], node['op'])}"
        return words if node["op"] in ("is_set", "is_empty") else f"{words} {show(node.get('value'))}"
    if "pref" in node:
        return f"{node['key']} {node['pref'][:-1]} affinity {OP_WORDS.get(node['op'], node['op'])} {show(node['value'])}"
    if "did" in node or "did_not" in node:
        negate = "did_not" in node
        kind = node["did_not" if negate else "did"]
        target = next((f" {t} {node[t]}" for t in ("artist", "genre", "item") if t in node), "")
        times = "" if negate else f" at least {node.get('at_least', 1)} time{'s' if node.get('at_least', 1) != 1 else ''}"
        window = f" in the last {node['in_last_days']} days" if "in_last_days" in node else ""
        return f"{'did not ' if negate else 'did '}{kind}{target}{times}{window}"
    if "in_audience" in node:
        return f"is in audience {node['in_audience']}"
    if "not_in_audience" in node:
        return f"is not in audience {node['not_in_audience']}"
    if "list" in node:
        return f"is on uploaded list {node['list']}"
    return "group"
