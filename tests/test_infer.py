"""Inferring a preference vector from history: the history format, both estimators, recency, JSON and the CLI.

The simulated users answer the scenarios the tiny test zoo was trained on (train_slice):
a 100k-parameter base pre-trained for seconds reads its own training scenarios well,
unseen ones barely (benchmarks/personalize.py measures held-out dev scenarios on a real zoo).
"""

from __future__ import annotations

import json
import math
import random
import runpy
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cli_runner import run, user_error
from pft_adapters.base import load_base
from pft_adapters.errors import PFTError
from pft_adapters.history import Decision, load_history, parse_history, parse_timestamp, write_history
from pft_adapters.infer import (
    DEFAULT_HALF_LIFE,
    HalfLife,
    check_decisions,
    decision_scenarios,
    dimension_probabilities,
    guess_dimensions,
    head_estimate,
    infer,
    likelihood_estimate,
    likely_dimensions,
    mirror_gaps,
    option_features,
    parse_half_life,
    pole_scores,
    read_options,
    recency_weights,
    spread_dimensions,
)
from pft_adapters.mix import MixedModel
from pft_adapters.values import ValueSpace
from pft_adapters.vector import parse_vector
from pft_adapters.zoo import Zoo

SPACE = ValueSpace.builtin()


# -- history format ------------------------------------------------------------------------------
def test_history_lines_in_every_accepted_spelling():
    lines = [
        json.dumps({"scenario": "Invest or save?", "options": ["Invest it all", "Keep it safe"], "chosen": 1}),
        "",
        json.dumps({"scenario": "Eat now or later?", "options": [{"text": "Now"}, {"text": "Later", "bias": "x"}],
                    "chosen": "Later", "timestamp": "2025-03-01T00:00:00Z", "dimension": "Time Preference"}),
        json.dumps({"scenario": "s", "options": ["a", "b", "c"], "chosen": 0, "timestamp": 1740787200, "dimension": "risk",
                    "user": "alice"}),
    ]
    decisions = parse_history(lines, SPACE)
    assert [d.chosen for d in decisions] == [1, 1, 0]
    assert [d.line for d in decisions] == [1, 3, 4]
    assert decisions[1].chosen_text == "Later" and decisions[1].options == ("Now", "Later")
    assert decisions[1].dimension == "time" and decisions[2].dimension == "risk" and decisions[0].dimension is None
    assert decisions[1].timestamp == decisions[2].timestamp == 1740787200.0  # ISO and epoch seconds agree


def test_eight_digits_are_a_basic_iso_date_not_seconds_of_1970():
    assert parse_timestamp("20250301", "x") == parse_timestamp("2025-03-01", "x") == parse_timestamp(" 1740787200 ", "x")
    assert parse_timestamp("1740787200.5", "x") == 1740787200.5


def test_history_file_round_trip(tmp_path):
    # texts pasted from the web may hold U+2028 or U+0085, which JSON keeps raw: not line breaks of the JSONL
    decisions = [Decision("s\u2028second line", ("a\x85z", "b"), 1, 10.0, "risk"), Decision("t", ("c", "d", "e"), 2)]
    path = write_history(decisions, tmp_path / "alice.jsonl")
    assert [(d.scenario, d.options, d.chosen, d.timestamp, d.dimension) for d in load_history(path, SPACE)] == [
        (d.scenario, d.options, d.chosen, d.timestamp, d.dimension) for d in decisions]


GOOD = {"scenario": "s", "options": ["a", "b"], "chosen": 0}


@pytest.mark.parametrize("bad, field", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ({"options": ["a", "b"], "chosen": 0}, "missing field 'scenario'"),
    (GOOD | {"scenario": "  "}, "field 'scenario'"),
    (GOOD | {"options": ["only one"]}, "field 'options'"),
    (GOOD | {"options": "a, b"}, "field 'options'"),
    (GOOD | {"options": ["a", 3]}, "field 'options\\[1\\]'"),
    (GOOD | {"options": ["a", {"txt": "b"}]}, "field 'options\\[1\\].text'"),
    ({"scenario": "s", "options": ["a", "b"]}, "missing field 'chosen'"),
    (GOOD | {"chosen": 2}, "field 'chosen' is 2"),
    (GOOD | {"chosen": -1}, "field 'chosen' is -1"),
    (GOOD | {"chosen": "c"}, "field 'chosen' is 'c', which is none of the options"),
    (GOOD | {"chosen": True}, "field 'chosen' must be"),
    (GOOD | {"timestamp": "yesterday"}, "field 'timestamp'"),
    (GOOD | {"timestamp": [1]}, "field 'timestamp'"),
    (GOOD | {"timestamp": "nan"}, "field 'timestamp' is 'nan'"),  # a NaN weight would turn the vector to +1
    (GOOD | {"timestamp": "1e999"}, "field 'timestamp' is '1e999'"),
    (GOOD | {"timestamp": "1_000"}, "field 'timestamp' is '1_000', not ISO-8601"),
    (GOOD | {"timestamp": " "}, "field 'timestamp' is empty"),
    (GOOD | {"timestamp": 10**400}, "field 'timestamp' is 1000"),
    (GOOD | {"timestamp": 1740996000000}, "not epoch seconds within the years 1-9999 \\(epoch milliseconds"),
    (GOOD | {"timestamp": "１２３"}, "field 'timestamp' is '１２３', not ISO-8601"),  # float() reads other scripts' digits
    (GOOD | {"timestamp": "1" * 100_000 + "x"}, "field 'timestamp' is '1111.*…', not ISO-8601"),  # linear time, shortened
    (GOOD | {"dimension": "ri\nsk"}, "field 'dimension' is 'ri\\\\nsk'"),  # a line break quoted stays on its line
    (GOOD | {"scenario": "S\ud800"}, "'S\\\\ud800' holds an unpaired surrogate"),  # would fail when written or printed
    (GOOD | {"options": ["a", "a"]}, "options\\[1\\] repeats options\\[0\\]"),
    ('{"scenario": "s", "scenario": "t", "options": ["a", "b"], "chosen": 0}', "key 'scenario' is given twice"),
    (GOOD | {"dimension": "rsik"}, "field 'dimension' is 'rsik'.*did you mean 'risk'"),
])
def test_bad_lines_are_reported_by_number_and_field(tmp_path, bad, field):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + (bad if isinstance(bad, str) else json.dumps(bad)) + "\n")
    with pytest.raises(PFTError, match=f"h.jsonl, line 2: .*{field}") as err:
        load_history(path, SPACE)
    assert "\n" not in str(err.value)


def test_every_bad_line_is_reported_at_once(tmp_path):
    path = tmp_path / "h.jsonl"
    lines = [GOOD, GOOD | {"chosen": 5}, "not json", GOOD, GOOD | {"options": ["a"]}]
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with pytest.raises(PFTError) as err:
        load_history(path, SPACE)
    first, *rest = str(err.value).split("\n")
    assert first == f"3 bad record(s) in {path}:"
    assert [r.split(":")[0].strip() for r in rest] == [f"{path}, line {n}" for n in (2, 3, 5)]
    assert "not valid JSON" in rest[1] and "field 'chosen' is 5" in rest[0]
    path.write_text("".join("{}\n" for _ in range(13)))  # a long list is cut: the first ten and a count
    with pytest.raises(PFTError, match=r"13 bad record\(s\)(.|\n)*line 10: .*\n  \.\.\. and 3 more$"):
        load_history(path, SPACE)


def test_a_pretty_printed_decision_is_one_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(GOOD, indent=2))
    with pytest.raises(PFTError, match=r"h.jsonl holds one JSON object over several lines, where JSONL takes one per line: "
                                       r"write one decision object per line$"):
        load_history(path, SPACE)


def test_a_byte_order_mark_is_read_past(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_text("\ufeff" + json.dumps(GOOD) + "\n", encoding="utf-8")
    assert load_history(path)[0].options == ("a", "b")


def test_history_lines_must_be_text():
    with pytest.raises(PFTError, match=r"^history, line 1 is a dict, not text: pass JSONL text or its lines"):
        parse_history([GOOD])  # type: ignore[list-item]


def test_empty_or_missing_history_is_one_clear_line(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(PFTError, match="holds no decisions"):
        load_history(tmp_path / "empty.jsonl")
    with pytest.raises(PFTError, match="not found"):
        load_history(tmp_path / "nope.jsonl")


# -- recency ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("5", HalfLife(5.0, "records")), (2, HalfLife(2.0, "records")), ("3d", HalfLife(3 * 86400.0, "seconds")),
    ("12h", HalfLife(12 * 3600.0, "seconds")), ("90m", HalfLife(5400.0, "seconds")), ("2w", HalfLife(14 * 86400.0, "seconds")),
    ("none", None), (None, HalfLife(DEFAULT_HALF_LIFE, "records")),
])
def test_half_life_spellings(spec, expected):
    assert parse_half_life(spec) == expected


@pytest.mark.parametrize("spec", ["0", "-2", "3x", "soon", "d", "1M", "nan", "1e400", 10**400, float("nan")])
def test_bad_half_life(spec):
    with pytest.raises(PFTError, match="half-life"):
        parse_half_life(spec)


def test_recency_weights_in_records_and_in_time():
    plain = [Decision("s", ("a", "b"), 0, line=i + 1) for i in range(4)]
    torch.testing.assert_close(recency_weights(plain, HalfLife(1.0, "records")), torch.tensor([0.125, 0.25, 0.5, 1.0], dtype=torch.float64))
    assert torch.equal(recency_weights(plain, None), torch.ones(4, dtype=torch.float64))
    day = 86400.0
    stamped = [Decision("s", ("a", "b"), 0, t * day, line=i + 1) for i, t in enumerate([3, 0, 2, 1])]  # out of file order
    torch.testing.assert_close(recency_weights(stamped, HalfLife(1.0, "records")), torch.tensor([1.0, 0.125, 0.5, 0.25], dtype=torch.float64))
    torch.testing.assert_close(recency_weights(stamped, parse_half_life("2d")), torch.tensor([1.0, 2**-1.5, 2**-0.5, 0.5], dtype=torch.float64))
    with pytest.raises(PFTError, match="line 3 has none"):
        recency_weights(stamped[:2] + plain[2:3], parse_half_life("2d"))


# -- estimators on the tiny zoo -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(trained, base_dir):
    model, tokenizer = load_base(base_dir)
    return MixedModel(trained.zoo, model, tokenizer)


@pytest.fixture(scope="module")
def pool(train_slice):
    """The users' scenarios: 12 of each trained dimension."""
    return [s for s in train_slice if s.dimension == "risk"][:12] + [s for s in train_slice if s.dimension == "time"][:12]


@pytest.fixture(scope="module")
def read(mixed, pool):
    """The head's readings and the per-pole scores of every pool scenario, computed once."""
    decisions = [Decision(s.text, tuple(o.text for o in s.options), 0) for s in pool]
    readings = read_options(mixed.zoo.head, option_features(mixed, decisions), [len(s.options) for s in pool])
    return readings, pole_scores(mixed, pool)


def simulate(scenarios, truth: dict[str, int], k: int, seed: int, slip: float = 0.1, flip_after: int | None = None):
    """A user answering k of the scenarios of their non-zero dimensions: (scenario index, chosen option).

    The scenarios come in a random order, reshuffled when used up; after `flip_after` answers the user flips.
    """
    rng = random.Random(seed)
    mine = [i for i, s in enumerate(scenarios) if truth.get(s.dimension, 0)]
    order: list[int] = []
    while len(order) < k:
        order += rng.sample(mine, len(mine))
    out = []
    for n, i in enumerate(order[:k]):
        s = scenarios[i]
        dim = SPACE.dimension(s.dimension)
        sign = truth[s.dimension] * (-1 if flip_after is not None and n >= flip_after else 1)
        options = s.options_of(dim.first.slug if sign > 0 else dim.second.slug)
        out.append((i, rng.randrange(len(s.options)) if rng.random() < slip else rng.choice(options)))
    return out


def estimate(mixed, read, history, method, weights=None, dims=None):
    readings, scores = read
    chosen = [c for _, c in history]
    weights = torch.ones(len(history)) if weights is None else weights
    rd = [readings[i] for i, _ in history]
    dims = dims or guess_dimensions(rd, [None] * len(history), mixed.zoo.head)
    space = mixed.zoo.space
    if method == "head":
        return head_estimate(rd, chosen, dims, weights, space, mixed.zoo.head.dimension_slugs)
    return likelihood_estimate([scores[i] for i, _ in history], chosen, dims, weights, space)


USERS = [{"risk": 1, "time": 1}, {"risk": 1, "time": -1}, {"risk": -1, "time": 1}, {"risk": -1, "time": -1}]


@pytest.mark.parametrize("method", ["head", "likelihood"])
def test_estimators_recover_the_signs_of_a_simulated_user(mixed, read, pool, method):
    right = total = 0
    for seed in range(3):
        for truth in USERS:
            result = estimate(mixed, read, simulate(pool, truth, 10, seed), method)
            assert result.method == method
            for dim, sign in truth.items():
                total += 1
                right += result.vector[dim] * sign > 0
                assert 0.0 <= result.confidence[dim] <= 1.0
    # the tiny base is pre-trained for a fixed time, not steps, so the zoo varies a little from run to run
    assert right >= 0.8 * total, (method, right, total)


def test_infer_on_the_model_equals_the_estimators_on_cached_readings(mixed, read, pool):
    history = simulate(pool, {"risk": -1, "time": 1}, 6, seed=7)
    decisions = [Decision(pool[i].text, tuple(o.text for o in pool[i].options), c) for i, c in history]
    weights = recency_weights(decisions, parse_half_life(None))
    for method in ("head", "likelihood"):
        live = infer(mixed, decisions, method)
        cached = estimate(mixed, read, history, method, weights)
        assert live.evidence == cached.evidence
        for dim in ("risk", "time"):
            assert live.vector[dim] == pytest.approx(cached.vector[dim], abs=1e-3)


@pytest.mark.parametrize("method", ["head", "likelihood"])
def test_dimensions_without_evidence_stay_zero(mixed, train_slice, method):
    risk = [s for s in train_slice if s.dimension == "risk"][:3]
    decisions = [Decision(s.text, tuple(o.text for o in s.options), s.options_of("risk-averse")[0], dimension="risk")
                 for s in risk]
    result = infer(mixed, decisions, method)
    assert result.vector["risk"] < 0
    assert result.vector["time"] == 0.0 and result.evidence["time"] == 0 and result.confidence["time"] == 0.0
    assert result.evidence["risk"] == 3 and result.confidence["risk"] > 0


@pytest.mark.parametrize("method", ["head", "likelihood"])
def test_a_half_life_follows_a_user_who_flips(mixed, read, pool, method):
    truth = {"risk": 1}
    history = simulate(pool, truth, 16, seed=3, slip=0.0, flip_after=10)  # 10 risk-taking, then 6 risk-averse
    dims = ["risk"] * len(history)
    blank = [Decision("s", ("a", "b"), 0)] * len(history)
    still = estimate(mixed, read, history, method, recency_weights(blank, None), dims)
    followed = estimate(mixed, read, history, method, recency_weights(blank, parse_half_life(2)), dims)
    assert still.vector["risk"] > 0 > followed.vector["risk"]



def test_a_dimension_last_seen_long_ago_is_still_decided_by_its_own_decisions(mixed, read, pool):
    assert float(recency_weights([Decision("s", ("a", "b"), 0)] * 606, parse_half_life(3))[0]) > 0  # 200 half-lives
    history = simulate(pool, {"risk": -1}, 6, seed=2, slip=0.0) + simulate(pool, {"time": 1}, 6, seed=2, slip=0.0)
    dims = ["risk"] * 6 + ["time"] * 6
    recent = torch.ones(6, dtype=torch.float64)
    for method in ("head", "likelihood"):
        plain = estimate(mixed, read, history, method, torch.cat([recent, recent]), dims)
        for age in (10, 200, 600):  # at 600 half-lives the squared weights underflow (confidence was NaN)
            faded = estimate(mixed, read, history, method, torch.cat([recent * 0.5**age, recent]), dims)
            assert faded.vector == pytest.approx(plain.vector, abs=1e-6), (method, age)
            assert faded.confidence == pytest.approx(plain.confidence, abs=1e-6) and plain.vector["risk"] != 0
    head = estimate(mixed, read, history, "head", torch.cat([recent, recent]), dims)
    gone = estimate(mixed, read, history, "head", torch.cat([recent * 0.0, recent]), dims)  # was NaN, printed +1
    assert gone.vector["risk"] == 0.0 and gone.confidence["risk"] == 0.0 and gone.vector["time"] == head.vector["time"]

def test_confidence_grows_with_evidence_and_agreement(mixed, read, pool):
    history = simulate(pool, {"risk": 1}, 12, seed=5, slip=0.0)
    dims = ["risk"] * 12
    few = estimate(mixed, read, history[:2], "head", dims=dims[:2])
    many = estimate(mixed, read, history, "head", dims=dims)
    assert many.confidence["risk"] > few.confidence["risk"]
    mixed_up = history[:6] + simulate(pool, {"risk": -1}, 6, seed=6, slip=0.0)
    assert estimate(mixed, read, mixed_up, "head", dims=dims).confidence["risk"] < many.confidence["risk"]


def test_json_round_trip_through_parse_vector(mixed, train_slice, tmp_path):
    time_ = [s for s in train_slice if s.dimension == "time"][:2]
    decisions = [Decision(s.text, tuple(o.text for o in s.options), 0) for s in time_]
    out = infer(mixed, decisions, "head").to_json()
    assert list(out) == ["vector", "confidence", "evidence", "method"] and out["method"] == "head"
    assert set(out["vector"]) == set(out["confidence"]) == set(out["evidence"]) == {"risk", "time"}
    (tmp_path / "alice.json").write_text(json.dumps(out))
    assert dict(parse_vector(f"@{tmp_path / 'alice.json'}", mixed.zoo.space)) == out["vector"]
    assert dict(parse_vector(out, mixed.zoo.space)) == out["vector"]


def test_unknown_method_and_empty_history(mixed):
    with pytest.raises(PFTError, match="unknown method"):
        infer(mixed, [Decision("s", ("a", "b"), 0)], "vote")
    with pytest.raises(PFTError, match="no decisions"):
        infer(mixed, [], "head")



@pytest.mark.parametrize("options, chosen, timestamp, message", [
    (("a", "b"), 5, None, "field 'chosen' is 5, but the 2 options are numbered 0 to 1"),
    (("a", "b"), -1, None, "field 'chosen' is -1"),  # not the last option
    (("a",), 0, None, "field 'options' must be a list of 2 to 10 options"),  # one option is no choice
    ("ab", 0, None, "field 'options' must be a list"),  # not the options 'a' and 'b'
    (("a", "b"), 0, math.nan, "field 'timestamp' is nan"),  # would give a NaN confidence
    (("a", "b"), 0, "yesterday", "field 'timestamp' is 'yesterday', not ISO-8601"),
])
def test_decisions_built_in_python_are_checked_as_history_lines_are(mixed, options, chosen, timestamp, message):
    decisions = [Decision("s", ("c", "d"), 0), Decision("s", options, chosen, timestamp)]
    with pytest.raises(PFTError, match=rf"^decisions\[1\]: {message}"):
        infer(mixed, decisions, "head")


def test_decisions_are_normalised_as_history_lines_are_and_other_objects_refused(mixed):
    given = Decision(" s ", ("a", "b"), 1, "2025-03-01T00:00:00Z", "Time Preference")  # type: ignore[arg-type]
    assert check_decisions(mixed.zoo, [given]) == [Decision("s", ("a", "b"), 1, 1740787200.0, "time")]
    for edge in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.5Z"):  # ISO's range, read back as epoch seconds
        assert check_decisions(mixed.zoo, check_decisions(mixed.zoo, [replace(given, timestamp=edge)]))  # type: ignore[arg-type]
    with pytest.raises(PFTError, match=r"^decisions\[0\] is a dict, not a Decision: pass Decision objects"):
        infer(mixed, [GOOD], "head")  # type: ignore[list-item]


def test_a_zoo_without_a_head_infers_by_likelihood(trained, base_dir, mixed, train_slice):
    """An assembled zoo may have no mixing head: `likelihood` still infers, `head` says what to use instead."""
    model, tokenizer = load_base(base_dir)
    headless = MixedModel(replace(trained.zoo, head=None), model, tokenizer)
    risk = [s for s in train_slice if s.dimension == "risk"][:4]
    named = [Decision(s.text, tuple(o.text for o in s.options), s.options_of("risk-averse")[0], dimension="risk")
             for s in risk]
    with pytest.raises(PFTError, match="no mixing head to read the options with: use --method likelihood"):
        infer(headless, named, "head")
    with_head = infer(mixed, named, "likelihood")  # every dimension named: the head is not read
    without = infer(headless, named, "likelihood")
    assert without.vector["risk"] < 0 and without.vector["risk"] == pytest.approx(with_head.vector["risk"], abs=1e-5)
    assert without.evidence == with_head.evidence == {"risk": 4, "time": 0}
    # unnamed, each decision goes to the dimension whose two poles set its options apart most
    scores = pole_scores(headless, decision_scenarios(named))
    spread = spread_dimensions(scores, headless.zoo.space)
    unnamed = infer(headless, [replace(d, dimension=None) for d in named], "likelihood")
    assert unnamed.evidence == {dim: spread.count(dim) for dim in ("risk", "time")}


def test_spread_places_a_decision_on_the_dimension_that_moves_its_options():
    space = SPACE.select(["risk", "time"])
    # columns: risk-taking, risk-averse, immediate, delayed; time's poles pull the options apart, risk's barely
    scores = torch.tensor([[0.1, 0.0, 2.0, -1.0], [0.0, 0.1, -1.0, 2.0], [0.1, 0.1, 0.0, 0.0]])
    assert spread_dimensions([scores, scores[:, [2, 3, 0, 1]]], space) == ["time", "risk"]
    assert spread_dimensions([scores[:1]], space) == ["time"]  # one option: the larger gap

# -- command line ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def history_file(train_slice, tmp_path_factory):
    """A risk-averse, time-patient user's history, as JSONL."""
    decisions = []
    for i, s in enumerate(train_slice[::6]):
        pole = "risk-averse" if s.dimension == "risk" else "delayed-gratification"
        decisions.append(Decision(s.text, tuple(o.text for o in s.options), s.options_of(pole)[0], 1_700_000_000.0 + i * 3600))
    return write_history(decisions, tmp_path_factory.mktemp("history") / "alice.jsonl")


def test_cli_infer_json(zoo_dir, history_file, capsys, tmp_path):
    code, out, _ = run(capsys, "infer", str(zoo_dir), "--history", str(history_file), "--json", "--half-life", "1d")
    assert code == 0
    result = json.loads(out)
    assert list(result) == ["vector", "confidence", "evidence", "method"]
    assert result["vector"]["risk"] < 0 and result["vector"]["time"] < 0
    assert sum(result["evidence"].values()) == 8
    (tmp_path / "alice.json").write_text(out)
    code, out, _ = run(capsys, "mix", str(zoo_dir), "--vector", f"@{tmp_path / 'alice.json'}", "--prompt", "Save or spend?",
                       "--max-new-tokens", "2", "--json")
    assert code == 0 and json.loads(out)["vector"] == {k: v for k, v in result["vector"].items()}


def test_cli_infer_text_and_errors(zoo_dir, history_file, capsys, tmp_path):
    code, out, _ = run(capsys, "infer", str(zoo_dir), "--history", str(history_file))
    assert code == 0 and "Risk-averse" in out and "confidence" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(history_file.read_text() + '{"scenario": "s", "options": ["a"], "chosen": 0}\n')
    err = user_error(capsys, "infer", str(zoo_dir), "--history", str(bad))
    assert "line 9" in err and "'options'" in err
    assert "half-life" in user_error(capsys, "infer", str(zoo_dir), "--history", str(history_file), "--half-life", "soon")


def test_the_serving_example_answers_each_user_under_their_own_vector(zoo_dir, base_dir, history_file, train_slice,
                                                                    tmp_path, capsys):
    bob = [Decision(d.scenario, d.options, next(i for i in range(len(d.options)) if i != d.chosen))
           for d in load_history(history_file)]  # another option than alice's each time
    bob_file = write_history(bob, tmp_path / "bob.jsonl")
    main = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "serve_users.py"))["main"]
    prompt = "A friend offers you a share in a new business. What do you do?"
    assert main([str(zoo_dir), "--history", str(history_file), "--history", str(bob_file), "--prompt", prompt,
                 "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    mixed = MixedModel(Zoo.from_pretrained(zoo_dir), *load_base(base_dir))
    for path in (history_file, bob_file):
        vector = infer(mixed, load_history(path, mixed.zoo.space)).vector
        alone = mixed.generate([prompt], vector, max_new_tokens=6)[0]  # the same answer as in the shared batch
        assert f"{path}: {vector.describe()}" in out and f"[{path}]\n{alone}\n" in out + "\n"
    capsys.readouterr()
    assert main([str(tmp_path / "no-zoo"), "--history", str(bob_file), "--prompt", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_the_serving_example_refuses_no_tokens_and_stops_quietly_on_ctrl_c(zoo_dir, history_file, capsys, monkeypatch):
    main = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "serve_users.py"))["main"]
    args = [str(zoo_dir), "--history", str(history_file), "--prompt", "x"]
    with pytest.raises(SystemExit) as exit_info:  # was a transformers traceback
        main([*args, "--max-new-tokens", "0"])
    assert exit_info.value.code == 2 and "argument --max-new-tokens: must be at least 1, got 0" in capsys.readouterr().err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pft_adapters.zoo.Zoo.from_pretrained", interrupted)
    assert main(args) == 130
    assert capsys.readouterr() == ("", "")


def test_cli_mix_history(zoo_dir, history_file, capsys):
    args = ["mix", str(zoo_dir), "--history", str(history_file), "--method", "likelihood", "--json"]
    code, out, _ = run(capsys, *args, "--prompt", "Should I invest?", "--max-new-tokens", "2")
    assert code == 0
    result = json.loads(out)
    assert result["inferred"]["method"] == "likelihood" and result["vector"] == result["inferred"]["vector"]
    assert result["vector"]["risk"] < 0
    assert "exactly one of --vector" in user_error(capsys, "mix", str(zoo_dir), "--prompt", "x")
    assert "exactly one of --vector" in user_error(capsys, "mix", str(zoo_dir), "--vector", "risk=1", "--history",
                                                   str(history_file), "--prompt", "x")
    assert "go with --history" in user_error(capsys, "mix", str(zoo_dir), "--vector", "risk=1", "--half-life", "3",
                                             "--prompt", "x")
    err = user_error(capsys, "mix", f"{zoo_dir}:risk-taking,delayed-gratification", "--history", history_file, "--prompt", "x")
    assert f"the vector inferred from {history_file} is risk=-" in err and "['risk-averse'], which this zoo does not hold" in err
    for option in ("--export", "--merge-out"):  # a non-empty target is refused before the zoo is even looked for
        err = user_error(capsys, "mix", "no-such/zoo", "--vector", "risk=1", option, str(zoo_dir))
        assert f"already exists and is not empty: choose another {option}" in err


def test_cli_mix_exports_a_peft_adapter_and_refuses_what_cannot_be_done(zoo_dir, tmp_path, capsys):
    out = tmp_path / "mix"
    code, stdout, err = run(capsys, "mix", str(zoo_dir), "--vector", "risk=1,time=-0.5", "--export", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout) == {"vector": {"risk": 1.0, "time": -0.5}, "written": str(out), "kind": "peft-lora"}
    assert {p.name for p in out.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "pft_mix.json"}
    for args, message in ((["--vector", "risk=1", "--prompt", "x", "--scenarios", str(out)], "exactly one of --prompt, --scenarios"),
                          (["--vector", "risk=0", "--export", str(tmp_path / "none")], "nothing to export"),
                          (["--vector", "risk=1", "--prompt", "x", "--top-p", "0"], "--top-p in (0, 1]")):
        assert message in user_error(capsys, "mix", str(zoo_dir), *args)
    assert not (tmp_path / "none").exists()


def test_help_states_the_default_half_life():
    from pft_adapters_cli.commands.infer import HALF_LIFE_HELP

    assert f"Default: {DEFAULT_HALF_LIFE:g} decisions" in HALF_LIFE_HELP


def test_mirror_gaps_are_the_first_order_of_the_mirror_calibration():
    """Pole weights of v applied to a dimension's gaps = v's weights minus the mirrored vector's, on that dimension."""
    from pft_adapters.mix import mirror
    from pft_adapters.values import ValueSpace
    from pft_adapters.vector import PreferenceVector

    space = ValueSpace.builtin()
    dims = [d.slug for d in space]
    scores = [torch.randn(3, len(space.pole_slugs), generator=torch.Generator().manual_seed(i)) for i in range(len(dims))]
    gaps = mirror_gaps(scores, space)
    for spec in ({"risk": 0.7, "time": -1.0, "social": 0.2}, {"risk": -0.4, "decision": 1.0, "communication": -0.6}):
        vector = PreferenceVector(spec)
        for table, gap, dim in zip(scores, gaps, dims):
            if vector.get(dim):
                expected = table @ (vector.tensor(space) - mirror(vector, dim).tensor(space))
                own = dimension_probabilities([dim], space)[0].repeat_interleave(2)  # the dimension's two columns
                torch.testing.assert_close((gap * own) @ vector.tensor(space), expected)


def _gap_tables(space: ValueSpace, n: int, signal_dim: str) -> tuple[list[torch.Tensor], list[int]]:
    """Per-pole scores of 3-option decisions where only `signal_dim`'s poles tell the options apart, option 0 its first pole's."""
    g = torch.Generator().manual_seed(0)
    first, second = (space.pole_index(p.slug) for p in space.dimension(signal_dim).poles)
    tables = []
    for _ in range(n):
        table = 0.01 * torch.randn(3, len(space.pole_slugs), generator=g)
        table[:, first] += torch.tensor([2.0, -1.0, -1.0])
        table[:, second] += torch.tensor([-2.0, 1.0, 1.0])
        tables.append(table)
    return tables, [0] * n


def test_settled_dimension_probabilities_fit_as_the_named_dimensions():
    """One-hot dimension probabilities read each decision on its own dimension only: other dimensions' gaps change nothing."""
    space = ValueSpace.builtin()
    dims = ["risk", "time", "risk", "social"]
    scores = [torch.randn(4, len(space.pole_slugs), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    chosen, weights, probs = [0, 2, 1, 3], torch.tensor([0.5, 1.0, 0.7, 1.0]), dimension_probabilities(dims, space)
    gaps = mirror_gaps(scores, space)
    own = [g * probs[i].repeat_interleave(2) for i, g in enumerate(gaps)]  # each decision's own dimension's columns
    named = likelihood_estimate(own, chosen, dims, weights, space, dimension_probs=probs)
    every = likelihood_estimate(gaps, chosen, dims, weights, space, dimension_probs=probs)
    assert every.to_json() == named.to_json()
    assert named.evidence == {"risk": 2, "time": 1, "social": 1, "communication": 0, "decision": 0, "change": 0}
    assert named.vector["communication"] == 0.0 and named.vector["risk"] != 0.0


def test_uncertain_dimensions_go_to_the_dimension_that_explains_the_choices():
    """The head leans to 'time', but only 'risk' tells the options apart: the mixture fits risk, the argmax does not."""
    space = ValueSpace.builtin()
    scores, chosen = _gap_tables(space, 4, "risk")
    head_dims = [d.slug for d in space]
    lean = torch.tensor([0.35 if d == "risk" else 0.55 if d == "time" else 0.02 for d in head_dims])
    probs = dimension_probabilities([lean] * 4, space, head_dims)
    weights = torch.ones(4)
    gaps = mirror_gaps(scores, space)
    mixture = likelihood_estimate(gaps, chosen, ["time"] * 4, weights, space, dimension_probs=probs)
    argmax = likelihood_estimate(gaps, chosen, ["time"] * 4, weights, space)
    assert mixture.vector["risk"] > 0.3 and abs(mixture.vector["time"]) < 0.2
    assert mixture.evidence["risk"] == 1 and mixture.evidence["time"] == 2 and mixture.evidence["social"] == 0
    assert mixture.vector["social"] == 0.0
    assert argmax.vector["risk"] == 0.0


def test_likely_dimensions_drop_the_unlikely_and_keep_the_likeliest():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.04, 0.03, 0.05, 0.02], [0.0, 1.0, 0.0, 0.0]])
    kept = likely_dimensions(probs, floor=0.1)
    torch.testing.assert_close(kept[0], torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95)
    torch.testing.assert_close(kept[1], torch.tensor([0.0, 0.0, 1.0, 0.0]))  # all under the floor: the likeliest
    torch.testing.assert_close(kept[2], probs[2])


def test_scores_that_are_not_finite_are_refused_not_read_as_a_full_preference():
    """NaN clamped into [-1, 1] is +1: a damaged zoo would pass for a user at full strength of a pole."""
    from pft_adapters.infer import Reading

    space = ValueSpace.builtin()
    head_dims = [d.slug for d in space]
    poles = torch.zeros(2, len(head_dims))
    poles[0, head_dims.index("risk")] = float("nan")
    reading = Reading(poles, torch.full((len(head_dims),), 1 / len(head_dims)))
    with pytest.raises(PFTError, match="NaN or infinite"):
        head_estimate([reading], [0], ["risk"], torch.ones(1), space, head_dims)
    tables, chosen = _gap_tables(space, 2, "risk")
    tables[0][1, 0] = float("nan")
    with pytest.raises(PFTError, match="NaN or infinite"):
        likelihood_estimate(tables, chosen, ["risk", "risk"], torch.ones(2), space)


@pytest.mark.parametrize("args, message", [
    (["--export", "out", "--temperature", "0.7", "--seed", "1"], "--temperature, --seed go with --prompt, not --export"),
    (["--prompt", "x", "--calibrate", "base"], "--calibrate goes with --scenarios, not --prompt"),
    (["--scenarios", "s.json", "--raw"], "--raw goes with --prompt, not --scenarios"),
    (["--prompt", "x", "--overwrite"], "--overwrite goes with --export or --merge-out, not --prompt"),
    (["--scenarios", "s.json", "--max-new-tokens", "64"], "--max-new-tokens goes with --prompt"),  # its default, given
])
def test_cli_mix_refuses_options_of_another_job_before_loading(capsys, tmp_path, args, message):
    assert message in user_error(capsys, "mix", tmp_path / "no-zoo", "--vector", "risk=1", *args)


def test_likelihood_reads_contradictory_or_uninformative_choices_as_no_preference():
    """Votes are measured against the decision's options on average: choosing one option, then the other of the same
    scenario, cancels out even where the poles spread the options unequally; a fit the choices do not pull away
    from 0 stays at exactly 0 (it used to stop wherever 40 steps from +-0.5 left it)."""
    space = ValueSpace.builtin().select(["risk"])
    table = torch.tensor([[1.0, 0.1], [-1.0, -0.1]])  # first pole spreads the options ten times the second
    flip = likelihood_estimate([table, table], [0, 1], ["risk", "risk"], torch.ones(2), space)
    assert flip.vector["risk"] == 0.0 and flip.confidence["risk"] == 0.0 and flip.evidence["risk"] == 2
    same = torch.zeros(2, 2)  # two options no pole tells apart
    blank = likelihood_estimate([same], [0], ["risk"], torch.ones(1), space)
    assert blank.vector["risk"] == 0.0 and blank.confidence["risk"] == 0.0
    opposed = torch.tensor([[1.0, -0.1], [-1.0, 0.1]])  # the poles favour different options
    steady = likelihood_estimate([opposed] * 3, [1] * 3, ["risk"] * 3, torch.ones(3), space)
    assert steady.vector["risk"] < -0.3 and steady.confidence["risk"] > 0.3  # a consistent choice still reads


def test_a_zoo_loaded_without_a_dimensions_poles_infers_nothing_there(zoo_dir, base_dir, capsys, tmp_path):
    part = Zoo.from_pretrained(zoo_dir, poles=["risk-taking", "risk-averse"])
    mixed_part = MixedModel(part, *load_base(base_dir))
    time_decision = Decision("Your bonus arrived.", ("Spend it on a trip now", "Save it for the house"), 1, None, "time", 1)
    with pytest.raises(PFTError, match="line 1: dimension 'time' has no pole in this zoo as loaded"):
        infer(mixed_part, [time_decision], method="likelihood")
    unnamed = replace(time_decision, dimension=None)
    result = infer(mixed_part, [unnamed] * 3, method="head")  # wherever the head places it but 'risk': no vector to mix
    assert all(result.vector.get(d, 0.0) == 0.0 == result.confidence.get(d, 0.0) for d in (dim.slug for dim in part.space) if d != "risk")
    history = tmp_path / "h.jsonl"
    write_history([time_decision], history)
    capsys.readouterr()  # the loading above wrote to stderr
    line = user_error(capsys, "infer", f"{zoo_dir}:risk-taking,risk-averse", "--history", history)
    assert "dimension 'time' has no pole in this zoo as loaded" in line
