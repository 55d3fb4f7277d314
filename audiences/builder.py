"""The rule builder: form inputs ↔ the rule tree, edits (add, remove, nest, negate), and what the page shows.

The page keeps the tree it last rendered in a hidden `tree` input and one input per condition
attribute, named `n.<path>.<attr>` where path is the child indices from the root ("0.2.1"; a
NOT node's child is index 0). Every request reads the tree, lays the inputs over it, applies at
most one edit and renders the builder again, so the server stays the only judge of a rule
(rules.validate) and the builder cannot drift from the JSON the audience stores.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .models import Audience, Gender, Segment
from .rules import FIELDS, KINDS, OP_WORDS, PREFERENCE_DIMENSIONS, RuleError, describe, validate

DEFAULT_CONDITION = {"field": "age", "op": "between", "value": [18, 34]}
LEAF_DEFAULTS = {
    "field": DEFAULT_CONDITION,
    "pref": {"pref": "genres", "key": "hip-hop", "op": "gte", "value": 0.3},
    "did": {"did": "play", "at_least": 3, "in_last_days": 7},
    "audience": {"in_audience": None},
}
OPS_BY_KIND = {
    "text": ["eq", "ne", "in", "not_in", "contains", "is_set", "is_empty"],
    "int": ["eq", "ne", "gte", "lte", "gt", "lt", "between", "in", "not_in", "is_set", "is_empty"],
    "number": ["gte", "lte", "gt", "lt", "between", "eq", "ne", "is_set", "is_empty"],
    "bool": ["eq"],
    "choice": ["eq", "ne", "in", "not_in"],
    "date": ["gte", "lte", "between", "eq", "is_set", "is_empty"],
    "datetime": ["gte", "lte", "between", "is_set", "is_empty"],
}
PREF_OPS = ["gte", "lte", "gt", "lt", "between"]
CHOICE_LABELS = {"gender": dict(Gender.choices), "segment": dict(Segment.choices)}
# Which suggestion list (see suggestions()) completes a text input.
DATALISTS = {"region": "region", "top_genre": "genre", "top_artist": "artist", "top_language": "language", "top_mood": "mood",
             "genres": "genre", "artists": "artist", "languages": "language", "moods": "mood", "genre": "genre", "artist": "artist"}


class BuilderError(ValueError):
    """The posted JSON cannot be read at all; says where."""


# -- reading the page --------------------------------------------------------------------------


def read(post) -> dict:
    """The rule the page shows now: the JSON editor when it was edited, otherwise the tree with the inputs laid over."""
    text = post.get("rule", "")
    tree_text = post.get("tree")
    if tree_text is None:  # a plain JSON post (API-like clients, old forms)
        return _loads(text)
    tree = _shaped(_loads(tree_text))
    if text.strip() and text.strip() != tree_text.strip():
        edited = _loads(text)
        if edited != tree:
            return _shaped(as_tree(edited))
    _lay_inputs(tree, post)
    return tree


MAX_NODES_DEEP = 14  # rules.MAX_DEPTH plus the builder's wrapping group, with room for validate to name the problem


def _shaped(tree: Any) -> dict:
    """The tree, if the builder can walk it: groups hold lists (NOT one object) and conditions are objects.

    What the conditions say is for rules.validate to judge and name; this only keeps a malformed
    post from crashing the builder.
    """
    def walk(node: Any, depth: int, where: str) -> None:
        if depth > MAX_NODES_DEEP:
            raise BuilderError(f"{where}: nested deeper than {MAX_NODES_DEEP} levels.")
        if not isinstance(node, dict):
            raise BuilderError(f"{where}: every node must be an object, not {type(node).__name__}.")
        for key in ("all", "any"):
            if key in node:
                if not isinstance(node[key], list):
                    raise BuilderError(f"{where}.{key}: a group holds a list of conditions.")
                for i, child in enumerate(node[key]):
                    walk(child, depth + 1, f"{where}.{key}[{i}]")
                return
        if "not" in node:
            walk(node["not"], depth + 1, f"{where}.not")

    tree = as_tree(tree) if isinstance(tree, dict) else tree
    walk(tree, 0, "rule")
    return tree


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise BuilderError(f"The rule is nested deeper than {MAX_NODES_DEEP} levels.") from None
    except ValueError as exc:
        raise BuilderError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None


def as_tree(rule: Any) -> dict:
    """The builder's root is always a group: a single condition or NOT becomes "all of" it (same meaning)."""
    if isinstance(rule, dict) and ("all" in rule or "any" in rule):
        return rule
    if not rule:
        return {"all": []}
    return {"all": [rule]}


def children(node: dict) -> list:
    if "all" in node:
        return node["all"]
    if "any" in node:
        return node["any"]
    return [node["not"]]


def is_group(node: Any) -> bool:
    return isinstance(node, dict) and ("all" in node or "any" in node or "not" in node)


def _walk(node: Any, path: tuple = ()):
    yield path, node
    if is_group(node):
        for i, child in enumerate(children(node)):
            yield from _walk(child, (*path, i))


def _key(path: tuple) -> str:
    return ".".join(map(str, path))


def _lay_inputs(tree: dict, post) -> None:
    """Overwrite each node with what its inputs say now (typed as far as they parse; validation names the rest)."""
    for path, node in list(_walk(tree)):
        prefix = f"n.{_key(path)}."
        given = {k[len(prefix):]: post.get(k) for k in post if k.startswith(prefix) and "." not in k[len(prefix):]}
        if not given:
            continue
        if "group" in given and ("all" in node or "any" in node) and given["group"] in ("all", "any"):
            items = children(node)
            node.clear()
            node[given["group"]] = items
            continue
        if is_group(node):
            continue
        leaf = _leaf_from_inputs(node, given)
        if leaf is not node:
            node.clear()
            node.update(leaf)


def _leaf_from_inputs(node: dict, given: dict) -> dict:
    """The condition as its inputs say; an input the page did not send keeps the node's value."""
    kind = given.get("type") or leaf_type(node)
    if kind == "list":  # an uploaded list or lookalike reference written in JSON: shown as it is
        return node
    given = {**_inputs_of(node), **given}
    if kind != leaf_type(node):  # the operator switched what the condition is about
        return json.loads(json.dumps(LEAF_DEFAULTS.get(kind, DEFAULT_CONDITION)))
    if kind == "field":
        name = given.get("field", node.get("field"))
        spec = FIELDS.get(name) if isinstance(name, str) else None
        if spec is None:
            return {"field": name, "op": given.get("op", "eq"), "value": given.get("value", "")}
        op = given.get("op", node.get("op"))
        if name != node.get("field") and op not in OPS_BY_KIND[spec.kind]:
            op = OPS_BY_KIND[spec.kind][0]
        leaf = {"field": name, "op": op}
        if op not in ("is_set", "is_empty"):
            if name != node.get("field"):  # a new field starts with an empty value of its own kind
                leaf["value"] = _empty_value(spec.kind, op)
            else:
                leaf["value"] = _value(spec.kind, op, given.get("value", ""), given.get("value2", ""))
        return leaf
    if kind == "pref":
        op = given.get("op", node.get("op"))
        return {"pref": given.get("pref", node.get("pref")), "key": (given.get("key") or "").strip(), "op": op,
                "value": _value("number", op, given.get("value", ""), given.get("value2", ""))}
    if kind == "did":
        verb = given.get("verb", "did_not" if "did_not" in node else "did")
        leaf = {verb: given.get("activity", node.get("did") or node.get("did_not"))}
        target, name = given.get("target", ""), (given.get("name") or "").strip()
        if target in ("artist", "genre", "item"):
            leaf[target] = name
        if verb == "did" and given.get("at_least", "").strip():
            leaf["at_least"] = _number(given["at_least"], whole=True)
        if given.get("in_last_days", "").strip():
            leaf["in_last_days"] = _number(given["in_last_days"], whole=True)
        return leaf
    if kind == "audience":
        verb = given.get("verb", "not_in_audience" if "not_in_audience" in node else "in_audience")
        return {verb: _number(given.get("audience", ""), whole=True) if given.get("audience") else None}
    return node


def _empty_value(kind: str, op: str) -> Any:
    if op in ("in", "not_in"):
        return []
    if op == "between":
        return ["", ""]
    return {"bool": True, "choice": ""}.get(kind, "")


def _number(text: str, *, whole: bool) -> Any:
    text = str(text).strip()
    try:
        return int(text) if whole or re.fullmatch(r"-?\d+", text) else float(text)
    except ValueError:
        return text  # validation says what is wrong with it, at its path


def _scalar(kind: str, text: str) -> Any:
    text = str(text).strip()
    if kind == "int":
        return _number(text, whole=True)
    if kind == "number":
        return _number(text, whole=False)
    if kind == "bool":
        return {"true": True, "false": False}.get(text.lower(), text)
    return text


def _value(kind: str, op: str, raw: str, raw2: str) -> Any:
    if op in ("in", "not_in"):
        return [_scalar(kind, part) for part in str(raw).split(",") if part.strip()]
    if op == "between":
        return [_scalar(kind, raw), _scalar(kind, raw2)]
    return _scalar(kind, raw)


def _inputs_of(node: dict) -> dict:
    """A condition as its page inputs would send it (what an input the page did not send keeps)."""
    kind = leaf_type(node)
    shown = _shown(node.get("op"), node.get("value"))
    if kind == "pref":
        return {**shown, "pref": node.get("pref"), "key": node.get("key", ""), "op": node.get("op")}
    if kind == "did":
        verb = "did_not" if "did_not" in node else "did"
        target = next((t for t in ("artist", "genre", "item") if t in node), "")
        return {"verb": verb, "activity": node.get(verb), "target": target, "name": node.get(target, "") if target else "",
                "at_least": str(node.get("at_least", "")), "in_last_days": str(node.get("in_last_days", ""))}
    if kind == "audience":
        verb = "not_in_audience" if "not_in_audience" in node else "in_audience"
        return {"verb": verb, "audience": str(node.get(verb) or "")}
    return shown


def leaf_type(node: dict) -> str:
    if "list" in node:
        return "list"
    if "field" in node:
        return "field"
    if "pref" in node:
        return "pref"
    if "did" in node or "did_not" in node:
        return "did"
    return "audience"


# -- edits ---------------------------------------------------------------------------------------


def edit(tree: dict, action: str, path_text: str) -> dict:
    """Apply one builder action at a node path; unknown actions and paths leave the tree as it is."""
    try:
        path = tuple(int(p) for p in path_text.split(".") if p != "")
    except ValueError:
        return tree
    if any(i < 0 for i in path):
        return tree
    node, parent = _at(tree, path), _at(tree, path[:-1]) if path else None
    if node is None:
        return tree
    if action in ("add_condition", "add_group") and ("all" in node or "any" in node):
        new = dict(DEFAULT_CONDITION) if action == "add_condition" else {"any": [dict(DEFAULT_CONDITION)]}
        children(node).append(json.loads(json.dumps(new)))
    elif action == "remove" and parent is not None:
        if "not" in parent:  # removing the only child of NOT removes the NOT too
            return edit(tree, "remove", _key(path[:-1]))
        del children(parent)[path[-1]]
    elif action == "negate" and path:
        _put(parent, path[-1], {"not": node})
    elif action == "unnegate" and "not" in node and path:
        _put(parent, path[-1], node["not"])
    return tree


def _put(parent: dict, index: int, node: dict) -> None:
    if "not" in parent:  # NOT holds one object, not a list
        parent["not"] = node
    else:
        children(parent)[index] = node


def _at(tree: dict, path: tuple) -> Any:
    node = tree
    for i in path:
        if not is_group(node) or i >= len(children(node)):
            return None
        node = children(node)[i]
    return node


# -- showing -------------------------------------------------------------------------------------


def check(tree: dict, audience_id: int | None) -> RuleError | None:
    """The first problem of the tree, or None (an empty root is a problem too: there is no rule yet)."""
    try:
        validate(tree, Audience.rule_of, audience_id=audience_id)
    except RuleError as exc:
        return exc
    return None


def error_node(error: RuleError | None) -> tuple[str, str] | None:
    """The builder path of the node a validation error is about (`all[2].not.value` → "2.0"), and the reason."""
    if error is None:
        return None
    path = []
    for part in error.path.split("."):
        group = re.fullmatch(r"(all|any)\[(\d+)\]", part)
        if group:
            path.append(group.group(2))
        elif part == "not":
            path.append("0")
        else:
            break  # an attribute of this node, or inside another audience's rule: the node is the place
    return ".".join(path), (error.reason if error.path != "rule" else str(error))


def view(tree: dict, error: RuleError | None, audience_id: int | None) -> dict:
    """What the template draws: nested nodes with their inputs' current values and choices."""
    where = error_node(error)
    audiences = list(Audience.objects.exclude(pk=audience_id).order_by("name").values_list("pk", "name", "size"))

    def draw(node: Any, path: tuple) -> dict:
        key = _key(path)
        problem = where[1] if where and where[0] == key else None
        if is_group(node):
            kind = "all" if "all" in node else "any" if "any" in node else "not"
            return {"path": key, "group": kind, "error": problem, "depth": len(path),
                    "children": [draw(c, (*path, i)) for i, c in enumerate(children(node))]}
        if not isinstance(node, dict):
            return {"path": key, "type": "field", "error": problem or "not a condition", "text": repr(node)}
        kind = leaf_type(node)
        out = {"path": key, "type": kind, "error": problem, "text": _safe_describe(node)}
        if kind == "list":
            out.update(text=_safe_describe(node))
        elif kind == "field":
            spec = FIELDS.get(node.get("field")) if isinstance(node.get("field"), str) else None
            value = node.get("value")
            out.update(field=node.get("field"), op=node.get("op"), value_kind=spec.kind if spec else "text",
                       ops=[(o, OP_WORDS[o]) for o in OPS_BY_KIND[spec.kind]] if spec else [],
                       choices=_choices(node.get("field"), spec), datalist=_datalist(node.get("field")),
                       **_shown(node.get("op"), value))
        elif kind == "pref":
            out.update(pref=node.get("pref"), key=node.get("key", ""), op=node.get("op"), ops=[(o, OP_WORDS[o]) for o in PREF_OPS],
                       datalist=_datalist(node.get("pref")),
                       **_shown(node.get("op"), node.get("value")))
        elif kind == "did":
            verb = "did_not" if "did_not" in node else "did"
            target = next((t for t in ("artist", "genre", "item") if t in node), "")
            out.update(verb=verb, activity=node.get(verb), target=target, name=node.get(target, "") if target else "",
                       at_least=node.get("at_least", ""), in_last_days=node.get("in_last_days", ""), datalist=_datalist(target))
        else:
            verb = "not_in_audience" if "not_in_audience" in node else "in_audience"
            out.update(verb=verb, audience=node.get(verb), audiences=audiences)
        return out

    return {"root": draw(tree, ()), "fields": [(name, spec.label) for name, spec in FIELDS.items()],
            "preferences": PREFERENCE_DIMENSIONS, "activities": list(KINDS)}


def _datalist(name: Any) -> str:
    return DATALISTS.get(name, "") if isinstance(name, str) else ""


def _safe_describe(node: dict) -> str:
    try:
        return describe(node)
    except (KeyError, TypeError, IndexError):
        return ""


def _choices(name: str | None, spec) -> list[tuple[str, str]]:
    if spec is None:
        return []
    if spec.kind == "bool":
        return [("true", "yes"), ("false", "no")]
    if spec.kind == "choice":
        labels = CHOICE_LABELS.get(name, {})
        return [(c, labels.get(c, c) or "unknown") for c in spec.choices]
    return []


def _shown(op: str | None, value: Any) -> dict:
    """The value as the inputs show it: one box, two for between, comma-separated for in / not in."""
    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return "" if v is None else str(v)

    if op == "between" and isinstance(value, list):
        return {"value": text(value[0] if value else ""), "value2": text(value[1] if len(value) > 1 else "")}
    if op in ("in", "not_in") and isinstance(value, list):
        return {"value": ", ".join(text(v) for v in value), "value2": ""}
    return {"value": text(value), "value2": ""}


def suggestions() -> dict[str, list[str]]:
    """Known regions, genres, artists, languages and moods for the inputs' autocompletion (cached briefly)."""
    from django.core.cache import cache
    from django.db.models import Count

    from .models import Customer, Persona

    found = cache.get("rule-builder-suggestions")
    if found is None:
        def top(queryset, field: str, n: int = 300) -> list[str]:
            rows = queryset.exclude(**{field: ""}).values(field).annotate(n=Count("pk")).order_by("-n")[:n]
            return [r[field] for r in rows]

        found = {
            "region": top(Customer.objects, "region"),
            "genre": top(Persona.objects, "top_genre"),
            "artist": top(Persona.objects, "top_artist"),
            "language": top(Persona.objects, "top_language"),
            "mood": top(Persona.objects, "top_mood"),
        }
        cache.set("rule-builder-suggestions", found, 600)
    return found
