"""Value dimensions, pair definition files, scenario data and paired rows."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from pft_adapters.data import format_prompt, format_target, load_scenarios, paired_rows
from pft_adapters.errors import PFTError
from pft_adapters.values import BUILTIN_DIMENSIONS, Dimension, Pole, ValueSpace, load_pairs

BUILTIN_POLES = {
    "risk": ("risk-taking", "risk-averse"),
    "time": ("immediate-gratification", "delayed-gratification"),
    "social": ("competitive", "collaborative"),
    "communication": ("assertive", "accommodating"),
    "decision": ("intuitive", "analytical"),
    "change": ("innovation-seeking", "stability-seeking"),
}


# -- built-in dimensions and lookups ----------------------------------------------------
def test_six_builtin_dimensions_with_described_poles():
    space = ValueSpace.builtin()
    assert [d.slug for d in space] == list(BUILTIN_POLES)
    for dim in space:
        assert (dim.first.slug, dim.second.slug) == BUILTIN_POLES[dim.slug]
        for pole in dim.poles:
            assert pole.name and len(pole.description.split()) >= 8, pole
    assert len(space.pole_slugs) == 12 == len(set(space.pole_slugs))
    assert space.dimensions == BUILTIN_DIMENSIONS


@pytest.mark.parametrize("name", ["risk", "Risk Orientation", "risk orientation", "RISK"])
def test_dimension_lookup_by_slug_and_label(name):
    assert ValueSpace.builtin().dimension(name).slug == "risk"


@pytest.mark.parametrize("name", ["risk-averse", "Risk-averse", "risk averse"])
def test_pole_lookup_by_slug_and_name(name):
    space = ValueSpace.builtin()
    assert space.pole(name).slug == "risk-averse"
    assert space.dimension_of(name).slug == "risk"
    assert space.pole_index(name) == 1


def test_vcd_labels_resolve_to_dimensions():
    space = ValueSpace.builtin()
    labels = {"Time Preference": "time", "Social Strategy": "social", "Communication Style": "communication",
              "Decision-Making Approach": "decision", "Change Preference": "change"}
    for label, slug in labels.items():
        assert space.dimension(label).slug == slug


def test_sign_and_select():
    space = ValueSpace.builtin()
    risk = space.dimension("risk")
    assert risk.sign("risk-taking") == 1 and risk.sign("risk-averse") == -1
    sub = space.select(["time", "risk"])
    assert [d.slug for d in sub] == ["time", "risk"]
    assert sub.pole_slugs == ["immediate-gratification", "delayed-gratification", "risk-taking", "risk-averse"]
    # `--dims risk,risk`: the repeated entry is named, not "slug 'risk' is used twice (in 'risk' and 'risk')"
    with pytest.raises(PFTError, match="^dimension 'risk' is named twice: name each dimension once$"):
        space.select(["risk", "time", "risk"])
    with pytest.raises(PFTError, match=r"dimension 'risk' is named twice \(as 'risk' and 'Risk Orientation'\)"):
        space.select(["risk", "Risk Orientation"])


def test_merged_names_a_dimension_defined_differently():
    """A --pairs file that redefines a dimension the zoo has: named as such, with the fix."""
    zoo = ValueSpace.builtin().select(["risk", "time"])
    assert zoo.merged(zoo) == zoo and [d.slug for d in ValueSpace.builtin().merged(zoo)] == list(BUILTIN_POLES)
    risk = zoo.dimension("risk")
    other = ValueSpace([Dimension("risk", risk.label, risk.first, Pole("Careful", "careful", "Avoids loss."))])
    with pytest.raises(PFTError) as err:
        other.merged(zoo)
    assert str(err.value) == ("--pairs and the zoo define dimension 'risk' differently (other poles or descriptions): "
                              "drop the dimension from --pairs or match the zoo's definition")


def test_slugs_are_matched_whole():
    """`$` alone matches before a final newline: 'risk\n' is no slug, and is shown escaped, on one line."""
    risk = ValueSpace.builtin().dimension("risk")
    with pytest.raises(PFTError, match=r"^'risk\\n' is not a valid slug"):
        ValueSpace([Dimension("risk\n", risk.label, risk.first, risk.second)])


@pytest.mark.parametrize("slug", ["", None, "Honesty Style"])
def test_a_slug_given_in_dimensions_json_must_be_a_slug(slug):
    """A zoo's manifest holds its dimensions as JSON: a slug there is used as given, never remade from the name."""
    with pytest.raises(PFTError, match="is not a valid slug"):
        ValueSpace.from_json([HONESTY | {"slug": slug}], source="pft_zoo.json")


@pytest.mark.parametrize(
    "lookup, name, suggestion",
    [("dimension", "rsik", "risk"), ("dimension", "comunication", "communication"),
     ("pole", "risk-avers", "risk-averse"), ("pole", "colaborative", "collaborative")],
)
def test_unknown_name_suggests_the_closest(lookup, name, suggestion):
    with pytest.raises(PFTError) as err:
        getattr(ValueSpace.builtin(), lookup)(name)
    msg = str(err.value)
    assert f"unknown {lookup} '{name}'" in msg
    assert f"did you mean '{suggestion}'" in msg


@pytest.mark.parametrize("lookup, name, hint", [
    ("dimension", "Risk-averse", "'Risk-averse' is a pole of dimension 'risk'"),
    ("pole", "time", "'time' is a dimension, with poles 'immediate-gratification' and 'delayed-gratification'"),
])
def test_a_pole_where_a_dimension_belongs_is_named_as_such(lookup, name, hint):
    with pytest.raises(PFTError) as err:
        getattr(ValueSpace.builtin(), lookup)(name)
    assert hint in str(err.value) and "did you mean" not in str(err.value)


# -- pair definition files ----------------------------------------------------------------
HONESTY: dict[str, Any] = {
    "slug": "honesty",
    "name": "Honesty Style",
    "poles": [
        {"name": "Blunt", "description": "Says the hard truth plainly."},
        {"name": "Tactful", "slug": "tactful-truth", "description": "Softens the truth to spare feelings."},
    ],
}


def _write(tmp_path, obj, name="pairs.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


@pytest.mark.parametrize("wrap", [lambda d: [d], lambda d: {"dimensions": [d]}])
def test_pairs_file_extends_builtins(tmp_path, wrap):
    space = load_pairs(_write(tmp_path, wrap(HONESTY)))
    assert [d.slug for d in space][:6] == list(BUILTIN_POLES)
    dim = space.dimension("honesty")
    assert space.dimension("Honesty Style") is dim
    assert (dim.first.slug, dim.second.slug) == ("blunt", "tactful-truth")
    assert dim.second.description == "Softens the truth to spare feelings."
    assert space.dimension_of("Blunt") is dim


def _pairs_error(tmp_path, obj) -> str:
    path = _write(tmp_path, obj)
    with pytest.raises(PFTError) as err:
        load_pairs(path)
    return str(err.value)


def test_pairs_need_exactly_two_poles(tmp_path):
    three = {**HONESTY, "poles": HONESTY["poles"] + [{"name": "Silent", "description": "Says nothing."}]}
    msg = _pairs_error(tmp_path, [three])
    assert "exactly two poles" in msg and "got 3" in msg
    one = {**HONESTY, "poles": HONESTY["poles"][:1]}
    assert "exactly two poles" in _pairs_error(tmp_path, [one])


def test_pairs_poles_with_the_same_slug(tmp_path):
    same = {**HONESTY, "poles": [{"name": "Blunt", "description": "a"}, {"name": "blunt", "description": "b"}]}
    msg = _pairs_error(tmp_path, [same])
    assert "same slug 'blunt'" in msg and "honesty" in msg
    # a zoo manifest's dimensions are checked by the same code, and the error says where
    with pytest.raises(PFTError, match="^zoo/pft_zoo.json: dimension 1: dimension 'honesty' has two poles with the same slug 'blunt'"):
        ValueSpace.from_json([same], "zoo/pft_zoo.json")
    blunt = Pole("Blunt", "blunt", "a")
    with pytest.raises(PFTError, match=r"^slug 'blunt' is used twice \(in dimension 'honesty'\)"):
        ValueSpace([Dimension("honesty", "Honesty", blunt, blunt)])


def test_pairs_duplicate_slugs(tmp_path):
    other = {"slug": "honesty", "name": "Candour", "poles": [{"name": "Open", "description": "a"},
                                                            {"name": "Guarded", "description": "b"}]}
    msg = _pairs_error(tmp_path, [HONESTY, other])
    assert "'honesty' is used twice" in msg
    shared_pole = {"slug": "candour", "poles": [{"name": "Blunt", "description": "a"}, {"name": "Guarded", "description": "b"}]}
    assert "'blunt' is used twice" in _pairs_error(tmp_path, [HONESTY, shared_pole])


@pytest.mark.parametrize(
    "dimension, clash",
    [({**HONESTY, "slug": "risk"}, "risk"),
     ({**HONESTY, "poles": [{"name": "Risk-averse", "description": "a"}, HONESTY["poles"][1]]}, "risk-averse")],
)
def test_pairs_clash_with_a_builtin(tmp_path, dimension, clash):
    msg = _pairs_error(tmp_path, [dimension])
    assert f"'{clash}'" in msg and "clashes" in msg


def test_pairs_invalid_json(tmp_path):
    msg = _pairs_error(tmp_path, '[{"slug": "honesty",')
    assert "pairs.json" in msg and "not valid JSON" in msg


def test_pairs_missing_file(tmp_path):
    with pytest.raises(PFTError) as err:
        load_pairs(tmp_path / "nowhere.json")
    assert "nowhere.json" in str(err.value) and "not found" in str(err.value)


def test_pairs_bad_slug_and_missing_name(tmp_path):
    assert "not a valid slug" in _pairs_error(tmp_path, [{**HONESTY, "slug": "Bad Slug!"}])
    for dim in ({**HONESTY, "slug": "honesty\n"}, {**HONESTY, "poles": [{"name": "Blunt", "slug": "blunt\n"}, HONESTY["poles"][1]]}):
        msg = _pairs_error(tmp_path, [dim])
        assert "\\n' is not a valid slug" in msg and "\n" not in msg, msg
    nameless = {**HONESTY, "poles": [{"description": "a"}, HONESTY["poles"][1]]}
    assert "pole 1" in (msg := _pairs_error(tmp_path, [nameless])) and "'name'" in msg


# -- scenario data -------------------------------------------------------------------------
def test_load_real_vcd(scenarios, vcd_train):
    assert len(scenarios) == 975
    raw = json.loads(vcd_train.read_text(encoding="utf-8"))
    assert scenarios[0].text == raw[0]["scenario"].strip()
    assert scenarios[0].scene == raw[0]["scene"]
    assert {s.dimension for s in scenarios} == set(BUILTIN_POLES)
    for s in scenarios:
        assert 2 <= len(s.options) <= 5
        assert {o.pole for o in s.options} <= set(BUILTIN_POLES[s.dimension])
        for pole in BUILTIN_POLES[s.dimension]:
            assert s.options_of(pole)


def _record(domain="Risk Orientation", options=None, **extra):
    options = options or [{"text": "Bet it all on the new venture.", "bias": "Risk-taking"},
                          {"text": "Keep the savings where they are.", "bias": "Risk-averse"}]
    return {"scenario": "Sam has some savings.", "preference domain": domain, "scene": "Shopping decisions",
            "options": options, **extra}


def test_vcd_jsonl_matches_json(tmp_path, vcd_train):
    records = json.loads(vcd_train.read_text(encoding="utf-8"))[:20]
    jsonl = tmp_path / "part.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records[:10]) + "\n\n" + "\n".join(json.dumps(r) for r in records[10:]) + "\n")
    as_list = _write(tmp_path, records, "part.json")
    assert load_scenarios(jsonl) == load_scenarios(as_list)
    assert len(load_scenarios(jsonl)) == 20
    pasted = _record(scenario="Sam has savings.\u2028And a plan.\u2029Or two.")
    jsonl.write_text(json.dumps(pasted, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_scenarios(jsonl)[0].text == pasted["scenario"]


def _data_error(tmp_path, records, name="data.json") -> str:
    if name.endswith(".jsonl"):
        text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"
    else:
        text = json.dumps(records)
    path = _write(tmp_path, text, name)
    with pytest.raises(PFTError) as err:
        load_scenarios(path)
    msg = str(err.value)
    assert name in msg, msg
    return msg


@pytest.mark.parametrize("field", ["scenario", "preference domain", "options"])
def test_record_missing_field(tmp_path, field):
    bad = _record()
    del bad[field]
    msg = _data_error(tmp_path, [_record(), _record(), bad])
    assert "record 3" in msg and f"field '{field}'" in msg


_TWO_RISK_TAKING = [{"text": "Bet it all.", "bias": "Risk-taking"}, {"text": "Bet half.", "bias": "Risk-taking"}]
_ANOTHER_DIMENSIONS_POLE = [{"text": "Bet it all.", "bias": "Risk-taking"}, {"text": "Work together.", "bias": "Collaborative"},
                            {"text": "Keep it.", "bias": "Risk-averse"}]


@pytest.mark.parametrize("records, name, fragments", [
    ([_record(options=[{"bias": "Risk-taking"}, {"text": "Keep it.", "bias": "Risk-averse"}])], "data.json",
     ["record 1", "options[0]", "'text'"]),
    ([_record(), _record(domain="Humour Style")], "data.json", ["record 2", "'preference domain'", "Humour Style"]),
    ([_record(domain="Risk Orientaton")], "data.json", ["did you mean 'risk'"]),
    ([_record(options=_ANOTHER_DIMENSIONS_POLE)], "data.json",
     ["record 1", "options[1]", "'bias'", "Collaborative", "Risk-taking", "Risk-averse"]),
    ([_record(), _record(options=_TWO_RISK_TAKING)], "data.json", ["record 2", "'options'", "Risk-averse"]),
    ([_record(), ["not", "an", "object"]], "data.json", ["record 2", "object"]),
    ([_record(), _record(), '{"scenario": "half a record",'], "data.jsonl", ["line 3", "not valid JSON"]),
    ([_record(options=[{"text": "Bet it all.", "bias": "Risk-taking"}, {"text": "Bet it all.", "bias": "Risk-averse"}])],
     "data.json", ["record 1", "field 'options' gives the text 'Bet it all.' twice", "says nothing"]),
], ids=["option-without-text", "unknown-domain", "domain-typo", "pole-of-another-dimension", "one-pole-only",
        "not-an-object", "invalid-json-line", "same-text-twice"])
def test_bad_records_are_named(tmp_path, records, name, fragments):
    msg = _data_error(tmp_path, records, name)
    assert all(f in msg for f in fragments), msg


def test_every_bad_record_is_reported_at_once(tmp_path):
    msg = _data_error(tmp_path, [_record(domain="Humour Style"), _record(), "{", _record(options=_TWO_RISK_TAKING)], "data.jsonl")
    assert msg.startswith("3 bad record(s) in ") and [line.split(": ")[0].rsplit(", ", 1)[1] for line in msg.split("\n")[1:]] == [
        "line 1", "line 3", "line 4"]


def test_one_object_over_several_lines(tmp_path):
    """A pretty-printed record is one object, not as many bad JSONL lines as it has lines."""
    path = _write(tmp_path, json.dumps(_record(), indent=2), "pretty.json")
    with pytest.raises(PFTError) as err:
        load_scenarios(path)
    assert str(err.value) == (f"{path} holds one JSON object over several lines: give a JSON list of records, "
                              "or JSONL with one record per line")
    msg = _data_error(tmp_path, ["{", _record(), "}"], "broken.jsonl")  # not one object: its bad lines are reported
    assert msg.startswith("2 bad record(s)") and "line 1: not valid JSON" in msg and "line 3: not valid JSON" in msg


def test_invalid_json_list(tmp_path):
    path = _write(tmp_path, "[" + json.dumps(_record()) + ",", "broken.json")
    with pytest.raises(PFTError) as err:
        load_scenarios(path)
    assert "broken.json" in str(err.value) and "not valid JSON" in str(err.value)
    path.write_text(json.dumps([_record(), _record()], indent=1).replace("},", "}", 1))  # a comma left out
    with pytest.raises(PFTError, match=r"not valid JSON \(Expecting ',' delimiter at line \d+, column \d+\)"):
        load_scenarios(path)


def test_quoted_input_stays_on_one_line_and_text_must_be_writable(tmp_path):
    msg = _data_error(tmp_path, [_record(domain="Humour\nStyle")], "nl.jsonl")
    assert "field 'preference domain' is 'Humour\\nStyle'" in msg and "\n" not in msg
    path = _write(tmp_path, json.dumps([_record(scenario="S\ud800")]), "surrogate.json")  # json.dumps escapes it
    with pytest.raises(PFTError, match=r"the string 'S\\ud800' holds an unpaired surrogate escape"):
        load_scenarios(path)


def test_empty_json_list_and_byte_order_mark(tmp_path):
    with pytest.raises(PFTError, match="empty.json holds no records"):
        load_scenarios(_write(tmp_path, "[]", "empty.json"))
    path = tmp_path / "bom.json"
    path.write_text("\ufeff" + json.dumps([_record()]), encoding="utf-8")  # as some editors save
    assert len(load_scenarios(path)) == 1


def test_missing_data_file(tmp_path):
    with pytest.raises(PFTError) as err:
        load_scenarios(tmp_path / "absent.json")
    assert "absent.json" in str(err.value) and "not found" in str(err.value)


# -- paired JSONL --------------------------------------------------------------------------
def test_paired_jsonl(tmp_path):
    lines = [
        {"prompt": "A friend offers a quick job abroad.", "responses": {"risk-taking": "Go now.", "risk-averse": "Stay put."}},
        {"prompt": "Bonus day.", "responses": {"Immediate gratification": "Spend it.", "delayed-gratification": "Save it."}},
    ]
    path = _write(tmp_path, "\n".join(json.dumps(x) for x in lines), "pairs.jsonl")
    first, second = load_scenarios(path)
    assert first.dimension == "risk" and first.text == lines[0]["prompt"]
    assert [(o.pole, o.text) for o in first.options] == [("risk-taking", "Go now."), ("risk-averse", "Stay put.")]
    assert second.dimension == "time" and second.options_of("immediate-gratification") == [0]
    rows = paired_rows([first, second])
    assert [(r.pole, r.target, r.scenario) for r in rows] == [
        ("risk-taking", " Go now.", 0), ("risk-averse", " Stay put.", 0),
        ("immediate-gratification", " Spend it.", 1), ("delayed-gratification", " Save it.", 1),
    ]


def test_paired_jsonl_with_custom_pairs(tmp_path):
    space = load_pairs(_write(tmp_path, [HONESTY]))
    path = _write(tmp_path, json.dumps({"prompt": "Your friend's cake is dry.",
                                        "responses": {"blunt": "It is dry.", "tactful-truth": "Lovely icing!"}}), "h.jsonl")
    (scenario,) = load_scenarios(path, space)
    assert scenario.dimension == "honesty"
    with pytest.raises(PFTError) as err:
        load_scenarios(path)  # built-ins only: the poles are unknown
    assert "line 1" in str(err.value) and "'blunt'" in str(err.value)


@pytest.mark.parametrize(
    "record, words",
    [({"prompt": "x", "responses": {"risk-taking": "a", "competitive": "b"}}, ["mixes poles"]),
     ({"prompt": "x", "responses": {"risk-taking": "a"}}, ["'responses'"]),
     ({"prompt": "x", "responses": {"risk-taking": "a", "risky": "b"}}, ["'risky'", "did you mean"]),
     ({"prompt": "x", "responses": {"risk-taking": "a", "risk-averse": ""}}, ["risk-averse", "non-empty"]),
     ({"prompt": "x", "responses": {"risk-averse": "a", "Risk averse": "b", "risk-taking": "c"}},
      ["keys 'risk-averse' and 'Risk averse' both name pole 'risk-averse'"]),
     ({"prompt": "x", "responses": {"risk-taking": "same", "risk-averse": " same "}},
      ["field 'responses' gives the text 'same' twice: every option must differ, or the choice says nothing"]),
     ({"responses": {"risk-taking": "a", "risk-averse": "b"}}, ["'prompt'"]),
     ({"prompt": "x"}, ["'responses'"]),
     ({"prompt": "x", "responses": {"risk-taking": "a", "risk-averse": "b"}, "dimension": ["risk"]}, ["'dimension' must be"]),
     ({"prompt": "x", "responses": {"risk-taking": "a", "risk-averse": "b"}, "dimension": "risks"},
      ["'dimension' is 'risks', not a known dimension", "did you mean 'risk'"]),
     ({"prompt": "x", "responses": {"risk-taking": "a", "risk-averse": "b"}, "scene": 5}, ["'scene' must be a string"]),
     ('{"prompt": "x", "prompt": "y", "responses": {"risk-taking": "a", "risk-averse": "b"}}', ["given twice"])],
)
def test_paired_jsonl_errors(tmp_path, record, words):
    good = {"prompt": "ok", "responses": {"risk-taking": "a", "risk-averse": "b"}}
    msg = _data_error(tmp_path, [good, record], name="paired.jsonl")
    assert "line 2" in msg
    for word in words:
        assert word in msg, msg


# -- paired rows ---------------------------------------------------------------------------
def test_paired_rows_on_vcd(scenarios):
    subset = scenarios[::4]  # the file is sorted by domain: a stride covers all six
    rows = paired_rows(subset)
    assert len(rows) == sum(len(s.options) for s in subset)
    space = ValueSpace.builtin()
    by_scenario = defaultdict(list)
    for position, row in enumerate(rows):
        by_scenario[row.scenario].append((position, row))
    assert sorted(by_scenario) == list(range(len(subset)))
    for index, items in by_scenario.items():
        scenario = subset[index]
        positions = [p for p, _ in items]
        assert positions == list(range(positions[0], positions[0] + len(positions))), "rows of a scenario are adjacent"
        assert {r.prompt for _, r in items} == {format_prompt(scenario)}
        assert {r.pole for _, r in items} == {p.slug for p in space.dimension(scenario.dimension).poles}
        for _, row in items:
            assert row.target in {format_target(scenario.options[i]) for i in scenario.options_of(row.pole)}
    assert {space.dimension_of(r.pole).slug for r in rows} == set(BUILTIN_POLES)


def test_prompt_lists_lettered_options(scenarios):
    scenario = scenarios[0]
    prompt = format_prompt(scenario)
    assert prompt.startswith(f"Scenario: {scenario.text}")
    for letter, option in zip("ABCDE", scenario.options):
        assert f"\n{letter}. {option.text}" in prompt
    assert prompt.endswith("Chosen option:")


def test_paired_rows_pole_filter(scenarios):
    rows = paired_rows(scenarios[::5], poles=["risk-averse"])
    assert rows and {r.pole for r in rows} == {"risk-averse"}
