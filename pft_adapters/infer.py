"""Inferring a user's preference vector from a few past decisions.

Two estimators; both weight each decision by recency and return the vector, a
per-dimension confidence in [0, 1] and the evidence count (decisions per
dimension). Dimensions without evidence stay 0.

**head** (one batched forward of the frozen base, adapters off): the zoo's mixing
head reads every option of every decision. A decision's dimension is the one it
names, else the dimension the head finds most likely, averaged over the
decision's options (they share a dimension). Its signal is, on that dimension,
`P(first) - P(second)` of the chosen option minus the mean of the same over the
options not chosen, halved into [-1, 1] (`contrast=True`, the default; set it off
to read the chosen option alone). The vector is the recency-weighted mean of the
signals per dimension.

**likelihood**: v is D free parameters in [-1, 1] (v = tanh(theta)) fitted, by a
few dozen Adam steps, to maximise the recency-weighted log-likelihood of the
chosen options against the others, `softmax over options of beta * score(option | v)`,
minus a small penalty `lam * |v|^2`. Only dimensions with evidence are free.
The scores are the zoo's calibrated option scores (`pft_adapters.choose`: mean
log-likelihood per token under the mix minus under the bare base, as `--calibrate base`
scores options), taken to FIRST ORDER in the pole weights:

    score(o | v) ~= sum_p w_p(v) * (score_p(o) - score_base(o)),   w = pole weights of v

where `score_p` is the option's score under pole p alone at weight 1. The mix is
exactly linear in the adapters' weight deltas, but the log-likelihood is not
linear in them: the approximation is exact whenever a single pole is at weight 0
or 1 (so at every vertex v in {-1, 0, 1} of a single dimension), and otherwise
interpolates linearly between the bare base and each pole. It makes the fit
cheap: every option of every decision is scored once under the bare base and
once under each pole of the dimensions with evidence (1 + 2E forwards per option,
E <= D, batched, one vector per batch row), after which the fit itself is a few
dozen steps on a (decisions x options x poles) tensor; no forward pass inside the
loop. The exact alternative, re-scoring every option under the current v at every
step, would cost a forward and a backward pass of the mixed model per option per step. `beta` makes the calibrated
scores unit-free: 1 / (their standard deviation over the history). (beta and the size
of v trade off like a temperature: a sharper beta fits a smaller |v|; at this beta a
consistent history gives |v| of about 0.6-0.8.) A scorer zoo chooses by the mirror
calibration (`ScorerModel.choose`: the score under v minus under v with the decision's
dimension flipped), whose first order reads the decision's own dimension only:
`v_d * (score_first(o) - score_second(o))`; its scores enter the fit in that form
(`mirror_gaps`), each decision read on one dimension. Where a decision names no
dimension, it is read on each dimension the head finds likely (`likely_dimensions`), and
its likelihood is the mixture over them weighted by the head's probabilities: the fit
itself moves a decision the head misplaced to the dimension whose poles explain the choice.

Recency: a half-life in decisions (`5`: the decision 5 places before the newest
counts half) or, when every decision has a timestamp, in time (`3d`, `12h`,
`90m`, `30s`, `2w`: a decision 3 days older than the newest counts half).
Decisions are put in time order when all have timestamps, else kept in file
order. `none` weighs all alike. The default half-life, `DEFAULT_HALF_LIFE`
decisions, was chosen by measurement (benchmarks/personalize.py).

Confidence: agreement x (1 - 1/(1 + n_eff/2)), where n_eff = (sum w)^2 / sum w^2
is the effective number of decisions on the dimension and agreement = |sum w s| /
sum w |s| over the decisions' signed signals s (head: the signals above;
likelihood: each decision's log-likelihood of its choice under the dimension's
first pole minus under its second). It grows with evidence and with agreement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch

from .choose import finite
from .data import Option, Scenario
from .errors import PFTError, decimal, quote, shorten
from .head import MixingHead, head_features
from .history import Decision, check_decision
from .values import ValueSpace
from .vector import PreferenceVector

if TYPE_CHECKING:  # annotations only
    from .zoo import Zoo

METHODS = ("head", "likelihood")
DEFAULT_METHOD = "head"
DEFAULT_HALF_LIFE = 3.0  # decisions; chosen by measurement in benchmarks/personalize.py
LIKELIHOOD_STEPS = 40
LIKELIHOOD_PRIOR = 0.25  # lam: the penalty lam * |v|^2 keeps contradicted dimensions near 0
LIKELIHOOD_SHARPNESS = 1.0  # beta = this / (std of the calibrated scores over the history)
# a scorer zoo reads a decision that names no dimension on the dimensions the head gives at least this
# probability, not on all of them: fewer forwards for the same fit (benchmarks/personalize.py)
DIMENSION_FLOOR = 0.1
FEATURE_BATCH = 512  # option texts per forward pass of the base (one pass for any usual history)


@dataclass(frozen=True)
class HalfLife:
    """How fast old decisions fade: `value` decisions, or `value` seconds."""

    value: float
    unit: str  # "records" or "seconds"

    def describe(self) -> str:
        if self.unit == "records":
            return f"{self.value:g} decisions"
        for suffix, seconds in reversed(_UNITS):
            if self.value >= seconds and (self.value / seconds) == round(self.value / seconds, 3):
                return f"{self.value / seconds:g}{suffix}"
        return f"{self.value:g}s"


_UNITS = (("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0), ("w", 604800.0))
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([smhdw])\s*", re.IGNORECASE)  # fullmatched
_NO_RECENCY = ("none", "off", "inf", "infinite")


def parse_half_life(spec: str | float | int | HalfLife | None) -> HalfLife | None:
    """`5` -> 5 decisions, `3d` / `12h` / `90m` / `30s` / `2w` -> a duration, `none` -> no recency (None).

    `None` gives the default (`DEFAULT_HALF_LIFE` decisions).
    """
    if spec is None:
        return HalfLife(DEFAULT_HALF_LIFE, "records")
    if isinstance(spec, HalfLife):
        return spec
    if isinstance(spec, bool):
        raise PFTError(f"--half-life {spec!r} is not a number of decisions or a duration like 3d")
    if isinstance(spec, (int, float)):
        unit = "records"
        try:
            value = float(spec)
        except OverflowError:  # an integer too large for a float
            value = math.inf
    else:
        text = spec.strip()
        if text.lower() in _NO_RECENCY:
            return None
        duration = _DURATION.fullmatch(text)
        if duration and duration[2] == "M":  # minutes or months? months are no unit here
            raise PFTError(f"--half-life {quote(text)} is ambiguous: write {duration[1]}m for minutes (for months, use weeks: 4w)")
        if duration:
            value, unit = float(duration[1]) * dict(_UNITS)[duration[2].lower()], "seconds"
        elif (number := decimal(text)) is not None:
            value, unit = number, "records"
        else:
            raise PFTError(f"--half-life {quote(text, 24)} is not a number of decisions (5) or a duration (3d, 12h, 90m, "
                           "30s, 2w), nor 'none'")
    if not math.isfinite(value) or value <= 0:
        raise PFTError(f"--half-life must be a positive finite number (or 'none' for no recency), got {shorten(str(spec), 24)}")
    return HalfLife(value, unit)


def recency_weights(decisions: Sequence[Decision], half_life: HalfLife | None) -> torch.Tensor:
    """(n,) weights in [0, 1]: the newest decision weighs 1, one half-life older weighs 0.5.

    In float64: a dimension last seen 150 half-lives ago keeps weights (float32 makes them 0),
    and the per-dimension means are scale-free, so its old decisions still decide it.
    """
    n = len(decisions)
    if half_life is None or n == 0:
        return torch.ones(n, dtype=torch.float64)
    stamps = [d.timestamp for d in decisions]
    if half_life.unit == "seconds":
        missing = next((i for i, d in enumerate(decisions) if d.timestamp is None), None)
        if missing is not None:
            raise PFTError(f"a half-life in time ({half_life.describe()}) needs a 'timestamp' on every decision, but "
                           f"{decisions[missing].place(missing)} has none: add timestamps or give the half-life in "
                           "decisions (like 5)")
        times = cast("list[float]", stamps)  # none is missing (checked above)
        newest = max(times)
        ages = torch.tensor([(newest - t) for t in times], dtype=torch.float64)
    else:
        if all(t is not None for t in stamps):  # time order, ties kept in file order
            order = sorted(range(n), key=lambda i: (stamps[i], i))
        else:
            order = list(range(n))
        rank = torch.empty(n, dtype=torch.float64)
        rank[torch.tensor(order)] = torch.arange(n, dtype=torch.float64)
        ages = (n - 1) - rank
    return torch.pow(0.5, ages / half_life.value)


@dataclass
class Inference:
    """An inferred vector with, per dimension, its confidence in [0, 1] and evidence count."""

    vector: PreferenceVector
    confidence: dict[str, float]
    evidence: dict[str, int]
    method: str

    def to_json(self) -> dict:
        """`{"vector", "confidence", "evidence", "method"}`: `mix --vector @file` accepts it as is."""
        return {
            "vector": {k: round(float(v), 4) for k, v in self.vector.items()},
            "confidence": {k: round(float(v), 4) for k, v in self.confidence.items()},
            "evidence": {k: int(v) for k, v in self.evidence.items()},
            "method": self.method,
        }


def confidence(signals: torch.Tensor, weights: torch.Tensor) -> float:
    """Agreement of the signed signals times a factor that grows with their effective number."""
    if len(signals) == 0 or float(weights.sum()) <= 0:
        return 0.0
    w, s = weights.double() / float(weights.max()), signals.double()  # scale-free: w**2 of old decisions would underflow
    n_eff = float(w.sum() ** 2 / (w**2).sum())
    spread = float((w * s.abs()).sum())
    agreement = abs(float((w * s).sum())) / spread if spread > 0 else 0.0
    return round(agreement * (1.0 - 1.0 / (1.0 + n_eff / 2.0)), 6)


# -- head -----------------------------------------------------------------------------------
@dataclass
class Reading:
    """What the mixing head reads off one decision's options."""

    poles: torch.Tensor  # (options, D): P(first) - P(second) of each option on each dimension
    dimensions: torch.Tensor  # (D,): dimension probabilities, averaged over the options


@torch.no_grad()
def read_options(head: MixingHead, features: torch.Tensor, sizes: Sequence[int]) -> list[Reading]:
    """Split the features of every option (decision after decision) into per-decision readings."""
    poles = head.pole_probabilities(features)
    dims = head(features)[1].softmax(-1)
    out, start = [], 0
    for n in sizes:
        out.append(Reading(poles[start : start + n], dims[start : start + n].mean(0)))
        start += n
    return out


def guess_dimensions(readings: Sequence[Reading], given: Sequence[str | None], head: MixingHead) -> list[str]:
    """The given dimension of each decision, else the one the head finds most likely."""
    return [g if g is not None else head.dimension_slugs[int(r.dimensions.argmax())] for r, g in zip(readings, given)]


def head_signals(readings: Sequence[Reading], chosen: Sequence[int], dims: Sequence[int], contrast: bool = True) -> torch.Tensor:
    """(n,) signal of each decision on its dimension (index into the head's dimensions)."""
    out = []
    for r, c, d in zip(readings, chosen, dims):
        picked = r.poles[c, d]
        if contrast:
            others = torch.cat([r.poles[:c, d], r.poles[c + 1 :, d]])
            picked = (picked - others.mean()) / 2 if len(others) else picked
        out.append(picked)
    return torch.stack(out) if out else torch.zeros(0)


def head_estimate(readings: Sequence[Reading], chosen: Sequence[int], dims: Sequence[str], weights: torch.Tensor,
                  space: ValueSpace, head_dims: Sequence[str], contrast: bool = True) -> Inference:
    """Recency-weighted mean of the head's signals per dimension (see the module docstring)."""
    unknown = sorted(set(dims) - set(head_dims))
    if unknown:
        raise PFTError(f"the zoo's mixing head does not know dimension(s) {unknown}: use --method likelihood")
    index = [list(head_dims).index(d) for d in dims]
    signals = head_signals(readings, chosen, index, contrast)
    probs = dimension_probabilities(dims, space)
    return _summarise(signals[:, None] * probs, probs, weights, space, "head")


def dimension_probabilities(dims: Sequence[str | torch.Tensor], space: ValueSpace,
                            head_dims: Sequence[str] = ()) -> torch.Tensor:
    """(n, D) over the space's dimensions: one-hot for a named dimension, else the head's probabilities (over `head_dims`)."""
    slugs = [d.slug for d in space]
    out = torch.zeros(len(dims), len(slugs))
    for i, d in enumerate(dims):
        if isinstance(d, str):
            out[i, slugs.index(d)] = 1.0
        else:
            for p, slug in zip(d.tolist(), head_dims):
                out[i, slugs.index(slug)] = p
    return out


def likely_dimensions(probs: torch.Tensor, floor: float = DIMENSION_FLOOR) -> torch.Tensor:
    """`probs` with each row's dimensions under `floor` dropped and the rest renormalised (the likeliest always stays)."""
    kept = probs * ((probs >= floor) | (probs == probs.max(-1, keepdim=True).values))
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-12)


def read_dimension_probabilities(readings: Sequence[Reading], given: Sequence[str | None], space: ValueSpace,
                                 head: MixingHead) -> torch.Tensor:
    """(n, D): a named dimension one-hot, else the head's likely dimensions (`likely_dimensions`) of the decision."""
    return likely_dimensions(dimension_probabilities([g or r.dimensions for g, r in zip(given, readings)], space,
                                                     head.dimension_slugs))


def evidence_counts(probs: torch.Tensor) -> list[int]:
    """Decisions per dimension from (n, D) probabilities: the expected number, rounded, and at
    least 1 where some decision is likeliest about it (a one-hot row counts 1)."""
    placed = torch.zeros(probs.shape[1], dtype=torch.bool)
    if len(probs):
        placed[probs.argmax(-1)] = True
    return [max(int(float(total) + 0.5), int(hit)) for total, hit in zip(probs.sum(0), placed)]


def _summarise(signals: torch.Tensor, probs: torch.Tensor, weights: torch.Tensor, space: ValueSpace, method: str,
               values: dict[str, float] | None = None) -> Inference:
    """Vector (the weighted mean signal per dimension, unless `values` gives it), confidence and evidence.

    `signals` and `probs` are (n, D): each decision's signal on each dimension and the
    probability that the decision is about it (one-hot when its dimension is settled).
    A dimension with no evidence (`evidence_counts`) stays 0.
    """
    vector, conf, evidence = PreferenceVector(), {}, {}
    for d, (dim, count) in enumerate(zip(space, evidence_counts(probs))):
        rows = probs[:, d] > 0
        evidence[dim.slug] = count
        if not count:
            vector[dim.slug], conf[dim.slug] = 0.0, 0.0
            continue
        s, w = signals[rows, d].double(), weights[rows].double() * probs[rows, d].double()
        if values is not None:
            value = values[dim.slug]
        else:  # decisions over a thousand half-lives old weigh 0 even in float64: they no longer count
            value = float((w * s).sum() / w.sum()) if float(w.sum()) > 0 else 0.0
        finite(torch.tensor(value))  # clamped below, a NaN would read as a full-strength +1
        vector[dim.slug] = round(max(-1.0, min(1.0, value)), 4)  # as `to_json` prints it, so both mix the same
        conf[dim.slug] = confidence(s, w)
    return Inference(vector, conf, evidence, method)


# -- likelihood -------------------------------------------------------------------------------
def likelihood_estimate(scores: Sequence[torch.Tensor], chosen: Sequence[int], dims: Sequence[str],
                        weights: torch.Tensor, space: ValueSpace, steps: int = LIKELIHOOD_STEPS,
                        prior: float = LIKELIHOOD_PRIOR, sharpness: float = LIKELIHOOD_SHARPNESS,
                        dimension_probs: torch.Tensor | None = None) -> Inference:
    """Fit v to the choices under first-order calibrated option scores.

    `scores[i]` is (options, P): decision i's calibrated option scores under each pole of
    `space` alone at weight 1 (score under the pole minus under the bare base); only the
    columns of dimensions in `dims` (each decision's dimension) are read, jointly.

    `dimension_probs` (which then replaces `dims`) ((n, D), `dimension_probabilities`) leaves each decision's dimension
    uncertain: its choice is then explained by one dimension at a time, from that
    dimension's two columns only (a scorer zoo's `mirror_gaps`), and
    its likelihood is the mixture over dimensions weighted by these probabilities. The fit
    can so move a decision the head misplaced to the dimension whose poles explain it. A
    dimension is fitted where it has evidence (`evidence_counts`).
    """
    n, n_dims = len(scores), len(space)
    slugs = [d.slug for d in space]
    probs = dimension_probabilities(dims, space) if dimension_probs is None else dimension_probs.float()
    active = [d for d, count in enumerate(evidence_counts(probs)) if count]
    width = max((len(s) for s in scores), default=1)
    table = torch.zeros(n, width, 2 * n_dims, dtype=torch.float64)
    mask = torch.zeros(n, width, dtype=torch.bool)
    for i, s in enumerate(scores):
        table[i, : len(s)] = s.double()
        mask[i, : len(s)] = True
    read = torch.zeros(n, 2 * n_dims, dtype=torch.bool)  # the columns each decision is read on
    if dimension_probs is None:
        read[:, [2 * d + k for d in active for k in (0, 1)]] = True
    else:
        read = (probs > 0).repeat_interleave(2, dim=1)
    used = table[mask[:, :, None] & read[:, None, :]]
    scale = float(used.std()) if used.numel() > 1 else 0.0
    beta = sharpness / scale if scale > 1e-12 else 1.0
    table = table * beta
    chosen_t = torch.tensor(list(chosen), dtype=torch.long)
    w = per_dimension(weights, probs)
    rows = torch.arange(n)
    # which columns explain a decision together: all of them (settled dimensions), or one dimension's two at a time
    if dimension_probs is None:
        groups, log_prior = torch.ones(1, 2 * n_dims, dtype=torch.float64), torch.zeros(n, 1, dtype=torch.float64)
    else:
        groups = torch.eye(n_dims, dtype=torch.float64).repeat_interleave(2, dim=1)
        log_prior = probs.double().clamp_min(1e-12).log()

    # each decision's vote on each dimension: how much more likely its choice is under the first pole alone than under
    # the second, beyond the same for its options on average: a choice both poles explain alike says nothing, and
    # choosing the other option of the same scenario votes the other way
    closed = ~mask[:, None, :]
    first = table[:, :, 0::2].transpose(1, 2).masked_fill(closed, float("-inf")).log_softmax(-1)
    second = table[:, :, 1::2].transpose(1, 2).masked_fill(closed, float("-inf")).log_softmax(-1)
    gap = (first - second).masked_fill(closed, 0.0)  # (n, D, width)
    votes = gap[rows, :, chosen_t] - gap.sum(-1) / mask.sum(-1, keepdim=True)  # (n, D)

    free = torch.zeros(n_dims, dtype=torch.float64)
    free[active] = 1.0
    theta = torch.zeros(n_dims, dtype=torch.float64)
    for d in active:  # start at v = +-0.5, on the side the votes favour (the pole weights have a kink at 0); no side: 0
        total = float((w * probs[:, d].double() * votes[:, d]).sum())
        theta[d] = math.atanh(0.5) * (total > 0) - math.atanh(0.5) * (total < 0)
    picked = table[rows, chosen_t]  # (n, P): the chosen option's scores

    def objective(v: torch.Tensor) -> float:
        """What the fit maximises: the weighted log-likelihood of the choices minus the prior."""
        pole_w = torch.stack([v.clamp_min(0), (-v).clamp_min(0)], -1).reshape(-1)
        logits = torch.einsum("nop,gp->ngo", table, groups * pole_w).masked_fill(closed, float("-inf"))
        chosen_log = logits.log_softmax(-1)[rows, :, chosen_t]  # (n, groups)
        return float((w * (log_prior + chosen_log).logsumexp(-1)).sum() - prior * (v**2).sum())

    # Adam on theta with the gradient written out (no autograd: a fit is a few ms)
    m1, m2, lr, b1, b2 = torch.zeros_like(theta), torch.zeros_like(theta), 0.1, 0.9, 0.999
    for step in range(1, (steps if active else 0) + 1):
        v = torch.tanh(theta) * free
        pole_w = torch.stack([v.clamp_min(0), (-v).clamp_min(0)], -1).reshape(-1)
        logits = torch.einsum("nop,gp->ngo", table, groups * pole_w)
        option_probs = logits.masked_fill(closed, float("-inf")).softmax(-1)  # (n, groups, width)
        responsibility = (log_prior + option_probs[rows, :, chosen_t].clamp_min(1e-300).log()).softmax(-1)  # (n, groups)
        expected = torch.einsum("ngo,nop->ngp", option_probs, table)  # score expected under the model
        grad_w = -(w[:, None, None] * responsibility[:, :, None] * (picked[:, None, :] - expected) * groups).sum((0, 1))
        grad_w = grad_w.view(n_dims, 2)  # d(-loglik)/d(pole weights)
        grad_v = torch.where(v > 0, grad_w[:, 0], torch.where(v < 0, -grad_w[:, 1], 0.5 * (grad_w[:, 0] - grad_w[:, 1])))
        grad = (grad_v + 2 * prior * v) * (1 - torch.tanh(theta) ** 2) * free
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad**2
        theta = theta - lr * (m1 / (1 - b1**step)) / ((m2 / (1 - b2**step)).sqrt() + 1e-8)
    fitted = torch.tanh(theta) * free
    best = objective(fitted)
    for d in active:  # a dimension the choices do not pull away from 0 stays there, not where the steps stopped
        zeroed = fitted.clone()
        zeroed[d] = 0.0
        if (value := objective(zeroed)) >= best:
            fitted, best = zeroed, value
    return _summarise(votes.float(), probs, weights, space, "likelihood", dict(zip(slugs, fitted.tolist())))


def per_dimension(weights: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Recency weights relative to the newest decision on each decision's (likeliest) dimension.

    Recency says which of a dimension's decisions count; a dimension last seen long ago keeps
    its own evidence against the prior, as the head's per-dimension means do.
    """
    w = weights.double().clone()
    owner = probs.argmax(-1) if len(probs) else torch.zeros(0, dtype=torch.long)
    for d in owner.unique().tolist():
        mine = owner == d
        top = float(w[mine].max())
        if top > 0:  # all 0: over a thousand half-lives old, they stay 0
            w[mine] /= top
    return w


def mirror_gaps(scores: Sequence[torch.Tensor], space: ValueSpace) -> list[torch.Tensor]:
    """A scorer zoo's per-pole scores as its mirror-calibrated `choose` reads them, to first order.

    On each dimension, the first pole's column becomes first minus second and the second's
    its negative: what v weighs on a decision read on that dimension (the calibration
    cancels every other dimension, so the fit reads one dimension's columns at a time).
    """
    out = []
    for table in scores:
        gaps = torch.zeros_like(table)
        for dim in space:
            first, second = (space.pole_index(pole.slug) for pole in dim.poles)
            gaps[:, first] = table[:, first] - table[:, second]
            gaps[:, second] = -gaps[:, first]
        out.append(gaps)
    return out


def spread_dimensions(scores: Sequence[torch.Tensor], space: ValueSpace) -> list[str]:
    """Without a given dimension or a head: the dimension whose two poles move the options apart most."""
    out = []
    for s in scores:
        gap = (s[:, 0::2] - s[:, 1::2]).double()  # (options, D): first pole minus second
        spread = gap.std(0) if len(gap) > 1 else gap.abs()[0]
        out.append(space.dimensions[int(spread.argmax())].slug)
    return out


# -- running it on a zoo ------------------------------------------------------------------------
def decision_scenarios(decisions: Sequence[Decision]) -> list[Scenario]:
    """Decisions in the shape the scoring code reads (options carry no pole: the user's choice is what counts)."""
    return [Scenario(d.scenario, d.dimension or "", tuple(Option(t, None) for t in d.options)) for d in decisions]


@torch.no_grad()
def option_features(mixed, decisions: Sequence[Decision]) -> torch.Tensor:
    """Pooled features of every option of every decision, in one pass, as the zoo's head was trained on them.

    From the head's encoder when it records one (loaded once per process, checked by fingerprint),
    else from the bare base (adapters off).
    """
    texts = [t for d in decisions for t in d.options]
    encoder = mixed.zoo.head.encoder if mixed.zoo.head is not None else None
    with mixed.adapters.weighted(torch.zeros(mixed.adapters.n_poles)):
        return head_features(mixed.model, mixed.tokenizer, texts, encoder, batch_size=min(max(len(texts), 1), FEATURE_BATCH))


@torch.no_grad()
def pole_scores(mixed, scenarios: Sequence[Scenario], poles: Sequence[str] | None = None,
                batch_size: int = 16) -> list[torch.Tensor]:
    """(options, P) per scenario: calibrated score of each option under each pole alone at weight 1.

    (For a scorer zoo, `ScorerModel.pole_scores`: the pole's own score, one forward per option and pole.)

    Columns follow the zoo's value space; poles not asked for (or not in the zoo) stay 0.
    Cost: (1 + len(poles)) forwards per option, batched with one coefficient row per batch
    row. A conditioned zoo (one shared adapter told the pole in the prompt) is scored with
    the pole's description on a line before the `Chosen option:` cue, its base on that same prompt
    (2 forwards per option and pole).
    """
    from .choose import conditioned_prompt, option_scores
    from .data import format_prompt

    if mixed.zoo.kind == "scorer":  # a scorer's score of an option under a pole alone: nothing to calibrate
        return mixed.pole_scores(scenarios, poles)
    space = mixed.zoo.space
    present = set(mixed.zoo.pole_slugs)
    wanted = [p for p in (poles if poles is not None else space.pole_slugs) if p in present]
    tables = [torch.zeros(len(s.options), len(space.pole_slugs)) for s in scenarios]
    if not scenarios or not wanted:
        return tables
    conditioned = bool(getattr(mixed, "conditioned", False))
    rows, weights, prompts = [], [], []
    for scenario in scenarios:
        for k in range(len(wanted) + (0 if conditioned else 1)):
            pole = wanted[k] if conditioned else (wanted[k - 1] if k else None)
            rows.append(scenario)
            if pole is None:
                weights.append(torch.zeros(mixed.adapters.n_poles))
                continue
            dim = space.dimension_of(pole)
            weights.append(mixed.weights({dim.slug: float(dim.sign(pole))}).float().cpu())
            if conditioned:
                prompts.append(conditioned_prompt(format_prompt(scenario), [space.pole(pole)]))
    scored = option_scores(mixed.adapters, mixed.tokenizer, rows, torch.stack(weights), calibrate=conditioned,
                           batch_size=batch_size, prompts=prompts if conditioned else None,
                           max_length=mixed.zoo.max_length)  # as `MixedModel.choose` cuts rows
    step = len(wanted) + (0 if conditioned else 1)
    for i, table in enumerate(tables):
        group = scored[i * step : (i + 1) * step]
        for k, pole in enumerate(wanted):
            column = space.pole_slugs.index(pole)
            table[:, column] = group[k].scores() if conditioned else group[k + 1].mixed - group[0].mixed
    return tables


def infer(mixed, decisions: Sequence[Decision], method: str = DEFAULT_METHOD,
          half_life: str | float | HalfLife | None = None, contrast: bool = True) -> Inference:
    """Infer a preference vector for `mixed` (a `MixedModel` or a `ScorerModel`) from a user's decisions.

    `decisions`: `Decision` objects (`load_history` reads a file), each checked as a history line is.

    `half_life`: None = the default (`DEFAULT_HALF_LIFE` decisions), a number of decisions,
    a duration string (`3d`), a `HalfLife`, or 'none' for equal weights.
    """
    if method not in METHODS:
        raise PFTError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    decisions = check_decisions(mixed.zoo, decisions)
    inference = _estimate(mixed, decisions, method, half_life, contrast)
    for slug in unheld_dimensions(mixed.zoo):  # decisions the head placed there: no value this zoo could mix
        inference.vector[slug], inference.confidence[slug] = 0.0, 0.0
    return inference


def unheld_dimensions(zoo: Zoo) -> list[str]:
    """The zoo's dimensions none of whose poles it holds (a pull of some poles only): a vector cannot set them."""
    held = set(zoo.pole_slugs)
    return [d.slug for d in zoo.space if not any(p.slug in held for p in d.poles)]


def check_decisions(zoo: Zoo, decisions: Sequence[Decision]) -> list[Decision]:
    """The decisions checked and normalised as a history file's lines are (`check_decision`: one built in Python too),
    before any model work; an empty history and a dimension the zoo holds no pole of (as loaded) are refused."""
    if not decisions:
        raise PFTError("the history holds no decisions: there is nothing to infer from")
    checked = [check_decision(d, i, zoo.space) for i, d in enumerate(decisions)]
    unheld = unheld_dimensions(zoo)
    for i, d in enumerate(checked):
        if d.dimension in unheld:  # a slug, once checked
            raise PFTError(f"{d.place(i)}: dimension '{d.dimension}' has no pole in this zoo as loaded (it holds "
                           f"{', '.join(zoo.pole_slugs)}): load its poles, or leave its decisions out")
    return checked


def _estimate(mixed, decisions: Sequence[Decision], method: str, half_life: str | float | HalfLife | None,
              contrast: bool) -> Inference:
    space: ValueSpace = mixed.zoo.space
    given = [space.dimension(d.dimension).slug if d.dimension else None for d in decisions]
    weights = recency_weights(decisions, parse_half_life(half_life))
    chosen = [d.chosen for d in decisions]
    head = _head(mixed.zoo, space)
    readings = None
    if head is not None and (method == "head" or any(g is None for g in given)):
        readings = read_options(head, option_features(mixed, decisions), [len(d.options) for d in decisions])
    if method == "head":
        if head is None:
            raise PFTError("this zoo has no mixing head to read the options with: use --method likelihood")
        assert readings is not None  # read above: there is a head and the method is "head"
        dims = guess_dimensions(readings, given, head)
        return head_estimate(readings, chosen, dims, weights, space, head.dimension_slugs, contrast)
    scenarios = decision_scenarios(decisions)
    unsettled = any(g is None for g in given)
    scores = None
    if head is not None and readings is not None:
        dims = guess_dimensions(readings, given, head)
    elif unsettled:  # no head: score under every pole, then place by spread
        scores = pole_scores(mixed, scenarios)
        dims = [g or s for g, s in zip(given, spread_dimensions(scores, space))]
    else:
        dims = cast("list[str]", list(given))  # settled: every decision names its dimension
    scorer = mixed.zoo.kind == "scorer"
    if scorer and head is not None and readings is not None and unsettled:  # each likely dimension, by the head
        probs = read_dimension_probabilities(readings, given, space, head)
    else:
        probs = dimension_probabilities(dims, space)
    if scores is None:
        scores = fit_scores(mixed, scenarios, probs)
    if not scorer:
        return likelihood_estimate(scores, chosen, dims, weights, space)
    # a scorer zoo reads each decision on one dimension at a time (its mirror calibration)
    return likelihood_estimate(mirror_gaps(scores, space), chosen, dims, weights, space, dimension_probs=probs)


def fit_scores(mixed, scenarios: Sequence[Scenario], probs: torch.Tensor) -> list[torch.Tensor]:
    """What the likelihood fit reads of each decision, given (n, D) probabilities of its dimension.

    An LLM zoo: every option under each pole of every dimension any decision may be about
    (the fit is joint). A scorer zoo: each decision's options under the poles of the
    dimensions it may be about only (one batched pass per dimension); other columns 0.
    """
    space = mixed.zoo.space
    if mixed.zoo.kind != "scorer":
        poles = [p.slug for d, dim in enumerate(space) if bool(probs[:, d].any()) for p in dim.poles]
        return pole_scores(mixed, scenarios, poles)
    tables = [torch.zeros(len(s.options), len(space.pole_slugs)) for s in scenarios]
    for d, dim in enumerate(space):
        rows = [i for i in range(len(scenarios)) if probs[i, d] > 0]
        poles = [pole.slug for pole in dim.poles]
        for i, table in zip(rows, pole_scores(mixed, [scenarios[i] for i in rows], poles)):
            tables[i] += table  # the columns of other poles are 0
    return tables


def _head(zoo, space: ValueSpace) -> MixingHead | None:
    """The zoo's head restricted to the dimensions it knows (in the space's order), or None."""
    if zoo.head is None:
        return None
    known = [d for d in space if d.slug in zoo.head.dimension_slugs]
    return zoo.head.select(ValueSpace(known)) if known else None
