"""Training speed and memory of the paired multi-pole trainer, measured side by side.

Four figures, all on the same base model, the same rows and the same batch size:

1. tokens/s of `pft_adapters.train.train_zoo` itself (every pole of every dimension,
   each row routed to its own pole's LoRA factors, rows sharing a prompt and a pole
   packed into one sequence; tokens counted as the rows' own, unpacked) against a plain peft SFT loop with
   one LoRA adapter of the same rank and target modules, the same tokenization, dynamic
   padding, loss and optimizer. They run interleaved in one process: after each step of
   train_zoo (its `on_step` hook) the peft loop takes the same batch, so both see the
   same rows and the same machine; the figure is the median of the per-step ratios.
   The first step's losses must agree (both adapters start as the identity), which
   proves the batches match. Target: >= 0.9x.
2. peak training memory of the same two loops, each in a fresh subprocess: peak RSS
   over `--memory-steps` steps minus RSS just before training (base loaded, adapters
   not yet made; kernels warmed on a throwaway tiny base). Target: <= 1.1x.
3. time to train a whole zoo with train_zoo (all poles, dynamic padding) against a
   loop in the style of the PFT paper on the same rows (train_zoo as in 1.): every row padded to 512
   tokens, the pole's description prepended to the prompt, two forward passes per pair
   (one per pole), one shared peft adapter. The two loops alternate step by step. The
   mixing head, which the paper loop does not make, is timed and shown but left out
   of the ratio. Target: <= 0.7x.
4. tokens/s of train_zoo under `--precision bf16` (matmuls under bfloat16 autocast,
   adapters in float32) against `--precision fp32`, the same rows and batches: the two
   runs alternate, twice, and the figure is the median over timed steps of the per-step
   ratio (the same step index is the same batch in every run). Target: >= 1.2x on a CPU
   that computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere reported only, since
   emulated bf16 is slower and `--precision auto` keeps fp32 on a CPU.

By default torch runs on one thread and the loops are timed in process CPU time, so
that other jobs on a shared machine do not decide the ratios (`--threads`,
`--clock wall` to change). The base is a preset of `pft_adapters.base` ("small") with
random weights (speed does not depend on what the weights are) and a BPE tokenizer
trained on the corpus; nothing is written outside a temporary folder.

    python benchmarks/train_speed.py                     # full run (a few minutes)
    python benchmarks/train_speed.py --quick             # short check (under a minute on a quiet machine)
    python benchmarks/train_speed.py --json figures.json # also write the figures
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import peft
import torch
from torch.nn import functional as F
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from pft_adapters.base import build_model, corpus_texts, train_tokenizer
from pft_adapters.batching import Batch, Encoder, EncodedRow, row_nll
from pft_adapters.data import PairedRow, Scenario, load_scenarios, paired_rows
from pft_adapters.errors import PFTError
from pft_adapters.layers import LoraSpec
from pft_adapters.train import TrainConfig, encode_rows, epoch_order, lr_factor, train_zoo
from pft_adapters.values import ValueSpace

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "vcd" / "vcd_train.json"
PAPER_WIDTH = 512  # the paper-style loop pads every row to this many tokens

TARGET_SPEED = 0.9  # ours / peft tokens per second, at least
TARGET_MEMORY = 1.1  # ours / peft peak training memory, at most
TARGET_ZOO_TIME = 0.7  # ours / paper-style wall time for the whole zoo, at most
TARGET_BF16 = 1.2  # bf16 / fp32 tokens per second of train_zoo, at least, where the CPU computes bf16 natively
PRECISION_ROUNDS = 2  # alternating fp32 and bf16 runs of train_zoo


@dataclass
class Settings:
    data: str
    scenarios: int
    size: str
    batch_size: int
    warmup: int
    steps: int
    memory_steps: int
    seed: int
    threads: int
    clock: str = "cpu"  # "cpu": process CPU time; "wall": elapsed time
    head_steps: int = TrainConfig.head_steps

    def timer(self) -> Callable[[], float]:
        return time.process_time if self.clock == "cpu" else time.perf_counter


# -------------------------------------------------------------------------- shared setup


def take_slice(scenarios: list[Scenario], n: int) -> list[Scenario]:
    """The first `n` scenarios taken round-robin over dimensions, so every pole is in the slice."""
    by_dim: dict[str, list[Scenario]] = {}
    for s in scenarios:
        by_dim.setdefault(s.dimension, []).append(s)
    mixed = [s for group in itertools.zip_longest(*by_dim.values()) for s in group if s is not None]
    return mixed[:n]


def train_config(s: Settings, epochs: float) -> TrainConfig:
    """The trainer's settings; the prompt KL (an extra forward pass without gradients) is off, so that every
    loop compared does the same work: its cost shows in vcd_quality's training times."""
    return TrainConfig(lora=LoraSpec(), epochs=epochs, batch_size=s.batch_size, seed=s.seed, head_steps=s.head_steps,
                       prompt_kl=0.0).resolved()


def encoder_for(tokenizer, config: TrainConfig) -> Encoder:
    assert config.max_length is not None  # resolved by train_config
    return Encoder(tokenizer, config.max_length)


def epoch_steps(n_rows: int, s: Settings, config: TrainConfig) -> int:
    """Optimizer steps of `config.epochs` over n_rows, counted as train_zoo counts them."""
    assert config.epochs is not None  # resolved by train_config
    return max(1, round(n_rows // s.batch_size * config.epochs))


def make_base(s: Settings, tokenizer) -> LlamaForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        return build_model(s.size, tokenizer).eval()


def trainer_batch(n_rows: int, rows: list[PairedRow], config: TrainConfig, step: int) -> list[int]:
    """Row indices of optimizer step `step` of train_zoo (one process, no accumulation)."""
    per_epoch = max(1, n_rows // config.batch_size)
    order = epoch_order(rows, config.seed, step // per_epoch)
    start = (step % per_epoch) * config.batch_size
    return order[start : start + config.batch_size]


def train_steps(model, tokenizer, scenarios, space, config: TrainConfig, steps: int, on_step=None,
                base_id: str = "benchmark-base") -> None:
    """`steps` optimizer steps of train_zoo (its `stop_after`), the zoo itself not wanted."""
    try:
        train_zoo(model, tokenizer, scenarios, space, config, base_id=base_id, progress=False, stop_after=steps,
                  on_step=on_step)
    except PFTError:
        pass  # "stopped at step N": expected


class PeftSFT:
    """A plain single-adapter SFT loop: peft LoRA, the same rows, padding, loss and optimizer as ours."""

    def __init__(self, base: torch.nn.Module, config: TrainConfig, total_steps: int):
        lora = config.lora
        assert lora is not None and config.lr is not None  # resolved by train_config
        peft_config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=list(lora.target_modules),  # type: ignore[arg-type]  # peft types lora_alpha as int; it takes a float
                                      lora_dropout=0.0)
        self.model = peft.get_peft_model(base, peft_config)
        self.model.train()
        self.config, self.lr, self.total_steps = config, config.lr, total_steps
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=config.weight_decay)

    def step(self, batches: list[Batch], n_rows: int, step: int) -> float:
        """One optimizer step over one or more forward passes whose losses are summed; returns the mean row loss."""
        loss = torch.stack([
            (batch.weights * row_nll(self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                                     batch.labels)).sum()
            for batch in batches]).sum()
        (loss / n_rows).backward()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor(step, self.total_steps, self.config.warmup)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()) / n_rows


# -------------------------------------------------------------------------- memory


def _current_rss_kib() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_kib() -> int:
    """Peak RSS of this process's own memory. Linux's VmHWM first: ru_maxrss also counts the parent's
    RSS at fork time (exec records the old image's peak), which would hide the child's own peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _reset_peak() -> bool:
    """Reset the process's peak-RSS mark where Linux allows it (clear_refs 5), so the peak is training's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc), so the next peak is not hidden by reuse."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _warm_up(tokenizer, scenarios: list[Scenario], space: ValueSpace, s: Settings) -> None:
    """One step of both loops on a tiny throwaway base: the first use of a kernel maps code pages
    of the torch libraries, which would otherwise count as training memory of the arm run first."""
    tiny = Settings(**(asdict(s) | {"size": "tiny", "batch_size": 2}))
    config = train_config(tiny, epochs=1000.0)
    train_steps(make_base(tiny, tokenizer), tokenizer, scenarios[:2], space, config, 1, base_id="warm-up")
    rows = paired_rows(scenarios[:1])
    encoder = encoder_for(tokenizer, config)
    encoded = encode_rows(rows, encoder, space, config)
    PeftSFT(make_base(tiny, tokenizer), config, 1).step([encoder.collate(encoded[:2])], 2, 0)
    _release_free_memory()


def memory_child(arm: str, s: Settings, tokenizer_dir: str) -> dict:
    """Run `s.memory_steps` training steps of one arm in this (fresh) process and report its peak memory."""
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    space = ValueSpace.builtin()
    scenarios = take_slice(load_scenarios(s.data, space), s.scenarios)
    _warm_up(tokenizer, scenarios, space, s)
    model = make_base(s, tokenizer)
    config = train_config(s, epochs=1000.0)  # never reaches the end: stop_after cuts it
    _release_free_memory()
    exact = _reset_peak()
    current = _current_rss_kib() if exact else None
    before = current if current is not None else _peak_rss_kib()
    losses: list[float] = []
    if arm == "ours":
        train_steps(model, tokenizer, scenarios, space, config, s.memory_steps, lambda step, loss: losses.append(loss))
    else:
        rows = paired_rows(scenarios)
        encoder = encoder_for(tokenizer, config)
        encoded = encode_rows(rows, encoder, space, config)
        sft = PeftSFT(model, config, total_steps=epoch_steps(len(rows), s, config))
        for step in range(s.memory_steps):
            chunk = [encoded[i] for i in trainer_batch(len(rows), rows, config, step)]
            losses.append(sft.step([encoder.collate(chunk)], len(chunk), step))
    peak = _peak_rss_kib()
    return {"arm": arm, "before_kib": before, "peak_kib": peak, "training_kib": peak - before,
            "exact_peak": exact, "losses": losses}


def run_memory_children(s: Settings, tokenizer_dir: str) -> dict[str, dict]:
    """Both arms at once, one fresh single-threaded process each (memory does not depend on timing)."""
    procs = {}
    for arm in ("ours", "peft"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", arm, "--tokenizer-dir", tokenizer_dir,
               "--data", s.data, "--scenarios", str(s.scenarios), "--size", s.size, "--batch-size", str(s.batch_size),
               "--memory-steps", str(s.memory_steps), "--seed", str(s.seed), "--threads", "1"]
        # glibc keeps freed blocks for reuse, so RSS would also measure how the allocator happened to
        # recycle memory (tens of MiB either way from run to run); with every block over 128 KiB mapped
        # and unmapped on its own, RSS follows the live tensors and the peak is repeatable.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
        procs[arm] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = {}
    for arm, proc in procs.items():
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"memory subprocess for '{arm}' failed:\n{stderr[-3000:]}")
        out[arm] = json.loads(stdout.strip().splitlines()[-1])
    return out


# -------------------------------------------------------------------------- 1. tokens/s


@dataclass
class Interleaved:
    """on_step hook of train_zoo: after each of our steps, run the same batch through the peft loop."""

    sft: PeftSFT
    encoder: Encoder
    encoded: list[EncodedRow]
    rows: list[PairedRow]
    config: TrainConfig
    clock: Callable[[], float]
    ours_seconds: list[float] = field(default_factory=list)
    peft_seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    ours_losses: list[float] = field(default_factory=list)
    peft_losses: list[float] = field(default_factory=list)
    resumed: float = 0.0

    def __call__(self, step: int, loss: float) -> None:
        now = self.clock()
        self.ours_seconds.append(now - self.resumed)
        self.ours_losses.append(loss)
        index = step - 1  # train_zoo reports the number of steps done
        chunk = [self.encoded[i] for i in trainer_batch(len(self.rows), self.rows, self.config, index)]
        self.tokens.append(sum(len(r.ids) for r in chunk))
        start = self.clock()
        self.peft_losses.append(self.sft.step([self.encoder.collate(chunk)], len(chunk), index))
        self.peft_seconds.append(self.clock() - start)
        self.resumed = self.clock()


def measure_throughput(s: Settings, base, tokenizer, scenarios, space) -> dict:
    config = train_config(s, epochs=1000.0)
    rows = paired_rows(scenarios)
    encoder = encoder_for(tokenizer, config)
    encoded = encode_rows(rows, encoder, space, config)
    total = epoch_steps(len(rows), s, config)
    hook = Interleaved(PeftSFT(copy.deepcopy(base), config, total), encoder, encoded, rows, config, s.timer())
    n = s.warmup + s.steps
    hook.resumed = hook.clock()
    train_steps(copy.deepcopy(base), tokenizer, scenarios, space, config, n, hook)
    if len(hook.ours_seconds) != n:
        raise RuntimeError(f"train_zoo ran {len(hook.ours_seconds)} steps, expected {n}")
    # Both adapters start as the identity (B = 0), so the first step's loss must agree if the
    # two loops really saw the same rows, padding and loss.
    if not math.isclose(hook.ours_losses[0], hook.peft_losses[0], rel_tol=1e-4):
        raise RuntimeError(f"first-step losses differ (ours {hook.ours_losses[0]:.6f}, peft {hook.peft_losses[0]:.6f}): "
                           "the two loops did not see the same batch")
    # Each timed step ran the same batch through both loops back to back, so the per-step
    # ratio is a paired comparison; its median shrugs off a step slowed by other load.
    timed = slice(s.warmup, n)
    tokens, ours_s, peft_s = hook.tokens[timed], hook.ours_seconds[timed], hook.peft_seconds[timed]
    ratios = [p / o for o, p in zip(ours_s, peft_s)]
    return {"ours_tokens_per_s": statistics.median(t / o for t, o in zip(tokens, ours_s)),
            "peft_tokens_per_s": statistics.median(t / p for t, p in zip(tokens, peft_s)),
            "ratio": statistics.median(ratios), "ratio_of_sums": sum(peft_s) / sum(ours_s), "step_ratios": ratios,
            "timed_steps": s.steps, "warmup_steps": s.warmup, "timed_tokens": sum(tokens),
            "first_loss": hook.ours_losses[0], "ours_step_s": ours_s, "peft_step_s": peft_s}


# -------------------------------------------------------------------------- 3. whole zoo


def pad_to(batch: Batch, width: int, pad_id: int) -> Batch:
    extra = width - batch.input_ids.shape[1]
    return Batch(F.pad(batch.input_ids, (0, extra), value=pad_id), F.pad(batch.attention_mask, (0, extra), value=0),
                 F.pad(batch.labels, (0, extra), value=-100), batch.poles, batch.weights)


class PaperStyle:
    """The paper's recipe on our pairs: description in the prompt, 512-token rows, a pass per pole, one adapter.

    A pair is one option of each pole of a scenario; a scenario with more options of one
    pole than of the other leaves a one-sided pair, so exactly the rows of our run are trained.
    """

    def __init__(self, base, tokenizer, rows: list[PairedRow], space: ValueSpace, config: TrainConfig):
        self.encoder = Encoder(tokenizer, PAPER_WIDTH)
        by_scenario: dict[int, list[PairedRow]] = {}
        for row in rows:
            by_scenario.setdefault(row.scenario, []).append(row)
        self.units: list[tuple[EncodedRow | None, EncodedRow | None]] = []
        for group in by_scenario.values():
            dim = space.dimension_of(group[0].pole)
            first, second = ([self._encode(r, space) for r in group if r.pole == pole.slug] for pole in dim.poles)
            self.units += list(itertools.zip_longest(first, second))
        self.per_step = max(1, config.batch_size // 2)  # pairs per step: the same rows per step as ours
        self.total_steps = math.ceil(len(self.units) / self.per_step)
        self.sft = PeftSFT(base, config, self.total_steps)
        self.done = 0

    def _encode(self, row: PairedRow, space: ValueSpace) -> EncodedRow:
        prompt = f"{space.pole(row.pole).description}\n\n{row.prompt}"
        return self.encoder(prompt, row.target, space.pole_index(row.pole))

    @property
    def rows(self) -> int:
        return sum(r is not None for unit in self.units for r in unit)

    def step(self) -> None:
        units = self.units[self.done * self.per_step : (self.done + 1) * self.per_step]
        sides = [[row for u in units if (row := u[k]) is not None] for k in (0, 1)]
        batches = [pad_to(self.encoder.collate(side), PAPER_WIDTH, self.encoder.pad_id) for side in sides if side]
        self.sft.step(batches, sum(len(side) for side in sides), self.done)
        self.done += 1


def measure_zoo_time(s: Settings, base, tokenizer, scenarios, space) -> dict:
    config = train_config(s, epochs=1.0)
    clock = s.timer()
    rows = paired_rows(scenarios)
    steps = epoch_steps(len(rows), s, config)
    used_idx = [i for step in range(steps) for i in trainer_batch(len(rows), rows, config, step)]
    used = [rows[i] for i in used_idx]  # exactly the rows train_zoo trains on in its one epoch

    # warm the paper-style path (new 512-token shapes) on a throwaway copy
    warm = PaperStyle(copy.deepcopy(base), tokenizer, used[: s.batch_size], space, config)
    warm.step()
    del warm
    gc.collect()

    start = clock()
    paper = PaperStyle(copy.deepcopy(base), tokenizer, used, space, config)
    paper_seconds = clock() - start  # setup (adapter, encoding) counts for it, as for ours
    hook_seconds = 0.0
    ours_loop_end = 0.0

    def interleave(step: int, loss: float) -> None:
        nonlocal paper_seconds, hook_seconds, ours_loop_end
        t0 = clock()
        if paper.done < paper.total_steps:
            paper.step()
        t1 = clock()
        paper_seconds += t1 - t0
        hook_seconds += t1 - t0
        ours_loop_end = t1

    start = clock()
    result = train_zoo(copy.deepcopy(base), tokenizer, scenarios, space, config, base_id="benchmark-base",
                       progress=False, on_step=interleave)
    end = clock()
    head_seconds = end - ours_loop_end  # the mixing head, trained after the last step; the paper loop has none
    ours_seconds = ours_loop_end - start - hook_seconds
    while paper.done < paper.total_steps:
        t0 = clock()
        paper.step()
        paper_seconds += clock() - t0
    return {"ours_seconds": ours_seconds, "ours_head_seconds": head_seconds, "paper_seconds": paper_seconds,
            "ratio": ours_seconds / paper_seconds, "ratio_with_head": (ours_seconds + head_seconds) / paper_seconds,
            "ours_steps": len(result.losses), "paper_steps": paper.total_steps,
            "rows": len(used), "paper_rows": paper.rows, "ours_padded_tokens": _padded(used_idx, rows, tokenizer, space, config),
            "paper_padded_tokens": paper.rows * PAPER_WIDTH}


def _padded(used_idx: list[int], rows: list[PairedRow], tokenizer, space: ValueSpace, config: TrainConfig) -> int:
    """Token positions our run computes (rows x batch width, dynamic padding)."""
    encoder = encoder_for(tokenizer, config)
    lengths = [len(r.ids) for r in encode_rows([rows[i] for i in used_idx], encoder, space, config)]
    b = config.batch_size
    return sum(max(lengths[i : i + b]) * len(lengths[i : i + b]) for i in range(0, len(lengths), b))


# -------------------------------------------------------------------------- 4. precision


def measure_precision(s: Settings, base, tokenizer, scenarios, space) -> dict:
    """Per-step time of train_zoo under bf16 autocast and fp32, alternating runs of each."""
    n = s.warmup + s.steps
    clock = s.timer()
    seconds: dict[str, list[list[float]]] = {"fp32": [], "bf16": []}
    first_loss: dict[str, float] = {}
    for precision in ("fp32", "bf16") * PRECISION_ROUNDS:
        times: list[float] = []
        last = clock()

        def hook(step: int, loss: float) -> None:
            nonlocal last
            now = clock()
            times.append(now - last)
            last = now
            first_loss.setdefault(precision, loss)

        config = replace(train_config(s, epochs=1000.0), precision=precision)
        train_steps(copy.deepcopy(base), tokenizer, scenarios, space, config, n, hook)
        seconds[precision].append(times[s.warmup :])
    if not math.isclose(first_loss["fp32"], first_loss["bf16"], rel_tol=2e-2):  # bf16 rounding, the same batch
        raise RuntimeError(f"first-step losses differ (fp32 {first_loss['fp32']:.4f}, bf16 {first_loss['bf16']:.4f}): "
                           "the two runs did not see the same batch")
    ratios = [f / b for fp32, bf16 in zip(seconds["fp32"], seconds["bf16"]) for f, b in zip(fp32, bf16)]
    return {"ratio": statistics.median(ratios), "fp32_step_s": statistics.median(sum(seconds["fp32"], [])),
            "bf16_step_s": statistics.median(sum(seconds["bf16"], [])), "step_ratios": ratios,
            "native_bf16": native_bf16()}


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), as oneDNN reports it."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


# -------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="VCD training file (default: ../shared/data/vcd/vcd_train.json from the repo root)")
    p.add_argument("--scenarios", type=int, help="scenarios in the slice, taken round-robin over dimensions (default 36; --quick 6)")
    p.add_argument("--size", help="base preset of pft_adapters.base (default small)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per optimizer step, for every loop (default 8)")
    p.add_argument("--warmup", type=int, help="untimed steps before the tokens/s measurement (default 2; --quick 1)")
    p.add_argument("--steps", type=int, help="timed steps per loop for tokens/s (default 8; --quick 2)")
    p.add_argument("--memory-steps", type=int, help="training steps in each memory subprocess (default 3; --quick 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared machine, threads that wait for each other turn other jobs' load into noise)")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="time the loops in process CPU time (default; what the work costs, whatever else runs) or elapsed wall time")
    p.add_argument("--quick", action="store_true", help="a short version for checks (fewer scenarios and steps)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    p.add_argument("--child", choices=["ours", "peft"], help=argparse.SUPPRESS)
    p.add_argument("--tokenizer-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings(a: argparse.Namespace) -> Settings:
    q = a.quick

    def pick(value, full, quick):
        return value if value is not None else (quick if q else full)

    return Settings(data=str(Path(a.data).resolve()), scenarios=pick(a.scenarios, 36, 6), size=a.size or "small",
                    batch_size=a.batch_size, warmup=pick(a.warmup, 2, 1), steps=pick(a.steps, 8, 2),
                    memory_steps=pick(a.memory_steps, 3, 1), seed=a.seed, threads=a.threads, clock=a.clock,
                    head_steps=30 if q else TrainConfig.head_steps)


def adapter_state_mib(base: torch.nn.Module, spec: LoraSpec, poles: int) -> float:
    """LoRA parameters + gradients + two AdamW moments, fp32, for `poles` adapters."""
    per_pole = sum(spec.r * (m.in_features + m.out_features) for name, m in base.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in spec.target_modules)
    return per_pole * poles * 4 * 4 / 2**20


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    s = settings(a)
    if a.child:
        print(json.dumps(memory_child(a.child, s, a.tokenizer_dir)))
        return 0
    if not Path(s.data).is_file():
        print(f"train_speed: data file {s.data} not found; pass --data PATH to a VCD .json file", file=sys.stderr)
        return 2
    started = time.perf_counter()
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    space = ValueSpace.builtin()
    tokenizer = train_tokenizer(corpus_texts(s.data))
    scenarios = take_slice(load_scenarios(s.data, space), s.scenarios)
    rows = paired_rows(scenarios)
    poles = sorted({r.pole for r in rows})
    base = make_base(s, tokenizer)
    spec = LoraSpec()
    print(f"train_speed: '{s.size}' base ({base.num_parameters() / 1e6:.2f}M params, random weights), "
          f"{len(scenarios)} scenarios / {len(rows)} rows of {Path(s.data).name}, {len(poles)} poles, "
          f"batch {s.batch_size}, LoRA r={spec.r} on {len(spec.target_modules)} modules, "
          f"torch {torch.__version__}, peft {peft.__version__}; {s.threads} thread(s), times in "
          f"{'process CPU time' if s.clock == 'cpu' else 'wall time'}", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if s.clock == "wall" and load > (os.cpu_count() or 1):
        print(f"  note: load average {load:.1f} on {os.cpu_count()} CPUs: other processes compete for the CPU, so every "
              "timing is slowed and noisy; the ratios come from interleaved runs on the same batches, but consider "
              "rerunning on a quiet machine (or with --clock cpu)", flush=True)

    phases = {"setup": time.perf_counter() - started}
    mark = time.perf_counter()
    throughput = measure_throughput(s, base, tokenizer, scenarios, space)
    phases["tokens_per_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    speed_ok = throughput["ratio"] >= TARGET_SPEED
    print(f"  tokens/s      ours {throughput['ours_tokens_per_s']:8.0f}   peft single adapter {throughput['peft_tokens_per_s']:8.0f}"
          f"   ratio {throughput['ratio']:.2f}x   target >= {TARGET_SPEED:.2f}x   {verdict(speed_ok)}"
          f"   (medians over {s.steps} timed steps, each batch through both loops back to back;"
          f" ratio of summed times {throughput['ratio_of_sums']:.2f}x)", flush=True)

    with tempfile.TemporaryDirectory(prefix="pft-train-speed-") as tmp:
        tokenizer.save_pretrained(tmp)
        children = run_memory_children(s, tmp)
    mem_ours, mem_peft = children["ours"], children["peft"]
    phases["memory"] = time.perf_counter() - mark
    mark = time.perf_counter()
    if not math.isclose(mem_ours["losses"][0], mem_peft["losses"][0], rel_tol=1e-4):
        raise RuntimeError("memory subprocesses did not train on the same first batch")
    memory_ratio = mem_ours["training_kib"] / max(1, mem_peft["training_kib"])
    memory_ok = memory_ratio <= TARGET_MEMORY
    mib = 1024
    print(f"  peak memory   ours {mem_ours['training_kib'] / mib:6.0f} MiB   peft single adapter {mem_peft['training_kib'] / mib:6.0f} MiB"
          f"   ratio {memory_ratio:.2f}x   target <= {TARGET_MEMORY:.2f}x   {verdict(memory_ok)}"
          f"   (RSS peak of {s.memory_steps} step(s) over RSS before training, fresh process each; adapter params + grads + AdamW"
          f" moments {adapter_state_mib(base, spec, len(poles)):.0f} vs {adapter_state_mib(base, spec, 1):.0f} MiB)",
          flush=True)

    zoo = measure_zoo_time(s, base, tokenizer, scenarios, space)
    phases["zoo_train_time"] = time.perf_counter() - mark
    zoo_ok = zoo["ratio"] <= TARGET_ZOO_TIME
    print(f"  zoo train time ours {zoo['ours_seconds']:5.1f} s     paper style         {zoo['paper_seconds']:6.1f} s"
          f"   ratio {zoo['ratio']:.2f}x   target <= {TARGET_ZOO_TIME:.2f}x   {verdict(zoo_ok)}"
          f"   (all {len(poles)} pole adapters, {zoo['rows']} rows, {zoo['ours_steps']} vs {zoo['paper_steps']} steps; token positions"
          f" computed {zoo['ours_padded_tokens']} vs {zoo['paper_padded_tokens']}; the mixing head, which the paper loop lacks,"
          f" took {zoo['ours_head_seconds']:.1f} s more: {zoo['ratio_with_head']:.2f}x with it)", flush=True)

    mark = time.perf_counter()
    bf16 = measure_precision(s, base, tokenizer, scenarios, space)
    phases["bf16"] = time.perf_counter() - mark
    bf16_ok = bf16["ratio"] >= TARGET_BF16 if bf16["native_bf16"] else None
    print(f"  bf16 autocast fp32 {bf16['fp32_step_s']:5.2f} s/step bf16 {bf16['bf16_step_s']:12.2f} s/step"
          f"   ratio {bf16['ratio']:.2f}x   target >= {TARGET_BF16:.2f}x   "
          f"{verdict(bf16_ok) if bf16_ok is not None else 'reported (no bf16 instructions on this CPU)'}"
          f"   (train_zoo --precision bf16 against fp32 on the same batches, median per-step speed-up over "
          f"{PRECISION_ROUNDS} x {s.steps} timed steps)", flush=True)

    judged = [speed_ok, memory_ok, zoo_ok] + ([bf16_ok] if bf16_ok is not None else [])
    met = sum(judged)
    figures = {
        "settings": asdict(s) | {"data": Path(s.data).name},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "peft": peft.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
        "tokens_per_s": throughput | {"target": TARGET_SPEED, "met": speed_ok},
        "peak_memory": {"ours": mem_ours, "peft": mem_peft, "ratio": memory_ratio, "target": TARGET_MEMORY, "met": memory_ok},
        "zoo_train_time": zoo | {"target": TARGET_ZOO_TIME, "met": zoo_ok},
        "bf16_speedup": bf16 | {"target": TARGET_BF16, "met": bf16_ok},
        "targets_met": met,
        "load_average": load,
        "seconds": time.perf_counter() - started,
        "phase_seconds": phases,
    }
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"train_speed: {met}/{len(judged)} targets met ({figures['seconds']:.0f} s)")
    return 0 if met == len(judged) else 1


if __name__ == "__main__":
    sys.exit(main())
