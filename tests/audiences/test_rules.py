"""Audience rules: hand-computed memberships, SQL vs a plain-Python evaluator on random trees, precise errors."""

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiences.models import Activity, ActivityKind, Audience, Customer, Item, Persona
from audiences.rules import RuleError, compile_rule, describe, explain, validate

NOW = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)

# external_id: (birth_year, gender, region, tier, subscriber, persona or None)
PEOPLE = {
    "ana": (2000, "f", "south", 1, False, dict(segment="active", top_genre="hip-hop", plays_7d=5, spend_90d=0, genres={"hip-hop": 0.6, "pop": 0.4})),
    "ben": (1995, "m", "south", 2, True, dict(segment="loyal", top_genre="pop", plays_7d=1, spend_90d=30, genres={"pop": 0.9, "hip-hop": 0.1})),
    "cai": (1980, "x", "north", 1, False, dict(segment="casual", top_genre="rock", plays_7d=0, spend_90d=5, genres={"rock": 1.0})),
    "dee": (1999, "f", "south", 3, False, dict(segment="casual", top_genre="hip-hop", plays_7d=3, spend_90d=0, genres={"hip-hop": 0.3, "k-pop": 0.7})),
    "eve": (None, "", "", None, True, None),
    "fay": (1970, "f", "east", 4, False, dict(segment="loyal", top_genre="", plays_7d=9, spend_90d=12.5, genres={})),
}
# external_id: [(kind, days ago, artist, genres)]
ACTS = {
    "ana": [("play", 1, "Kid Nova", ["hip-hop"]), ("play", 2, "Kid Nova", ["hip-hop"]), ("play", 3, "Kid Nova", ["hip-hop"]), ("purchase", 40, "Kid Nova", ["hip-hop"])],
    "ben": [("play", 1, "Pop Star", ["pop"]), ("favourite", 10, "Pop Star", ["pop"])],
    "cai": [("play", 30, "Rockers", ["rock"])],
    "dee": [("play", 5, "NOVA9", ["k-pop", "pop"]), ("play", 6, "NOVA9", ["k-pop", "pop"]), ("skip", 1, "Kid Nova", ["hip-hop"])],
    "fay": [("purchase", 2, "Rockers", ["rock"])],
}


@pytest.fixture
def base(db):
    items = {}
    for acts in ACTS.values():
        for _, _, artist, genres in acts:
            key = f"{artist}-{'-'.join(genres)}"
            if key not in items:
                items[key] = Item.objects.create(external_id=key, title=key, artist=artist, genres=genres)
    for ext, (born, gender, region, tier, sub, persona) in PEOPLE.items():
        customer = Customer.objects.create(external_id=ext, birth_year=born, gender=gender, region=region, city_tier=tier,
                                           is_subscriber=sub, signup_date=date(2024, 1, 1))
        if persona:
            Persona.objects.create(customer=customer, as_of=NOW, **{**persona, "spend_90d": Decimal(str(persona["spend_90d"]))})
        for n, (kind, days, artist, genres) in enumerate(ACTS.get(ext, [])):
            Activity.objects.create(key=hash((ext, n)) % 2**62, customer=customer, item=items[f"{artist}-{'-'.join(genres)}"],
                                    kind=ActivityKind[kind.upper()], occurred_at=NOW - timedelta(days=days))


def members(rule, load=None):
    validate(rule, load)
    return set(Customer.objects.filter(compile_rule(rule, load, now=NOW)).values_list("external_id", flat=True))


@pytest.mark.parametrize("rule,expected", [
    ({"field": "region", "op": "eq", "value": "south"}, {"ana", "ben", "dee"}),
    ({"field": "age", "op": "between", "value": [25, 35]}, {"ana", "ben", "dee"}),  # 25, 30, 26 in 2025
    ({"pref": "genres", "key": "hip-hop", "op": "gte", "value": 0.3}, {"ana", "dee"}),
    ({"field": "segment", "op": "ne", "value": "loyal"}, {"ana", "cai", "dee", "eve"}),
    ({"field": "top_genre", "op": "is_empty"}, {"eve", "fay"}),
    ({"did": "play", "artist": "Kid Nova", "at_least": 3, "in_last_days": 7}, {"ana"}),
    ({"did": "play", "genre": "pop", "in_last_days": 7}, {"ben", "dee"}),
    ({"did_not": "play", "in_last_days": 7}, {"cai", "eve", "fay"}),
    # "young hip-hop fans in the south, active this week, not subscribers"
    ({"all": [
        {"field": "age", "op": "lte", "value": 30},
        {"field": "region", "op": "eq", "value": "south"},
        {"any": [{"pref": "genres", "key": "hip-hop", "op": "gte", "value": 0.3}, {"field": "top_genre", "op": "eq", "value": "hip-hop"}]},
        {"did": "play", "in_last_days": 7, "at_least": 2},
        {"not": {"field": "is_subscriber", "op": "eq", "value": True}},
    ]}, {"ana", "dee"}),
])
def test_rules_select_the_hand_computed_members(base, rule, expected):
    assert members(rule) == expected


def test_audiences_include_and_exclude_other_audiences(base, mark):
    south = Audience.objects.create(name="South", rule={"field": "region", "op": "eq", "value": "south"})
    rule = {"all": [{"not_in_audience": south.pk}, {"field": "segment", "op": "is_set"}]}
    assert members(rule, Audience.rule_of) == {"cai", "fay"}
    nested = Audience.objects.create(name="Not south", rule=rule)
    assert set(Customer.objects.in_audience(nested).values_list("external_id", flat=True)) == {"cai", "fay"}
    assert members({"in_audience": nested.pk}, Audience.rule_of) == {"cai", "fay"}


def test_a_deep_rule_is_still_one_sql_statement(base, django_assert_num_queries):
    rule = {"all": [{"any": [{"did": "play", "at_least": 2}, {"did_not": "skip"}]}, {"not": {"field": "region", "op": "in", "value": ["east"]}}]}
    with django_assert_num_queries(1):
        list(Customer.objects.filter(compile_rule(rule, now=NOW)).values_list("pk", flat=True))


def test_why_shows_which_conditions_held(base):
    rule = {"all": [{"field": "region", "op": "eq", "value": "south"}, {"did": "purchase", "in_last_days": 30}]}
    why = explain(rule, Customer.objects.get(external_id="ana"), now=NOW)
    assert why["held"] is False
    assert [(c["text"], c["held"]) for c in why["children"]] == [
        ("Region is south", True), ("did purchase at least 1 time in the last 30 days", False)]


@pytest.mark.parametrize("rule,path,reason", [
    ({"field": "colour", "op": "eq", "value": "red"}, "field", "unknown field 'colour'"),
    ({"all": [{"field": "age", "op": "gte", "value": "old"}]}, "all[0].value", "'old' is not a whole number"),
    ({"all": []}, "all", "a group needs at least one condition"),
    ({"any": [{"field": "region", "op": "eq", "value": "x"}, {"not": {}}]}, "any[1].not", "every node must be a non-empty object"),
    ({"field": "gender", "op": "gte", "value": "f"}, "rule", "'gte' needs an ordered field"),
    ({"field": "segment", "op": "in", "value": ["vip"]}, "value[0]", "'vip' is not one of 'loyal', 'active', 'casual'"),
    ({"did": "dance"}, "did", "unknown activity 'dance'"),
    ({"did_not": "play", "at_least": 2}, "at_least", "'did_not' means zero times"),
    ({"did": "play", "artist": "A", "genre": "g"}, "rule", "name at most one of artist, genre or item"),
    ({"pref": "genres", "key": "pop", "op": "eq", "value": 0.5}, "op", "preferences compare with"),
    ({"in_audience": 999}, "in_audience", "no audience with id 999"),
    ({"field": "region", "op": "eq", "value": "x", "extra": 1}, "extra", "not allowed here"),
])
def test_bad_rules_name_the_path_and_the_reason(db, rule, path, reason):
    with pytest.raises(RuleError) as error:
        validate(rule, Audience.rule_of)
    assert error.value.path == path and reason in error.value.reason


def test_cycles_between_audiences_are_refused(db):
    a = Audience.objects.create(name="A", rule={"field": "region", "op": "eq", "value": "x"})
    b = Audience.objects.create(name="B", rule={"in_audience": a.pk})
    a.rule = {"in_audience": b.pk}
    with pytest.raises(RuleError) as error:
        validate(a.rule, Audience.rule_of, audience_id=a.pk)
    assert f"cycle {a.pk} → {b.pk} → {a.pk}" in error.value.reason


def test_conditions_read_as_sentences():
    assert describe({"pref": "genres", "key": "hip-hop", "op": "gte", "value": 0.3}) == "hip-hop genre affinity ≥ 0.3"
    assert describe({"did_not": "play", "in_last_days": 7}) == "did not play in the last 7 days"


# -- SQL against a plain-Python evaluator on random rule trees ------------------------------------


def python_members(rule) -> set:
    """The rule evaluated over PEOPLE and ACTS in Python: the specification the SQL must match."""
    def value(ext, field):
        born, gender, region, tier, sub, persona = PEOPLE[ext]
        direct = {"age": NOW.year - born if born else None, "birth_year": born, "gender": gender, "region": region,
                  "city_tier": tier, "is_subscriber": sub, "external_id": ext}
        if field in direct:
            return direct[field]
        return None if persona is None else persona.get(field)

    def holds(node, ext) -> bool:
        if "all" in node:
            return all(holds(c, ext) for c in node["all"])
        if "any" in node:
            return any(holds(c, ext) for c in node["any"])
        if "not" in node:
            return not holds(node["not"], ext)
        if "pref" in node:
            persona = PEOPLE[ext][5]
            share = 0.0 if persona is None else persona["genres"].get(node["key"], 0.0)
            return compare(share, node["op"], node["value"])
        if "did" in node or "did_not" in node:
            kind = node.get("did") or node.get("did_not")
            n = sum(1 for k, days, artist, genres in ACTS.get(ext, [])
                    if k == kind and ("in_last_days" not in node or days <= node["in_last_days"])
                    and node.get("artist", artist) == artist and ("genre" not in node or node["genre"] in genres))
            return n == 0 if "did_not" in node else n >= node.get("at_least", 1)
        v = value(ext, node["field"])
        op = node["op"]
        if op == "is_set":
            return v not in (None, "")
        if op == "is_empty":
            return v in (None, "")
        if op in ("ne", "not_in"):
            return not holds({**node, "op": {"ne": "eq", "not_in": "in"}[op]}, ext)
        return v is not None and compare(v, op, node["value"])

    def compare(v, op, x) -> bool:
        return {"eq": lambda: v == x, "in": lambda: v in x, "between": lambda: x[0] <= v <= x[1], "gte": lambda: v >= x,
                "lte": lambda: v <= x, "gt": lambda: v > x, "lt": lambda: v < x,
                "contains": lambda: x.lower() in v.lower()}[op]()

    return {ext for ext in PEOPLE if holds(rule, ext)}


leaves = st.one_of(
    st.builds(lambda op, v: {"field": "region", "op": op, "value": v}, st.sampled_from(["eq", "ne", "contains"]), st.sampled_from(["south", "north", "ou", ""])),
    st.builds(lambda v: {"field": "region", "op": "in", "value": v}, st.lists(st.sampled_from(["south", "east", ""]), min_size=1, max_size=2)),
    st.builds(lambda op, v: {"field": "age", "op": op, "value": v}, st.sampled_from(["gte", "lte", "eq", "ne"]), st.integers(20, 60)),
    st.builds(lambda a, b: {"field": "city_tier", "op": "between", "value": sorted([a, b])}, st.integers(1, 4), st.integers(1, 4)),
    st.builds(lambda op, v: {"field": "segment", "op": op, "value": v}, st.sampled_from(["eq", "ne"]), st.sampled_from(["loyal", "casual", "active"])),
    st.builds(lambda op, v: {"field": "plays_7d", "op": op, "value": v}, st.sampled_from(["gte", "lt", "ne"]), st.integers(0, 6)),
    st.builds(lambda op: {"field": "top_genre", "op": op}, st.sampled_from(["is_set", "is_empty"])),
    st.builds(lambda v: {"field": "is_subscriber", "op": "eq", "value": v}, st.booleans()),
    st.builds(lambda k, op, v: {"pref": "genres", "key": k, "op": op, "value": v}, st.sampled_from(["hip-hop", "pop", "k-pop"]),
              st.sampled_from(["gte", "lt", "lte"]), st.sampled_from([0.0, 0.1, 0.3, 0.5])),
    st.builds(lambda kind, n, days, artist: {"did": kind, "at_least": n, **({"in_last_days": days} if days else {}), **({"artist": artist} if artist else {})},
              st.sampled_from(["play", "purchase", "skip"]), st.integers(1, 3), st.sampled_from([None, 3, 7, 60]), st.sampled_from([None, "Kid Nova", "NOVA9"])),
    st.builds(lambda kind, genre: {"did_not": kind, "genre": genre, "in_last_days": 30}, st.sampled_from(["play", "purchase"]), st.sampled_from(["pop", "rock"])),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=8,
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=trees)
def test_sql_membership_equals_the_python_evaluator(base, rule):
    assert members(rule) == python_members(rule)
