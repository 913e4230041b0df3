"""Scorer zoos: the pole adapters on a sentence encoder, each pole with a linear score head.

An LLM zoo shows what a pole prefers through the likelihood of generating a text; a
scorer zoo scores (context, candidate) pairs directly, which suits ranking candidates
written by any model, even a remote one. For pole weights `c` (see `layers`):

    score_c(x) = (sum_p c_p h_p) . pool(encoder_c(x)) + sum_p c_p b_p

where `encoder_c` carries the same exact LoRA mix as an LLM zoo's base and `pool` is the
mean of the last hidden state over the candidate's own tokens (read in its context, but
not averaged with it: options of one scenario share most of a long context, and a mean
over the whole pair would blur them together). The mixed score is the score of
the mixed model, NOT the mix of the poles' scores (`sum_p c_p score_p(x)`): the vector
acts inside the encoder. A one-hot `c` gives the pole alone; `c = 0` scores every text 0
(a bare encoder has no preference). `compose="dimensions"` instead adds the scores of the
dimensions the vector sets, each mixed into the encoder alone: `sum_d score_{c|d}(x)`.

Training is paired and listwise: under each pole, the options of one scenario compete
in a softmax and the pole's own options should win. Each head starts from the encoder's
zero-shot reading of its pole (`ScoreHeads.start_from_descriptions`), or from zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .choose import Choice, OptionScores, finite, pick
from .data import Scenario
from .errors import PFTError, at_least_one
from .head import mean_pool, pooled_features
from .layers import PoleAdapters
from .mix import Mixer, VectorSpec, calibration, composition, mirror, text_list
from .values import Pole, ValueSpace
from .zoo import Zoo

DEFAULT_TARGETS = ("query", "key", "value", "dense")  # BERT-family attention and MLP projections
# Chosen with benchmarks/scorer_sweep.py (mean of 3 seeds on VCD, on a GPU): 3 epochs at 3e-4 over pairs of 160
# tokens gave select-one 0.897, against 0.860 for 2 epochs at 5e-4 over 128 tokens (on 2 CPU cores, 0.869
# against 0.862, with half the composition drift: docs/evaluate.md).
DEFAULT_MAX_LENGTH = 160  # tokens per (context, candidate) pair; the context's beginning is cut first
DEFAULT_LR = 3e-4
DEFAULT_EPOCHS = 3.0
CANDIDATE_MASK = "candidate_mask"  # 1 on the candidate's own tokens: what the score head pools
HEAD_INITS = ("descriptions", "zeros")  # where training starts the score heads (`TrainConfig.head_init`)
DESCRIPTION_SCALE = 20.0  # logits per unit of cosine to a pole's description, the scale sentence-transformers gives cosines


class ScoreHeads(nn.Module):
    """One linear score head per pole, mixed by the same coefficients as the adapters."""

    def __init__(self, hidden_size: int, n_poles: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_poles, hidden_size))
        self.bias = nn.Parameter(torch.zeros(n_poles))

    @classmethod
    def on(cls, adapters: PoleAdapters) -> ScoreHeads:
        """Zero heads for every pole of `adapters`, sized and placed for their encoder."""
        hidden: int = adapters.model.config.hidden_size  # type: ignore[union-attr, assignment]
        return cls(hidden, adapters.n_poles).to(next(adapters.parameters()).device)

    def start_from_descriptions(self, adapters: PoleAdapters, tokenizer, poles: Sequence[Pole]) -> None:
        """Point each pole's head at the bare encoder's embedding of its name and description.

        Zero heads pass the adapters no gradient until the heads have grown; these start
        from what the pretrained encoder already reads in each pole's definition (its
        zero-shot choice), at DESCRIPTION_SCALE logits per unit of cosine for a text whose
        embedding has the descriptions' mean norm.
        """
        adapters.off()
        features = pooled_features(adapters.model, tokenizer, [p.definition for p in poles])
        with torch.no_grad():
            self.weight.copy_(nn.functional.normalize(features, dim=-1) * (DESCRIPTION_SCALE / features.norm(dim=-1).mean()))

    def forward(self, pooled: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """(n, hidden) pooled texts, (n, P) pole weights per text -> (n,) scores."""
        c = coefficients.to(self.weight)
        return ((pooled.float() * (c @ self.weight)).sum(-1)) + c @ self.bias

    def pole_state_dict(self, p: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[p].detach().cpu().contiguous(), "bias": self.bias[p].detach().cpu().reshape(1)}

    def load_pole_state_dict(self, p: int, slug: str, tensors: Mapping[str, torch.Tensor]) -> None:
        weight, bias = tensors.get("weight"), tensors.get("bias")
        if weight is None or bias is None or weight.shape != self.weight[p].shape or bias.numel() != 1:
            raise PFTError(f"the score head of pole '{slug}' does not fit this encoder (hidden size {self.weight.shape[1]}): "
                           "it was trained on another base")
        with torch.no_grad():
            self.weight[p].copy_(weight)
            self.bias[p].copy_(bias.reshape(()))


class ScorerNet(nn.Module):
    """Encoder with multi-pole LoRA, mean pooling and score heads, as one module (so DDP sees all of it)."""

    def __init__(self, adapters: PoleAdapters, heads: ScoreHeads):
        super().__init__()
        self.encoder, self.heads = adapters.model, heads
        self.adapters = adapters

    def forward(self, encoded: Mapping[str, torch.Tensor], coefficients: torch.Tensor,
                route: torch.Tensor | None = None, head_coefficients: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) scores of the encoded texts, each under its coefficient row.

        `route` (pole index per row, one-hot `coefficients`) computes only that pole's
        factors: the training path. Otherwise the rows' coefficients mix every pole.
        `head_coefficients` (default: `coefficients`) mix the score heads apart from the
        encoder's adapters, to tell which of the two a mix's effect comes from.
        """
        if route is not None:
            self.adapters.use_route(route)
        elif bool(coefficients.any()):
            self.adapters.use_rows(coefficients)
        else:
            self.adapters.off()
        hidden = self.encoder(**{k: v for k, v in encoded.items() if k != CANDIDATE_MASK}).last_hidden_state
        heads = coefficients if head_coefficients is None else head_coefficients
        return self.heads(mean_pool(hidden, encoded[CANDIDATE_MASK]), heads)


def encode_pairs(tokenizer, candidates: Sequence[str], contexts: Sequence[str | None] | None,
                 max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize (context, candidate) pairs, or a candidate alone where its context is None, padded together.

    Besides the model inputs, `CANDIDATE_MASK` marks each row's candidate tokens. When a
    pair is too long, the longer text loses tokens first, from its beginning (the encoder's
    tokenizer cuts on the left), so a long context keeps its end and the candidate.
    """
    contexts = [c if c and c.strip() else None for c in (contexts or [None] * len(candidates))]  # blank: no context
    paired = [i for i, c in enumerate(contexts) if c is not None]
    alone = [i for i, c in enumerate(contexts) if c is None]
    rows: list[dict] = [{}] * len(candidates)
    marks: list[list[int]] = [[]] * len(candidates)
    for group, text_pair, own in ((paired, True, 1), (alone, False, 0)):
        if not group:
            continue
        if text_pair:
            out = tokenizer([contexts[i] for i in group], [candidates[i] for i in group], truncation="longest_first",
                            max_length=max_length)
        else:
            out = tokenizer([candidates[i] for i in group], truncation=True, max_length=max_length)
        for k, i in enumerate(group):
            rows[i] = {key: values[k] for key, values in out.items()}
            marks[i] = [int(sid == own) for sid in out.sequence_ids(k)]
    batch = dict(tokenizer.pad(rows, return_tensors="pt"))
    mask = torch.zeros_like(batch["attention_mask"])
    width = mask.shape[1]
    for i, mark in enumerate(marks):
        start = 0 if tokenizer.padding_side == "right" else width - len(mark)
        mask[i, start : start + len(mark)] = torch.tensor(mark)
    return batch | {CANDIDATE_MASK: mask}


# -- training ---------------------------------------------------------------------------
@dataclass
class ScorerRow:
    """One scenario under one pole: its options compete, the pole's own options should win."""

    scenario: int
    pole: int
    context: str
    options: list[str]
    wins: list[bool]
    weight: float = 1.0

    def key(self) -> str:
        return f"{self.pole}\0{self.context}\0" + "\0".join(f"{o}\1{w}" for o, w in zip(self.options, self.wins))


def scorer_rows(scenarios: Sequence[Scenario], space: ValueSpace, pole_weights: Mapping[str, float]) -> list[ScorerRow]:
    """A row per (scenario, pole of its dimension with an option there), if another option can lose."""
    rows = []
    for i, s in enumerate(scenarios):
        for pole in space.dimension(s.dimension).poles:
            wins = [o.pole == pole.slug for o in s.options]
            if any(wins) and not all(wins):
                rows.append(ScorerRow(i, space.pole_index(pole.slug), s.text, [o.text for o in s.options], wins,
                                      pole_weights.get(pole.slug, 1.0)))
    return rows


class ScorerObjective:
    """Listwise paired loss: -log of the softmax mass the pole puts on its own options."""

    def __init__(self, adapters: PoleAdapters, tokenizer, max_length: int, described: Sequence[Pole] | None = None):
        """`described`: the adapters' poles, in order, to start the heads from their descriptions; None: zero heads."""
        heads = ScoreHeads.on(adapters)
        if described is not None:
            heads.start_from_descriptions(adapters, tokenizer, described)
        self.net = ScorerNet(adapters, heads)
        self.tokenizer, self.max_length = tokenizer, max_length

    @property
    def module(self) -> nn.Module:
        return self.net

    def parameters(self) -> list[nn.Parameter]:
        return list(self.net.heads.parameters())

    def batch_loss(self, forward: nn.Module, rows: Sequence[ScorerRow], device: torch.device,
                   step_rows: Sequence[ScorerRow] | None = None) -> tuple[torch.Tensor, int]:
        """(weighted loss summed over rows, tokens) for one micro-batch (each row's loss stands alone: `step_rows` unused)."""
        texts = [o for r in rows for o in r.options]
        contexts = [r.context for r in rows for _ in r.options]
        route = torch.tensor([r.pole for r in rows for _ in r.options], device=device)
        encoded = {k: v.to(device) for k, v in encode_pairs(self.tokenizer, texts, contexts, self.max_length).items()}
        coefficients = nn.functional.one_hot(route, self.net.adapters.n_poles).float()
        scores = forward(encoded, coefficients, route=route)
        losses, start = [], 0
        for r in rows:
            s = scores[start : start + len(r.options)]
            wins = torch.tensor(r.wins, device=device)
            losses.append(torch.logsumexp(s, 0) - torch.logsumexp(s[wins], 0))
            start += len(r.options)
        weights = torch.tensor([r.weight for r in rows], device=device)
        return (weights * torch.stack(losses)).sum(), int(encoded["attention_mask"].sum())

    def score_heads(self, space: ValueSpace) -> dict[str, dict[str, torch.Tensor]]:
        return {p: self.net.heads.pole_state_dict(space.pole_index(p)) for p in space.pole_slugs}


# -- using a scorer zoo -------------------------------------------------------------------
class ScorerModel(Mixer):
    """A scorer zoo attached to its encoder: score and rank texts for preference vectors."""

    def __init__(self, zoo: Zoo, model: nn.Module, tokenizer, base_name: str | None = None):
        if zoo.kind != "scorer":
            raise PFTError(f"{zoo.source or 'this zoo'} is an LLM zoo: load it with MixedModel")
        super().__init__(zoo, model, tokenizer, base_name)
        heads = ScoreHeads.on(self.adapters)
        for slug, tensors in zoo.score_heads.items():
            heads.load_pole_state_dict(zoo.space.pole_index(slug), slug, tensors)
        self.net = ScorerNet(self.adapters, heads).eval()
        self.max_length = zoo.max_length

    @torch.no_grad()
    def scores(self, candidates: Sequence[str], spec: VectorSpec | Sequence[VectorSpec] | torch.Tensor,
               contexts: Sequence[str | None] | None = None, batch_size: int = 64,
               head_weights: torch.Tensor | None = None, compose: str = "model") -> torch.Tensor:
        """(n,) score of each candidate (after its context, if any) under one vector or one per candidate.

        `head_weights` ((n, P) pole weights, default: the vector's) mix the score heads apart
        from the encoder's adapters (`ScorerNet.forward`). `compose="dimensions"`: the sum of
        the scores under each dimension the vector sets, each alone (`pft_adapters.mix`).
        """
        candidates = text_list(candidates, "candidates")
        at_least_one(batch_size, "batch_size")
        n = len(candidates)
        if contexts is not None:
            contexts = text_list(contexts, "contexts", optional=True)
            if len(contexts) != n:
                raise PFTError(f"got {len(contexts)} contexts for {n} candidates: give one context per candidate, or none")
        if not n:
            return torch.empty(0)

        def per_candidate(given: torch.Tensor, what: str) -> torch.Tensor:
            rows = given.float().expand(n, -1) if given.dim() == 1 else given.float()
            if len(rows) != n:
                raise PFTError(f"got {len(rows)} {what} for {n} candidates: give one, or one per candidate")
            return rows

        weights = per_candidate(self.adapters.coefficients(spec) if isinstance(spec, torch.Tensor) else self.weights(spec),
                                "vectors")
        if head_weights is not None:
            head_weights = per_candidate(self.adapters.coefficients(head_weights), "rows of head weights")
        if composition(compose) == "dimensions":
            if head_weights is not None:
                raise PFTError("head_weights mix the score heads of one mixed model: score with compose='model'")
            owners, masks = self.dimension_parts(weights)
            parts = self.scores([candidates[i] for i in owners.tolist()], weights[owners] * masks,
                                None if contexts is None else [contexts[i] for i in owners.tolist()], batch_size)
            return torch.zeros(n).index_add_(0, owners, parts)
        device = next(self.adapters.parameters()).device
        out = torch.empty(n)
        with self.adapters.kept():
            for start in range(0, n, batch_size):
                end = min(n, start + batch_size)
                encoded = encode_pairs(self.tokenizer, candidates[start:end],
                                       None if contexts is None else contexts[start:end], self.max_length)
                encoded = {k: v.to(device) for k, v in encoded.items()}
                heads = None if head_weights is None else head_weights[start:end].float().to(device)
                out[start:end] = self.net(encoded, weights[start:end].to(device), head_coefficients=heads).float().cpu()
        return finite(out)

    def choose(self, scenarios: Sequence[Scenario], spec: VectorSpec | Sequence[VectorSpec],
               calibrate: bool | str = "mirror", batch_size: int = 64, compose: str = "model") -> list[Choice]:
        """The option of each scenario its vector scores highest.

        `calibrate="mirror"` (the default) subtracts each option's score under the mirrored
        vector (the scenario's dimension at the opposite sign): what the vector's pole sees
        in the option beyond the opposite pole. "base" and "none" take the score as is (a
        bare encoder scores every text 0, so calibrating against it changes nothing).
        `compose` as in `scores`.
        """
        mode = calibration(calibrate)
        vectors = self.choice_vectors(scenarios, spec, mode, compose)
        if not vectors:
            return []
        texts = [o.text for s in scenarios for o in s.options]
        contexts = [s.text for s in scenarios for _ in s.options]

        def per_option(rows: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.stack([row for row, s in zip(rows, scenarios) for _ in s.options])

        scores = self.scores(texts, per_option([self.weights(v) for v in vectors]), contexts, batch_size, compose=compose)
        if mode == "mirror":  # a pole the zoo was loaded without adds nothing to the mirror, as for an LLM zoo
            mirrored = [self._pole_tensor(mirror(v, s.dimension)) for v, s in zip(vectors, scenarios)]
            scores = scores - self.scores(texts, per_option(mirrored), contexts, batch_size, compose=compose)
        return pick(scenarios, [OptionScores(own, None) for own in scores.split([len(s.options) for s in scenarios])])

    def rank(self, candidates: Sequence[str], spec: VectorSpec | Sequence[VectorSpec],
             contexts: Sequence[str | None] | None = None, compose: str = "model") -> list[int]:
        """Candidate indices, best first, for one vector (or one per candidate)."""
        scores = self.scores(candidates, spec, contexts, compose=compose)
        return sorted(range(len(candidates)), key=lambda i: -float(scores[i]))

    @torch.no_grad()
    def pole_scores(self, scenarios: Sequence[Scenario], poles: Sequence[str] | None = None) -> list[torch.Tensor]:
        """(options, P) per scenario: each option's score under each pole alone (others 0), as `infer` reads them."""
        space = self.zoo.space
        wanted = [p for p in (poles if poles is not None else space.pole_slugs) if p in self.zoo.poles]
        tables = [torch.zeros(len(s.options), len(space.pole_slugs)) for s in scenarios]
        if not wanted or not scenarios:
            return tables
        texts = [o.text for s in scenarios for o in s.options for _ in wanted]
        contexts = [s.text for s in scenarios for _ in s.options for _ in wanted]
        eye = torch.eye(len(space.pole_slugs))[[space.pole_index(p) for p in wanted]]
        scores = self.scores(texts, eye.repeat(len(texts) // len(wanted), 1), contexts)
        start = 0
        for table in tables:
            block = scores[start : start + table.shape[0] * len(wanted)].view(table.shape[0], len(wanted))
            table[:, [space.pole_index(p) for p in wanted]] = block
            start += block.numel()
        return tables
