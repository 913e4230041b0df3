"""Mixing speed: preference-vector switching, per-row batched generation and inference overhead.

Every figure is measured side by side in one process, the arms alternating round by
round (their order flipped every round) so that load from anything else on the
machine hits them alike; each figure is the median of its rounds.

1. Vector switch. Ours: `MixedModel.set_vector` with a new vector each time (parse,
   validate, one small in-place tensor write); the raw `PoleAdapters.use_weights(tensor)`
   cost is shown too. peft's way: a `PeftModel` holding the 12 pole adapters,
   `add_weighted_adapter(active, weights, "mix", combination_type="cat")` +
   `set_adapter` + `delete_adapter` of the previous mix. Target: >= 100x faster.
   Memory: resident memory growth over 1,000 of our switches after a warm-up.
   Target: < 5 MB.
2. 16 users with 16 different vectors. Ours: ONE `MixedModel.generate` call over the 16
   prompts with one vector per row. peft's way: per user, build that user's mixture
   (`add_weighted_adapter` cat + `set_adapter`), generate, delete it. Greedy, a fixed
   number of new tokens for every row (end-of-sequence is suppressed until then).
   Target: >= 4x tokens/s.
3. Overhead. Merged mix (the mix folded into the base weights) against the bare base
   model, tokens/s of a forward pass on a fixed batch: target >= 0.97x. Dynamic mode
   (one shared coefficient row; a vector with every dimension set uses 6 of the 12
   poles, and only those are computed) against peft's own unmerged mixture of the same
   vector (`add_weighted_adapter` cat of the active poles: the same total rank,
   6 x 8 = 48), time of the same forward: target <= 1.1x. Greedy generation (16
   prompts) is shown beside both for information.
4. One pole per row: 12 rows, row i under pole i alone at weight 1 (how `infer` scores a
   history's options under each pole). Ours: one forward with a one-hot coefficient row
   per batch row (routed: each row computes its own pole's factors only). peft's way:
   its mixed-batch inference, `adapter_names=[pole of each row]` in one forward.
   Target: <= 1.1x the time.

The base is random-weight (speed does not depend on the values): the "medium" preset of
`pft_adapters.base` (~30M parameters) by default, or a Qwen2-0.5B-shaped model with
`--config qwen05b`. The pole adapters are LoRA r=8 on q,k,v,o,gate,up,down with random
non-zero A and B; nothing is downloaded and nothing is written except `--json`.

    python benchmarks/mix_speed.py                 # full CPU run (a few minutes on 2 cores)
    python benchmarks/mix_speed.py --quick         # short check (under a minute on CPU)
    python benchmarks/mix_speed.py --device cuda --config qwen05b --dtype bfloat16 --json mix_speed_gpu.json
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import peft
import torch
import transformers
from transformers import PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

from pft_adapters.base import BASE_SIZES, MAX_POSITIONS, build_model, train_tokenizer
from pft_adapters.data import format_open_prompt
from pft_adapters.layers import LoraSpec, add_pole_adapters
from pft_adapters.mix import MixedModel
from pft_adapters.values import ValueSpace
from pft_adapters.zoo import BaseRef, Zoo, fingerprint

TARGET_SWITCH = 100.0  # peft switch time / ours, at least
TARGET_SWITCH_MEMORY_MB = 5.0  # RSS growth over the measured switches, below
TARGET_USERS = 4.0  # ours / peft tokens per second, 16 users, at least
TARGET_MERGED = 0.97  # merged / bare base tokens per second, at least
TARGET_DYNAMIC = 1.1  # dynamic / peft's unmerged mixture of the same vector, forward time, at most
TARGET_ONE_POLE = 1.1  # ours / peft mixed-batch (adapter_names), one pole per row, forward time, at most

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

USER_PROMPTS = (
    "Should I take the new job offer in another city?",
    "My friend wants me to invest in her start-up.",
    "I got a bonus this month; spend it on a trip or save it?",
    "Our team disagrees about how to split the work on the report.",
    "A colleague keeps interrupting me in meetings.",
    "Should I buy the car today or wait for the prices to drop next year?",
    "My manager asked me to lead a project I know little about.",
    "Two friends both invited me to their parties on the same night, and I can only go to one of them.",
    "Do I switch to the new software everyone is talking about?",
    "I found a cheaper flat, but it is far from work.",
    "The family cannot agree where to spend the holidays.",
    "Should I trust my first impression of the candidate?",
    "A rival company offered to work with us on a joint product.",
    "My neighbour plays loud music late at night.",
    "Is it time to change my daily routine?",
    "I have to pick a course for next term: the familiar one or the new experimental seminar that nobody has taken yet.",
)


@dataclass
class Settings:
    config: str
    size: str
    device: str
    dtype: str
    clock: str
    threads: int
    seed: int
    switch_block: int  # our switches per timed sample
    switch_rounds: int  # timed rounds (one peft switch each)
    memory_switches: int
    users: int
    new_tokens: int
    user_rounds: int
    batch: int
    seq: int
    forward_rounds: int
    gen_rounds: int


# -------------------------------------------------------------------------- setup


def sentences(n: int, seed: int) -> list[str]:
    """A few hundred plain sentences for the BPE tokenizer (the words matter little for speed)."""
    rng = random.Random(seed)
    who = ["Anna", "Tom", "the team", "my sister", "the manager", "a friend", "Sam", "the family", "our neighbour", "Maria"]
    does = ["wants to", "decides to", "is afraid to", "plans to", "refuses to", "offers to", "hopes to", "agrees to"]
    what = ["take the risk", "save the money", "wait a week", "speak up firmly", "help a colleague", "try a new idea",
            "keep the old routine", "compare every option", "trust a gut feeling", "win the promotion",
            "share the reward", "change the plan", "spend it now", "invest for later", "ask for advice"]
    why = ["before the deadline", "because it feels right", "after a long talk", "despite the doubts",
           "so that everyone agrees", "for the first time", "without telling anyone", "to avoid a conflict"]
    return [f"{rng.choice(who).capitalize()} {rng.choice(does)} {rng.choice(what)} {rng.choice(why)}." for _ in range(n)] + list(USER_PROMPTS)


def build_base(s: Settings, tokenizer) -> PreTrainedModel:
    """A random-weight base on the device, in the chosen dtype, in eval mode."""
    dtype = DTYPES[s.dtype]
    model: PreTrainedModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        if s.config == "qwen05b":
            config = Qwen2Config(
                vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
                tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, rms_norm_eps=1e-6,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            with torch.device(s.device):  # random init where the model lives: fast on a GPU
                model = Qwen2ForCausalLM(config)
        else:
            model = build_model(s.size, tokenizer)
    return model.to(device=s.device, dtype=dtype).eval()  # type: ignore[call-arg]  # transformers' decorated `to` confuses mypy


def random_poles(base: torch.nn.Module, spec: LoraSpec, space: ValueSpace, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Every pole's LoRA factors, random and non-zero, in peft's saved layout."""
    scratch = add_pole_adapters(copy.deepcopy(base), spec, space.pole_slugs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in scratch.layers.values():
            a, b = layer.lora_A, layer.lora_B
            a.copy_(torch.randn(a.shape, generator=generator) / a.shape[-1] ** 0.5)
            b.copy_(torch.randn(b.shape, generator=generator) * 0.02)
    poles = {p: scratch.pole_state_dict(p) for p in space.pole_slugs}
    del scratch
    return poles


def random_vectors(n: int, space: ValueSpace, rng: random.Random) -> list[dict[str, float]]:
    """`n` vectors with every dimension non-zero (6 active poles of 12)."""
    def value() -> float:
        v = round(rng.uniform(0.05, 1.0), 3)
        return v if rng.random() < 0.5 else -v

    return [{d.slug: value() for d in space} for _ in range(n)]


# -------------------------------------------------------------------------- timing helpers


class Clock:
    """Time of a call: wall time (the GPU synchronised before and after), or this process's CPU time.

    On a CPU shared with other jobs, wall time mostly measures how long the scheduler kept
    us waiting; the process's CPU time (with one torch thread, so that no thread spins
    waiting for another) measures the work itself, and is the default there.
    """

    def __init__(self, device: str, kind: str):
        self.cuda = device.startswith("cuda")
        self.kind = kind
        self.now = time.process_time if kind == "cpu" else time.perf_counter

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], object]) -> float:
        self.sync()
        start = self.now()
        fn()
        self.sync()
        return self.now() - start


def alternate(clock: Clock, arms: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Time every arm once per round, the order reversed every other round."""
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(clock(arms[name]))
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


def paired(num: list[float], den: list[float]) -> float:
    """Median over rounds of num/den: the two timings of a round ran back to back, under the same load."""
    return statistics.median(n / d for n, d in zip(num, den))


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; peak RSS from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -------------------------------------------------------------------------- measurements


class PeftMixer:
    """peft's way of applying a vector: build a `cat` mixture of the active poles, switch to it, drop the old one."""

    def __init__(self, model: peft.PeftModel, mixed: MixedModel):
        self.model, self.mixed = model, mixed
        self.count = 0
        self.current: str | None = None

    def switch(self, vector: dict[str, float]) -> None:
        weights = self.mixed.vector(vector).pole_weights(self.mixed.zoo.space)
        active = [p for p, w in weights.items() if w > 0]
        self.count += 1
        name = f"mix{self.count}"  # a fresh name: add_weighted_adapter silently keeps an existing one
        self.model.add_weighted_adapter(active, [weights[p] for p in active], name, combination_type="cat")
        self.model.set_adapter(name)
        if self.current is not None:
            self.model.delete_adapter(self.current)
        self.current = name


def measure_switch(s: Settings, clock: Clock, mixed: MixedModel, mixer: PeftMixer, rng: random.Random) -> dict:
    space = mixed.zoo.space
    device = next(mixed.model.parameters()).device
    # memory first, on its own: warm up, then the measured switches
    for v in random_vectors(200, space, rng):
        mixed.set_vector(v)
    vectors = random_vectors(s.memory_switches, space, rng)
    gc.collect()
    before = rss_mb()
    cuda_before = torch.cuda.memory_allocated(device) if clock.cuda else 0
    peak = before
    for i, v in enumerate(vectors):
        mixed.set_vector(v)
        if i % 100 == 99:
            peak = max(peak, rss_mb())
    gc.collect()
    after = rss_mb()
    cuda_growth = (torch.cuda.memory_allocated(device) - cuda_before) / 1e6 if clock.cuda else None

    # speed: ours (a block of switches per sample) against one peft switch per sample
    ours_vectors = random_vectors(s.switch_block * s.switch_rounds, space, rng)
    raw_tensors = [mixed.weights(v).to(device) for v in random_vectors(s.switch_block * s.switch_rounds, space, rng)]
    peft_vectors = random_vectors(s.switch_rounds + 2, space, rng)
    for v in peft_vectors[:2]:  # warm-up (and a previous mix to delete)
        mixer.switch(v)
    state = {"ours": 0, "raw": 0, "peft": 2}

    def ours() -> None:
        i = state["ours"]
        for v in ours_vectors[i * s.switch_block : (i + 1) * s.switch_block]:
            mixed.set_vector(v)
        state["ours"] += 1

    def raw() -> None:
        i = state["raw"]
        for t in raw_tensors[i * s.switch_block : (i + 1) * s.switch_block]:
            mixed.adapters.use_weights(t)
        state["raw"] += 1

    def peft_switch() -> None:
        mixer.switch(peft_vectors[state["peft"]])
        state["peft"] += 1

    peft_rss_before = rss_mb()
    times = alternate(clock, {"ours": ours, "raw": raw, "peft": peft_switch}, s.switch_rounds)
    gc.collect()
    peft_rss_growth = rss_mb() - peft_rss_before
    ours_s = med(times["ours"]) / s.switch_block
    raw_s = med(times["raw"]) / s.switch_block
    peft_s = med(times["peft"])
    mixed.adapters.off()
    return {
        "ours_set_vector_us": ours_s * 1e6, "ours_use_weights_us": raw_s * 1e6, "peft_ms": peft_s * 1e3,
        "speedup": paired(times["peft"], times["ours"]) * s.switch_block,
        "speedup_use_weights": paired(times["peft"], times["raw"]) * s.switch_block,
        "rounds": s.switch_rounds, "ours_switches_per_round": s.switch_block,
        "memory_switches": s.memory_switches, "rss_growth_mb": after - before, "rss_peak_growth_mb": peak - before,
        "rss_mb": after, "cuda_allocated_growth_mb": cuda_growth,
        "rss_growth_during_peft_rounds_mb": peft_rss_growth,
    }


def measure_users(s: Settings, clock: Clock, mixed: MixedModel, mixer: PeftMixer, rng: random.Random) -> dict:
    prompts = list(USER_PROMPTS[: s.users])
    vectors = random_vectors(len(prompts), mixed.zoo.space, rng)
    tokenizer = mixed.tokenizer
    device = next(mixed.model.parameters()).device
    encoded = [tokenizer(format_open_prompt(p), return_tensors="pt") for p in prompts]
    encoded = [{k: v.to(device) for k, v in e.items() if k in ("input_ids", "attention_mask")} for e in encoded]
    n = s.new_tokens
    # MixedModel.generate passes eos_token_id; min_new_tokens (read from the model's generation
    # config) keeps end-of-sequence away until every row has its n tokens.
    mixed.model.generation_config.min_new_tokens = n  # type: ignore[union-attr]  # a transformers model; MixedModel types it as a Module
    split = {"build": 0.0, "generate": 0.0}

    def ours() -> None:
        with torch.inference_mode():
            mixed.generate(prompts, vectors, max_new_tokens=n)

    def peft_users() -> None:
        for vector, batch in zip(vectors, encoded):
            t0 = clock.now()
            mixer.switch(vector)
            clock.sync()
            t1 = clock.now()
            with torch.inference_mode():
                out = mixer.model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            clock.sync()
            split["build"] += t1 - t0
            split["generate"] += clock.now() - t1
            assert out.shape[1] - batch["input_ids"].shape[1] == n, "peft arm stopped early"

    # warm-up, and a check that our batched generation really makes n tokens for every row
    # (the same call MixedModel.generate makes, minus the decoding of the text)
    with torch.inference_mode(), mixed.mixed(vectors):
        batch = mixed._encode([format_open_prompt(p) for p in prompts], padding_side="left")
        out = mixed.model.generate(  # type: ignore[operator]  # as in MixedModel.generate
            **batch, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    assert out.shape[1] - batch["input_ids"].shape[1] == n, "our arm stopped early"
    times = alternate(clock, {"ours": ours, "peft": peft_users}, s.user_rounds)
    tokens = len(prompts) * n
    ours_tps, peft_tps = tokens / med(times["ours"]), tokens / med(times["peft"])
    rounds = s.user_rounds
    return {
        "users": len(prompts), "new_tokens": n, "rounds": rounds,
        "ours_seconds": med(times["ours"]), "peft_seconds": med(times["peft"]),
        "ours_tokens_per_s": ours_tps, "peft_tokens_per_s": peft_tps, "speedup": paired(times["peft"], times["ours"]),
        "peft_build_seconds_per_round": split["build"] / rounds, "peft_generate_seconds_per_round": split["generate"] / rounds,
    }


def measure_overhead(s: Settings, clock: Clock, mixed: MixedModel, bare, mixer: PeftMixer, rng: random.Random) -> dict:
    device = next(mixed.model.parameters()).device
    gen = torch.Generator().manual_seed(s.seed)
    ids = torch.randint(4, len(mixed.tokenizer), (s.batch, s.seq), generator=gen).to(device)
    vector = random_vectors(1, mixed.zoo.space, rng)[0]
    tokenizer = mixed.tokenizer
    prompts = list(USER_PROMPTS[: s.users])
    gen_batch = mixed._encode([format_open_prompt(p) for p in prompts], padding_side="left")
    n = s.new_tokens
    gen_kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)

    def forward(model) -> Callable[[], object]:
        def run() -> None:
            with torch.inference_mode():
                model(input_ids=ids, use_cache=False)
        return run

    def generate(model) -> Callable[[], object]:
        def run() -> None:
            with torch.inference_mode():
                model.generate(**gen_batch, **gen_kwargs)
        return run

    tokens = s.batch * s.seq
    out: dict = {"batch": s.batch, "seq": s.seq, "forward_rounds": s.forward_rounds, "gen_rounds": s.gen_rounds}

    # merged vs bare base (mode "off" otherwise: the merged layers return the base output directly)
    mixed.adapters.off()
    with mixed.merged(vector):
        arms = {"bare": forward(bare), "merged": forward(mixed.model)}
        for arm in arms.values():
            arm()
        t = alternate(clock, arms, s.forward_rounds)
        g_arms = {"bare": generate(bare), "merged": generate(mixed.model)}
        for arm in g_arms.values():
            arm()
        g = alternate(clock, g_arms, s.gen_rounds)
    out["merged"] = {
        "bare_tokens_per_s": tokens / med(t["bare"]), "merged_tokens_per_s": tokens / med(t["merged"]),
        "ratio": paired(t["bare"], t["merged"]),
        "gen_bare_tokens_per_s": len(prompts) * n / med(g["bare"]), "gen_merged_tokens_per_s": len(prompts) * n / med(g["merged"]),
        "gen_ratio": paired(g["bare"], g["merged"]),
    }

    # dynamic (one shared coefficient row, its active poles computed) vs peft's unmerged cat mixture of the vector
    mixed.set_vector(vector)
    mixer.switch(vector)
    arms = {"dynamic": forward(mixed.model), "peft": forward(mixer.model), "bare": forward(bare)}
    for arm in arms.values():
        arm()
    t = alternate(clock, arms, s.forward_rounds)
    g_arms = {"dynamic": generate(mixed.model), "peft": generate(mixer.model)}
    for arm in g_arms.values():
        arm()
    g = alternate(clock, g_arms, s.gen_rounds)
    mixed.adapters.off()
    out["dynamic"] = {
        "active_poles": int((mixed.weights(vector) != 0).sum()),
        "dynamic_ms": med(t["dynamic"]) * 1e3, "peft_ms": med(t["peft"]) * 1e3, "bare_ms": med(t["bare"]) * 1e3,
        "ratio": paired(t["dynamic"], t["peft"]),
        "gen_dynamic_s": med(g["dynamic"]), "gen_peft_s": med(g["peft"]),
        "gen_ratio": paired(g["dynamic"], g["peft"]),
    }
    return out


def measure_one_pole_rows(s: Settings, clock: Clock, mixed: MixedModel, mixer: PeftMixer) -> dict:
    device = next(mixed.model.parameters()).device
    poles = mixed.zoo.space.pole_slugs
    gen = torch.Generator().manual_seed(s.seed + 3)
    ids = torch.randint(4, len(mixed.tokenizer), (len(poles), s.seq), generator=gen).to(device)
    one_hot = torch.eye(len(poles), device=device)

    def ours() -> None:
        with torch.inference_mode(), mixed.adapters.kept():
            mixed.adapters.use_rows(one_hot)
            mixed.model(input_ids=ids, use_cache=False)

    def peft_rows() -> None:
        with torch.inference_mode():
            mixer.model(input_ids=ids, use_cache=False, adapter_names=list(poles))

    arms = {"ours": ours, "peft": peft_rows}
    for arm in arms.values():
        arm()
    t = alternate(clock, arms, s.forward_rounds)
    return {"rows": len(poles), "seq": s.seq, "ours_ms": med(t["ours"]) * 1e3, "peft_ms": med(t["peft"]) * 1e3,
            "ratio": paired(t["ours"], t["peft"])}


# -------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", choices=["preset", "qwen05b"], default="preset",
                   help="base shape: a pft_adapters.base preset (see --size), or Qwen2-0.5B-shaped (896 wide, 24 layers, vocab 151936)")
    p.add_argument("--size", choices=list(BASE_SIZES), help="preset for --config preset (default medium, ~30M params; --quick small, ~4M)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help="base model dtype (default float32; bfloat16 for a GPU run)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1 on --device cpu, see --clock; torch's default on a GPU run)")
    p.add_argument("--clock", choices=["auto", "cpu", "wall"], default="auto",
                   help="what a timing measures: this process's CPU time, or wall time; auto (default) is cpu time on "
                        "--device cpu with one thread (steady on a shared machine), wall time otherwise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--new-tokens", type=int, help="new tokens per row in every generation (default 32; --quick 8)")
    p.add_argument("--quick", action="store_true", help="a short version for checks (fewer rounds, fewer tokens)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    return p.parse_args(argv)


def settings(a: argparse.Namespace) -> Settings:
    q = a.quick
    gpu = a.device.startswith("cuda")
    big = a.config == "qwen05b"
    threads = a.threads or (torch.get_num_threads() if gpu else 1)
    clock = a.clock if a.clock != "auto" else ("cpu" if not gpu and threads == 1 else "wall")
    return Settings(
        config=a.config, size=(a.size or ("small" if q else "medium")) if a.config == "preset" else "qwen05b", device=a.device, dtype=a.dtype,
        clock=clock, threads=threads, seed=a.seed,
        switch_block=50 if q else 100, switch_rounds=6 if q else (12 if big else 25), memory_switches=1000,
        users=16, new_tokens=a.new_tokens or (8 if q else 32), user_rounds=1 if q else 3,
        batch=(4 if gpu else 4) if q else (8 if gpu else 4), seq=(256 if gpu else 128) if q else (512 if gpu else 64),
        forward_rounds=9 if q else 21, gen_rounds=1 if q else 3,
    )


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    # two notices that every run would print and that say nothing about the figures
    warnings.filterwarnings("ignore", message="The PEFT config's `base_model_name_or_path` was renamed")
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    s = settings(a)
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"mix_speed: --device {s.device} asked for, but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 2
    started = time.perf_counter()
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    rng = random.Random(s.seed)
    clock = Clock(s.device, s.clock)
    space = ValueSpace.builtin()
    spec = LoraSpec(r=8, alpha=16.0)

    tokenizer = train_tokenizer(sentences(400, s.seed), vocab_size=4096)
    bare = build_base(s, tokenizer)
    poles = random_poles(bare, spec, space, s.seed + 1)
    zoo = Zoo(space=space, spec=spec, base=BaseRef(id=f"random-{s.size}", revision=None, fingerprint=fingerprint(bare)), poles=poles)
    mixed = MixedModel(zoo, copy.deepcopy(bare), tokenizer)
    mixer = PeftMixer(zoo.to_peft(copy.deepcopy(bare)), mixed)
    params = bare.num_parameters()
    lora = sum(p.numel() for p in mixed.adapters.parameters())
    setup = time.perf_counter() - started
    print(f"mix_speed: {s.size} base ({params / 1e6:.1f}M params, random weights, {s.dtype}) on {s.device}: {device_name(s.device)}; "
          f"{len(space)} dimensions = {len(space.pole_slugs)} poles, LoRA r={spec.r} on {','.join(m.split('_')[0] for m in spec.target_modules)}"
          f" ({lora / 1e6:.1f}M adapter params); torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}, peft {peft.__version__}; timings in "
          f"{'process CPU time' if s.clock == 'cpu' else 'wall time'}; setup {setup:.0f} s", flush=True)

    figures: dict = {"settings": asdict(s), "machine": {
        "device": device_name(s.device), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "base_parameters": params, "adapter_parameters": lora}}
    results: list[bool] = []

    sw = measure_switch(s, clock, mixed, mixer, rng)
    ok = sw["speedup"] >= TARGET_SWITCH
    results.append(ok)
    print(f"  1. vector switch   ours set_vector {sw['ours_set_vector_us']:8.1f} us   peft cat+set+delete {sw['peft_ms']:8.1f} ms"
          f"   {sw['speedup']:8.0f}x faster   target >= {TARGET_SWITCH:.0f}x   {verdict(ok)}"
          f"   (raw use_weights(tensor) {sw['ours_use_weights_us']:.1f} us = {sw['speedup_use_weights']:.0f}x;"
          f" times: medians of {sw['rounds']} rounds of one peft switch and {sw['ours_switches_per_round']} of ours; ratio: median of per-round ratios)", flush=True)
    mem_ok = sw["rss_growth_mb"] < TARGET_SWITCH_MEMORY_MB
    results.append(mem_ok)
    cuda_note = f"; GPU memory allocated {sw['cuda_allocated_growth_mb']:+.2f} MB" if sw["cuda_allocated_growth_mb"] is not None else ""
    print(f"     switch memory   RSS {sw['rss_growth_mb']:+.2f} MB over {sw['memory_switches']} set_vector switches after warm-up"
          f"   target < {TARGET_SWITCH_MEMORY_MB:.0f} MB   {verdict(mem_ok)}"
          f"   (peak {sw['rss_peak_growth_mb']:+.2f} MB during them{cuda_note}; for comparison RSS moved"
          f" {sw['rss_growth_during_peft_rounds_mb']:+.1f} MB over the {sw['rounds']} peft switch rounds)", flush=True)
    figures["switch"] = sw | {"target_speedup": TARGET_SWITCH, "target_memory_mb": TARGET_SWITCH_MEMORY_MB,
                              "met": ok, "memory_met": mem_ok}

    us = measure_users(s, clock, mixed, mixer, rng)
    ok = us["speedup"] >= TARGET_USERS
    results.append(ok)
    print(f"  2. {us['users']} users         ours one per-row batch {us['ours_tokens_per_s']:7.1f} tok/s   peft user by user"
          f" {us['peft_tokens_per_s']:7.1f} tok/s   {us['speedup']:6.1f}x   target >= {TARGET_USERS:.0f}x   {verdict(ok)}"
          f"   ({us['new_tokens']} greedy tokens per row; median of {us['rounds']} rounds: ours {us['ours_seconds']:.2f} s,"
          f" peft {us['peft_seconds']:.2f} s of which ~{us['peft_build_seconds_per_round']:.2f} s building mixtures)", flush=True)
    figures["users"] = us | {"target": TARGET_USERS, "met": ok}

    ov = measure_overhead(s, clock, mixed, bare, mixer, rng)
    m, d = ov["merged"], ov["dynamic"]
    ok = m["ratio"] >= TARGET_MERGED
    results.append(ok)
    print(f"  3. merged mix      {m['merged_tokens_per_s']:8.0f} tok/s   bare base {m['bare_tokens_per_s']:8.0f} tok/s"
          f"   {m['ratio']:.3f}x   target >= {TARGET_MERGED:.2f}x   {verdict(ok)}"
          f"   (forward of a fixed {ov['batch']}x{ov['seq']} batch, {ov['forward_rounds']} rounds, ratio: median of per-round ratios;"
          f" info: greedy generation {us['users']}x{s.new_tokens} tokens {m['gen_ratio']:.3f}x)", flush=True)
    ok = d["ratio"] <= TARGET_DYNAMIC
    results.append(ok)
    print(f"     dynamic mix     {d['dynamic_ms']:8.1f} ms      peft mixture r={spec.r * d['active_poles']} {d['peft_ms']:8.1f} ms"
          f"   {d['ratio']:.3f}x   target <= {TARGET_DYNAMIC:.1f}x   {verdict(ok)}"
          f"   (same forward, {d['active_poles']} active poles; bare base {d['bare_ms']:.1f} ms;"
          f" info: greedy generation {d['gen_ratio']:.3f}x the time, {d['gen_dynamic_s']:.2f} vs {d['gen_peft_s']:.2f} s)", flush=True)
    figures["overhead"] = ov | {"target_merged": TARGET_MERGED, "target_dynamic": TARGET_DYNAMIC,
                                "merged_met": results[-2], "dynamic_met": results[-1]}

    rows = measure_one_pole_rows(s, clock, mixed, mixer)
    ok = rows["ratio"] <= TARGET_ONE_POLE
    results.append(ok)
    print(f"  4. one pole/row    ours routed {rows['ours_ms']:8.1f} ms   peft adapter_names {rows['peft_ms']:8.1f} ms"
          f"   {rows['ratio']:.3f}x   target <= {TARGET_ONE_POLE:.1f}x   {verdict(ok)}"
          f"   ({rows['rows']} rows x {rows['seq']} tokens, row i under pole i; {s.forward_rounds} rounds, ratio: median of per-round ratios)",
          flush=True)
    figures["one_pole_rows"] = rows | {"target": TARGET_ONE_POLE, "met": ok}

    met, total = sum(results), len(results)
    figures |= {"targets_met": met, "targets": total, "seconds": time.perf_counter() - started}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"mix_speed: {met}/{total} targets met")
    return 0 if met == total else 1


if __name__ == "__main__":
    sys.exit(main())
