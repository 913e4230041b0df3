"""A base model carrying a zoo's pole adapters, mixed by preference vectors.

Three exact ways to apply a vector (no SVD, no approximation):

- dynamic (`set_vector`, `mixed`): the coefficients change, the base weights do not;
  switching vectors is one small tensor write, and only the vector's active poles
  are computed;
- merged (`merged`): the mix is folded into the base weights for zero inference
  overhead, and leaving the block restores the original weights bit for bit;
- per row (`choose` / `generate` / `logits` with a list of vectors): every batch
  row carries its own vector in one forward pass.

Choosing and scoring (not generating) can also compose per dimension (`compose="dimensions"`):
each dimension the vector sets is mixed into the model alone and the scores add, so
mixing in another dimension leaves a dimension's mirror-calibrated choices exactly as
they are alone (and costs what choosing with it alone costs); uncalibrated scores take
one forward pass per dimension set and one of the bare base (the mixed model's score,
`compose="model"`, is the default; docs/concepts.md#composition).

A conditioned zoo (`train --method conditioned`: one shared adapter, stored in every
pole folder) is steered by the prompt instead: `choose` and `generate` put the
descriptions of the vector's active poles (the sign picks the pole) into the prompt,
just before its answer cue, and the shared adapter runs at the vector's largest strength.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from .atomic import atomic_folder
from .choose import Choice, OptionScores, choose, conditioned_prompt, option_scores, pick, summed
from .data import Scenario, format_open_prompt, format_prompt, scenarios_of
from .errors import PFTError, at_least_one
from .layers import PoleAdapters, tied_target
from .vector import PreferenceVector, VectorSpec
from .zoo import Zoo, save_peft_config

if TYPE_CHECKING:
    from .scorer import ScorerModel

CALIBRATIONS = ("base", "mirror", "none")
COMPOSITIONS = ("model", "dimensions")


def calibration(calibrate: bool | str, what: str = "calibration") -> str:
    """"base", "mirror" or "none" for any accepted spelling (True = base, False = none); anything else is refused."""
    mode = ("base" if calibrate else "none") if isinstance(calibrate, bool) else calibrate
    if mode not in CALIBRATIONS:
        raise PFTError(f"unknown {what} '{calibrate}': choose one of {', '.join(CALIBRATIONS)}")
    return mode


def composition(compose: str, what: str = "composition") -> str:
    """"model" or "dimensions"; anything else is refused."""
    if compose not in COMPOSITIONS:
        raise PFTError(f"unknown {what} '{compose}': choose one of {', '.join(COMPOSITIONS)}")
    return compose


def one_per(spec: VectorSpec | Iterable[VectorSpec], n: int | None, rows: str) -> VectorSpec | list[VectorSpec]:
    """One vector, or a list holding exactly one per row (`rows`, plural; any iterable is taken as a list; `n`
    None: any number of rows): never cut by zip nor widened by broadcasting."""
    if isinstance(spec, (str, Mapping)):
        return spec
    if not isinstance(spec, Iterable):
        raise PFTError(f"a vector is a text like 'risk=0.8', a mapping like {{'risk': 0.8}}, or a list of them "
                       f"(one per {rows.removesuffix('s')}), not {type(spec).__name__}")
    specs = list(spec)
    if n is not None and len(specs) != n:
        raise PFTError(f"got {len(specs)} vectors for {n} {rows}: give one vector, or one per {rows.removesuffix('s')}")
    return specs


def text_list(texts: Sequence[str | None], what: str, optional: bool = False) -> list[str]:
    """`texts` as a list of texts: a bare str is refused, as it would be read as one text per character.
    `optional`: None stands for no text, as "" does."""
    if isinstance(texts, str):
        raise PFTError(f"{what} is one text: pass a list of texts, e.g. [text]")
    out = []
    for i, t in enumerate(texts):
        if t is None and optional:
            t = ""
        if not isinstance(t, str):
            raise PFTError(f"{what}[{i}] is {type(t).__name__}, not a text")
        out.append(t)
    return out


class Mixer:
    """A zoo attached to its base, mix off until a vector is set: what LLM and scorer zoos share."""

    def __init__(self, zoo: Zoo, model: torch.nn.Module, tokenizer, base_name: str | None = None):
        self.zoo, self.tokenizer = zoo, tokenizer
        self.adapters: PoleAdapters = zoo.attach(model, base_name)
        self.model = self.adapters.model

    @classmethod
    def load(cls, zoo: str | Path | Zoo, base: str | None = None, device: str | None = None,
             dtype: torch.dtype | None = None):
        """Load a zoo (folder or Hub name) and its base model; `base` overrides where the base is read from."""
        zoo = zoo if isinstance(zoo, Zoo) else Zoo.from_pretrained(zoo)
        model, tokenizer = zoo.load_base(base, device=device, dtype=dtype)
        return cls(zoo, model, tokenizer, base or zoo.base.id)

    # -- vectors --------------------------------------------------------------------
    def vector(self, spec: VectorSpec) -> PreferenceVector:
        return self.zoo.vector(spec)

    def weights(self, spec: VectorSpec | Sequence[VectorSpec]) -> torch.Tensor:
        """(P,) pole weights for one vector, (n, P) for a list of vectors."""
        specs = one_per(spec, None, "rows")
        if isinstance(specs, (str, Mapping)):
            return self._pole_tensor(self.vector(specs))
        if not specs:
            raise PFTError("an empty list of vectors: give one vector, or one per row")
        return torch.stack([self._pole_tensor(self.vector(s)) for s in specs])

    def _pole_tensor(self, vector: PreferenceVector) -> torch.Tensor:
        return vector.tensor(self.zoo.space)

    def dimension_parts(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension composition's parts of (n, P) pole weights: (owners, masks).

        Part k is row `owners[k]` restricted to one dimension it sets (`weights[owners] *
        masks`); a row that sets no dimension is one part, itself (the bare model's).
        """
        space = self.zoo.space
        columns = torch.zeros(len(space), weights.shape[1])
        for d, dim in enumerate(space):
            columns[d, [space.pole_index(p.slug) for p in dim.poles]] = 1.0
        owners, masks = [], []
        for i, row in enumerate(weights.cpu()):
            sets = [columns[d] for d in range(len(space)) if bool((row * columns[d]).any())]
            owners += [i] * max(1, len(sets))
            masks += sets or [torch.ones(weights.shape[1])]
        return torch.tensor(owners), torch.stack(masks).to(weights)

    def choice_vectors(self, scenarios: Sequence[Scenario], spec: VectorSpec | Sequence[VectorSpec], calibrate: str,
                       compose: str) -> list[PreferenceVector]:
        """`row_vectors` of the scenarios (checked first, `scenarios_of`), each cut to what its mirror gap reads when
        composing by dimensions (`differing_part`)."""
        vectors = self.row_vectors(spec, len(scenarios_of(self.zoo.space, scenarios)), "scenarios")
        if composition(compose) == "dimensions" and calibrate == "mirror":
            return [differing_part(v, s.dimension) for v, s in zip(vectors, scenarios)]
        return vectors

    def row_vectors(self, spec: VectorSpec | Sequence[VectorSpec], n: int, rows: str) -> list[PreferenceVector]:
        """One vector per row (`rows`, plural): `spec` for all of them, or a list holding exactly one per row."""
        spec = one_per(spec, n, rows)
        if isinstance(spec, (str, Mapping)):
            return [self.vector(spec)] * n
        return [self.vector(s) for s in spec]

    def set_vector(self, spec: VectorSpec | Sequence[VectorSpec]) -> None:
        """Apply one vector to every row, or one per row; the base weights stay untouched."""
        self.adapters.use_weights(self.weights(spec))

    @contextmanager
    def mixed(self, spec: VectorSpec | Sequence[VectorSpec]) -> Iterator[Mixer]:
        with self.adapters.weighted(self.weights(spec)):
            yield self

    @contextmanager
    def merged(self, spec: VectorSpec) -> Iterator[Mixer]:
        """Fold the mix into the base weights; the originals come back, bit for bit, on exit."""
        self.adapters.merge(self.weights(spec))
        try:
            yield self
        finally:
            self.adapters.unmerge()


def load_mixed(zoo: str | Path | Zoo, base: str | None = None, device: str | None = None,
               dtype: torch.dtype | None = None) -> MixedModel | ScorerModel:
    """The mixed model a zoo's kind calls for: `MixedModel` (LLM zoo) or `scorer.ScorerModel`."""
    from .scorer import ScorerModel

    zoo = zoo if isinstance(zoo, Zoo) else Zoo.from_pretrained(zoo)
    return (ScorerModel if zoo.kind == "scorer" else MixedModel).load(zoo, base, device, dtype)


class MixedModel(Mixer):
    """The user-facing model object of an LLM zoo: generate, choose and score under preference vectors."""

    def __init__(self, zoo: Zoo, model: torch.nn.Module, tokenizer, base_name: str | None = None):
        if zoo.kind != "llm":
            raise PFTError(f"{zoo.source or 'this zoo'} is a {zoo.kind} zoo: load it with pft_adapters.load_mixed")
        super().__init__(zoo, model, tokenizer, base_name)

    # -- conditioned zoos: one shared adapter, the preference told in the prompt -------
    @property
    def conditioned(self) -> bool:
        return self.zoo.method == "conditioned"

    def _refuse_conditioned(self, what: str) -> None:
        """A conditioned zoo's weights are one adapter for every vector: written out alone, they lose the preference."""
        if self.conditioned:
            raise PFTError(f"this zoo was trained with --method conditioned: its preference lives in the prompt, not in "
                           f"its adapter, so there is no mix to {what}; generate or choose with the zoo itself")

    def _pole_tensor(self, vector: PreferenceVector) -> torch.Tensor:
        weights = vector.tensor(self.zoo.space)
        if not self.conditioned:
            return weights
        shared = torch.zeros_like(weights)  # every pole folder holds the same adapter: use one copy once
        shared[self.zoo.space.pole_index(self.zoo.pole_slugs[0])] = max((abs(v) for v in vector.values()), default=0.0)
        return shared

    def _conditioned(self, prompts: Sequence[str], spec: VectorSpec | Sequence[VectorSpec]) -> list[str]:
        """Prompts carrying the descriptions of each vector's active poles (unchanged for a per-pole zoo)."""
        if not self.conditioned:
            return list(prompts)
        out = []
        for prompt, vector in zip(prompts, self.row_vectors(spec, len(prompts), "prompts")):
            weights = vector.pole_weights(self.zoo.space)
            out.append(conditioned_prompt(prompt, [self.zoo.space.pole(p) for p, w in weights.items() if w > 0]))
        return out

    # -- using the mix --------------------------------------------------------------
    @torch.no_grad()
    def logits(self, texts: Sequence[str], spec: VectorSpec | Sequence[VectorSpec]) -> torch.Tensor:
        """(n, length, vocabulary) next-token logits of each text (right-padded) under its vector."""
        texts = text_list(texts, "texts")
        if not texts:
            raise PFTError("no texts given: logits needs at least one")
        spec = one_per(spec, len(texts), "texts")
        batch = self._encode(texts, padding_side="right")
        with self.mixed(spec):
            return self.model(**batch).logits

    def choose(self, scenarios: Sequence[Scenario], spec: VectorSpec | Sequence[VectorSpec],
               calibrate: bool | str = "mirror", batch_size: int = 16, compose: str = "model") -> list[Choice]:
        """The option each scenario's vector prefers (see `pft_adapters.choose` for the scoring rule).

        `calibrate`: "mirror" (the default; the most accurate on VCD, benchmarks/vcd_quality.py)
        scores against the mirrored vector: the scenario's own dimension at the opposite sign,
        the rest unchanged (the other pole's adapter, or for a conditioned zoo its description;
        when the vector leaves that dimension at 0, every entry flipped); True or "base" against
        the bare base (PMI); False or "none" takes the raw likelihood.
        `compose="dimensions"` scores under each dimension the vector sets alone and adds
        what each adds to the base (module docstring).
        Rows are cut to the zoo's training `max_length` (512 when not recorded), as in training.
        """
        mode = calibration(calibrate)
        if composition(compose) == "dimensions" and self.conditioned:
            raise PFTError("this zoo was trained with --method conditioned: its one adapter has no per-dimension parts "
                           "to compose; choose with --compose model")
        vectors = self.choice_vectors(scenarios, spec, mode, compose)
        if not vectors:
            return []
        plain = [format_prompt(s) for s in scenarios]
        prompts = self._conditioned(plain, vectors) if self.conditioned else None
        reference = reference_prompts = None
        if mode == "mirror":
            mirrors = [mirror(vec, s.dimension) for vec, s in zip(vectors, scenarios)]
            reference = torch.stack([self._pole_tensor(m) for m in mirrors])  # absent poles add nothing
            reference_prompts = self._conditioned(plain, mirrors) if self.conditioned else None
        weights = torch.stack([self._pole_tensor(v) for v in vectors])
        if compose == "model":
            return choose(self.adapters, self.tokenizer, scenarios, weights, mode != "none", batch_size, prompts,
                          reference, reference_prompts, max_length=self.zoo.max_length)
        owners, masks = self.dimension_parts(weights)
        parts = option_scores(self.adapters, self.tokenizer, [scenarios[i] for i in owners.tolist()],
                              weights[owners] * masks, reference is not None, batch_size, self.zoo.max_length,
                              reference=None if reference is None else reference[owners] * masks)
        bare = None if reference is not None else [  # the bare base once per scenario, not once per part
            s.mixed for s in option_scores(self.adapters, self.tokenizer, scenarios, torch.zeros_like(weights), False,
                                           batch_size, self.zoo.max_length)]
        grouped: list[list[OptionScores]] = [[] for _ in scenarios]
        for i, part in zip(owners.tolist(), parts):
            grouped[i].append(part)
        return pick(scenarios, [summed(g, None if bare is None else bare[i], mode != "none") for i, g in enumerate(grouped)])

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], spec: VectorSpec | Sequence[VectorSpec], max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, streamer=None,
                 raw: bool = False) -> list[str]:
        """Continue each prompt under its vector (one vector for all, or one per prompt), in one batch."""
        prompts = text_list(prompts, "prompts")
        at_least_one(max_new_tokens, "max_new_tokens")
        if not (math.isfinite(temperature) and temperature >= 0 and 0 < top_p <= 1):
            raise PFTError(f"temperature must be a number >= 0 (0: greedy) and top_p in (0, 1], got {temperature} and {top_p}")
        spec = one_per(spec, len(prompts), "prompts")
        if not prompts:
            return []
        if seed is not None:
            torch.manual_seed(seed)
        texts = self._conditioned(list(prompts) if raw else [format_open_prompt(p) for p in prompts], spec)
        batch = self._encode(texts, padding_side="left")
        sampling = temperature > 0
        with self.mixed(spec):
            out = self.model.generate(  # type: ignore[operator]
                **batch, max_new_tokens=max_new_tokens, do_sample=sampling, streamer=streamer,
                temperature=temperature if sampling else None, top_p=top_p if sampling else None,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _encode(self, texts: Sequence[str], padding_side: str) -> dict[str, torch.Tensor]:
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = padding_side
        try:
            batch = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        finally:
            self.tokenizer.padding_side = side
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    # -- writing the mix out ---------------------------------------------------------
    def export(self, spec: VectorSpec, out: str | Path, overwrite: bool = False) -> Path:
        """The mix as ONE standard PEFT LoRA adapter: rank = sum of the active poles' ranks.

        A_mix stacks the active poles' A; B_mix stacks c_p * B_p; alpha is set so the
        adapter's scale equals the poles' own, hence B_mix A_mix * s = sum_p c_p s B_p A_p exactly.
        """
        self._refuse_conditioned("export")
        weights = self.weights(spec)
        active = [i for i, w in enumerate(weights.tolist()) if w > 0]
        if not active:
            raise PFTError("the vector switches every dimension off: there is nothing to export (the base model is the mix)")
        spec_ = self.zoo.spec
        rank = spec_.r * len(active)
        tensors = {}
        for name, layer in self.adapters.layers.items():
            a = torch.cat([layer.lora_A[i] for i in active], 0)
            b = torch.cat([layer.lora_B[:, i] * weights[i] for i in active], 1)
            tensors[PoleAdapters.peft_key(name, "A")] = a.detach().contiguous().cpu()
            tensors[PoleAdapters.peft_key(name, "B")] = b.detach().contiguous().cpu()
        config = self.zoo.peft_config()
        config.r, config.lora_alpha = rank, spec_.scaling * rank  # type: ignore[assignment]  # peft types lora_alpha as int; it takes a float
        with atomic_folder(out, overwrite) as tmp:
            save_peft_config(config, tmp)
            save_file(tensors, tmp / "adapter_model.safetensors")
            (tmp / "pft_mix.json").write_text(_mix_note(self.vector(spec), self.zoo))
        return Path(out)

    def save_merged(self, spec: VectorSpec, out: str | Path, overwrite: bool = False) -> Path:
        """A full model with the mix folded in, saved in Hugging Face format (safetensors)."""
        self._refuse_conditioned("merge")
        tied = tied_target(self.model, self.adapters.layers)
        if tied is not None:  # a zoo trained before training refused such targets
            raise PFTError(f"this zoo adapts '{tied}', which shares its weights with the input embeddings: a merged model "
                           "would change them too; export the mix as a PEFT adapter (--export) instead")
        with self.merged(spec), atomic_folder(out, overwrite) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)  # type: ignore[operator]
            self.tokenizer.save_pretrained(tmp)
        return Path(out)


def mirror(vector: PreferenceVector, dimension: str) -> PreferenceVector:
    """The vector with `dimension` at the opposite sign; every entry flipped when `dimension` is 0 in it."""
    if vector.get(dimension, 0.0):
        return PreferenceVector({**vector, dimension: -vector[dimension]})
    return PreferenceVector({k: -v for k, v in vector.items() if v})


def differing_part(vector: PreferenceVector, dimension: str) -> PreferenceVector:
    """The part of `vector` its mirror on `dimension` changes: that dimension when the vector sets it, else all.

    Composed per dimension, the other dimensions add the same score under the vector and
    under its mirror, so they cancel exactly from the gap and need not be computed.
    """
    return PreferenceVector({dimension: vector[dimension]}) if vector.get(dimension, 0.0) else vector


def _mix_note(vector: PreferenceVector, zoo: Zoo) -> str:
    return json.dumps({"vector": dict(vector), "zoo_base_model": zoo.base.id, "poles": zoo.pole_slugs}, indent=2) + "\n"
