"""Multi-pole LoRA against peft, the reference implementation."""

import copy

import peft
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from pft_adapters.errors import PFTError
from pft_adapters.layers import LoraSpec, add_pole_adapters, check_new_adapters, tied_target
from peft_reference import activate_scaled

POLES = ["risk-taking", "risk-averse", "competitive", "collaborative"]
SPEC = LoraSpec(r=4, alpha=8.0, target_modules=("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"))


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def models():
    base = tiny_llama()
    ours = add_pole_adapters(copy.deepcopy(base), SPEC, POLES)
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in ours.layers.values():
            layer.lora_B.normal_(0, 0.2)  # non-zero B so every pole changes the output
    def config() -> peft.LoraConfig:
        return peft.LoraConfig(r=SPEC.r, lora_alpha=SPEC.alpha, target_modules=list(SPEC.target_modules),  # type: ignore[arg-type]  # peft types lora_alpha as int; it takes a float
                               lora_dropout=0.0)

    ref = peft.get_peft_model(copy.deepcopy(base), config(), adapter_name=POLES[0])
    for pole in POLES[1:]:
        ref.add_adapter(pole, config())
    for pole in POLES:
        peft.set_peft_model_state_dict(ref, ours.pole_state_dict(pole), adapter_name=pole)
    return base, ours, ref.eval()


def peft_logits(ref, ids: torch.Tensor, weights: list[float]) -> torch.Tensor:
    activate_scaled(ref, dict(zip(POLES, weights)))
    with torch.no_grad():
        return ref(input_ids=ids).logits


IDS = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(3))
ROWS = [[1, 0, 0, 0], [0.3, 0, 0, 0.8], [0, 0.5, 1, 0]]


@pytest.mark.parametrize("weights", [[1, 0, 0, 0], [0, 0, 0, 1], [0.7, 0, 0, 0.4], [0.2, 0.5, 0.9, 0.1]])
def test_shared_weights_match_peft(models, weights):
    _, ours, ref = models
    ours.use_weights(torch.tensor(weights))
    with torch.no_grad():
        got = ours.model(input_ids=IDS).logits
    torch.testing.assert_close(got, peft_logits(ref, IDS, weights), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows, mode, poles", [
    (ROWS, "rows", None),  # every pole used by some row: all computed
    ([[0.3, 0, 0, 0.8], [0, 0, 0, 1], [1, 0, 0, 0]], "rows", [0, 3]),  # only the poles the rows use
    ([[1, 0, 0, 0], [0, 0, -0.5, 0], [0, 0, 0, 0]], "route", None),  # one pole (or none) per row: routed
])
def test_per_row_batch_matches_peft_row_by_row(models, rows, mode, poles):
    _, ours, ref = models
    ours.use_rows(torch.tensor(rows))
    assert ours.state.mode == mode
    assert (ours.state.poles.tolist() if ours.state.poles is not None else None) == poles
    with torch.no_grad():
        got = ours.model(input_ids=IDS).logits
    for i, row in enumerate(rows):
        torch.testing.assert_close(got[i : i + 1], peft_logits(ref, IDS[i : i + 1], row), atol=1e-5, rtol=1e-5)


def test_route_matches_peft_one_pole_per_row(models):
    _, ours, ref = models
    route = [0, 3, 2]
    ours.use_route(torch.tensor(route))
    with torch.no_grad():
        routed = ours.model(input_ids=IDS).logits
    for i, pole in enumerate(route):
        row = [float(p == pole) for p in range(len(POLES))]
        torch.testing.assert_close(routed[i : i + 1], peft_logits(ref, IDS[i : i + 1], row), atol=1e-5, rtol=1e-5)


def test_zero_weights_are_the_base_model(models):
    base, ours, _ = models
    ours.use_weights(torch.zeros(len(POLES)))
    with torch.no_grad():
        assert torch.equal(ours.model(input_ids=IDS).logits, base(input_ids=IDS).logits)


@pytest.mark.parametrize("inner", [[0, 1.0, 0, 0], [0.1, 0, 0, 0.9]])  # other poles (a new tensor); the same (in place)
def test_kept_keeps_the_mix_on_inside_and_restores_it_after(models, inner):
    _, ours, ref = models
    ours.use_weights(torch.tensor([0.7, 0, 0, 0.4]))
    with torch.no_grad(), ours.kept():
        inside = ours.model(input_ids=IDS).logits  # nothing set yet: still the outer mix
        ours.use_weights(torch.tensor(inner))
    with torch.no_grad():
        after = ours.model(input_ids=IDS).logits
    expected = peft_logits(ref, IDS, [0.7, 0, 0, 0.4])
    torch.testing.assert_close(inside, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)


def test_merge_equals_dynamic_and_unmerge_restores_bits(models):
    _, ours, _ = models
    weights = torch.tensor([0.25, 0, 0.6, 0.9])
    before = {n: l.base.weight.detach().clone() for n, l in ours.layers.items()}
    ours.use_weights(weights)
    with torch.no_grad():
        dynamic = ours.model(input_ids=IDS).logits
        ours.merge(weights)
        merged = ours.model(input_ids=IDS).logits
    ours.unmerge()
    torch.testing.assert_close(merged, dynamic, atol=1e-5, rtol=1e-5)
    for name, layer in ours.layers.items():
        assert torch.equal(layer.base.weight, before[name])


def test_route_gradients_reach_only_the_routed_poles(models):
    _, ours, _ = models
    for p in ours.parameters():
        p.requires_grad_(True)
        p.grad = None
    ours.use_route(torch.tensor([1, 1, 2]))
    ours.model(input_ids=IDS).logits.sum().backward()
    layer = next(iter(ours.layers.values()))
    touched = [bool(layer.lora_A.grad[p].abs().sum() > 0) for p in range(len(POLES))]
    assert touched == [False, True, True, False]
    for p in ours.parameters():
        p.requires_grad_(False)
        p.grad = None


def test_route_gradients_are_the_same_every_time_on_several_threads():
    """Training is reproducible only if the routed backward sums each pole's rows in a fixed order."""
    layer = add_pole_adapters(torch.nn.Sequential(torch.nn.Linear(384, 384)), LoraSpec(r=8, target_modules=("0",)),
                              [f"p{i}" for i in range(12)])
    torch.manual_seed(0)
    x = torch.randn(40, 128, 384)
    layer.use_route(torch.randint(0, 12, (40,)))
    lora = next(iter(layer.layers.values()))
    with torch.no_grad():
        lora.lora_B.normal_()
    lora.lora_A.requires_grad_(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads: set[bytes] = set()
        for _ in range(8):
            lora.lora_A.grad = None
            layer.model(x).square().sum().backward()
            assert lora.lora_A.grad is not None
            grads.add(lora.lora_A.grad.numpy().tobytes())
    finally:
        torch.set_num_threads(threads)
    assert len(grads) == 1


def test_cross_dimension_overlap_counts_only_directions_shared_across_dimensions():
    adapters = add_pole_adapters(tiny_llama(), SPEC, POLES)
    dims = ["risk", "risk", "social", "social"]
    n_layers = len(adapters.layers)
    with torch.no_grad():
        for layer in adapters.layers.values():  # every A row the same direction, every B column 0
            layer.lora_A.zero_()
            layer.lora_A[..., 0] = 1.0
    # A: every cross-dimension pair has cosine 1, so each layer's mean is 1; zero B columns count 0
    assert adapters.cross_dimension_overlap(dims).item() == pytest.approx(n_layers)
    assert adapters.cross_dimension_overlap(["risk"] * 4).item() == 0  # poles of one dimension may share directions
    with torch.no_grad():
        for layer in adapters.layers.values():  # each dimension its own coordinates, in A and in B
            layer.lora_A.zero_()
            layer.lora_B.zero_()
            for p, d in enumerate(dims):
                for k in range(SPEC.r):
                    column = (0 if d == "risk" else SPEC.r) + k
                    layer.lora_A[p, k, column] = 1.0
                    layer.lora_B[column, p, k] = 1.0
    assert adapters.cross_dimension_overlap(dims).item() == 0
    with torch.no_grad():
        for layer in adapters.layers.values():
            layer.lora_B[0, 2, 0] = 1.0  # a social column now shares risk's first direction: cosine 1/sqrt(2)
    overlap = adapters.cross_dimension_overlap(dims)
    r = SPEC.r
    assert overlap.item() == pytest.approx(n_layers * 2 * 2 * 0.5 / (2 * (2 * r) * (2 * r)))  # 2 risk poles, both orders


def test_a_target_that_is_not_a_linear_layer_is_named_not_skipped():
    """GPT-2's attention is a Conv1D: adapting only the linear layers among the targets would adapt less than asked."""
    config = GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32, tie_word_embeddings=False)
    model = GPT2LMHeadModel(config)
    with pytest.raises(PFTError, match="target module 'transformer.h.0.attn.c_attn' is a Conv1D, not a linear layer"):
        add_pole_adapters(model, LoraSpec(r=2, target_modules=("c_attn", "lm_head")), ["a", "b"])
    assert add_pole_adapters(model, LoraSpec(r=2, target_modules=("lm_head",)), ["a", "b"]).layers.keys() == {"lm_head"}


def test_new_adapters_on_a_target_tied_to_the_input_embeddings_or_narrower_than_the_rank_are_refused():
    """A merged mix would change a tied layer's embeddings too; a rank above a layer's width adds only memory. Only
    new adapters are refused: a zoo trained before these checks still attaches."""
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32))  # tied
    spec = LoraSpec(r=2, target_modules=("lm_head",))
    with pytest.raises(PFTError, match="target module 'lm_head' shares its weights with the input embeddings"):
        check_new_adapters(model, spec)
    assert tied_target(model, add_pole_adapters(model, spec, ["a", "b"]).layers) == "lm_head"  # seen through the wrapper
    with pytest.raises(PFTError, match="--rank 33 is above the width of the narrowest adapted layer \\(32\\)"):
        check_new_adapters(tiny_llama(), LoraSpec(r=33, target_modules=("q_proj",)))


def test_two_mixes_in_one_graph_backpropagate():
    """Switching the vector between two forwards of one graph must not overwrite what the first one saved."""
    model = tiny_llama()
    adapters = add_pole_adapters(model, SPEC, ["a", "b"])
    for p in adapters.parameters():
        p.requires_grad_(True)
    ids = torch.tensor([[1, 5, 9, 2]])
    adapters.use_weights({"a": 1.0, "b": 0.5})
    first = model(input_ids=ids).logits
    adapters.use_weights({"a": 0.2, "b": 1.0})  # the same poles: an in-place switch would corrupt `first`'s graph
    (first.sum() + model(input_ids=ids).logits.sum()).backward()
    assert all(p.grad is not None for p in adapters.parameters())
