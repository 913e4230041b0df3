"""Paired fine-tuning: every pole adapter of every dimension in one run.

Rows of one scenario (one per option, each under its own pole) sit together in a
batch, so every step sees both sides of a value conflict. Each row is routed to
its own pole's factors (see `layers`), so the multi-pole machinery costs what a
single adapter costs. The loss is the paired objective

    sum over rows  w[pole] * NLL(target | prompt)   (prompt tokens masked)

Training is deterministic on CPU for a given seed (batch order is a pure
function of seed and epoch), checkpoints atomically, resumes where it stopped,
and runs data-parallel under `torchrun` (torch.distributed, DDP).

The same loop trains scorer zoos (`TrainConfig.kind="scorer"`: the adapters on a
sentence encoder, with a score head per pole; see `scorer`): only the per-batch loss
differs, so each kind brings an objective with `batch_loss`, and the loop, checkpoints,
`--resume` and DDP are shared.

Two baselines share the trainer (`TrainConfig.method`): "conditioned", the PFT
paper's design (ONE shared LoRA adapter trained on the same rows, each prompt
holding its pole's description, see `choose.conditioned_prompt`; saved as identical
copies in every pole folder, see docs/formats.md), and "single" (single-preference SFT: one pole's
rows only, one adapter).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import cast

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .atomic import replace_folder
from .base import to_device
from .batching import Batch, Encoder, EncodedRow, PackedBatch, prompt_kl_per_row, prompt_shares, row_nll, segment_nll
from .choose import conditioned_prompt
from .data import PairedRow, Scenario, paired_rows
from .errors import PFTError, loads
from .evaluate import json_number
from .head import MixingHead, head_encoder, head_features
from .layers import LoraSpec, PoleAdapters, add_pole_adapters, check_new_adapters
from .values import ValueSpace
from .scorer import DEFAULT_EPOCHS as SCORER_EPOCHS
from .scorer import DEFAULT_LR as SCORER_LR
from .scorer import DEFAULT_MAX_LENGTH as SCORER_MAX_LENGTH
from .scorer import DEFAULT_TARGETS as SCORER_TARGETS
from .scorer import HEAD_INITS, ScorerObjective, ScorerRow, scorer_rows
from .zoo import KINDS, BaseRef, Zoo, fingerprint


# Weight of the prompt KL of LLM zoos (`CausalObjective`). Measured with benchmarks/vcd_quality.py's paired zoo
# (docs/evaluate.md): 0 / 1 / 1.5 / 3 gave worst-mix perplexity 1.356 / 1.112 / 1.092 / 1.047x the base's and
# select-one 0.746 / 0.737 / 0.723 / 0.688; 1.5 is the least that keeps the language model within 10%.
DEFAULT_PROMPT_KL = 1.5
PRECISIONS = ("auto", "fp32", "bf16")
METHODS = ("paired", "conditioned", "single")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)  # a rate or weight beyond it overflows in the optimizer


@dataclass
class TrainConfig:
    """Everything that shapes the result; its hash guards `--resume` against changed settings."""

    lora: LoraSpec | None = None  # None: r=8, alpha=16 on the kind's usual projections
    epochs: float | None = None  # None: 2 for an LLM zoo, scorer.DEFAULT_EPOCHS for a scorer zoo
    batch_size: int = 8  # rows per optimizer step, summed over processes and accumulation
    grad_accum: int = 1
    lr: float | None = None  # None: 1e-3 for an LLM zoo, scorer.DEFAULT_LR for a scorer zoo
    weight_decay: float = 0.0
    warmup: float = 0.05
    max_length: int | None = None  # tokens per row; None: 512 for an LLM zoo, scorer.DEFAULT_MAX_LENGTH for a scorer zoo
    seed: int = 0
    pole_weights: dict[str, float] = field(default_factory=dict)
    head_steps: int = 300
    method: str = "paired"  # "paired" | "conditioned" (one shared adapter, pole described in the prompt) | "single"
    pole: str | None = None  # the one pole trained by method="single"
    kind: str = "llm"  # "llm" (causal LM base) or "scorer" (sentence-encoder base, see `scorer`)
    pack: bool = True  # LLM zoos: rows sharing a prompt and a pole go through as one sequence (`Encoder.pack`)
    head_encoder: str | None = None  # sentence encoder (Hub id or folder) the mixing head reads; None: the base
    prompt_kl: float | None = None  # LLM zoos: weight of the KL to the base on prompt tokens (`CausalObjective`); None: DEFAULT_PROMPT_KL
    lora_dropout: float = 0.0  # dropout on each adapter's input while training, as peft's LoraConfig.lora_dropout
    orthogonality: float = 0.0  # paired method: weight of `PoleAdapters.cross_dimension_overlap`, once per step
    head_init: str | None = None  # scorer zoos: where the score heads start (scorer.HEAD_INITS); None: "descriptions"
    precision: str = "auto"  # matmuls in "fp32" or under "bf16" autocast; "auto": bf16 on a GPU that computes it (`autocast_bf16`)

    def __post_init__(self) -> None:
        problem = self._problem()  # also on every `replace`, so `resolved()` checks settings changed later
        if problem:
            raise PFTError(problem)

    def _problem(self) -> str | None:
        """What is out of range in the settings (checked before any model is loaded), or None."""
        def positive(x: float | None) -> bool:  # and within float32, which the optimizer computes in
            return x is None or 0 < x <= FLOAT32_MAX

        if self.kind not in KINDS:
            return f"unknown zoo kind '{self.kind}': choose one of {', '.join(KINDS)}"
        if self.method not in METHODS:
            return f"unknown training method '{self.method}': choose one of {', '.join(METHODS)}"
        if self.method == "single" and self.pole is None:
            return "method 'single' needs the pole to train (--pole)"
        if self.method != "single" and self.pole is not None:
            return f"--pole goes with --method single; method '{self.method}' trains every pole"
        if self.kind == "scorer" and self.method != "paired":
            return f"scorer zoos train by the paired method only, not '{self.method}'"
        if not positive(self.epochs):
            return f"--epochs must be a positive number (within float32's range), got {self.epochs}"
        if not positive(self.lr):
            return f"--lr must be a positive number (within float32's range), got {self.lr}"
        if self.batch_size < 1 or self.grad_accum < 1:
            return f"--batch-size and --grad-accum must be at least 1, got {self.batch_size} and {self.grad_accum}"
        if self.max_length is not None and self.max_length < 8:
            return f"--max-length must be at least 8 tokens, got {self.max_length}"
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0) or not 0 <= self.warmup < 1:
            return f"weight decay must be >= 0 and warmup in [0, 1), got {self.weight_decay} and {self.warmup}"
        bad = [f"{p}={w}" for p, w in self.pole_weights.items() if not (math.isfinite(w) and w >= 0)]
        if bad:
            return f"pole weights must be finite numbers >= 0, got {', '.join(bad)}"
        if self.prompt_kl is not None and not 0 <= self.prompt_kl <= FLOAT32_MAX:
            return f"--prompt-kl must be a finite number >= 0, got {self.prompt_kl}"
        if self.kind == "scorer" and self.prompt_kl:
            return "--prompt-kl weighs a language model's drift on prompts: a scorer zoo has none (leave it out)"
        if not (math.isfinite(self.lora_dropout) and 0 <= self.lora_dropout < 1):
            return f"--lora-dropout must be a probability in [0, 1), got {self.lora_dropout}"
        if not (math.isfinite(self.orthogonality) and self.orthogonality >= 0):
            return f"--orthogonality must be a finite number >= 0, got {self.orthogonality}"
        if self.orthogonality and self.method != "paired":
            return f"--orthogonality separates the adapters of different dimensions: method '{self.method}' trains one adapter"
        if self.head_init is not None and self.head_init not in HEAD_INITS:
            return f"unknown --head-init '{self.head_init}': choose one of {', '.join(HEAD_INITS)}"
        if self.head_init is not None and self.kind != "scorer":
            return "--head-init sets where a scorer zoo's score heads start: an LLM zoo has none (leave it out)"
        if self.precision not in PRECISIONS:
            return f"unknown --precision '{self.precision}': choose one of {', '.join(PRECISIONS)}"
        if self.lora is not None and self.lora.r < 1:
            return f"--rank must be at least 1, got {self.lora.r}"
        if self.lora is not None and not positive(self.lora.alpha):  # 0 never trains, NaN poisons every adapter
            return f"--alpha must be a positive number (within float32's range), got {self.lora.alpha}"
        if self.lora is not None and (len(set(self.lora.target_modules)) < len(self.lora.target_modules)
                                      or not all(self.lora.target_modules)):
            return f"--target-modules must name each layer once, got {','.join(self.lora.target_modules)}"
        return None

    def resolved(self) -> TrainConfig:
        """This config with every None (`lora`, `epochs`, `lr`, `max_length`) set to its kind's default.

        Defaults are filled here, not when the config is built, so a config moved to
        another kind (`dataclasses.replace(config, kind=...)`) takes that kind's defaults.
        """
        scorer = self.kind == "scorer"
        return replace(
            self,
            lora=self.lora or (LoraSpec(target_modules=SCORER_TARGETS) if scorer else LoraSpec()),
            epochs=self.epochs if self.epochs is not None else (SCORER_EPOCHS if scorer else 2.0),
            lr=self.lr if self.lr is not None else (SCORER_LR if scorer else 1e-3),
            max_length=self.max_length if self.max_length is not None else (SCORER_MAX_LENGTH if scorer else 512),
            prompt_kl=self.prompt_kl if self.prompt_kl is not None else (0.0 if scorer else DEFAULT_PROMPT_KL),
            head_init=(self.head_init or HEAD_INITS[0]) if scorer else None,
        )

    def fingerprint(self) -> str:
        settings = asdict(self.resolved())
        if settings["method"] == "paired" and settings["pole"] is None:  # as before the methods existed: old checkpoints resume
            del settings["method"], settings["pole"]
        if settings["kind"] == "llm":
            del settings["kind"]
        if settings["head_encoder"] is None:  # as before head encoders existed: old checkpoints resume
            del settings["head_encoder"]
        for added in ("prompt_kl", "orthogonality", "lora_dropout"):  # settings that came later: off, as before they existed
            if not settings[added]:
                del settings[added]
        if settings["precision"] == "auto":
            del settings["precision"]
        if settings["head_init"] in (None, "zeros"):  # as before score heads started from descriptions
            del settings["head_init"]
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_rows(rows: Sequence[PairedRow], encoder: Encoder, space: ValueSpace, config: TrainConfig) -> list[EncodedRow]:
    index = (lambda pole: 0) if config.method == "conditioned" else space.pole_index  # one shared adapter
    return [encoder(r.prompt, r.target, index(r.pole), config.pole_weights.get(r.pole, 1.0)) for r in rows]


SHARED = "shared"  # the adapter name of a conditioned run


def method_rows(scenarios: Sequence[Scenario], space: ValueSpace, config: TrainConfig) -> tuple[list[PairedRow], list[str]]:
    """The training rows and adapter names of `config.method`."""
    if config.method == "single":
        assert config.pole is not None  # __post_init__ refuses method "single" without a pole
        if not space.has_pole(config.pole):
            raise PFTError(f"unknown --pole '{config.pole}': method 'single' trains one of {', '.join(space.pole_slugs)}")
        return paired_rows(scenarios, [space.pole(config.pole).slug]), space.pole_slugs
    rows = paired_rows(scenarios)
    if config.method == "conditioned":
        rows = [PairedRow(conditioned_prompt(r.prompt, [space.pole(r.pole)]), r.target, r.pole, r.scenario) for r in rows]
        return rows, [SHARED]
    return rows, space.pole_slugs


class CausalObjective:
    """The paired objective on a causal LM: each row's target NLL under its own pole (prompt masked).

    With `pack`, the rows of a micro-batch that share a prompt and a pole (one scenario's
    options of one pole) run as one sequence whose block mask lets each target see the
    prompt and itself only: the same NLL as separate rows, the prompt computed once.

    `prompt_kl` > 0 adds, once per prompt and pole in the micro-batch, that weight times
    the mean KL divergence from the bare base's next-token distributions to the pole's on
    the prompt's own tokens (one extra forward pass without gradients): the poles learn
    to choose without drifting from the base on text they are not trained to answer,
    which keeps the language model of their mixes (perplexity) close to the base's.
    """

    def __init__(self, adapters: PoleAdapters, encoder: Encoder, pack: bool, prompt_kl: float = 0.0):
        self.adapters, self.encoder, self.pack, self.prompt_kl = adapters, encoder, pack, prompt_kl

    @property
    def module(self) -> nn.Module:
        return self.adapters.model

    def parameters(self) -> list[nn.Parameter]:
        return []  # the LoRA factors are all there is

    def batch_loss(self, forward: nn.Module, rows: Sequence[EncodedRow], device: torch.device,
                   step_rows: Sequence[EncodedRow] | None = None) -> tuple[torch.Tensor, int]:
        """(weighted loss summed over rows, tokens of the rows as given) for one micro-batch of the step's `step_rows`."""
        tokens = sum(len(r.ids) for r in rows)
        packed = Encoder.pack(rows) if self.pack else None
        shares = prompt_shares(rows, step_rows, packed)  # the prompt KL counts once per prompt and pole in the step
        batch: Batch | PackedBatch
        if packed is not None:
            batch = self.encoder.collate_packed(packed).to(device, getattr(self.module, "dtype", None))
            inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "position_ids": batch.position_ids}
        else:
            batch = self.encoder.collate(rows).to(device)
            inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        reference = None
        if self.prompt_kl:
            with torch.no_grad():
                self.adapters.off()
                reference = forward(**inputs).logits.float().log_softmax(-1)
        self.adapters.use_route(batch.poles)
        # logits go out of scope before backward: they are the largest activation
        logits = forward(**inputs).logits
        nll = segment_nll(logits, batch) if isinstance(batch, PackedBatch) else row_nll(logits, batch.labels)
        loss = (batch.weights * nll).sum()
        if reference is not None:
            kl = prompt_kl_per_row(logits, reference, batch.prompt_mask())
            loss = loss + self.prompt_kl * (shares.to(kl) * kl).sum()
        return loss, tokens

    def score_heads(self, space: ValueSpace) -> dict[str, dict[str, torch.Tensor]]:
        return {}  # an LLM zoo scores through its base's likelihood


def training_setup(model: nn.Module, tokenizer, scenarios: Sequence[Scenario], space: ValueSpace,
                   config: TrainConfig) -> tuple[PoleAdapters, CausalObjective | ScorerObjective, list, list, list[str]]:
    """(adapters, objective, units in scenario order, their encoded items, a key per unit for the data hash)."""
    assert config.lora is not None and config.max_length is not None and config.prompt_kl is not None  # resolved by `train`
    check_new_adapters(model, config.lora)
    if config.kind == "scorer":
        adapters = add_pole_adapters(model, config.lora, space.pole_slugs)
        units = scorer_rows(scenarios, space, config.pole_weights)
        scorer = ScorerObjective(adapters, tokenizer, config.max_length,
                                 space.poles if config.head_init == "descriptions" else None)
        return adapters, scorer, units, units, [u.key() for u in units]
    rows, adapter_names = method_rows(scenarios, space, config)
    adapters = add_pole_adapters(model, config.lora, adapter_names)
    encoder = Encoder(tokenizer, config.max_length)
    keys = [f"{r.pole}\0{r.prompt}\0{r.target}" for r in rows]
    objective = CausalObjective(adapters, encoder, config.pack, config.prompt_kl)
    return adapters, objective, rows, encode_rows(rows, encoder, space, config), keys


def zoo_poles(adapters: PoleAdapters, space: ValueSpace, config: TrainConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Per-pole LoRA tensors to save: every pole, the shared adapter under every pole, or the single pole."""
    if config.method == "conditioned":
        shared = adapters.pole_state_dict(SHARED)
        return {p: dict(shared) for p in space.pole_slugs}
    if config.method == "single":
        assert config.pole is not None  # __post_init__ refuses method "single" without a pole
        pole = space.pole(config.pole).slug
        return {pole: adapters.pole_state_dict(pole)}
    return {p: adapters.pole_state_dict(p) for p in space.pole_slugs}


def epoch_order(rows: Sequence[PairedRow | ScorerRow], seed: int, epoch: int) -> list[int]:
    """Row indices for one epoch: scenarios shuffled, each scenario's rows kept together."""
    by_scenario: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_scenario.setdefault(row.scenario, []).append(i)
    keys = list(by_scenario)
    random.Random(seed * 100_003 + epoch).shuffle(keys)
    return [i for k in keys for i in by_scenario[k]]


def autocast_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs its matmuls under bfloat16 autocast (the LoRA factors stay float32).

    "auto" takes bf16 on a GPU that computes it and fp32 on a CPU, where bf16 is fast only
    on chips with bf16 instructions (AVX512-BF16, AMX; benchmarks/train_speed.py) and slower
    than fp32 elsewhere, and would make results depend on the chip: ask for it with "bf16".
    """
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PFTError("this GPU does not compute bfloat16: train with --precision fp32 (or auto)")
    return precision == "bf16"


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# -- checkpoints ------------------------------------------------------------------------
def save_checkpoint(folder: Path, params: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer, step: int, meta: dict,
                    rng: dict[str, torch.Tensor] | None = None) -> None:
    """Trained parameters, optimizer moments and progress, as safetensors + JSON, written atomically.

    `rng`: the random generators' states to resume from (default: now), so that a step
    cut short by Ctrl-C is redrawn the same way when it is run again.
    """
    moments = {}
    for i, p in enumerate(params):
        st = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                moments[f"p{i}.{key}"] = st[key].detach().cpu().contiguous()
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))  # a fresh name
        save_file({f"p{i}": p.detach().cpu().contiguous() for i, p in enumerate(params)}, tmp / "adapters.safetensors")
        save_file(moments | (rng or _rng_states()), tmp / "optimizer.safetensors")
        (tmp / "progress.json").write_text(json.dumps({**meta, "step": step}, indent=2))
        replace_folder(tmp, folder)
    except BaseException as err:  # a full disk, a quota, a read-only mount; a Ctrl-C: no staging folder left behind
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(err, (OSError, SafetensorError)):
            raise
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise PFTError(f"writing the checkpoint {folder} failed ({reason}): free space there and rerun with --resume, "
                       "or write --out to another disk") from None


def load_checkpoint(folder: Path, params: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer,
                    meta: dict) -> tuple[int, list[float]]:
    """Restore a checkpoint made with the same `meta`; returns its step and the losses of its last steps."""
    unreadable = f"checkpoint {folder} is unreadable"
    try:
        progress = loads((folder / "progress.json").read_text(encoding="utf-8"), allow_nan=True)
        tensors = load_file(folder / "adapters.safetensors")
        moments = load_file(folder / "optimizer.safetensors")
    except (OSError, ValueError, SafetensorError) as err:
        raise PFTError(f"{unreadable} ({err}): delete it and train without --resume") from None
    if not (isinstance(progress, dict) and isinstance(progress.get("step"), int) and not isinstance(progress["step"], bool)
            and progress["step"] >= 0 and set(tensors) == {f"p{i}" for i in range(len(params))}
            and all(tensors[f"p{i}"].shape == p.shape for i, p in enumerate(params))):
        raise PFTError(f"{unreadable} (its progress or tensors are not those of this run's checkpoints): delete it and "
                       "train without --resume")
    for key, what in (("config", "config"), ("data", "data"), ("base", "base"), ("poles", "list of poles (or --dims order)")):
        if progress.get(key) != meta[key]:  # tensors are stored by pole position: another order would swap them
            raise PFTError(f"checkpoint {folder} was made with a different {what}: train without --resume, or delete the checkpoint")
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"p{i}"])
            if f"p{i}.exp_avg" in moments:
                optimizer.state[p] = {
                    "step": torch.tensor(float(progress["step"])),
                    "exp_avg": moments[f"p{i}.exp_avg"].to(p.device),
                    "exp_avg_sq": moments[f"p{i}.exp_avg_sq"].to(p.device),
                }
    _restore_rng(moments)
    return int(progress["step"]), [float(x) for x in progress.get("recent_losses", [])]


def _rng_states() -> dict[str, torch.Tensor]:
    """The random generators' states, so a resumed run draws the dropout masks the uninterrupted one would."""
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["rng.cuda"] = torch.cuda.get_rng_state()
    return states


def _restore_rng(saved: dict[str, torch.Tensor]) -> None:
    if "rng.cpu" in saved:  # checkpoints written before the states were saved resume without them
        torch.set_rng_state(saved["rng.cpu"])
    if "rng.cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["rng.cuda"])


# -- distributed ------------------------------------------------------------------------
def _world() -> tuple[int, int]:
    """(rank, world size); joins the process group that torchrun describes, if any."""
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True outside torchrun and on rank 0 inside it: only that process writes the zoo."""
    return not dist.is_initialized() or dist.get_rank() == 0


def pick_device(device: str | None) -> torch.device:
    """The device to train on ("auto": this process's GPU if there is one, else the CPU); a device this machine
    lacks is refused here, so the CLI can check it before loading anything."""
    if device and device != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise PFTError(f"--device '{device}' is not a device: use auto, cpu, cuda or cuda:N") from None
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if chosen.type == "cuda" and chosen.index is None and "LOCAL_RANK" in os.environ:  # torchrun: a GPU each
            chosen = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if chosen.type == "cuda" and (chosen.index or 0) >= found:
            fix = f"cuda:0 to cuda:{found - 1}" if found else "auto or cpu"
            raise PFTError(f"--device '{device}': this machine has {found} CUDA GPU(s): use {fix}")
        return chosen
    if torch.cuda.is_available():
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", rank)
    return torch.device("cpu")


# -- the trainer ------------------------------------------------------------------------
@dataclass
class TrainResult:
    zoo: Zoo
    losses: list[float]
    tokens_per_second: float
    seconds: float


def train_zoo(
    model: nn.Module,
    tokenizer,
    scenarios: Sequence[Scenario],
    space: ValueSpace,
    config: TrainConfig,
    base_id: str,
    base_revision: str | None = None,
    dev: Sequence[Scenario] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    checkpoint_every: int = 50,
    progress: bool = True,
    device: str | None = None,
    stop_after: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    with_head: bool = True,
) -> TrainResult:
    """Train one LoRA adapter per pole of `space` plus the mixing head; returns the zoo.

    `model` is frozen and wrapped in place. `stop_after` ends the run early after
    that many optimizer steps (with a checkpoint), as an interrupt would. Without
    `with_head` the zoo has no mixing head (`extend` grows the old zoo's instead).
    """
    config = config.resolved()  # a new config: settings changed after it was built (`config.lora = ...`) are checked too
    assert config.lora is not None and config.epochs is not None and config.lr is not None
    if checkpoint_every < 1:
        raise PFTError(f"--checkpoint-every must be at least 1 step, got {checkpoint_every}")
    rank, world = _world()
    if config.head_encoder:
        head_encoder(config.head_encoder)  # a bad name fails now, not after training (the load is cached)
    if config.batch_size % (world * config.grad_accum):
        raise PFTError(f"--batch-size {config.batch_size} must be divisible by processes x --grad-accum ({world * config.grad_accum})")
    dev_device = pick_device(device)
    torch.manual_seed(config.seed)
    base = BaseRef(base_id, base_revision, fingerprint(model))
    to_device(model, dev_device)
    adapters, objective, rows, encoded, keys = training_setup(model, tokenizer, scenarios, space, config)
    adapters.state.dropout = config.lora_dropout
    if not rows:
        raise PFTError("no training rows: the data holds no options labelled with a pole of the chosen dimensions")
    if world > 1 and len(rows) < config.batch_size:  # a process without rows would skip the gradient sync
        raise PFTError(f"{len(rows)} training rows do not fill one batch of {config.batch_size} over {world} processes: "
                       "lower --batch-size or train in one process")
    steps_per_epoch = max(1, len(rows) // config.batch_size)
    total_steps = max(1, round(steps_per_epoch * config.epochs))
    params = list(adapters.parameters()) + objective.parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    meta = {"config": config.fingerprint(), "data": _data_hash(keys), "base": base.fingerprint, "total_steps": total_steps,
            "poles": list(adapters.pole_slugs)}
    step = 0
    losses: list[float] = []
    if resume and checkpoint_dir and (checkpoint_dir / "progress.json").exists():
        step, losses = load_checkpoint(checkpoint_dir, params, optimizer, meta)
    ddp = None
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(objective.module, device_ids=[dev_device.index] if dev_device.type == "cuda" else None)
    forward = ddp or objective.module
    dimension_of = [space.dimension_of(p).slug for p in adapters.pole_slugs] if config.orthogonality else []
    autocast = autocast_bf16(config.precision, dev_device)
    micro = config.batch_size // (world * config.grad_accum)
    tokens, started = 0, time.perf_counter()

    def checkpoint(rng: dict[str, torch.Tensor] | None = None) -> None:
        if checkpoint_dir and rank == 0:  # the last losses too, so a resumed run reports the same final loss
            save_checkpoint(checkpoint_dir, params, optimizer, step, meta | {"recent_losses": losses[-10:]}, rng)

    bar = tqdm(total=total_steps, initial=step, desc="training poles", disable=not progress or rank != 0, unit="step")
    model.train()
    step_rng = _rng_states()  # a Ctrl-C within a step resumes by drawing it again from here
    try:
        while step < total_steps:
            if stop_after is not None and step >= stop_after:
                break
            order = epoch_order(rows, config.seed, step // steps_per_epoch)
            start = (step % steps_per_epoch) * config.batch_size
            global_batch = [encoded[i] for i in order[start : start + config.batch_size]]
            mine = global_batch[rank::world]
            step_loss = 0.0
            for g in range(group_count := config.grad_accum):
                chunk = mine[g * micro : (g + 1) * micro]
                if not chunk:
                    continue
                sync = ddp.no_sync() if ddp is not None and g < group_count - 1 else nullcontext()
                with sync, torch.autocast(dev_device.type, dtype=torch.bfloat16, enabled=autocast):
                    chunk_loss, chunk_tokens = objective.batch_loss(forward, chunk, dev_device, global_batch)
                    # sum over this process's rows / rows in the global batch; DDP averages over processes
                    loss = chunk_loss / len(global_batch) * world
                    if dimension_of and g == 0:  # every process adds the same term; DDP averages it back to one
                        loss = loss + config.orthogonality * adapters.cross_dimension_overlap(dimension_of)
                loss.backward()
                step_loss += float(chunk_loss.detach())
                tokens += chunk_tokens
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(step, total_steps, config.warmup)
            step_mean = _global_mean(step_loss, len(global_batch), world, dev_device)  # the same on every process
            if not math.isfinite(step_mean):  # its gradients would turn every pole's factors to NaN: stop before the update
                raise PFTError(f"training diverged at step {step + 1}/{total_steps} (the loss is {step_mean}): lower --lr "
                               f"(now {config.lr:g}), or train with --precision fp32, and start again")
            with _interrupts_held():  # a Ctrl-C here ends the run with this step applied whole, counted and its loss kept
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                step_rng = _rng_states()  # where the next step draws from: what a Ctrl-C from here on saves
                losses.append(step_mean)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update(1)
            if on_step:
                on_step(step, losses[-1])
            if step % checkpoint_every == 0 or step in (stop_after, total_steps):  # the last: the head may yet fail
                checkpoint()
    except KeyboardInterrupt:
        checkpoint(step_rng)
        raise PFTError(f"interrupted at step {step}/{total_steps}: rerun the same command with --resume to continue") from None
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    model.eval()
    for p in params:
        p.requires_grad_(False)
    adapters.off()
    if stop_after is not None and step < total_steps:
        raise PFTError(f"stopped at step {step}/{total_steps}: rerun with --resume to continue")
    try:
        head, head_report = train_head(model, tokenizer, scenarios, dev, space, config) if with_head else (None, None)
    except KeyboardInterrupt:  # the adapters are in the last checkpoint: a resume goes straight to the head
        raise PFTError("interrupted while fitting the mixing head: rerun the same command with --resume to finish") from None
    training = {
        "kind": config.kind,
        "method": config.method,
        **({"pole": space.pole(cast(str, config.pole)).slug} if config.method == "single" else {}),  # "single" has a pole
        "rows": len(rows),
        "scenarios": len(scenarios),
        "epochs": config.epochs,
        "steps": total_steps,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "max_length": config.max_length,
        **({"prompt_kl": config.prompt_kl} if config.kind == "llm" else {"head_init": config.head_init}),
        **({"orthogonality": config.orthogonality} if config.orthogonality else {}),
        **({"lora_dropout": config.lora_dropout} if config.lora_dropout else {}),
        "precision": "bf16" if autocast else "fp32",
        "seed": config.seed,
        "final_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4) if losses else None,
        "processes": world,
        **({"head_dev_pole_accuracy": json_number(head_report["pole_accuracy"]),  # null without labelled dev options
            "head_dev_dimension_accuracy": json_number(head_report["dimension_accuracy"]),
            "head_dev_examples": head_report["examples"]} if head_report else {}),
        "pole_weights": config.pole_weights,
    }
    zoo = Zoo(space=space, spec=config.lora, base=base, poles=zoo_poles(adapters, space, config), head=head,
              training=training, kind=config.kind, score_heads=objective.score_heads(space))
    return TrainResult(zoo, losses, tokens / max(seconds, 1e-9), seconds)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back until the block ends, then deliver it as it would have been."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        signal.raise_signal(signal.SIGINT)


def _global_mean(local_sum: float, global_rows: int, world: int, device: torch.device) -> float:
    """The step's weighted loss over the whole global batch, summed across processes (on the
    process's device: NCCL reduces GPU tensors only)."""
    if world > 1:
        t = torch.tensor([local_sum], device=device)
        dist.all_reduce(t)
        local_sum = float(t)
    return local_sum / global_rows


def _data_hash(keys: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for key in keys:
        digest.update(f"{key}\n".encode())
    return digest.hexdigest()[:16]


def held_out(scenarios: Sequence[Scenario], seed: int) -> tuple[list[Scenario], list[Scenario]]:
    """(the rest, a tenth held out at random) of the scenarios: dev data for the mixing head when none is given."""
    order = list(range(len(scenarios)))
    random.Random(seed).shuffle(order)
    cut = max(1, len(scenarios) // 10) if len(scenarios) > 1 else 0
    return [scenarios[i] for i in order[cut:]], [scenarios[i] for i in order[:cut]]


def labelled_options(items: Sequence[Scenario]) -> tuple[list[str], list[str], list[str]]:
    """(texts, poles, dimensions) of every labelled option: what the mixing head learns and is measured on."""
    triples = [(o.text, o.pole, s.dimension) for s in items for o in s.options if o.pole]
    return [t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples]


def train_head(model: nn.Module, tokenizer, scenarios: Sequence[Scenario], dev: Sequence[Scenario] | None,
               space: ValueSpace, config: TrainConfig) -> tuple[MixingHead, dict]:
    """Fit the mixing head on features of option texts: the frozen base's, or `config.head_encoder`'s.

    Without dev data, a tenth of the scenarios is held out to measure it.
    """
    if dev is None:
        scenarios, dev = held_out(scenarios, config.seed)
    texts, poles, dims = labelled_options(scenarios)
    encoder = head_encoder(config.head_encoder) if config.head_encoder else None
    features = head_features(model, tokenizer, texts, encoder)
    head = MixingHead(features.shape[1], space.pole_slugs, [d.slug for d in space], encoder)
    head.fit(features, poles, dims, steps=config.head_steps, seed=config.seed)
    dev_texts, dev_poles, dev_dims = labelled_options(dev)
    report = head.evaluate(head_features(model, tokenizer, dev_texts, encoder), dev_poles, dev_dims) if dev_texts else None
    return head.eval(), asdict(report) if report else {"pole_accuracy": float("nan"), "dimension_accuracy": float("nan"), "examples": 0}
