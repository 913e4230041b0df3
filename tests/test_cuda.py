"""GPU checks: the same math on CUDA, bf16 training, per-row generation. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from pft_adapters.base import tiny_base, to_device
from pft_adapters.data import Option, Scenario
from pft_adapters.layers import LoraSpec
from pft_adapters.mix import MixedModel
from pft_adapters.train import TrainConfig, train_zoo
from pft_adapters.values import ValueSpace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SPACE = ValueSpace.builtin().select(["risk"])
SCENARIOS = [
    Scenario(f"Case {i}: Dana can keep her steady job or join a start-up that may fail.", "risk", (
        Option("She joins the start-up and bets on its growth.", "risk-taking"),
        Option("She keeps the steady job and its secure salary.", "risk-averse"),
    ))
    for i in range(16)
]


@pytest.fixture(scope="module")
def zoo_and_base():
    model, tokenizer = tiny_base(seed=0, texts=[s.text for s in SCENARIOS] + [o.text for s in SCENARIOS for o in s.options])
    config = TrainConfig(lora=LoraSpec(r=4, alpha=32.0), epochs=4, batch_size=8, lr=5e-3, max_length=128, head_steps=50)
    result = train_zoo(model, tokenizer, SCENARIOS, SPACE, config, base_id="tiny", device="cuda", progress=False)
    return result, tokenizer


def test_bf16_training_on_cuda_learns(zoo_and_base):
    result, _ = zoo_and_base
    assert torch.cuda.is_bf16_supported()
    assert sum(result.losses[-4:]) / 4 < sum(result.losses[:4]) / 4
    assert all(t.device.type == "cpu" for pole in result.zoo.poles.values() for t in pole.values())


def test_cuda_mix_matches_cpu_mix(zoo_and_base):
    result, tokenizer = zoo_and_base
    texts = ["Scenario: should Dana take the risk?\nChosen option:"]
    logits = {}
    for device in ("cpu", "cuda"):
        model, _ = tiny_base(seed=0, texts=[s.text for s in SCENARIOS] + [o.text for s in SCENARIOS for o in s.options])
        mixed = MixedModel(result.zoo, to_device(model, device), tokenizer)
        logits[device] = mixed.logits(texts, ["risk=0.7"]).float().cpu()
    torch.testing.assert_close(logits["cuda"], logits["cpu"], atol=1e-3, rtol=1e-3)


def test_per_row_generation_on_cuda(zoo_and_base):
    result, tokenizer = zoo_and_base
    model, _ = tiny_base(seed=0, texts=[s.text for s in SCENARIOS] + [o.text for s in SCENARIOS for o in s.options])
    mixed = MixedModel(result.zoo, to_device(model, "cuda"), tokenizer)
    out = mixed.generate(["Should Dana take the risk?"] * 2, ["risk=1", "risk=-1"], max_new_tokens=6)
    assert len(out) == 2
    picks = mixed.choose(SCENARIOS[:4], "risk=1")
    assert len(picks) == 4
