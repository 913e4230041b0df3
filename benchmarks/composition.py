"""Vectors over several dimensions: the mixed model's score against composition by dimensions, side by side.

For every dev scenario and each pole of its dimension (the cases of `eval --all-poles`), select-one
per dimension with that dimension alone, then with other dimensions set as well:

- a second dimension at the opposite sign, rotating over the others (vcd_quality's composition cases);
- every dimension, the others at random signs (a user whose vector is full).

Each is chosen with `compose="model"` (the default: the mixed model's score) and `compose="dimensions"`
(each dimension mixed in alone, the scores added; docs/concepts.md#composition), under the mirror
calibration (the default of `eval` and `mix`) and under the calibration that scores without a mirror
(a scorer zoo's own score, as `rerank` ranks; an LLM zoo's gain over the base, PMI), with the seconds
each pass took.

Target (issue 8's composition bound, for the composition this option provides): under
`compose="dimensions"` and the mirror, each dimension's accuracy with a second dimension mixed in is
within 0.03 of its accuracy alone. The mixed model's drift is shown beside it; benchmarks/vcd_quality.py
judges the default composition on the same bound.

    python benchmarks/composition.py --zoo ZOO            # a trained zoo folder, LLM or scorer
    python benchmarks/composition.py --zoo ZOO --quick    # 3 dev scenarios per dimension

A zoo to measure: the scorer zoo `python benchmarks/personalize.py --build-only` builds (and caches),
or any `pft-adapters train` output.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from pft_adapters.data import load_scenarios
from pft_adapters.evaluate import Case, choices, pole_cases, score_select_one
from pft_adapters.mix import COMPOSITIONS, MixedModel, load_mixed
from pft_adapters.scorer import ScorerModel
from pft_adapters.values import ValueSpace, data_space
from pft_adapters.vector import PreferenceVector
from vcd_quality import DATA_DIR, TARGET_COMPOSITION, partnered, per_dimension


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", required=True, help="a trained zoo folder (LLM or scorer)")
    p.add_argument("--quick", action="store_true", help="3 dev scenarios per dimension (a check; the target is not judged)")
    p.add_argument("--dev-per-dim", type=int, help="at most N dev scenarios per dimension (default all; --quick 3)")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder holding vcd_dev.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the random signs of the full vectors")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the base's own)")
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    return p.parse_args(argv)


def full_vectors(space: ValueSpace, cases: Sequence[Case], seed: int) -> list[Case]:
    """Each case with every other dimension set too, at a random sign."""
    rng = random.Random(seed)
    out = []
    for case in cases:
        own = space.dimension_of(case.target).slug
        vector = {d.slug: case.vector[own] if d.slug == own else rng.choice((-1.0, 1.0)) for d in space}
        out.append(Case(case.scenario, PreferenceVector(vector), case.target))
    return out


def timed_select_one(mixed: MixedModel | ScorerModel, cases: Sequence[Case], calibrate: str, compose: str) -> dict:
    """Select-one per dimension and macro over poles, and the seconds the choosing took."""
    start = time.perf_counter()
    picks = choices(mixed, cases, calibrate, desc=f"{calibrate}, {compose}", compose=compose)
    seconds = time.perf_counter() - start
    result = score_select_one(cases, picks, mixed.zoo.space)
    return {"macro": result.macro_accuracy, "per_dimension": result.per_dimension, "seconds": seconds,
            "picks": [p.index for p in picks]}


def compare(mixed: MixedModel | ScorerModel, cases: Sequence[Case], seed: int) -> list[dict]:
    """Every (other dimensions, calibration) row: alone, then each composition with its drift from alone."""
    space = mixed.zoo.space
    plain = "none" if mixed.zoo.kind == "scorer" else "base"
    full = full_vectors(space, cases, seed)
    settings = [("a second dimension", "mirror", partnered(space, cases)),
                ("every dimension", "mirror", full), ("every dimension", plain, full)]
    alone: dict[str, dict] = {}
    rows = []
    for others, calibrate, mixed_cases in settings:
        if calibrate not in alone:
            alone[calibrate] = timed_select_one(mixed, cases, calibrate, "model")
        row: dict = {"others": others, "calibration": calibrate, "cases": len(mixed_cases), "alone": alone[calibrate]}
        for compose in COMPOSITIONS:
            figures = timed_select_one(mixed, mixed_cases, calibrate, compose)
            diffs = {d: acc - alone[calibrate]["per_dimension"][d] for d, acc in figures["per_dimension"].items()}
            figures["worst_abs_diff"] = max(abs(x) for x in diffs.values())
            figures["same_picks_as_alone"] = sum(a == b for a, b in zip(figures["picks"], alone[calibrate]["picks"]))
            row[compose] = figures
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    mixed = load_mixed(a.zoo, device=a.device)
    space = mixed.zoo.space
    dev = per_dimension(load_scenarios(a.data_dir / "vcd_dev.json", data_space(space)),  # VCD's other dimensions too
                        a.dev_per_dim or (3 if a.quick else None))
    cases = pole_cases([s for s in dev if space.has_dimension(s.dimension)], space, poles=mixed.zoo.pole_slugs)
    rows = compare(mixed, cases, a.seed)
    print(f"\ncomposition: zoo {a.zoo} ({mixed.zoo.kind}, {len(space)} dimensions), {len(cases)} cases of vcd_dev.json, "
          f"device {next(mixed.model.parameters()).device}, torch {torch.__version__} ({torch.get_num_threads()} threads)\n")
    print(f"  {'other dimensions set':22s} {'calibration':12s} {'alone':>6s}   "
          + "   ".join(f"{c + ': macro, worst drift, same picks, s':>44s}" for c in COMPOSITIONS))
    for r in rows:
        cells = [f"{r[c]['macro']:.3f}, {r[c]['worst_abs_diff']:.3f}, {r[c]['same_picks_as_alone']:4d}/{r['cases']:<4d}, "
                 f"{r[c]['seconds']:6.1f}" for c in COMPOSITIONS]
        print(f"  {r['others']:22s} {r['calibration']:12s} {r['alone']['macro']:6.3f}   " + "   ".join(f"{x:>44s}" for x in cells))
    ratios = [r["dimensions"]["seconds"] / r["model"]["seconds"] for r in rows]
    print("  time, dimensions / model: " + ", ".join(f"{r['others']} ({r['calibration']}) {x:.2f}x" for r, x in zip(rows, ratios)))
    second = rows[0]
    drift = second["dimensions"]["worst_abs_diff"]
    ok = drift <= TARGET_COMPOSITION
    print(f"\n  a second dimension, mirror: worst |mixed - alone| per dimension, compose=dimensions {drift:.3f} "
          f"(compose=model {second['model']['worst_abs_diff']:.3f})   target <= {TARGET_COMPOSITION:.2f}   "
          f"{'ok' if ok else 'MISSED'}{' (not judged: --quick)' if a.quick else ''}")
    if a.json:
        figures = {"zoo": a.zoo, "kind": mixed.zoo.kind, "cases": len(cases), "rows": rows,
                   "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
                   "seconds": time.perf_counter() - started}
        a.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    full = rows[1]
    print(f"\ncomposition: {int(ok)}/1 targets met{' (--quick: not judged)' if a.quick else ''}; second dimension drift {drift:.3f} by dimensions against "
          f"{second['model']['worst_abs_diff']:.3f} by the mixed model; every dimension set, mirror: macro "
          f"{full['dimensions']['macro']:.3f} by dimensions, {full['model']['macro']:.3f} by the mixed model, "
          f"{full['alone']['macro']:.3f} alone ({time.perf_counter() - started:.0f} s)")
    return 0 if ok or a.quick else 1


if __name__ == "__main__":
    sys.exit(main())
