"""Token rows of (prompt, continuation): encoding, dynamic padding and per-row likelihood.

Training and scoring read text the same way, so what a pole adapter learned to
prefer is exactly what choosing measures. Rows that share a prompt and a pole can
also be packed into one sequence (`Encoder.pack`) so the prompt is computed once;
each packed segment sees exactly what its row sees unpacked.
"""

from __future__ import annotations

from collections import Counter
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

    def prompt_mask(self) -> torch.Tensor:
        """(batch, L): each row's prompt tokens."""
        return (self.labels == -100) & self.attention_mask.bool()


@dataclass
class PackedRow:
    """Rows sharing prompt ids and pole as one sequence: prompt, then each target.

    Segments after the first start with a copy of the last prompt token, which
    predicts the segment's first target token as the prompt's end does unpacked.
    """

    ids: list[int]
    positions: list[int]  # position ids: every segment continues from the prompt
    n_prompt: int
    segments: list[tuple[int, int]]  # [start, end) of each segment's target ids in `ids`
    weights: list[float]  # loss weight of each segment
    rows: list[int]  # index of each segment's row in the rows given to `pack`
    pole: int


@dataclass
class PackedBatch:
    """Padded packed rows; pass input_ids, attention_mask and position_ids to a causal LM."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor  # (batch, 1, L, L) additive: 0 where a query may attend, dtype min elsewhere
    position_ids: torch.Tensor
    labels: torch.Tensor  # target ids at their own positions, -100 elsewhere (shift-by-one as in `Batch`)
    segments: torch.Tensor  # (batch, L) segment id of each target token, -1 elsewhere
    poles: torch.Tensor  # pole index per packed row
    weights: torch.Tensor  # loss weight per segment, in segment id order
    rows: torch.Tensor  # original row index per segment, ascending: segment ids follow the rows' order
    lengths: torch.Tensor  # real (unpadded) tokens per packed row

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> PackedBatch:
        """Move to `device`; `dtype` re-makes the mask in that dtype (a cast of float32's min overflows)."""
        mask = self.attention_mask
        if dtype is not None:
            mask = torch.zeros_like(mask, dtype=dtype).masked_fill_(mask != 0, torch.finfo(dtype).min)
        tensors = (self.input_ids, mask, self.position_ids, self.labels, self.segments, self.poles, self.weights,
                   self.rows, self.lengths)
        return PackedBatch(*(t.to(device) for t in tensors))

    def prompt_mask(self) -> torch.Tensor:
        """(batch, L): each packed row's prompt tokens.

        The prompt is the leading run where position ids count up from 0 and no target
        starts (later segments restart their positions inside it, at their lead token).
        """
        index = torch.arange(self.input_ids.shape[1], device=self.input_ids.device)
        return (self.position_ids == index) & (self.segments < 0) & (index < self.lengths[:, None])


class Encoder:
    """Tokenizes prompt + continuation + eos; a too-long prompt loses its beginning, never the continuation."""

    def __init__(self, tokenizer, max_length: int = 512):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._prompts: dict[str, list[int]] = {}  # rows of one scenario share a prompt

    def __call__(self, prompt: str, continuation: str, pole: int = 0, weight: float = 1.0) -> EncodedRow:
        if prompt not in self._prompts:
            # whole, then cut below: verbose=False, or transformers warns of indexing errors the cut prevents
            self._prompts[prompt] = self.tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"]
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

    @staticmethod
    def pack(rows: Sequence[EncodedRow]) -> list[PackedRow]:
        """Group rows with identical prompt ids and pole, in order of first appearance."""
        groups: dict[object, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(prompt_key(r), []).append(i)
        packed = []
        for members in groups.values():
            first = rows[members[0]]
            n = first.n_prompt
            ids, positions, segments = list(first.ids), list(range(len(first.ids))), [(n, len(first.ids))]
            for i in members[1:]:
                target = rows[i].ids[n:]
                ids += [ids[n - 1], *target]
                positions += range(n - 1, n + len(target))
                segments.append((len(ids) - len(target), len(ids)))
            packed.append(PackedRow(ids, positions, n, segments, [rows[i].weight for i in members], members, first.pole))
        return packed

    def collate_packed(self, packed: Sequence[PackedRow]) -> PackedBatch:
        """Pad packed rows and build the mask that keeps each segment to the prompt and itself."""
        width = max(len(p.ids) for p in packed)
        ids = torch.full((len(packed), width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(packed), width), dtype=torch.long)
        labels = torch.full((len(packed), width), -100, dtype=torch.long)
        segments = torch.full((len(packed), width), -1, dtype=torch.long)
        # block of each key: -1 is the prompt before its last token, seen by every later query; a query
        # otherwise sees only its own block. Segment k's block is its lead token (the last prompt token
        # or its copy) and its targets. A pad gets a block of its own so no query row is fully masked.
        block = torch.arange(-2, -2 - width, -1).repeat(len(packed), 1)
        order = sorted((row, b, k) for b, p in enumerate(packed) for k, row in enumerate(p.rows))
        segment_id = {(b, k): s for s, (_, b, k) in enumerate(order)}
        for b, p in enumerate(packed):
            n = len(p.ids)
            ids[b, :n] = torch.tensor(p.ids)
            positions[b, :n] = torch.tensor(p.positions)
            block[b, : max(p.n_prompt - 1, 0)] = -1
            for k, (start, end) in enumerate(p.segments):
                labels[b, start:end] = ids[b, start:end]
                segments[b, start:end] = segment_id[b, k]
                block[b, max(start - 1, 0) : end] = k
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        allowed = causal & ((block[:, None, :] == -1) | (block[:, None, :] == block[:, :, None]))
        mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill_(~allowed, torch.finfo(torch.float32).min)
        return PackedBatch(
            ids,
            mask[:, None],
            positions,
            labels,
            segments,
            torch.tensor([p.pole for p in packed]),
            torch.tensor([packed[b].weights[k] for _, b, k in order]),
            torch.tensor([row for row, _, _ in order]),
            torch.tensor([len(p.ids) for p in packed]),
        )


def _next_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """NLL of each label given the logits one position earlier, (batch, L - 1); 0 where the label is -100."""
    logits = logits[:, :-1].float()
    return nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood of each row's continuation tokens and their count, each (batch,)."""
    return _next_token_nll(logits, labels).sum(1), (labels[:, 1:] != -100).sum(1)


def prompt_key(row: EncodedRow) -> object:
    """What rows share to be packed together, and to share their prompt's KL: prompt ids and pole.
    A row without a prompt token (none to copy into a pack) stays alone."""
    return (tuple(row.ids[: row.n_prompt]), row.pole) if row.n_prompt else id(row)


def prompt_shares(rows: Sequence[EncodedRow], among: Sequence[EncodedRow] | None = None,
                  packed: Sequence[PackedRow] | None = None) -> torch.Tensor:
    """The share of its prompt's KL each row (or each of `packed`, the rows packed) carries:
    its rows / the rows of `among` (default: `rows`) sharing that prompt and pole.

    A prompt then counts once per batch whether its rows are packed together, unpacked, or
    split over micro-batches and processes (`among` is then the whole step's batch).
    """
    counts = Counter(prompt_key(r) for r in (rows if among is None else among))
    if packed is not None:  # a pack holds rows of one key: k of them carry k / count, exactly 1 when all are there
        return torch.tensor([len(p.rows) / counts[prompt_key(rows[p.rows[0]])] for p in packed])
    return torch.tensor([1.0 / counts[prompt_key(r)] for r in rows])


def prompt_kl_per_row(logits: torch.Tensor, reference: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """(batch,) mean KL(reference || model) of the next-token distributions that predict each row's prompt tokens.

    `reference` holds the reference model's log-probabilities ((batch, L, V), as `logits`);
    position t predicts token t + 1, so the predictions of prompt tokens 1.. are compared.
    """
    predicts = prompt[:, 1:]
    kl = (reference[:, :-1].exp() * (reference[:, :-1] - logits[:, :-1].float().log_softmax(-1))).sum(-1)
    return (kl * predicts).sum(1) / predicts.sum(1).clamp_min(1)


def row_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per continuation token of each row, shape (batch,)."""
    total, count = token_nll(logits, labels)
    return total / count.clamp_min(1)


def segment_nll(logits: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
    """Mean NLL per target token of each segment, (segments,), ordered as `batch.rows`.

    When a batch holds everything `pack` returned, that is the order of the rows
    given to `pack`, so it compares one to one with `row_nll` of the rows unpacked.
    """
    tok = _next_token_nll(logits, batch.labels)
    seg = batch.segments[:, 1:]
    keep = seg >= 0
    total = tok.new_zeros(len(batch.rows)).index_add(0, seg[keep], tok[keep])
    return total / torch.bincount(seg[keep], minlength=len(batch.rows)).clamp_min(1)
