"""The rule builder: page inputs laid over the tree, edits at a path, errors on the node, saving what is shown."""

import json

import pytest
from django.http import QueryDict
from django.urls import reverse

from audiences import builder
from audiences.models import Audience, Customer, Persona
from audiences.rules import RuleError

TREE = {"all": [{"field": "region", "op": "eq", "value": "south"},
                {"any": [{"field": "age", "op": "between", "value": [18, 34]}, {"did": "play", "at_least": 2}]}]}


def post(**fields) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, value in fields.items():
        data[key.replace("__", ".")] = value
    return data


def test_inputs_are_laid_over_the_tree_with_their_types():
    data = post(tree=json.dumps(TREE), rule=json.dumps(TREE))
    data["n.0.value"] = "north"
    data["n.1.group"] = "all"
    data["n.1.0.value"], data["n.1.0.value2"] = "25", "44"
    data["n.1.1.verb"], data["n.1.1.activity"], data["n.1.1.target"], data["n.1.1.name"] = "did", "favourite", "genre", "k-pop"
    data["n.1.1.at_least"], data["n.1.1.in_last_days"] = "3", "14"
    assert builder.read(data) == {"all": [
        {"field": "region", "op": "eq", "value": "north"},
        {"all": [{"field": "age", "op": "between", "value": [25, 44]},
                 {"did": "favourite", "genre": "k-pop", "at_least": 3, "in_last_days": 14}]},
    ]}


def test_a_value_that_does_not_parse_is_kept_for_validation_to_name():
    data = post(tree=json.dumps(TREE), rule=json.dumps(TREE))
    data["n.1.0.value"] = "young"
    tree = builder.read(data)
    assert tree["all"][1]["any"][0]["value"] == ["young", 34]
    error = builder.check(tree, None)
    assert (error.path, builder.error_node(error)) == ("all[1].any[0].value[0]", ("1.0", "'young' is not a whole number"))


def test_in_lists_are_split_on_commas_and_is_set_drops_the_value():
    data = post(tree=json.dumps({"all": [{"field": "city_tier", "op": "in", "value": [1]}, {"field": "region", "op": "eq", "value": "x"}]}))
    data["n.0.value"] = "1, 2,3"
    data["n.1.op"] = "is_set"
    assert builder.read(data) == {"all": [{"field": "city_tier", "op": "in", "value": [1, 2, 3]}, {"field": "region", "op": "is_set"}]}


def test_switching_what_a_condition_is_about_starts_from_that_kind_of_condition():
    data = post(tree=json.dumps(TREE))
    data["n.0.type"] = "pref"
    assert builder.read(data)["all"][0] == builder.LEAF_DEFAULTS["pref"]
    data = post(tree=json.dumps(TREE))
    data["n.0.field"], data["n.0.op"], data["n.0.value"] = "segment", "eq", "south"
    assert builder.read(data)["all"][0] == {"field": "segment", "op": "eq", "value": ""}  # a new field's value starts empty


def test_an_edited_json_box_wins_over_the_inputs():
    edited = {"field": "gender", "op": "eq", "value": "f"}
    data = post(tree=json.dumps(TREE), rule=json.dumps(edited))
    data["n.0.value"] = "north"
    assert builder.read(data) == {"all": [edited]}
    with pytest.raises(builder.BuilderError, match="Not valid JSON"):
        builder.read(post(tree=json.dumps(TREE), rule="{oops"))


@pytest.mark.parametrize("action,path,expected", [
    ("add_condition", "1", lambda t: len(t["all"][1]["any"]) == 3 and t["all"][1]["any"][2] == builder.DEFAULT_CONDITION),
    ("add_group", "", lambda t: t["all"][2] == {"any": [builder.DEFAULT_CONDITION]}),
    ("remove", "1.1", lambda t: t["all"][1] == {"any": [{"field": "age", "op": "between", "value": [18, 34]}]}),
    ("negate", "0", lambda t: t["all"][0] == {"not": {"field": "region", "op": "eq", "value": "south"}}),
    ("remove", "9", lambda t: t == TREE),
    ("add_condition", "0", lambda t: t == TREE),  # a condition is not a group
])
def test_edits_change_the_node_at_the_path(action, path, expected):
    tree = builder.edit(json.loads(json.dumps(TREE)), action, path)
    assert expected(tree), tree


def test_negation_round_trips_and_removing_a_negated_child_removes_the_not():
    tree = builder.edit(json.loads(json.dumps(TREE)), "negate", "1")
    assert "not" in tree["all"][1]
    assert builder.edit(json.loads(json.dumps(tree)), "unnegate", "1") == TREE
    assert builder.edit(json.loads(json.dumps(tree)), "remove", "1.0") == {"all": [TREE["all"][0]]}


def test_a_single_condition_becomes_an_all_group_in_the_builder():
    leaf = {"field": "region", "op": "eq", "value": "south"}
    assert builder.as_tree(leaf) == {"all": [leaf]}
    assert builder.as_tree({}) == {"all": []}


def test_errors_map_to_the_node_they_are_about():
    assert builder.error_node(RuleError("all[2].not.any[0].value", "x")) == ("2.0.0", "x")
    assert builder.error_node(RuleError("all[0].in_audience<3>.all[1].value", "y")) == ("0", "y")
    assert builder.error_node(RuleError("all", "a group needs at least one condition")) == ("", "a group needs at least one condition")


@pytest.fixture
def base(db):
    from django.utils import timezone

    for ext, region, birth_year, genre in [("a", "south", 2000, "hip-hop"), ("b", "south", 1960, "pop"), ("c", "north", 2001, "hip-hop")]:
        customer = Customer.objects.create(external_id=ext, region=region, birth_year=birth_year)
        Persona.objects.create(customer=customer, top_genre=genre, as_of=timezone.now())


def test_a_builder_edit_redraws_the_builder_and_announces_the_change(client, base, mark):
    client.force_login(mark)
    data = post(tree=json.dumps(TREE), rule=json.dumps(TREE), action="add_group", path="1")
    response = client.post(reverse("audiences:builder"), data)
    assert response.status_code == 200 and response["HX-Trigger-After-Settle"] == "rule-changed"
    page = response.content.decode()
    assert 'name="n.1.2.group"' in page and 'name="n.1.2.0.field"' in page  # the new group, nested where asked
    shown = json.loads(page.split('name="tree" value="')[1].split('"')[0].replace("&quot;", '"'))
    assert shown["all"][1]["any"][2] == {"any": [builder.DEFAULT_CONDITION]}


def test_an_invalid_value_is_marked_on_its_condition(client, base, mark):
    client.force_login(mark)
    data = post(tree=json.dumps(TREE), rule=json.dumps(TREE))
    data["n.1.0.value"] = "young"
    page = client.post(reverse("audiences:builder"), data).content.decode()
    leaf = page[page.index('name="n.1.0.type"'):]
    assert "rb-invalid" in page and "&#x27;young&#x27; is not a whole number" in leaf[:6000]


def test_the_live_size_reads_the_inputs_of_the_page(client, base, mark):
    client.force_login(mark)
    tree = {"all": [{"field": "region", "op": "eq", "value": "south"}]}
    data = post(tree=json.dumps(tree), rule=json.dumps(tree))
    assert ">2<" in client.post(reverse("audiences:preview"), data).content.decode().replace(" ", "")
    data["n.0.value"] = "north"
    assert ">1<" in client.post(reverse("audiences:preview"), data).content.decode().replace(" ", "")
    data["part"] = "insights"
    insights = client.post(reverse("audiences:preview"), data).content.decode()
    assert "insight-region" in insights and "north" in insights and "Nobody matches" not in insights
    data["n.0.value"] = "nowhere"  # nobody: a sentence instead of empty charts
    insights = client.post(reverse("audiences:preview"), data).content.decode()
    assert "Nobody matches this rule yet" in insights and "insight-region" not in insights


def test_saving_takes_what_the_builder_shows(client, base, mark):
    client.force_login(mark)
    tree = {"all": [{"field": "region", "op": "eq", "value": "south"}, {"field": "age", "op": "lte", "value": 99}]}
    data = post(tree=json.dumps(tree), rule=json.dumps(tree), name="Young south", description="")
    data["n.1.value"] = "40"  # typed, then Save clicked before the builder redrew
    response = client.post(reverse("audiences:new"), data)
    audience = Audience.objects.get(name="Young south")
    assert response.status_code == 302
    assert audience.rule["all"][1] == {"field": "age", "op": "lte", "value": 40} and audience.size == 1


def test_saving_an_invalid_builder_rule_keeps_the_page_with_the_error(client, base, mark):
    client.force_login(mark)
    tree = {"all": [{"field": "age", "op": "lte", "value": 40}]}
    data = post(tree=json.dumps(tree), rule=json.dumps(tree), name="Broken")
    data["n.0.value"] = "old"
    response = client.post(reverse("audiences:new"), data)
    assert response.status_code == 400 and not Audience.objects.exists()
    assert "all[0].value: &#x27;old&#x27; is not a whole number" in response.content.decode()


def test_analysts_cannot_use_the_builder(client, base, ann):
    client.force_login(ann)
    assert client.post(reverse("audiences:builder"), post(tree=json.dumps(TREE))).status_code == 403


@pytest.mark.parametrize("tree", [{"all": 5}, {"all": {"a": 1}}, {"all": ["abc"]}, {"not": [1]}, [1, 2], "x"])
def test_a_malformed_tree_is_refused_with_a_reason_not_a_crash(tree):
    with pytest.raises(builder.BuilderError):
        builder.read(post(tree=json.dumps(tree), **{"n__0__value": "3"}))


def test_absurd_nesting_is_refused():
    deep = {"field": "region", "op": "eq", "value": "x"}
    for _ in range(900):
        deep = {"not": deep}
    with pytest.raises(builder.BuilderError, match="nested deeper"):
        builder.read(post(tree=json.dumps(deep)))


def test_negative_paths_change_nothing_and_a_list_field_name_does_not_crash(client, base, mark):
    assert builder.edit(json.loads(json.dumps(TREE)), "remove", "-1") == TREE
    client.force_login(mark)
    odd = {"all": [{"field": ["a"], "op": "eq", "value": 1}]}
    data = post(tree=json.dumps(odd), rule=json.dumps(odd))
    data["n.0.value"] = "3"
    response = client.post(reverse("audiences:builder"), data)
    assert response.status_code == 200 and "unknown field" in response.content.decode()


def test_not_under_not_can_be_added_and_removed():
    tree = {"all": [{"not": {"field": "region", "op": "eq", "value": "x"}}]}
    twice = builder.edit(json.loads(json.dumps(tree)), "negate", "0.0")
    assert twice == {"all": [{"not": {"not": {"field": "region", "op": "eq", "value": "x"}}}]}
    assert builder.edit(twice, "unnegate", "0.0") == tree


def test_inputs_the_page_did_not_send_keep_every_attribute():
    tree = {"all": [{"pref": "genres", "key": "k-pop", "op": "gte", "value": 0.3},
                    {"did": "play", "artist": "NOVA9", "at_least": 3, "in_last_days": 7}, {"list": 4}]}
    data = post(tree=json.dumps(tree))
    data["n.0.op"], data["n.1.at_least"], data["n.2.value"] = "lte", "5", "x"
    assert builder.read(data) == {"all": [{"pref": "genres", "key": "k-pop", "op": "lte", "value": 0.3},
                                          {"did": "play", "artist": "NOVA9", "at_least": 5, "in_last_days": 7}, {"list": 4}]}


def test_a_json_typo_comes_back_with_its_error_and_the_box_open(client, base, mark):
    client.force_login(mark)
    data = post(tree=json.dumps(TREE), rule='{"all": [oops')
    page = client.post(reverse("audiences:builder"), data).content.decode()
    assert "Not valid JSON" in page and "{&quot;all&quot;: [oops" in page and "<details class=\"mt-3\" open>" in page
