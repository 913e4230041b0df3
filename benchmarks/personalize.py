"""Personalisation from a few past choices: infer a user's preference vector, then mix (VCD dev).

Simulated users. Each has a true vector over the zoo's dimensions, every entry -1, 0
or +1 (independently, a third each; never all 0). The dev scenarios of the user's
non-zero dimensions are split at random in two halves: the user's history is drawn
from one (in order, reshuffled when used up), and the user is scored on the other
(at most --eval-per-user of them). On a history scenario the user picks a random
option of their pole, except for a 10% slip: a random option of any pole. The
history records do not name their dimension: the zoo works it out. Histories are
nested (the first K records of one sequence of 20), so K only adds records.

User alignment = share of the user's scoring scenarios where the system picks an
option of the user's pole; the figure is its mean over users with a 95% interval
(normal, over users). Systems:

| system | what it is |
| --- | --- |
| base | the bare base model: the option with the highest mean log-likelihood per token (a scorer zoo's bare encoder scores every option 0: the first option) |
| single-preference | one fixed vector for everybody: per dimension, the pole most users hold (the paper's baseline) |
| in-context | the base with the history pasted into the prompt (the user's last chosen options, newest last), scored against the base without it (PMI); on a subset of users and scenarios (--incontext-users, --incontext-eval). A scorer zoo's encoder reads no prompt to condition on: each option scores its mean cosine similarity to the options the user chose minus to those passed over (every user) |
| head | vector inferred by `pft_adapters.infer` (method head, default half-life), then mixed |
| likelihood | the same with method likelihood |
| oracle | the true vector, then mixed |
| oracle, observed dimensions | the true vector on the dimensions with at least one history record, 0 elsewhere: an estimator that gets every observed sign right, and no more |

head and likelihood use the library's default settings; "head (chosen option alone)"
is the head read without the contrast to the options not chosen, shown beside it.

Mixing and choosing. Every system's pick follows `pft_adapters.choose`: calibrated
scores (mean log-likelihood per token under the mix minus under the bare base),
highest wins, the base's own preference breaks a full tie. Two ways to score:
- `--exact` (the default on a GPU): every (scenario, vector) pair is scored under the
  full mixed model, one vector per batch row, each distinct pair once;
- first order (the default on a CPU): every dev option is scored once under the bare base
  and once under each pole alone at weight 1, and the score under v is
  `sum_p w_p(v) * (score_p - score_base)`, exact for a single dimension at +1 or -1
  (the oracle on a user with one dimension) and first order otherwise. With
  `--exact` the agreement of the two is reported. The simulated users' vectors are at
  +-1, where this first order is exactly what choosing with `compose="dimensions"`
  computes (`--compose dimensions`, docs/concepts.md#composition; for an LLM zoo with
  `--calibrate base`, for a scorer zoo with its mirror, below): the first-order figures
  are the library's under that composition, `--exact` the mixed model's.
The same per-pole scores feed the likelihood estimator (as in the library), and the
mixing head's readings of every dev option are computed once (one batched forward).

Targets (issue 4): at K = 5 the better estimator is within 5 points of oracle and beats
single-preference by more than 44.76% relative; at K = 10 the sign of every dimension
with at least two observations (history records of that dimension) is right for >= 90%
of users (better estimator). Changing users: one dimension flips after 10 of 20 history
records, all of that dimension; the lag is the number of post-flip records after which
the inferred sign is right and stays right (11 = not within 10). Target with the
default half-life: median lag <= 4; the no-recency lag and a sweep of half-lives are
shown beside it. Cost: wall time of `pft_adapters.infer.infer` per inference (K = 10),
both estimators, on this machine.

The zoo: `--zoo PATH` (a trained zoo, LLM or scorer). Without one (or if PATH does not
exist yet) it is built and cached under benchmarks/cache/ (git-ignored), all six
dimensions trained on vcd_train.json: by default (`--kind scorer`) a scorer zoo on
all-MiniLM-L6-v2 (`train --kind scorer` with its defaults; about 25-30 minutes on 2 CPU cores),
the offline zoo that reads dev scenarios well; with `--kind llm` a "small" causal base
(`pft_adapters.base.cached_base` on the vcd_train texts) and an LLM zoo on it (paired,
LoRA r=8, 3 epochs; a few minutes on a GPU, hours on a CPU).

A scorer zoo chooses by its mirror calibration (`ScorerModel.choose`: the score under v
minus under v with the scenario's dimension flipped), so its first-order score under v
reads the scenario's own dimension only, `v_d * (score_first - score_second)`: exact
whenever the other dimensions are 0, and blind to the drift that mixing other
dimensions into the encoder causes (`--exact` measures the full mix).

    python benchmarks/personalize.py --quick                  # short check
    python benchmarks/personalize.py --zoo benchmarks/cache/... --json personalize.json
    python benchmarks/personalize.py --device cuda            # full run, exact scoring
    python benchmarks/personalize.py --zoo ZOO --split train --per-dim 12   # in-sample diagnostic

The per-pole scores of every scenario are cached per zoo under benchmarks/cache/personalize-scores/.
`--split train` runs the same simulation on training scenarios the zoo has seen: not the
target setting, but it tells a weak zoo (nothing reads on dev) from a weak estimator.

Every figure is printed beside its target; one summary line ends the run; exit code 1
when a target is missed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pft_adapters import infer as inference
from pft_adapters.base import MINILM, cached_base, corpus_texts, load_base, load_encoder, to_device
from pft_adapters.choose import option_scores
from pft_adapters.data import Scenario, load_scenarios
from pft_adapters.head import MixingHead, head_features
from pft_adapters.history import Decision
from pft_adapters.layers import LoraSpec
from pft_adapters.mix import MixedModel, mirror
from pft_adapters.scorer import ScorerModel
from pft_adapters.train import TrainConfig, train_head, train_zoo
from pft_adapters.values import ValueSpace, data_space
from pft_adapters.vector import PreferenceVector
from pft_adapters.zoo import MANIFEST, Zoo

TARGET_ORACLE_GAP = 0.05  # oracle - better estimator at K = 5, at most
TARGET_GAIN = 0.4476  # better estimator / single-preference - 1 at K = 5, more than
TARGET_SIGN = 0.90  # share of users with every sign right (dims with >= 2 observations) at K = 10, at least
TARGET_LAG = 4  # median post-flip records until the sign follows, default half-life, at most
SLIP = 0.10
FLIP_AT, FLIP_TOTAL = 10, 20
PROGRESS = sys.stderr.isatty()  # progress bars on a terminal only, not in logs
REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "cache"


@dataclass
class Settings:
    users: int
    ks: tuple[int, ...]
    per_dim: int | None  # dev scenarios per dimension (None = all)
    eval_per_user: int
    incontext_users: int
    incontext_eval: int
    flip_users: int
    half_lives: tuple[float | None, ...]
    timing_users: int
    exact: bool
    device: str
    seed: int
    batch_size: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", help="a trained zoo (folder); built and cached under benchmarks/cache/ when absent")
    p.add_argument("--data", help="folder holding vcd_train.json and vcd_dev.json (default: $VCD_DIR or ../shared/data/vcd)")
    p.add_argument("--quick", action="store_true", help="a short version, for checks")
    p.add_argument("--users", type=int, help="simulated users (default 200; --quick 40)")
    p.add_argument("--exact", action=argparse.BooleanOptionalAction, default=None,
                   help="score every (scenario, vector) under the full mix (default: on a GPU only)")
    p.add_argument("--eval-per-user", type=int, default=24, help="scoring scenarios per user, at most")
    p.add_argument("--split", choices=("dev", "train"), default="dev",
                   help="scenarios the users answer and are scored on; 'train' is an in-sample diagnostic (what the zoo "
                        "can read when it reads well), never the target setting")
    p.add_argument("--per-dim", type=int, help="scenarios per dimension, a random sample (default: all; --quick 5)")
    p.add_argument("--incontext-users", type=int, help="users the in-context baseline runs on (default: all on a GPU, 20 on a CPU; --quick 6)")
    p.add_argument("--incontext-eval", type=int, help="scoring scenarios per user for in-context (default: 8 on a GPU, 4 on a CPU; --quick 3)")
    p.add_argument("--flip-users", type=int, help="users in the changing-preference test (default 100; --quick 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head-encoder", help="also refit the mixing head on this sentence encoder's features (e.g. "
                   "sentence-transformers/all-MiniLM-L6-v2) and report head inference with both heads")
    p.add_argument("--json", help="write every figure to this JSON file")
    build = p.add_argument_group("building the zoo when --zoo is absent")
    build.add_argument("--kind", choices=("scorer", "llm"), default="scorer",
                       help=f"scorer (default): a scorer zoo on {MINILM}, offline; llm: a zoo on an in-house causal base")
    build.add_argument("--size", default="small", help="llm: base preset (default small)")
    build.add_argument("--base-minutes", type=float, default=8.0, help="llm: base pre-training budget in minutes")
    build.add_argument("--epochs", type=float, help="zoo training epochs (default: scorer as `train`, llm 3)")
    build.add_argument("--train-limit", type=int, help="train on the first N scenarios only (checks)")
    build.add_argument("--build-only", action="store_true", help="build (or find) the zoo, print its path and stop")
    return p.parse_args(argv)


def settings(a: argparse.Namespace, device: str) -> Settings:
    quick, gpu = a.quick, device.startswith("cuda")
    return Settings(
        users=a.users or (40 if quick else 200),
        ks=(1, 5, 10) if quick else (1, 3, 5, 10, 20),
        per_dim=a.per_dim or (5 if quick else None),
        eval_per_user=a.eval_per_user,
        # in-context prompts are long and shared by nobody: all users on a GPU, a sample on a CPU
        incontext_users=a.incontext_users if a.incontext_users is not None else (6 if quick else 10**9 if gpu else 20),
        incontext_eval=a.incontext_eval or (3 if quick else 8 if gpu else 4),
        flip_users=a.flip_users or (16 if quick else 100),
        half_lives=(2.0, 3.0, None) if quick else (1.0, 2.0, 3.0, 4.0, 6.0, 10.0, None),
        timing_users=2 if quick else 5,
        exact=a.exact if a.exact is not None else gpu,
        device=device,
        seed=a.seed,
        batch_size=128 if gpu else 16,
    )


def vcd_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("VCD_DIR"):
        return Path(os.environ["VCD_DIR"])
    return REPO.parent / "shared" / "data" / "vcd"


# -------------------------------------------------------------------------- the zoo


def short_hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_zoo(a: argparse.Namespace, data: Path, device: str) -> Path:
    """The cached zoo for these build settings, trained (and an LLM zoo's base pre-trained) if absent."""
    train_file = data / "vcd_train.json"
    space = ValueSpace.builtin()
    scenarios = load_scenarios(train_file, space)[: a.train_limit]
    base: str | Path
    if a.kind == "scorer":
        base = MINILM
        config = TrainConfig(kind="scorer", epochs=a.epochs, seed=a.seed).resolved()
    else:
        base = _base(corpus_texts(train_file), a, device)
        config = TrainConfig(lora=LoraSpec(r=8, alpha=16.0), epochs=a.epochs or 3.0, batch_size=8, lr=1e-3, max_length=512,
                             seed=a.seed)
    key = short_hash({"base": Path(base).name, "config": asdict(config), "scenarios": len(scenarios),
                      "data": hashlib.sha256(train_file.read_bytes()).hexdigest()})
    out = Path(a.zoo) if a.zoo else CACHE / f"personalize-{a.kind}-{key}"
    if (out / MANIFEST).is_file():
        return out
    print(f"personalize: training a {a.kind} zoo of {len(space)} dimensions on {len(scenarios)} scenarios of "
          f"{train_file.name} ({config.epochs:g} epochs) into {_rel(out)}", flush=True)
    model, tokenizer = load_encoder(base) if a.kind == "scorer" else load_base(base)
    dev = load_scenarios(data / "vcd_dev.json", space)
    result = train_zoo(model, tokenizer, scenarios, space, config, base_id=_rel(base) if isinstance(base, Path) else base, dev=dev, device=device,
                       progress=PROGRESS)
    result.zoo.save_pretrained(out, overwrite=True)
    print(f"personalize: zoo trained in {result.seconds:.0f} s, final loss {result.zoo.training['final_loss']}, "
          f"head dev pole accuracy {result.zoo.training['head_dev_pole_accuracy']}", flush=True)
    return out


def _base(texts: list[str], a: argparse.Namespace, device: str) -> Path:
    """`cached_base`, with the model pre-trained on `device` (cached_base builds it on the CPU).

    The cache key does not record the device: a base pre-trained for N minutes on a GPU has
    taken many more steps than one pre-trained for N minutes on a CPU.
    """
    import pft_adapters.base as base_module

    original = base_module.build_model

    def on_device(*args, **kwargs):
        return to_device(original(*args, **kwargs), device)

    base_module.build_model = on_device
    try:
        return cached_base(texts, CACHE / "bases", size=a.size, pretrain_minutes=a.base_minutes, seed=a.seed,
                           threads=a.threads, progress=PROGRESS)
    finally:
        base_module.build_model = original


def _rel(path: str | Path) -> str:
    """A path as written into manifests and messages: relative to the repository when inside it."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), REPO)).as_posix()
    except ValueError:
        return str(path)


def load_mixed(zoo_path: Path, device: str) -> MixedModel | ScorerModel:
    zoo = Zoo.from_pretrained(zoo_path)
    base = zoo.base.id
    if not Path(base).exists() and (REPO / base).exists():  # a base recorded relative to the repository
        base = str(REPO / base)
    model, tokenizer = zoo.load_base(base if base != zoo.base.id else None, device=device)
    return (ScorerModel if zoo.kind == "scorer" else MixedModel)(zoo, model, tokenizer, zoo.base.id)


# -------------------------------------------------------------------------- dev scenarios, scored once


@dataclass
class Table:
    """Every dev scenario with what the systems need of it, computed once."""

    scenarios: list[Scenario]
    dim: list[int]  # dimension index per scenario
    sign: list[list[int]]  # per option: +1 first pole, -1 second, 0 neither
    base: list[torch.Tensor]  # (options,) mean log-likelihood per token under the bare base (a scorer zoo: 0)
    poles: list[torch.Tensor]  # (options, P) calibrated score under each pole alone at weight 1 (scorer: own score)
    readings: list[inference.Reading]
    features: list[torch.Tensor]  # (options, hidden) what the mixing head reads of each option
    scorer: bool  # a scorer zoo: picks are mirror-calibrated, as `ScorerModel.choose` makes them

    def by_dim(self, d: int) -> list[int]:
        return [i for i, x in enumerate(self.dim) if x == d]


def dev_scenarios(data: Path, space: ValueSpace, per_dim: int | None, seed: int, split: str = "dev") -> list[Scenario]:
    wanted = {d.slug for d in space}
    scenarios = [s for s in load_scenarios(data / f"vcd_{split}.json", data_space(space)) if s.dimension in wanted]
    if per_dim is None:
        return scenarios
    rng = random.Random(seed)
    out = []
    for dim in space:
        mine = [s for s in scenarios if s.dimension == dim.slug]
        out += rng.sample(mine, min(per_dim, len(mine)))
    return out


def score_rows(mixed: MixedModel, requests: Sequence[tuple[Scenario, torch.Tensor]], batch_size: int,
               desc: str, max_length: int | None = None) -> list[torch.Tensor]:
    """Mean log-likelihood per token of every option of each (scenario, pole weights), batched per row.

    Rows are cut to the zoo's training max_length, as `MixedModel.choose` does, unless given.
    """
    max_length = max_length or mixed.zoo.max_length
    if not requests:
        return []
    out: list[torch.Tensor] = []
    chunk = max(batch_size * 4, 64)
    with tqdm(total=len(requests), desc=desc, unit="scenario", leave=False, mininterval=2.0, disable=not PROGRESS) as bar:
        for start in range(0, len(requests), chunk):
            part = requests[start : start + chunk]
            weights = torch.stack([w for _, w in part])
            scored = option_scores(mixed.adapters, mixed.tokenizer, [s for s, _ in part], weights, calibrate=False,
                                   batch_size=batch_size, max_length=max_length)
            out += [s.mixed for s in scored]
            bar.update(len(part))
    return out


def scenario_key(sc: Scenario) -> str:
    return short_hash([sc.text, [o.text for o in sc.options]])


def pole_tables(mixed: MixedModel | ScorerModel, scenarios: list[Scenario], s: Settings) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(base scores, per-pole scores) of every option of each scenario.

    An LLM zoo: mean log-likelihood per token under the bare base, and under each pole alone
    minus that. A scorer zoo: 0 (a bare encoder has no preference) and each pole's own score.
    """
    if isinstance(mixed, ScorerModel):
        return [(torch.zeros(len(t)), t) for t in mixed.pole_scores(scenarios)]
    n_poles = len(mixed.zoo.space.pole_slugs)
    requests = []
    for sc in scenarios:
        requests.append((sc, torch.zeros(n_poles)))
        for p in range(n_poles):
            requests.append((sc, torch.nn.functional.one_hot(torch.tensor(p), n_poles).float()))
    raw = score_rows(mixed, requests, s.batch_size, "scoring dev options under each pole")
    step = n_poles + 1
    groups = [raw[i * step : (i + 1) * step] for i in range(len(scenarios))]
    return [(g[0], torch.stack([x - g[0] for x in g[1:]], 1)) for g in groups]


def build_table(mixed: MixedModel | ScorerModel, head: MixingHead, scenarios: list[Scenario], s: Settings, zoo_path: Path) -> Table:
    """Score every option once under the bare base and under each pole alone (cached on disk per zoo and scenario)."""
    from safetensors.torch import load_file, save_file

    space = mixed.zoo.space
    slugs = [d.slug for d in space]
    max_length = mixed.zoo.max_length
    store = CACHE / "personalize-scores" / f"{short_hash([(zoo_path / MANIFEST).read_text(), max_length])}.safetensors"
    cached = load_file(store) if store.is_file() else {}
    missing = [sc for sc in scenarios if f"{scenario_key(sc)}.base" not in cached]
    for sc, (base_scores, pole_scores) in zip(missing, pole_tables(mixed, missing, s)):
        cached[f"{scenario_key(sc)}.base"] = base_scores.contiguous()
        cached[f"{scenario_key(sc)}.poles"] = pole_scores.contiguous()
    if missing:
        store.parent.mkdir(parents=True, exist_ok=True)
        save_file(cached, store)
    base = [cached[f"{scenario_key(sc)}.base"] for sc in scenarios]
    poles = [cached[f"{scenario_key(sc)}.poles"] for sc in scenarios]
    decisions = [Decision(sc.text, tuple(o.text for o in sc.options), 0) for sc in scenarios]
    sizes = [len(sc.options) for sc in scenarios]
    features = inference.option_features(mixed, decisions)
    readings = inference.read_options(head, features, sizes)
    signs = []
    for sc in scenarios:
        dim = space.dimension(sc.dimension)
        signs.append([1 if o.pole == dim.first.slug else -1 if o.pole == dim.second.slug else 0 for o in sc.options])
    return Table(scenarios, [slugs.index(sc.dimension) for sc in scenarios], signs, base, poles, readings,
                 list(torch.split(features.float().cpu(), sizes)), isinstance(mixed, ScorerModel))


# -------------------------------------------------------------------------- users


@dataclass
class User:
    truth: list[int]
    history: list[tuple[int, int]]  # (scenario, chosen option), oldest first
    scoring: list[int]


def choose_as(table: Table, scenario: int, sign: int, rng: random.Random) -> int:
    mine = [i for i, x in enumerate(table.sign[scenario]) if x == sign]
    if rng.random() < SLIP or not mine:
        return rng.randrange(len(table.sign[scenario]))
    return rng.choice(mine)


def draw(pool: list[int], n: int, rng: random.Random) -> list[int]:
    """n scenarios from the pool in a random order, reshuffled each time it is used up."""
    out: list[int] = []
    while len(out) < n:
        batch = list(pool)
        rng.shuffle(batch)
        out += batch
    return out[:n]


def sample_users(table: Table, n_dims: int, s: Settings, rng: random.Random, kmax: int) -> list[User]:
    users: list[User] = []
    while len(users) < s.users:
        truth = [rng.choice((-1, 0, 1)) for _ in range(n_dims)]
        pool = [i for i, d in enumerate(table.dim) if truth[d] != 0]
        if len(pool) < 2:
            continue
        rng.shuffle(pool)
        half = len(pool) // 2
        past, scoring = pool[:half], pool[half:][: s.eval_per_user]
        history = [(i, choose_as(table, i, truth[table.dim[i]], rng)) for i in draw(past, kmax, rng)]
        users.append(User(truth, history, scoring))
    return users


# -------------------------------------------------------------------------- estimating


_BLANK = Decision("-", ("a", "b"), 0)


def weights_for(k: int, half_life: float | None) -> torch.Tensor:
    hl = inference.HalfLife(half_life, "records") if half_life is not None else None
    return inference.recency_weights([_BLANK] * k, hl)


class Estimator:
    """The library's estimators on the cached readings and scores (what `infer` computes on the fly)."""

    def __init__(self, space: ValueSpace, head: MixingHead, table: Table):
        self.space, self.head, self.table = space, head, table

    def __call__(self, history: Sequence[tuple[int, int]], method: str, half_life: float | None,
                 contrast: bool = True, given: bool = False, likeliest: bool = False) -> list[float]:
        t = self.table
        readings = [t.readings[i] for i, _ in history]
        chosen = [c for _, c in history]
        weights = weights_for(len(history), half_life)
        names = [t.scenarios[i].dimension if given else None for i, _ in history]  # given: the history says
        dims = inference.guess_dimensions(readings, names, self.head)
        if method == "head":
            result = inference.head_estimate(readings, chosen, dims, weights, self.space, self.head.dimension_slugs, contrast)
        else:  # as `pft_adapters.infer.infer` reads the zoo
            scores, probs = [t.poles[i] for i, _ in history], None
            if t.scorer:  # each decision on its dimension, or, unnamed, on each likely one (`likeliest`: the head's first)
                probs = (inference.dimension_probabilities(dims, self.space) if given or likeliest else
                         inference.read_dimension_probabilities(readings, names, self.space, self.head))
                scores = inference.mirror_gaps(scores, self.space)
            result = inference.likelihood_estimate(scores, chosen, dims, weights, self.space, dimension_probs=probs)
        return [result.vector[d.slug] for d in self.space]


ENCODER_SYSTEMS = ("head, encoder", "head, encoder (dimension given)")
LIKELIEST = "likelihood (likeliest dim.)"  # a scorer zoo's decisions read on the head's likeliest dimension only
OBSERVED = "oracle, observed dimensions"


def encoder_head_estimator(mixed: MixedModel | ScorerModel, table: Table, data: Path, encoder: str,
                           seed: int) -> tuple[Estimator, dict[str, float]]:
    """The head estimator with the zoo's head refit on `encoder`'s features, as `train --head-encoder` fits it."""
    space = mixed.zoo.space
    train = [x for x in load_scenarios(data / "vcd_train.json", data_space(space))
             if space.has_dimension(x.dimension)]
    config = TrainConfig(head_encoder=encoder, head_steps=int(mixed.zoo.training.get("head_steps", 300)), seed=seed)
    head, report = train_head(mixed.model, mixed.tokenizer, train, table.scenarios, space, config)
    texts = [o.text for sc in table.scenarios for o in sc.options]
    features = head_features(mixed.model, mixed.tokenizer, texts, head.encoder)
    readings = inference.read_options(head, features, [len(sc.options) for sc in table.scenarios])
    reports = {"encoder": report["pole_accuracy"],
               "base": float(mixed.zoo.training.get("head_dev_pole_accuracy", float("nan")))}
    return Estimator(space, head, replace(table, readings=readings)), reports


# -------------------------------------------------------------------------- picking


def pole_weights(vector: Sequence[float]) -> torch.Tensor:
    v = torch.tensor(vector, dtype=torch.float32)
    return torch.stack([v.clamp_min(0), (-v).clamp_min(0)], -1).reshape(-1)


def best(calibrated: torch.Tensor, base: torch.Tensor) -> int:
    """pft_adapters.choose's rule: highest calibrated score; a full tie goes to the base's own preference."""
    if float(calibrated.max() - calibrated.min()) < 1e-9:
        return int(base.argmax())
    return int(calibrated.argmax())


class Picker:
    """Which option a mix picks on a dev scenario: first order from the table, or exact (cached per pair)."""

    def __init__(self, mixed: MixedModel | ScorerModel, table: Table, s: Settings):
        self.mixed, self.table, self.s = mixed, table, s
        self.exact: dict[tuple[int, tuple[float, ...]], int] = {}
        self.pending: set[tuple[int, tuple[float, ...]]] = set()

    @staticmethod
    def key(vector: Sequence[float]) -> tuple[float, ...]:
        return tuple(round(float(x), 3) + 0.0 for x in vector)

    def approx(self, scenario: int, vector: Sequence[float]) -> int:
        t = self.table
        weights = pole_weights(self.key(vector))
        if t.scorer:  # minus the score under the mirrored vector, as `ScorerModel.choose` calibrates
            weights = weights - self.mirrored(self.key(vector), t.dim[scenario])
        return best(t.poles[scenario] @ weights, t.base[scenario])

    @functools.cache
    def mirrored(self, key: tuple[float, ...], dim: int) -> torch.Tensor:
        """Pole weights of `pft_adapters.mix.mirror` of the vector on dimension `dim`."""
        slugs = [d.slug for d in self.mixed.zoo.space]
        return self.mixed.weights(mirror(PreferenceVector(dict(zip(slugs, key))), slugs[dim])).float().cpu()

    def request(self, scenario: int, vector: Sequence[float]) -> None:
        k = (scenario, self.key(vector))
        if self.s.exact and k not in self.exact:
            self.pending.add(k)

    def run(self) -> int:
        """Score every pending pair under the full mix; returns how many (scenario, vector) pairs that was."""
        pending = sorted(self.pending)
        self.pending.clear()
        if not pending:
            return 0
        if isinstance(self.mixed, ScorerModel):
            slugs = [d.slug for d in self.mixed.zoo.space]
            picks = self.mixed.choose([self.table.scenarios[i] for i, _ in pending],
                                      [dict(zip(slugs, v)) for _, v in pending], batch_size=self.s.batch_size * 8)
            self.exact.update((k, c.index) for k, c in zip(pending, picks))
            return len(pending)
        requests = [(self.table.scenarios[i], pole_weights(v)) for i, v in pending]
        raw = score_rows(self.mixed, requests, self.s.batch_size, "scoring under the full mix")
        for (i, v), scores in zip(pending, raw):
            self.exact[(i, v)] = best(scores - self.table.base[i], self.table.base[i])
        return len(pending)

    def __call__(self, scenario: int, vector: Sequence[float]) -> int:
        if self.s.exact:
            return self.exact[(scenario, self.key(vector))]
        return self.approx(scenario, vector)


def alignment(table: Table, user: User, picks: Sequence[int], scenarios: Sequence[int] | None = None) -> float:
    scenarios = user.scoring if scenarios is None else scenarios
    right = [table.sign[i][p] == user.truth[table.dim[i]] for i, p in zip(scenarios, picks)]
    return sum(right) / len(right)


def summary(values: Sequence[float]) -> dict:
    n = len(values)
    mean = statistics.fmean(values) if n else float("nan")
    half = 1.96 * statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def incontext_picks(mixed: MixedModel | ScorerModel, table: Table, users: Sequence[User], ks: Sequence[int],
                    s: Settings) -> dict[int, list[float]]:
    """Per K, the in-context alignment of each user of the subset."""
    subset = users[: s.incontext_users]
    jobs = []  # (K, user index, scenario)
    for k in ks:
        for u, user in enumerate(subset):
            for i in user.scoring[: s.incontext_eval]:
                jobs.append((k, u, i))
    picked = (nearest_choice_picks(table, subset, jobs) if isinstance(mixed, ScorerModel) else
              pasted_history_picks(mixed, table, subset, jobs, s))
    picks: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (k, u, i), p in zip(jobs, picked):
        picks.setdefault((k, u), []).append((i, p))
    out: dict[int, list[float]] = {k: [] for k in ks}
    for (k, u), items in picks.items():
        out[k].append(alignment(table, subset[u], [p for _, p in items], [i for i, _ in items]))
    return out


def pasted_history_picks(mixed: MixedModel, table: Table, users: Sequence[User], jobs: Sequence[tuple[int, int, int]],
                         s: Settings) -> list[int]:
    """An LLM zoo's in-context baseline: the bare base with the user's last K chosen options in the prompt (PMI)."""
    requests = []
    for k, u, i in jobs:
        sc = table.scenarios[i]
        past = [table.scenarios[h].options[c].text for h, c in users[u].history[:k]]
        text = "Earlier choices of this person:\n" + "\n".join(f"- {p}" for p in past) + f"\n\nNow: {sc.text}"
        requests.append((Scenario(text, sc.dimension, sc.options), torch.zeros(len(mixed.zoo.space.pole_slugs))))
    raw = score_rows(mixed, requests, max(1, s.batch_size // 2), "in-context baseline", max_length=1024)
    return [best(scores - table.base[i], scores) for (_, _, i), scores in zip(jobs, raw)]


def nearest_choice_picks(table: Table, users: Sequence[User], jobs: Sequence[tuple[int, int, int]]) -> list[int]:
    """A scorer zoo's in-context baseline: a bare encoder scores nothing, so the history serves as examples.

    Each option scores its mean cosine similarity (bare-encoder features) to the options the
    user chose minus that to the options they passed over; the highest wins.
    """
    unit = [torch.nn.functional.normalize(f, dim=-1) for f in table.features]
    out = []
    for k, u, i in jobs:
        past = users[u].history[:k]
        score = (unit[i] @ torch.stack([unit[h][c] for h, c in past]).T).mean(1)
        passed = [unit[h][j] for h, c in past for j in range(len(unit[h])) if j != c]
        if passed:
            score = score - (unit[i] @ torch.stack(passed).T).mean(1)
        out.append(int(score.argmax()))
    return out


# -------------------------------------------------------------------------- changing users


def flip_lags(table: Table, estimator: Estimator, s: Settings, rng: random.Random,
              extra: Sequence[tuple[str, float | None, bool]] = ()) -> dict:
    """Median (and mean) post-flip records until the inferred sign follows, per (method, half-life, dimension given).

    Every method at every half-life of the sweep with the dimension inferred, plus the `extra` settings.
    """
    present = sorted(set(table.dim))
    cases = []
    for _ in range(s.flip_users):
        d = rng.choice(present)
        sign = rng.choice((-1, 1))
        order = draw(table.by_dim(d), FLIP_TOTAL, rng)
        history = [(i, choose_as(table, i, sign if n < FLIP_AT else -sign, rng)) for n, i in enumerate(order)]
        cases.append((d, -sign, history))
    settings_ = [(m, hl, False) for m in ("head", "likelihood") for hl in s.half_lives] + list(extra)
    out = {}
    for method, hl, given in settings_:
        lags = []
        for d, new_sign, history in cases:
            right = [estimator(history[: FLIP_AT + j], method, hl, given=given)[d] * new_sign > 0
                     for j in range(FLIP_TOTAL - FLIP_AT + 1)]
            lag = FLIP_TOTAL - FLIP_AT + 1
            for j in range(len(right) - 1, -1, -1):
                if not right[j]:
                    break
                lag = j
            lags.append(lag)
        out[(method, hl, given)] = {"median": statistics.median(lags), "mean": statistics.fmean(lags),
                                    "followed": sum(x <= FLIP_TOTAL - FLIP_AT for x in lags) / len(lags)}
    return out


def one_decision(table: Table, estimator: Estimator) -> dict:
    """What a single decision tells, the zoo's reading of it unmixed with anything else.

    Per (scenario, option of a pole): the sign each estimator infers from that one choice
    (dimension given, no slip) against the option's pole, overall and (likelihood) per
    number of options in the scenario, since telling one option's pole among many is harder
    than picking a pole's best option; per scenario: whether the mixing head names the
    scenario's dimension.
    """
    right: dict[str, list[bool]] = {"head": [], "likelihood": []}
    by_size: dict[int, list[bool]] = {}
    for i, signs in enumerate(table.sign):
        for c, sign in enumerate(signs):
            if sign:
                for method, votes in right.items():
                    votes.append(estimator([(i, c)], method, None, given=True)[table.dim[i]] * sign > 0)
                by_size.setdefault(len(signs), []).append(right["likelihood"][-1])
    guesses = inference.guess_dimensions(table.readings, [None] * len(table.scenarios), estimator.head)
    named = [g == table.scenarios[i].dimension for i, g in enumerate(guesses)]
    return ({f"{m}_sign": sum(v) / len(v) for m, v in right.items()} | {"head_dimension": sum(named) / len(named)}
            | {"likelihood_sign_by_options": {n: sum(v) / len(v) for n, v in sorted(by_size.items())}})


def read_right(table: Table, space: ValueSpace, history: Sequence[tuple[int, int]], half_life: float | None) -> list[float]:
    """The likelihood estimator on a history read without error: each decision's dimension given and its
    options scored by their true poles (slips stay as chosen). What the records allow once every one is read right."""
    scores = []
    for i, _ in history:
        truth = torch.zeros(len(table.sign[i]), 2 * len(space))
        d = table.dim[i]
        truth[:, 2 * d] = torch.tensor(table.sign[i], dtype=torch.float)
        truth[:, 2 * d + 1] = -truth[:, 2 * d]
        scores.append(truth)
    dims = [table.scenarios[i].dimension for i, _ in history]
    result = inference.likelihood_estimate(scores, [c for _, c in history], dims, weights_for(len(history), half_life), space)
    return [result.vector[d.slug] for d in space]


def sign_share(table: Table, users: Sequence[User], vectors: Sequence[Sequence[float]], k: int) -> float:
    """Share of users whose inferred sign is right on every dimension with >= 2 observations in the history."""
    ok = total = 0
    for user, vector in zip(users, vectors):
        counts: dict[int, int] = {}
        for i, _ in user.history[:k]:
            counts[table.dim[i]] = counts.get(table.dim[i], 0) + 1
        dims = [d for d, c in counts.items() if c >= 2]
        if not dims:
            continue
        total += 1
        ok += all(vector[d] * user.truth[d] > 0 for d in dims)
    return ok / total if total else float("nan")


# -------------------------------------------------------------------------- main


def fmt(x: dict) -> str:
    return f"{x['mean']:.3f} [{x['low']:.3f}, {x['high']:.3f}]"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def hl_name(hl: float | None) -> str:
    return "none" if hl is None else f"{hl:g}"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = time.perf_counter()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # long in-context prompts are cut to fit by design; no per-file loading bars
    hf_logging.disable_progress_bar()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    s = settings(a, device)
    data = vcd_dir(a.data)
    if not (data / "vcd_dev.json").is_file():
        print(f"personalize: VCD data not found in {data}: pass --data DIR or set VCD_DIR", file=sys.stderr)
        return 2
    zoo_path = Path(a.zoo) if a.zoo and (Path(a.zoo) / MANIFEST).is_file() else build_zoo(a, data, device)
    if a.build_only:
        print(f"personalize: zoo at {_rel(zoo_path)}")
        return 0
    mixed = load_mixed(zoo_path, device)
    space = mixed.zoo.space
    head = inference._head(mixed.zoo, space)
    if head is None or getattr(mixed, "conditioned", False):
        print("personalize: this benchmark needs a per-pole zoo with a mixing head", file=sys.stderr)
        return 2
    if isinstance(mixed, ScorerModel):  # its in-context baseline costs nothing: every user, every scoring scenario
        s = replace(s, incontext_users=a.incontext_users or s.users, incontext_eval=a.incontext_eval or s.eval_per_user)
    rng = random.Random(s.seed)
    torch.manual_seed(s.seed)
    scenarios = dev_scenarios(data, space, s.per_dim, s.seed, a.split)
    default_hl = inference.DEFAULT_HALF_LIFE
    base_id = mixed.zoo.base.id
    print(f"personalize: zoo {_rel(zoo_path)} ({len(space)} dimensions, base {_rel(base_id) if Path(base_id).is_dir() else base_id}), "
          f"{len(scenarios)} {a.split} scenarios{' (IN-SAMPLE DIAGNOSTIC: the zoo was trained on them)' if a.split == 'train' else ''}, {s.users} users, K = {', '.join(map(str, s.ks))}, "
          f"{'exact' if s.exact else 'first-order'} scoring, default half-life {default_hl:g} decisions, "
          f"device {device}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
          + (" [quick]" if a.quick else ""), flush=True)
    phases = {}
    mark = time.perf_counter()
    table = build_table(mixed, head, scenarios, s, zoo_path)
    phases["table"] = time.perf_counter() - mark
    n_dims = len(space)
    kmax = max(max(s.ks), FLIP_TOTAL)
    users = sample_users(table, n_dims, s, rng, kmax)
    estimator = Estimator(space, head, table)
    picker = Picker(mixed, table, s)

    # single-preference: per dimension the pole most users hold (ties: the first pole)
    single = [1 if sum(u.truth[d] for u in users) >= 0 else -1 for d in range(n_dims)]
    mark = time.perf_counter()
    vectors: dict[tuple[str, int], list[list[float]]] = {}
    systems: tuple[str, ...] = ("head", "head (chosen option alone)", "likelihood", "head (dimension given)", "likelihood (dimension given)")
    if isinstance(mixed, ScorerModel):
        systems += (LIKELIEST,)
    estimators = dict.fromkeys(systems, estimator)
    if a.head_encoder:
        encoder_estimator, head_reports = encoder_head_estimator(mixed, table, data, a.head_encoder, s.seed)
        systems += ENCODER_SYSTEMS
        estimators |= dict.fromkeys(ENCODER_SYSTEMS, encoder_estimator)
    for k in s.ks:
        for name in systems:
            method = "likelihood" if name.startswith("likelihood") else "head"
            vectors[(name, k)] = [estimators[name](u.history[:k], method, default_hl,
                                                   contrast=name != "head (chosen option alone)", given="given" in name,
                                                   likeliest=name == LIKELIEST)
                                  for u in users]
    for k in s.ks:  # the ceiling of any estimator: the true signs, on the dimensions the history shows at all
        vectors[(OBSERVED, k)] = [[float(t) if any(table.dim[i] == d for i, _ in u.history[:k]) else 0.0
                                   for d, t in enumerate(u.truth)] for u in users]
    systems += (OBSERVED,)
    vectors_none = {k: {m: [estimator(u.history[:k], m, None) for u in users] for m in ("head", "likelihood")}
                    for k in s.ks if k in (10, 20)}
    phases["estimate"] = time.perf_counter() - mark

    fixed = {"oracle": [list(map(float, u.truth)) for u in users], "single-preference": [list(map(float, single))] * len(users)}
    for u_idx, user in enumerate(users):
        for i in user.scoring:
            for vecs in list(fixed.values()):
                picker.request(i, vecs[u_idx])
            for k in s.ks:
                for name in systems:
                    picker.request(i, vectors[(name, k)][u_idx])
    mark = time.perf_counter()
    scored_pairs = picker.run()
    phases["exact_scoring"] = time.perf_counter() - mark

    results: dict[str, dict[int, dict]] = {}
    base_row = summary([alignment(table, u, [int(table.base[i].argmax()) for i in u.scoring]) for u in users])
    results["base"] = {k: base_row for k in s.ks}
    for name, vecs in fixed.items():
        row = summary([alignment(table, u, [picker(i, vecs[j]) for i in u.scoring]) for j, u in enumerate(users)])
        results[name] = {k: row for k in s.ks}
    for name in systems:
        results[name] = {k: summary([alignment(table, u, [picker(i, vectors[(name, k)][j]) for i in u.scoring])
                                     for j, u in enumerate(users)]) for k in s.ks}
    agreement = None
    if s.exact:
        same = total = 0
        for j, u in enumerate(users):
            for vec in [fixed["oracle"][j]] + [vectors[(n, k)][j] for n in ("head", "likelihood") for k in s.ks]:
                for i in u.scoring:
                    same += picker(i, vec) == picker.approx(i, vec)
                    total += 1
        agreement = same / total
    order = ("base", "single-preference", "head", "head (chosen option alone)", "likelihood") + \
        ((LIKELIEST,) if LIKELIEST in systems else ()) + \
        ("head (dimension given)", "likelihood (dimension given)", OBSERVED, "oracle")
    print("\n  user alignment (mean over users, 95% interval; in-context: at the end)")
    print(f"  {'system':28s}" + "".join(f"{'K=' + str(k):>26s}" for k in s.ks))
    for name in order + (ENCODER_SYSTEMS if a.head_encoder else ()):
        print(f"  {name:28s}" + "".join(f"{fmt(results[name][k]):>26s}" for k in s.ks))
    if a.head_encoder:
        print(f"  (head, encoder: the mixing head refit on {a.head_encoder}'s features of the training options, as "
              f"`train --head-encoder` fits it; dev pole accuracy {head_reports['encoder']:.3f} vs the base-LM head's "
              f"{head_reports['base']:.3f})")
    if agreement is not None:
        print(f"  (first-order picks agree with exact picks on {agreement:.1%} of the scored pairs; {scored_pairs} pairs scored exactly)")

    single_decision = one_decision(table, estimator)
    print(f"  one decision (dimension given, no slip): the sign inferred from it is the chosen option's pole for "
          f"{single_decision['head_sign']:.1%} (head) and {single_decision['likelihood_sign']:.1%} (likelihood) of the "
          f"(scenario, option) pairs; the head names an unlabelled scenario's dimension for "
          f"{single_decision['head_dimension']:.1%} of them; likelihood by options per scenario: "
          + ", ".join(f"{n}: {share:.1%}" for n, share in single_decision["likelihood_sign_by_options"].items()))

    # targets at K = 5 / K = 10
    k5 = 5 if 5 in s.ks else s.ks[len(s.ks) // 2]
    better = max(("head", "likelihood"), key=lambda n: results[n][k5]["mean"])
    oracle5, best5, single5 = results["oracle"][k5]["mean"], results[better][k5]["mean"], results["single-preference"][k5]["mean"]
    gap_ok = oracle5 - best5 <= TARGET_ORACLE_GAP
    gain = best5 / single5 - 1 if single5 > 0 else float("inf")
    gain_ok = gain > TARGET_GAIN
    k10 = 10 if 10 in s.ks else max(s.ks)
    signs = {n: sign_share(table, users, vectors[(n, k10)], k10) for n in ("head", "likelihood")}
    signs_given = {n: sign_share(table, users, vectors[(f"{n} (dimension given)", k10)], k10) for n in ("head", "likelihood")}
    signs_none = {m: sign_share(table, users, v, k10) for m, v in vectors_none.get(k10, {}).items()}
    signs_read_right = sign_share(table, users, [read_right(table, space, u.history[:k10], default_hl) for u in users], k10)
    sign_ok = signs[better] >= TARGET_SIGN
    print(f"\n  K={k5}: better estimator '{better}' {best5:.3f} vs oracle {oracle5:.3f}: gap {oracle5 - best5:+.3f}"
          f"   target <= {TARGET_ORACLE_GAP:.2f}   {verdict(gap_ok)}")
    print(f"  K={k5}: '{better}' vs single-preference {single5:.3f}: gain {gain:+.1%}   target > +{TARGET_GAIN:.2%}   {verdict(gain_ok)}")
    print(f"  K={k10}: users with every sign right (dims with >= 2 observations): head {signs['head']:.3f}, likelihood "
          f"{signs['likelihood']:.3f} (no recency: " + ", ".join(f"{m} {v:.3f}" for m, v in signs_none.items())
          + f"; dimension given: head {signs_given['head']:.3f}, likelihood {signs_given['likelihood']:.3f}"
          + (f"; likelihood on the likeliest dimension only: {sign_share(table, users, vectors[(LIKELIEST, k10)], k10):.3f}"
             if LIKELIEST in systems else "") + f"; every decision read right: {signs_read_right:.3f})"
          f"   target >= {TARGET_SIGN:.2f} ({better})   {verdict(sign_ok)}")

    # changing users and the half-life sweep
    mark = time.perf_counter()
    lags = flip_lags(table, estimator, s, rng, [(m, hl, True) for m in ("head", "likelihood") for hl in (default_hl, None)])
    sweep = {}
    for hl in s.half_lives:
        for m in ("head", "likelihood"):
            vecs = [estimator(u.history[:k10], m, hl) for u in users]
            sweep[(m, hl)] = sign_share(table, users, vecs, k10)
    phases["changing"] = time.perf_counter() - mark
    lag_default = lags[(better, default_hl, False)]["median"] if (better, default_hl, False) in lags else float("nan")
    lag_ok = lag_default <= TARGET_LAG
    print(f"\n  changing users ({s.flip_users}, one dimension flips after {FLIP_AT} of {FLIP_TOTAL} records): median post-flip "
          f"records until the sign follows (mean; share followed within {FLIP_TOTAL - FLIP_AT}), and K={k10} sign share of the "
          f"stationary users, per half-life")
    print(f"  {'half-life':>10s}" + "".join(f"{m + ' lag':>26s}{m + ' signs':>18s}" for m in ("head", "likelihood")))
    for hl in s.half_lives:
        cells = ""
        for m in ("head", "likelihood"):
            x = lags[(m, hl, False)]
            cells += f"{x['median']:>9g} ({x['mean']:4.1f}; {x['followed']:4.0%})" + f"{sweep[(m, hl)]:>18.3f}"
        mark_default = " <- default" if hl == default_hl else ""
        print(f"  {hl_name(hl):>10s}{cells}{mark_default}")
    lag_none = lags.get((better, None, False), {}).get("median", float("nan"))
    print("  with the dimension given in the history: " + ", ".join(
        f"{m} median lag {lags[(m, default_hl, True)]['median']:g} (no recency {lags[(m, None, True)]['median']:g})"
        for m in ("head", "likelihood")))
    print(f"  default half-life {default_hl:g}: '{better}' median lag {lag_default:g} (no recency: {lag_none:g})"
          f"   target <= {TARGET_LAG}   {verdict(lag_ok)}")

    # cost of one inference through the library (K = 10, on the model)
    mark = time.perf_counter()
    timings = {}
    sample = users[: s.timing_users]
    for method in ("head", "likelihood"):
        times = []
        for j, user in enumerate(sample):
            decisions = [Decision(table.scenarios[i].text, tuple(o.text for o in table.scenarios[i].options), c)
                         for i, c in user.history[:k10]]
            if j == 0:
                inference.infer(mixed, decisions, method)  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            inference.infer(mixed, decisions, method)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        timings[method] = statistics.median(times)
    phases["timing"] = time.perf_counter() - mark
    print(f"\n  wall time per inference (K={k10}, median of {len(sample)}, {device}): head {timings['head'] * 1000:.0f} ms, "
          f"likelihood {timings['likelihood'] * 1000:.0f} ms   (no target)")

    # in-context last: the costliest baseline (long prompts, nothing shared between users)
    mark = time.perf_counter()
    incontext = incontext_picks(mixed, table, users, s.ks, s)
    results["in-context"] = {k: summary(v) for k, v in incontext.items()}
    phases["in_context"] = time.perf_counter() - mark
    n_ic = min(s.incontext_users, len(users))
    print(f"\n  {'in-context':28s}" + "".join(f"{fmt(results['in-context'][k]):>26s}" for k in s.ks)
          + f"   ({n_ic} users x {s.incontext_eval} scenarios, "
          + ("nearest past choice: similarity to the chosen minus the passed-over options)" if table.scorer else
             "history pasted into the prompt, newest last)"))

    met = sum((gap_ok, gain_ok, sign_ok, lag_ok))
    seconds = time.perf_counter() - started
    figures = {
        "settings": asdict(s) | {"zoo": _rel(zoo_path), "quick": a.quick, "split": a.split, "scenarios": len(scenarios)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "device": device,
                    "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                    "threads": torch.get_num_threads()},
        "zoo_training": mixed.zoo.training,
        "alignment": {name: {str(k): v for k, v in rows.items()} for name, rows in results.items()},
        "first_order_agreement": agreement,
        "head_encoder": {"encoder": a.head_encoder, "head_dev_pole_accuracy": head_reports} if a.head_encoder else None,
        "targets": {
            "oracle_gap": {"K": k5, "better": better, "value": oracle5 - best5, "target": TARGET_ORACLE_GAP, "met": gap_ok},
            "gain_over_single": {"K": k5, "value": gain, "target": TARGET_GAIN, "met": gain_ok},
            "signs": {"K": k10, "head": signs["head"], "likelihood": signs["likelihood"], "no_recency": signs_none,
                      "dimension_given": signs_given, "read_right": signs_read_right, "target": TARGET_SIGN, "met": sign_ok},
            "flip_lag": {"half_life": default_hl, "value": lag_default, "no_recency": lag_none, "target": TARGET_LAG, "met": lag_ok},
        },
        "changing": {f"{m}@{hl_name(hl)}" + ("/dimension-given" if given else ""): v for (m, hl, given), v in lags.items()},
        "sign_share_by_half_life": {f"{m}@{hl_name(hl)}": v for (m, hl), v in sweep.items()},
        "one_decision": single_decision,
        "seconds_per_inference": timings,
        "seconds": seconds,
        "phase_seconds": phases,
    }
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\npersonalize: {met}/4 targets met: K={k5} {better} {best5:.3f} vs oracle {oracle5:.3f}, single-preference "
          f"{single5:.3f} ({gain:+.1%}); K={k10} signs {signs[better]:.3f}; flip lag {lag_default:g} "
          f"(no recency {lag_none:g}); {'exact' if s.exact else 'first-order'} scoring, {s.users} users ({seconds:.0f} s)")
    return 0 if met == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
