"""Packing rows that share a prompt and pole: each segment scores exactly as its row does unpacked."""

from __future__ import annotations

import pytest
import torch

from pft_adapters.base import tiny_base
from pft_adapters.batching import Encoder, EncodedRow, PackedBatch, prompt_kl_per_row, prompt_shares, row_nll, segment_nll

PROMPTS = (
    "Jack has to choose between the familiar plan and a new idea. He picks",
    "The manager asks the team for their opinions before making the final call, then",
    "Tom trusts his gut",
)
TARGETS = (
    "the familiar plan.",
    "a new idea that nobody has tried before, even though it is risky.",
    "to wait",
    "states exactly what he needs in the meeting.",
)


@pytest.fixture(scope="module")
def base():
    return tiny_base()


def _rows(encoder: Encoder) -> list[EncodedRow]:
    """Interleaved prompts, several rows per (prompt, pole), two poles per prompt, varied targets and weights."""
    rows = []
    for i in range(14):
        prompt, target = PROMPTS[i % 3], TARGETS[(i * 5 // 3) % 4]
        rows.append(encoder(prompt, target, pole=(i // 3) % 2, weight=0.5 + 0.25 * i))
    return rows


def _packed_forward(model, batch: PackedBatch) -> torch.Tensor:
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids).logits
    return segment_nll(logits, batch)


def test_pack_layout():
    rows = [EncodedRow([1, 5, 6, 7, 2], 3, pole=1, weight=2.0), EncodedRow([1, 5, 6, 8, 9, 2], 3, pole=1)]
    (packed,) = Encoder.pack(rows)
    assert packed.ids == [1, 5, 6, 7, 2, 6, 8, 9, 2]
    assert packed.positions == [0, 1, 2, 3, 4, 2, 3, 4, 5]
    assert packed.segments == [(3, 5), (6, 9)]
    assert (packed.weights, packed.rows, packed.pole) == ([2.0, 1.0], [0, 1], 1)


def test_only_same_prompt_and_pole_are_packed(base):
    _, tokenizer = base
    rows = _rows(Encoder(tokenizer))
    packed = Encoder.pack(rows)
    keys = [(tuple(r.ids[: r.n_prompt]), r.pole) for r in rows]
    assert len(packed) == len(set(keys)) < len(rows)
    assert [p.rows[0] for p in packed] == sorted(p.rows[0] for p in packed)  # order of first appearance
    assert sorted(i for p in packed for i in p.rows) == list(range(len(rows)))
    for p in packed:
        assert {keys[i] for i in p.rows} == {(tuple(p.ids[: p.n_prompt]), p.pole)}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_nll_and_gradient_match_unpacked(base, attention):
    model, tokenizer = base
    model.set_attn_implementation(attention)
    encoder = Encoder(tokenizer)
    rows = _rows(encoder)
    params = [model.model.embed_tokens.weight, model.model.layers[0].self_attn.q_proj.weight]

    unpacked = encoder.collate(rows)
    expected = row_nll(model(input_ids=unpacked.input_ids, attention_mask=unpacked.attention_mask).logits, unpacked.labels)
    expected_grads = torch.autograd.grad((unpacked.weights * expected).sum(), params)

    batch = encoder.collate_packed(Encoder.pack(rows))
    assert batch.attention_mask.shape == (len(batch.poles), 1, batch.input_ids.shape[1], batch.input_ids.shape[1])
    assert (batch.lengths < batch.input_ids.shape[1]).any()  # the batch is padded
    assert batch.rows.tolist() == list(range(len(rows)))
    torch.testing.assert_close(batch.weights, unpacked.weights)
    nll = _packed_forward(model, batch)
    torch.testing.assert_close(nll, expected, atol=1e-5, rtol=0)
    for got, want in zip(torch.autograd.grad((batch.weights * nll).sum(), params), expected_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_prompt_kl_counts_each_prompt_once_packed_or_not(base, attention):
    """The KL on prompt tokens sums to the same over a batch packed or not: a prompt (and pole) counts once."""
    model, tokenizer = base
    other, _ = tiny_base(seed=1)  # the same shapes, other weights: the "adapted" model
    for m in (model, other):
        m.set_attn_implementation(attention)
    encoder = Encoder(tokenizer)
    rows = _rows(encoder)

    def per_row(inputs: dict, prompt: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return prompt_kl_per_row(other(**inputs).logits, model(**inputs).logits.float().log_softmax(-1), prompt)

    unpacked = encoder.collate(rows)
    assert unpacked.prompt_mask().sum(1).tolist() == [r.n_prompt for r in rows]
    shares = prompt_shares(rows)
    expected = (shares * per_row({"input_ids": unpacked.input_ids, "attention_mask": unpacked.attention_mask},
                                 unpacked.prompt_mask())).sum()
    packed = encoder.collate_packed(Encoder.pack(rows))
    assert float(shares.sum()) == pytest.approx(len(packed.poles)) and (shares < 1).any()
    got = per_row({"input_ids": packed.input_ids, "attention_mask": packed.attention_mask,
                   "position_ids": packed.position_ids}, packed.prompt_mask()).sum()
    assert expected > 0
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_batches_of_packed_rows_map_back_to_rows(base):
    model, tokenizer = base
    model.set_attn_implementation("sdpa")
    encoder = Encoder(tokenizer)
    rows = _rows(encoder)
    unpacked = encoder.collate(rows)
    with torch.no_grad():
        expected = row_nll(model(input_ids=unpacked.input_ids, attention_mask=unpacked.attention_mask).logits, unpacked.labels)
        packed = Encoder.pack(rows)
        for part in (packed[1::2], packed[::2]):
            batch = encoder.collate_packed(part)
            assert batch.rows.tolist() == sorted(i for p in part for i in p.rows)
            torch.testing.assert_close(_packed_forward(model, batch), expected[batch.rows], atol=1e-5, rtol=0)


def test_mask_in_half_precision_stays_finite(base):
    rows = [EncodedRow([1, 5, 6, 7, 2], 3), EncodedRow([1, 5, 6, 8, 2], 3), EncodedRow([1, 4, 2], 2)]
    packed = Encoder(base[1]).collate_packed(Encoder.pack(rows))
    for dtype in (torch.bfloat16, torch.float16):
        mask = packed.to(torch.device("cpu"), dtype).attention_mask
        assert mask.dtype == dtype and torch.isfinite(mask).all()
        assert torch.equal(mask == 0, packed.attention_mask == 0)
