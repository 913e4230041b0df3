"""Choosing among options: which option of a scenario a mixed model prefers.

Scoring rule: the mean log-likelihood per token of the option's text after the
scenario prompt (length-normalised, so long options are not penalised), under the
mixed model. With `calibrate=True` (the default) the base model's score of the
same option is subtracted, which leaves what the adapters add (pointwise mutual
information) rather than the option's fluency. Every scenario can carry its own
vector: all options of all scenarios go through in batched forward passes.

`prompts` replaces the scenario prompts (a conditioned zoo puts the described poles
in front of them, see `conditioned_prompt`); the base is scored on the same text.
`reference` (pole weights) calibrates against that mix instead of the bare base,
read on `reference_prompts` when given: `MixedModel.choose(calibrate="mirror")`
uses the vector with the scenario's dimension flipped, so an option scores what the
vector's pole gives it beyond the opposite pole (a paired zoo's adapters read as a
contrastive pair).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch

from .batching import Encoder, row_nll
from .data import Scenario, format_prompt, format_target
from .errors import PFTError, at_least_one
from .layers import PoleAdapters
from .values import Pole


def conditioned_prompt(prompt: str, poles: Sequence[Pole]) -> str:
    """The prompt with the described poles on the lines just before its last line (the answer cue).

    This is how a conditioned zoo (one shared adapter) is told the preference. Next to the
    cue, the description survives truncation, which cuts a long prompt's start.
    """
    if not poles:
        return prompt
    described = "".join(f"Preference: {p.definition}\n" for p in poles)
    head, newline, last = prompt.rpartition("\n")
    return f"{head}{newline}{described}{last}" if newline else described + prompt


@dataclass
class Choice:
    index: int  # chosen option
    pole: str | None  # the chosen option's pole, where the data says
    scores: list[float]  # full precision: select-all compares them with their mean

    def rounded(self, digits: int = 4) -> list[float]:
        """The scores as written out."""
        return [round(x, digits) for x in self.scores]


@dataclass
class OptionScores:
    """Each option's score under the mix (an LLM zoo's mean log-likelihood per token, a scorer's score), and under
    the bare base or the reference mix (None: the score stands alone)."""

    mixed: torch.Tensor
    base: torch.Tensor | None

    def scores(self) -> torch.Tensor:
        return self.mixed - self.base if self.base is not None else self.mixed

    def best(self) -> int:
        """Highest score; when the mix adds nothing (all scores equal), the base's own preference decides."""
        s = self.scores()
        if self.base is not None and float(s.max() - s.min()) < 1e-9:
            s = self.mixed
        return int(torch.argmax(s))


def summed(parts: Sequence[OptionScores], bare: torch.Tensor | None, calibrated: bool) -> OptionScores:
    """One scenario's scores composed per dimension, from its parts (one per dimension the vector sets).

    Mirror-calibrated (`bare` None), each part carries its own mirror's score and the gaps add.
    Otherwise `bare` is the bare base's score, computed once for the scenario, and each part's
    gain over it adds to it; calibrated, the bare base is the reference.
    """
    mixed = torch.stack([p.mixed for p in parts]).sum(0)
    if bare is None:
        return OptionScores(mixed, torch.stack([cast(torch.Tensor, p.base) for p in parts]).sum(0))
    return OptionScores(mixed - (len(parts) - 1) * bare, bare if calibrated else None)


def finite(scores: torch.Tensor) -> torch.Tensor:
    """`scores` as they are, or a refusal: a NaN would win every argmax and be written out as invalid JSON."""
    if not bool(torch.isfinite(scores).all()):
        raise PFTError("the model scores some texts as NaN or infinite: its adapters are damaged or overflowed; "
                       "retrain the zoo (or run in float32)")
    return scores


@torch.no_grad()
def option_scores(adapters: PoleAdapters, tokenizer, scenarios: Sequence[Scenario], weights: Mapping[str, float] | torch.Tensor,
                  calibrate: bool = True, batch_size: int = 16, max_length: int = 512,
                  prompts: Sequence[str] | None = None, reference: Mapping[str, float] | torch.Tensor | None = None,
                  reference_prompts: Sequence[str] | None = None) -> list[OptionScores]:
    """Score of every option of every scenario; `weights` (and `reference`) are pole weights by slug, or (P,) for all
    or (S, P) per scenario."""
    at_least_one(batch_size, "batch_size")
    per_scenario = _per_scenario(adapters, weights, len(scenarios))
    reference_per_scenario = None if reference is None else _per_scenario(adapters, reference, len(scenarios))
    encoder = Encoder(tokenizer, max_length)
    rows, ref_rows, owners = [], [], []
    for s_idx, scenario in enumerate(scenarios):
        prompt = format_prompt(scenario) if prompts is None else prompts[s_idx]
        for option in scenario.options:
            rows.append(encoder(prompt, format_target(option)))
            if reference_prompts is not None:
                ref_rows.append(encoder(reference_prompts[s_idx], format_target(option)))
            owners.append(s_idx)
    device = per_scenario.device
    mixed, base = torch.empty(len(rows)), torch.empty(len(rows))
    with adapters.kept():
        for start in range(0, len(rows), batch_size):
            batch = encoder.collate(rows[start : start + batch_size]).to(device)
            row_weights = per_scenario[owners[start : start + batch_size]]
            mixed[start : start + len(batch.input_ids)] = _mean_logprob(adapters, batch, row_weights)
            if calibrate:
                ref_batch = batch if reference_prompts is None else encoder.collate(ref_rows[start : start + batch_size]).to(device)
                ref_weights = None if reference_per_scenario is None else reference_per_scenario[owners[start : start + batch_size]]
                base[start : start + len(batch.input_ids)] = _mean_logprob(adapters, ref_batch, ref_weights)
    finite(mixed)
    if calibrate:
        finite(base)
    out, start = [], 0
    for scenario in scenarios:
        end = start + len(scenario.options)
        out.append(OptionScores(mixed[start:end], base[start:end] if calibrate else None))
        start = end
    return out


def _per_scenario(adapters: PoleAdapters, weights: Mapping[str, float] | torch.Tensor, scenarios: int) -> torch.Tensor:
    """(S, P) pole weights: one row for every scenario, or the rows given."""
    coefficients = adapters.coefficients(weights)
    return coefficients.expand(scenarios, -1) if coefficients.dim() == 1 else coefficients


def _mean_logprob(adapters: PoleAdapters, batch, row_weights: torch.Tensor | None) -> torch.Tensor:
    if row_weights is None or not bool(row_weights.any()):
        adapters.off()
    else:
        adapters.use_rows(row_weights)
    logits = adapters.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return -row_nll(logits, batch.labels).cpu()


def choose(adapters: PoleAdapters, tokenizer, scenarios: Sequence[Scenario], weights: Mapping[str, float] | torch.Tensor,
           calibrate: bool = True, batch_size: int = 16, prompts: Sequence[str] | None = None,
           reference: Mapping[str, float] | torch.Tensor | None = None, reference_prompts: Sequence[str] | None = None,
           max_length: int = 512) -> list[Choice]:
    """The highest-scoring option of each scenario under its vector."""
    return pick(scenarios, option_scores(adapters, tokenizer, scenarios, weights, calibrate, batch_size, max_length,
                                         prompts=prompts, reference=reference, reference_prompts=reference_prompts))


def pick(scenarios: Sequence[Scenario], scores: Sequence[OptionScores]) -> list[Choice]:
    """Each scenario's best option by its scores."""
    choices = []
    for scenario, s in zip(scenarios, scores):
        best = s.best()
        choices.append(Choice(best, scenario.options[best].pole, [float(x) for x in s.scores()]))
    return choices
