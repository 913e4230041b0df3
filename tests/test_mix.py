"""Mixing by a preference vector: exact against peft, in every mode, and it steers choices."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import peft
import pytest
import torch

from cli_runner import run
from pft_adapters.base import load_base
from pft_adapters.errors import PFTError
from pft_adapters.mix import MixedModel
from pft_adapters.values import ValueSpace
from pft_adapters.vector import PreferenceVector, parse_vector
from pft_adapters.zoo import Zoo
from peft_reference import activate_scaled

SPACE = ValueSpace.builtin()
# Whole-model logits through every layer, with the adapters amplified: float32 summation order (peft's
# vs ours, merged vs dynamic, one batch vs row by row) moves a few logits by ~1e-5; a wrong mix moves
# them by > 1e-2. The layer-level comparisons in test_layers.py hold at 1e-5.
CLOSE: dict[str, Any] = {"atol": 5e-5, "rtol": 1e-5}
TEXTS = ["Scenario: a friend offers a risky investment.\nChosen option:", "Scenario: save or spend?\nChosen option: I"]


@pytest.fixture(scope="module")
def mixed(zoo_dir, base_dir):
    """The trained tiny zoo with its LoRA B factors amplified, so every pole visibly changes the logits."""
    zoo = Zoo.from_pretrained(zoo_dir)
    for tensors in zoo.poles.values():
        for key in tensors:
            if "lora_B" in key:
                tensors[key] = tensors[key] * 3
    model, tokenizer = load_base(base_dir)
    return MixedModel(zoo, model, tokenizer)


def _peft_model(mixed: MixedModel, base_dir):
    return mixed.zoo.to_peft(load_base(base_dir)[0])


def _batch(mixed):
    return mixed._encode(TEXTS, padding_side="right")


@torch.no_grad()
def test_mix_equals_peft_all_active_and_weighted_cat(mixed, base_dir):
    vector = {"risk": 0.7, "time": -0.4}
    weights = parse_vector(vector, mixed.zoo.space).pole_weights(mixed.zoo.space)
    ours = mixed.logits(TEXTS, vector)
    base = mixed.logits(TEXTS, {})
    assert (ours - base).abs().max() > 1e-2  # the adapters really act

    ref = _peft_model(mixed, base_dir)
    activate_scaled(ref, weights)
    torch.testing.assert_close(ours, ref(**_batch(mixed)).logits, **CLOSE)

    ref = _peft_model(mixed, base_dir)
    active = [p for p, w in weights.items() if w > 0]
    ref.add_weighted_adapter(active, [weights[p] for p in active], "mix", combination_type="cat")
    ref.set_adapter("mix")
    torch.testing.assert_close(ours, ref(**_batch(mixed)).logits, **CLOSE)


@torch.no_grad()
def test_plus_one_is_the_pole_alone_and_zero_is_the_base(mixed, base_dir):
    alone = mixed.logits(TEXTS, {"risk-averse": 1.0})
    mixed.adapters.use_weights({"risk-averse": 1.0})
    torch.testing.assert_close(alone, mixed.model(**_batch(mixed)).logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(alone, mixed.logits(TEXTS, {"risk": -1}), atol=0, rtol=0)
    base, _ = load_base(base_dir)
    assert torch.equal(mixed.logits(TEXTS, {"risk": 0, "time": 0}), base(**_batch(mixed)).logits)


@torch.no_grad()
def test_per_row_vectors_equal_rows_run_one_by_one(mixed):
    vectors = ["risk=1,time=0.5", "time=-1"]
    together = mixed.logits(TEXTS, vectors)
    for i, (text, vector) in enumerate(zip(TEXTS, vectors)):
        alone = mixed.logits([text], vector)
        n = alone.shape[1]
        torch.testing.assert_close(together[i : i + 1, :n], alone, **CLOSE)


@torch.no_grad()
def test_merged_equals_dynamic_and_unmerge_restores_bits(mixed):
    original = {n: l.base.weight.clone() for n, l in mixed.adapters.layers.items()}
    dynamic = mixed.logits(TEXTS, "risk=0.3,time=-0.9")
    with mixed.merged("risk=0.3,time=-0.9"):
        merged = mixed.model(**_batch(mixed)).logits
    torch.testing.assert_close(merged, dynamic, **CLOSE)
    assert all(torch.equal(l.base.weight, original[n]) for n, l in mixed.adapters.layers.items())


@torch.no_grad()
def test_inside_merged_only_the_merged_mix_runs_and_a_failed_merge_leaves_nothing(mixed, monkeypatch):
    dynamic = mixed.logits(TEXTS, "risk=1")
    with mixed.merged("risk=1"):
        torch.testing.assert_close(mixed.logits(TEXTS, "risk=1"), dynamic, **CLOSE)
        bare: dict[str, float] = {}
        for other in ("risk=-0.5,time=0.8", bare):  # would silently have run the merged mix
            with pytest.raises(PFTError, match="a mix is merged into the weights: another vector, or the bare base"):
                mixed.logits(TEXTS, other)
        with pytest.raises(PFTError, match="already merged"):  # refused before its rollback could unmerge this one
            mixed.adapters.merge(mixed.weights("time=1"))
        assert mixed.adapters.merged_with is not None
        torch.testing.assert_close(mixed.model(**_batch(mixed)).logits, dynamic, **CLOSE)
    base = mixed.logits(TEXTS, {})
    third = list(mixed.adapters.layers.values())[2]
    monkeypatch.setattr(third, "delta_weight", lambda c: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):
        mixed.adapters.merge(mixed.weights("risk=1"))
    monkeypatch.undo()
    assert mixed.adapters.merged_with is None and not any(layer.merged for layer in mixed.adapters.layers.values())
    assert sum(type(m).__name__ == "MultiPoleLinear" for m in mixed.model.modules()) == len(mixed.adapters.layers)
    assert torch.equal(mixed.logits(TEXTS, {}), base)
    torch.testing.assert_close(mixed.logits(TEXTS, "risk=1"), dynamic, **CLOSE)

@torch.no_grad()
def test_switching_vectors_on_the_same_poles_reuses_the_coefficient_buffer(mixed):
    mixed.set_vector({"risk": 1, "time": 0.1})
    buffer = mixed.adapters.state.columns
    for v in (0.9, 0.5, 0.25):
        vector = {"risk": v, "time": 0.1 + v}
        mixed.set_vector(vector)
        assert mixed.adapters.state.columns is buffer  # an in-place write, not a rebuild
        torch.testing.assert_close(mixed.model(**_batch(mixed)).logits, mixed.logits(TEXTS, [vector] * 2), **CLOSE)
        mixed.set_vector(vector)
    mixed.adapters.off()


@torch.no_grad()
def test_a_mix_inside_mixed_never_overwrites_the_vector_set_outside(mixed):
    outer = {"risk": 0.8, "time": -0.3}
    mixed.set_vector(outer)
    expected = mixed.model(**_batch(mixed)).logits
    with mixed.mixed({"risk": 0.2, "time": -0.9}):  # the same poles: written in place, into a copy
        pass
    torch.testing.assert_close(mixed.model(**_batch(mixed)).logits, expected, **CLOSE)
    mixed.adapters.off()


def test_a_list_of_vectors_holds_one_per_row(mixed, train_slice):
    two = train_slice[:2]
    vectors = ["risk=1", "time=-1"]
    assert [c.scores for c in mixed.choose(two, (v for v in vectors))] == [c.scores for c in mixed.choose(two, vectors)]
    with pytest.raises(PFTError, match="got 3 vectors for 2 texts: give one vector, or one per text"):
        mixed.logits(TEXTS, ["risk=1"] * 3)
    mixed.adapters.use_rows(mixed.weights(["risk=1", "time=-1", "risk=0.5,time=0.5"]))
    with pytest.raises(PFTError, match="3 rows of pole weights for a batch of 2"):
        mixed.model(**_batch(mixed))
    mixed.adapters.off()


@torch.no_grad()
def test_a_mix_computes_only_its_active_poles_and_equals_the_full_sum(mixed):
    space = mixed.zoo.space
    vector = {"risk": -0.7, "time": 0.4}
    mixed.set_vector(vector)
    active = [space.pole_slugs[int(i)] for i in mixed.adapters.state.poles]
    assert active == [p for p, w in mixed.vector(vector).pole_weights(space).items() if w != 0]
    sparse = mixed.logits(TEXTS, vector)
    full = mixed.adapters.state  # every pole computed: inactive ones at coefficient 0
    full.poles, full.columns = None, full.expand(mixed.weights(vector).float())
    dense = mixed.model(**_batch(mixed)).logits
    torch.testing.assert_close(sparse, dense, **CLOSE)
    mixed.adapters.off()


@torch.no_grad()
def test_exported_mix_is_a_plain_peft_adapter(mixed, base_dir, tmp_path):
    vector = "risk=-0.6,time=1"
    path = mixed.export(vector, tmp_path / "alice")
    base, _ = load_base(base_dir)
    loaded = peft.PeftModel.from_pretrained(base, path).eval()
    config = loaded.peft_config["default"]
    assert isinstance(config, peft.LoraConfig) and config.r == 2 * mixed.zoo.spec.r  # rank = sum of the active ranks
    torch.testing.assert_close(loaded(**_batch(mixed)).logits, mixed.logits(TEXTS, vector), **CLOSE)


@torch.no_grad()
def test_merged_model_written_in_hf_format(mixed, tmp_path):
    path = mixed.save_merged("risk=1", tmp_path / "merged")
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))
    model, _ = load_base(path)
    torch.testing.assert_close(model(**_batch(mixed)).logits, mixed.logits(TEXTS, "risk=1"), **CLOSE)
    assert any(type(m).__name__ == "MultiPoleLinear" for m in mixed.model.modules())  # wrappers are back


def test_generate_is_seeded_and_takes_a_vector_per_row(mixed):
    prompts = ["Should I invest my savings?", "Do I buy it now?"]
    a = mixed.generate(prompts, ["risk=1", "time=-1"], max_new_tokens=8, temperature=0.8, seed=3)
    b = mixed.generate(prompts, ["risk=1", "time=-1"], max_new_tokens=8, temperature=0.8, seed=3)
    assert a == b and len(a) == 2
    # greedy, each row under its own vector: as if each prompt ran alone (one prompt twice, so no padding differs)
    vectors = ["risk=1", "risk=-1,time=1"]
    rows = mixed.generate(prompts[:1] * 2, vectors, max_new_tokens=8)
    alone = [mixed.generate(prompts[:1], v, max_new_tokens=8)[0] for v in vectors]
    assert rows == alone and alone[0] != alone[1]
    with pytest.raises(PFTError, match="one per prompt"):
        mixed.generate(prompts, ["risk=1"], max_new_tokens=2)


def test_choose_takes_one_vector_or_exactly_one_per_scenario(mixed, train_slice):
    two = train_slice[:2]
    assert len(mixed.choose(two, ["risk=1", "time=-1"])) == 2
    for vectors in (["risk=1"], ["risk=1"] * 3):  # too few or too many: refused, never cut by zip
        with pytest.raises(PFTError, match=f"got {len(vectors)} vectors for 2 scenarios"):
            mixed.choose(two, vectors)
    with pytest.raises(PFTError, match="unknown calibration 'pmi'"):
        mixed.choose(two, "risk=1", calibrate="pmi")


def test_choosing_composed_by_dimensions_adds_each_dimensions_part(mixed, train_slice):
    risk = [s for s in train_slice if s.dimension == "risk"][:4]
    both = "risk=-1,time=1"

    def scores(spec, calibrate="mirror", compose="model"):
        return torch.tensor([x for c in mixed.choose(risk, spec, calibrate=calibrate, compose=compose) for x in c.scores])

    # mirror: the partner adds the same to both sides, so the choices are the dimension's own, exactly
    assert torch.equal(scores(both, compose="dimensions"), scores("risk=-1"))
    assert not torch.equal(scores(both), scores("risk=-1"))  # the mixed model drifts
    # base (PMI): each dimension's gain over the base adds; none: the base's score plus those gains
    gains = scores("risk=-1", "base") + scores("time=1", "base")
    torch.testing.assert_close(scores(both, "base", "dimensions"), gains, **CLOSE)
    torch.testing.assert_close(scores(both, "none", "dimensions"), scores({}, "none") + gains, **CLOSE)
    assert torch.equal(scores({}, "none", "dimensions"), scores({}, "none"))  # no dimension set: the bare base
    rows = []
    hook = mixed.model.register_forward_pre_hook(lambda _, args, kwargs: rows.append(len(kwargs["input_ids"])),
                                                 with_kwargs=True)
    try:
        scores(both, "base", "dimensions")
    finally:
        hook.remove()
    assert sum(rows) == 3 * sum(len(s.options) for s in risk)  # each dimension's part and the bare base once


def test_first_pole_share_rises_with_the_vector(trained, base_dir, train_slice):
    """The share of first-pole choices is monotone in the vector for each trained dimension.

    Seen here: risk 0.08, 0.21, 0.50, 0.79, 0.79 and time 0.17, 0.29, 0.46, 0.92, 0.88 for
    -1, -0.5, 0, 0.5, 1. Measured on the scenarios the tiny test zoo was trained on: a 100k-parameter base
    pre-trained for seconds cannot generalise to unseen dilemmas. The same sweep on
    held-out dev scenarios with the demo-scale base is in benchmarks/vcd_quality.py.
    """
    model, tokenizer = load_base(base_dir)
    mixer = MixedModel(trained.zoo, model, tokenizer)
    for dim in mixer.zoo.space:
        data = [s for s in train_slice if s.dimension == dim.slug]
        shares = []
        for v in (-1.0, -0.5, 0.0, 0.5, 1.0):
            picks = mixer.choose(data, {dim.slug: v})
            shares.append(sum(c.pole == dim.first.slug for c in picks) / len(picks))
        # non-decreasing, up to one scenario whose two best options are near-tied
        assert all(b >= a - 1 / len(data) - 1e-9 for a, b in zip(shares, shares[1:])), (dim.slug, shares)
        assert shares[-1] - shares[0] >= 0.5, (dim.slug, shares)


@pytest.mark.parametrize("spec, expected", [
    ("risk=0.8,time=-0.5", {"risk": 0.8, "time": -0.5}),
    ("risk-averse=0.6", {"risk": -0.6}),
    ("Risk-taking=1", {"risk": 1.0}),
    ('{"social": -1}', {"social": -1.0}),
    ({"vector": {"change": 0.25}, "confidence": {}}, {"change": 0.25}),
])
def test_vector_spellings(spec, expected):
    assert dict(parse_vector(spec, SPACE)) == expected


def test_vector_from_file(tmp_path):
    (tmp_path / "alice.json").write_text('{"vector": {"risk": -1}, "confidence": {"risk": 0.9}}')
    assert dict(parse_vector(f"@{tmp_path / 'alice.json'}", SPACE)) == {"risk": -1.0}


@pytest.mark.parametrize("spec, message", [
    ("rsik=0.5", "did you mean 'risk'"),
    ("risk-avers=1", "did you mean 'risk-averse'"),
    ("risk=1.5", "outside \\[-1, 1\\]"),
    ("risk=nan", "NaN"),
    ('{"risk": "nan"}', "value of 'risk' is NaN"),
    ('{"risk": NaN}', r"--vector is not valid JSON \(NaN is not a JSON number\)"),  # Python's extension, no JSON
    ("risk=abc", "not a number"),
    ("risk=0.5,risk=0.2", "duplicate"),
    ("risk=0.5,risk-averse=0.5", "contradictory"),
    ("risk-averse=-0.5", "negative"),
    ("risk", "NAME=VALUE"),
    ("@missing.json", "not found"),
    ("{bad json", "not valid JSON"),
    ('{"risk": 0.5, "risk": -0.9}', "key 'risk' is given twice"),  # plain JSON would keep -0.9 silently
    ('{"risk": true}', "'True', not a number"),
    ("risk=0_1", "'0_1', not a number"),  # float() reads it as 1
    ('{"risk": 1' + "0" * 400 + "}", "is 10000000000…, outside"),  # too large for a float
    ("risk=١", "'١', not a number"),  # float() reads other scripts' digits
    ('{"vector": {"risk": 1}, "time": 1}', "'vector' is '{'risk': 1}', not a number"),  # not `infer --json`'s object
    ('{"risk": 1' + "0" * 5000 + "}", "not valid JSON"),  # too long for Python's int parser
    ('{"risk": ' + "[" * 100_000, "not valid JSON"),  # nested too deep
    ('{"vector": "risk=0.5", "method": "head"}', "field 'vector' must be a JSON object"),  # infer --json's shape
    ("", "--vector is empty"),
    (" , ", "--vector is empty"),
])
def test_bad_vectors_get_one_clear_line(spec, message):
    with pytest.raises(PFTError, match=message) as err:
        parse_vector(spec, SPACE)
    assert "\n" not in str(err.value)


def test_pole_weights_unfold_signs():
    weights = parse_vector("risk=0.5,time=-0.25", SPACE).pole_weights(SPACE)
    assert weights["risk-taking"] == 0.5 and weights["risk-averse"] == 0
    assert weights["delayed-gratification"] == 0.25 and weights["immediate-gratification"] == 0
    assert math.isclose(sum(weights.values()), 0.75)


def test_vector_for_an_absent_pole_is_refused(zoo_dir, base_dir):
    zoo = Zoo.from_pretrained(zoo_dir, poles=["risk-taking"])
    model, tokenizer = load_base(base_dir)
    with pytest.raises(PFTError, match="does not hold"):
        MixedModel(zoo, model, tokenizer).set_vector("risk=-1")


def test_the_python_api_refuses_what_it_cannot_use_in_one_line(zoo_dir, base_dir, train_slice):
    """Whatever a caller hands in, a clear PFTError before anything runs, never a torch error deep inside or a
    silent wrong result; the model keeps giving what it gave."""
    zoo = Zoo.from_pretrained(zoo_dir, poles=["risk-taking", "risk-averse", "delayed-gratification"])
    model, tokenizer = load_base(base_dir)
    mixed = MixedModel(zoo, model, tokenizer)
    before = mixed.logits(TEXTS, "risk=1")
    scenario = next(s for s in train_slice if s.dimension == "risk")
    refused: list[tuple[Any, str]] = [
        (lambda: mixed.logits(TEXTS, PreferenceVector({"risk": 5.0})), "outside \\[-1, 1\\]"),  # a vector built by hand
        (lambda: mixed.logits(TEXTS, PreferenceVector({"risk": math.nan})), "NaN"),
        (lambda: mixed.choose([scenario], PreferenceVector({"rsik": -1.0})), "did you mean 'risk'"),
        (lambda: mixed.logits(TEXTS, None), "a vector is a text like 'risk=0.8'"),  # type: ignore[arg-type]
        (lambda: mixed.logits(TEXTS, 0.5), "a vector is a text like 'risk=0.8'"),  # type: ignore[arg-type]
        (lambda: mixed.weights([]), "an empty list of vectors"),
        (lambda: mixed.logits("Buy now?", "risk=1"), "texts is one text: pass a list of texts"),
        (lambda: mixed.generate("Buy now?", "risk=1"), "prompts is one text"),
        (lambda: mixed.logits([], "risk=1"), "no texts given"),
        (lambda: mixed.generate(["Buy now?"], "risk=1", max_new_tokens=0), "max_new_tokens must be a positive integer"),
        (lambda: mixed.generate(["Buy now?"], "risk=1", temperature=math.nan), "temperature must be a number >= 0"),
        (lambda: mixed.generate(["Buy now?"], "risk=1", top_p=2.0), "top_p in \\(0, 1\\]"),
        (lambda: mixed.choose([dataclasses.replace(scenario, dimension="Risk")], "risk=1"),
         "scenarios\\[0\\]: dimension 'Risk' is not the slug of one of the zoo's dimensions"),  # the mirror would read no 'Risk'
        (lambda: mixed.choose([dataclasses.replace(scenario, options=scenario.options * 6)], "risk=1"),
         "must be a list of 2 to 10 options"),
        (lambda: mixed.choose([dataclasses.replace(scenario, options=())], "risk=1"), "must be a list of 2 to 10 options"),
        (lambda: mixed.choose(["A scenario?"], "risk=1"), "scenarios\\[0\\] is a str, not a Scenario"),  # type: ignore[list-item]
        (lambda: mixed.choose([scenario], "risk=1", batch_size=0), "batch_size must be a positive integer"),
        (lambda: mixed.adapters.use_weights({"risk-averse": math.nan}), "the weight of pole 'risk-averse' is nan"),
        (lambda: mixed.adapters.use_weights({"risk-averse": -math.inf}), "is -inf: give a finite number"),
        (lambda: mixed.adapters.use_weights(torch.tensor([0.0, math.nan, 0.0, 0.0])), "'risk-averse' is nan"),
        (lambda: mixed.adapters.use_weights({"risk-averse": "0.5"}), "is str, not a number"),  # type: ignore[dict-item]
        (lambda: mixed.adapters.use_weights("risk=1"), "pole weights must be a mapping"),  # type: ignore[arg-type]
        (lambda: mixed.adapters.use_weights(torch.ones(1, 1, 4)), "must be a real tensor of shape"),
        (lambda: mixed.adapters.use_weights(torch.tensor([1.0, 0.0])), "must be a real tensor of shape"),
        (lambda: mixed.adapters.use_weights({"immediate-gratification": 1.0}), "were not loaded with this zoo"),
        (lambda: zoo.attach(model), "already carries pole adapters: detach them first"),
    ]
    for call, message in refused:
        with pytest.raises(PFTError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    assert mixed.generate([], "risk=1") == [] and mixed.choose([], "risk=1") == []
    torch.testing.assert_close(mixed.logits(TEXTS, "risk=1"), before, rtol=0, atol=0)


def test_per_row_vectors_meet_a_batch_of_another_size_with_one_line(mixed):
    batch = mixed._encode(TEXTS[:1], padding_side="right")
    for rows in (["risk=1", "risk=-1"], ["risk=1,time=1", "risk=-1,time=1"]):  # routed, and mixed, rows
        mixed.set_vector(rows)
        with pytest.raises(PFTError, match="2 rows of pole weights for a batch of 1: give one vector per batch row"):
            mixed.model(**batch)
    mixed.set_vector({})


def test_detached_adapters_leave_the_model_as_it_was(zoo_dir, base_dir):
    zoo = Zoo.from_pretrained(zoo_dir)
    model, tokenizer = load_base(base_dir)
    batch = tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        bare = model(**batch).logits
        adapters = zoo.attach(model)
        adapters.use_weights({"risk-averse": 1.0})
        assert not torch.equal(model(**batch).logits, bare)
        adapters.merge({"risk-averse": 1.0})  # the wrappers are out of the model, its weights not the base's
        with pytest.raises(PFTError, match="already carries pole adapters"):
            zoo.attach(model)
        with pytest.raises(PFTError, match="detach once it is unmerged"):
            adapters.detach()
        adapters.unmerge()
        assert adapters.detach() is model and torch.equal(model(**batch).logits, bare)
        again = MixedModel(zoo, model, tokenizer)  # a zoo attaches again
        torch.testing.assert_close(again.logits(TEXTS[:1], "risk=-1"), MixedModel(zoo, *load_base(base_dir)).logits(
            TEXTS[:1], "risk=-1"), rtol=0, atol=0)
    with pytest.raises(PFTError, match="were detached from their model: attach the zoo again"):
        adapters.use_weights({"risk-averse": 1.0})


# -- the `mix` command: generation, choosing and a merged model, as the user sees them ----------------
@pytest.fixture(scope="module")
def plain(zoo_dir, base_dir):
    """The trained tiny zoo as `mix` loads it (not amplified)."""
    return MixedModel(Zoo.from_pretrained(zoo_dir), *load_base(base_dir))


def test_mix_prompt_text_streams_one_answer_and_labels_several(capsys, zoo_dir):
    one = ("mix", zoo_dir, "--vector", "risk=1", "--max-new-tokens", "8", "--prompt", "Should I invest my savings?")
    code, text, err = run(capsys, *one)
    assert code == 0, err
    code, out, _ = run(capsys, *one, "--json")
    (answer,) = json.loads(out)["responses"]
    assert answer["response"] and text.strip() == answer["response"]  # streamed as it is written: no "> prompt" line
    assert not text.startswith(">")
    prompts = ["Should I invest my savings?", "Do I buy it now?", "Save or spend?"]
    several = ("mix", zoo_dir, "--vector", "risk=1", "--max-new-tokens", "8", *(x for p in prompts for x in ("--prompt", p)))
    code, text, err = run(capsys, *several)
    assert code == 0, err
    code, out, _ = run(capsys, *several, "--json")
    result = json.loads(out)
    assert result["vector"] == {"risk": 1.0} and [r["prompt"] for r in result["responses"]] == prompts
    assert text == "".join(f"> {r['prompt']}\n{r['response']}\n\n" for r in result["responses"])


def test_mix_scenarios_on_an_llm_zoo_text_and_json(capsys, zoo_dir, plain, vcd_dev, tmp_path):
    from pft_adapters.data import load_scenarios
    from pft_adapters.errors import shorten

    records = json.loads(vcd_dev.read_text())
    data = tmp_path / "dilemmas.json"
    kept = ([r for r in records if r["preference domain"] == "Risk Orientation"][:3]
            + [r for r in records if r["preference domain"] == "Time Preference"][:2])
    other = next(r for r in records if r["preference domain"] not in ("Risk Orientation", "Time Preference"))
    data.write_text(json.dumps(kept))
    scenarios = load_scenarios(data, plain.zoo.space)
    data.write_text(json.dumps(kept[:1] + [other] + kept[1:]))  # a dimension the zoo lacks: skipped, as eval skips it
    vector = "risk=-1,time=0.5"
    expected = plain.choose(scenarios, vector)
    code, out, err = run(capsys, "mix", zoo_dir, "--vector", vector, "--scenarios", data, "--json")
    assert code == 0 and "skipped 1 scenario(s) of " in err and "which this zoo lacks" in err, err
    result = json.loads(out)
    assert (result["vector"], result["calibrated"], result["composition"]) == ({"risk": -1.0, "time": 0.5}, "mirror", "model")
    assert result["choices"] == [{"scenario": s.text, "chosen": c.index, "text": s.options[c.index].text, "pole": c.pole,
                                  "scores": c.rounded()} for s, c in zip(scenarios, expected)]
    code, text, err = run(capsys, "mix", zoo_dir, "--vector", vector, "--scenarios", data)
    assert code == 0, err
    assert text.splitlines() == [line for i, (s, c) in enumerate(zip(scenarios, expected), 1) for line in (
        f"{i}. {shorten(s.text, 90)}", f"   -> {'ABCDEFGH'[c.index]}. {shorten(s.options[c.index].text, 110)} [{c.pole}]")]


@torch.no_grad()
def test_mix_merge_out_writes_a_loadable_model_and_leaves_no_staging_folder(capsys, zoo_dir, plain, tmp_path):
    out = tmp_path / "merged"
    code, text, err = run(capsys, "mix", zoo_dir, "--vector", "risk=1", "--merge-out", out)
    assert code == 0, err
    assert text == f"merged-model for risk=1 written to {out}\n"
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names and not any(n.endswith(".bin") for n in names)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no staging folder left beside it
    model, _ = load_base(out)
    torch.testing.assert_close(model(**plain._encode(TEXTS, padding_side="right")).logits, plain.logits(TEXTS, "risk=1"),
                               **CLOSE)
    # --overwrite replaces it with another mix
    code, stdout, err = run(capsys, "mix", zoo_dir, "--vector", "time=-1", "--merge-out", out, "--overwrite", "--json")
    assert code == 0, err
    assert json.loads(stdout) == {"vector": {"time": -1.0}, "written": str(out), "kind": "merged-model"}
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]
    model, _ = load_base(out)
    torch.testing.assert_close(model(**plain._encode(TEXTS, padding_side="right")).logits, plain.logits(TEXTS, "time=-1"),
                               **CLOSE)
