"""Token rows of (prompt, continuation): encoding, dynamic padding and per-row likelihood.

Training and scoring read text the same way, so what a pole adapter learned to
prefer is exactly what choosing measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncodedRow:
    ids: list[int]
    n_prompt: int  # tokens before the continuation; they are masked out of the loss
    pole: int = 0
    weight: float = 1.0


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    poles: torch.Tensor  # pole index per row
    weights: torch.Tensor  # loss weight per row

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.poles, self.weights)))


class Encoder:
    """Tokenizes prompt + continuation + eos; a too-long prompt loses its beginning, never the continuation."""

    def __init__(self, tokenizer, max_length: int = 512):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._prompts: dict[str, list[int]] = {}  # rows of one scenario share a prompt

    def __call__(self, prompt: str, continuation: str, pole: int = 0, weight: float = 1.0) -> EncodedRow:
        if prompt not in self._prompts:
            self._prompts[prompt] = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        target = (self.tokenizer(continuation, add_special_tokens=False)["input_ids"] + self.eos)[: self.max_length // 2]
        head = self._prompts[prompt][-(self.max_length - len(target)) :]
        return EncodedRow(head + target, len(head), pole, weight)

    def collate(self, rows: Sequence[EncodedRow]) -> Batch:
        """Pad to the longest row of this batch only (dynamic padding)."""
        width = max(len(r.ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r.ids)
            ids[i, :n] = torch.tensor(r.ids)
            mask[i, :n] = 1
            labels[i, r.n_prompt : n] = ids[i, r.n_prompt : n]
        return Batch(ids, mask, labels, torch.tensor([r.pole for r in rows]), torch.tensor([r.weight for r in rows]))


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood of each row's continuation tokens and their count, each (batch,)."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    tok = nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return tok.sum(1), (labels != -100).sum(1)


def row_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per continuation token of each row, shape (batch,)."""
    total, count = token_nll(logits, labels)
    return total / count.clamp_min(1)
