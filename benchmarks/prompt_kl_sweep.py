"""The prompt KL's weight side by side: what it costs in choosing and buys in language modelling.

For each weight (`train --prompt-kl`), trains the paired zoo exactly as `vcd_quality.py` does
(offline small base, vcd_train.json, the same settings; zoos cached under benchmarks/cache/ and
shared with that benchmark) and measures on vcd_dev.json what its report judges for the paired
zoo: select-one macro accuracy (mirror calibration; target >= 0.80), composition's worst drift
(target <= 0.03) and the worst mix's perplexity on held-out scenario text against the base's
(risk=1,time=-1; target <= 1.10x), and beside them the open-ended score of its answers (the
head judge, 0-10; no target): how much of a pole its free answers show. The default weight (`pft_adapters.train.DEFAULT_PROMPT_KL`)
comes from this table; the targets are judged on it.

    python benchmarks/prompt_kl_sweep.py                  # weights 0, 1, 1.5, 3: about 8 minutes each on 2 CPU cores
    python benchmarks/prompt_kl_sweep.py --weights 0,1.5
    python benchmarks/prompt_kl_sweep.py --quick          # a short check: tiny base, small slices; targets not judged
    python benchmarks/prompt_kl_sweep.py --weights 1.5 --orthogonality 10   # each zoo also with `train --orthogonality 10`
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vcd_quality as vq  # noqa: E402

from pft_adapters.data import load_scenarios  # noqa: E402
from pft_adapters.evaluate import choices, open_ended, pole_cases, score_select_one  # noqa: E402
from pft_adapters.judges import HeadJudge  # noqa: E402
from pft_adapters.mix import MixedModel  # noqa: E402
from pft_adapters.train import DEFAULT_PROMPT_KL  # noqa: E402
from pft_adapters.values import ValueSpace  # noqa: E402
from pft_adapters.vector import PreferenceVector  # noqa: E402

WORST_MIX = "risk=1,time=-1"


def measure(weight: float, s: vq.Settings, base: str, train, dev, space: ValueSpace) -> dict:
    """Train (or reuse) the paired zoo at this weight and measure it as vcd_quality's report does."""
    seconds: dict[str, float] = {}
    zoo = vq.trained_zoo(base, replace(s, prompt_kl=weight), train, space, "paired", None, False, seconds)
    mixed = MixedModel(zoo, *vq.fresh_model(base, s))
    cases = pole_cases(dev, space)
    alone = score_select_one(cases, choices(mixed, cases, "mirror", desc=f"choosing (weight {weight:g})"), space)
    comp = vq.composition(mixed, cases, alone, "mirror")
    ppl = vq.perplexities(mixed, [x.text for x in dev], {"base": None, WORST_MIX: PreferenceVector({"risk": 1.0, "time": -1.0})})
    answers = open_ended(mixed, cases, HeadJudge(mixed), s.max_new_tokens, progress=False)
    return {"weight": weight, "select_one_macro": alone.macro_accuracy, "composition_worst": comp["worst_abs_diff"],
            "perplexity_ratio": ppl[WORST_MIX] / ppl["base"], "open_ended": answers.to_json()["score"],
            "training_seconds": seconds["paired"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help=f"comma-separated weights (default 0,1,{DEFAULT_PROMPT_KL:g},3; --quick 0,{DEFAULT_PROMPT_KL:g})")
    p.add_argument("--quick", action="store_true", help="short check: vcd_quality's --quick settings; targets not judged")
    p.add_argument("--data-dir", type=Path, default=vq.DATA_DIR, help="folder holding vcd_train.json and vcd_dev.json")
    p.add_argument("--orthogonality", type=float, default=0.0, help="train every zoo with this `train --orthogonality` "
                   "weight as well (default 0: off, as vcd_quality)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    default_weights = f"0,{DEFAULT_PROMPT_KL:g}" if a.quick else f"0,1,{DEFAULT_PROMPT_KL:g},3"
    weights = sorted({float(w) for w in (a.weights or default_weights).split(",")})
    train_file, dev_file = a.data_dir / "vcd_train.json", a.data_dir / "vcd_dev.json"
    for f in (train_file, dev_file):
        if not f.is_file():
            print(f"prompt_kl_sweep: {f} not found; pass --data-dir with vcd_train.json and vcd_dev.json", file=sys.stderr)
            return 2
    s = vq.settings(vq.parse_args(["--orthogonality", str(a.orthogonality)] + (["--quick"] if a.quick else [])))
    torch.set_num_threads(s.threads)
    space = ValueSpace.builtin()
    train = vq.per_dimension(load_scenarios(train_file, space), s.train_per_dim)
    dev = vq.per_dimension(load_scenarios(dev_file, space), s.dev_per_dim)
    base, _ = vq.get_base(s, train, train_file)
    started = time.perf_counter()
    rows = []
    for weight in weights:
        rows.append(measure(weight, s, base, train, dev, space))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n  {'weight':>8} {'select-one':>11} {'composition':>12} {'perplexity':>11} {'open-ended':>11} {'training':>9}")
    for r in rows:
        mark = "  <- default" if r["weight"] == DEFAULT_PROMPT_KL else ""
        print(f"  {r['weight']:8g} {r['select_one_macro']:11.3f} {r['composition_worst']:12.3f} "
              f"{r['perplexity_ratio']:10.3f}x {r['open_ended']:11.2f} {r['training_seconds']:8.0f}s{mark}")
    if s.orthogonality:
        print(f"  every zoo trained with orthogonality {s.orthogonality:g}")
    print(f"  targets: select-one >= {vq.TARGET_SELECT_ONE:.2f}, composition <= {vq.TARGET_COMPOSITION:.2f}, "
          f"perplexity <= {vq.TARGET_PERPLEXITY:.2f}x (worst mix {WORST_MIX} against the base)")
    if a.json:
        a.json.write_text(json.dumps({"settings": vars(s), "default": DEFAULT_PROMPT_KL, "runs": rows}, indent=2) + "\n")
    minutes = (time.perf_counter() - started) / 60
    judged = next((r for r in rows if r["weight"] == DEFAULT_PROMPT_KL), None)
    if a.quick or judged is None:
        print(f"prompt_kl_sweep: {len(rows)} weights in {minutes:.1f} min; targets not judged "
              f"({'quick run' if a.quick else 'the default weight was not run'})")
        return 0
    met = [judged["select_one_macro"] >= vq.TARGET_SELECT_ONE, judged["composition_worst"] <= vq.TARGET_COMPOSITION,
           judged["perplexity_ratio"] <= vq.TARGET_PERPLEXITY]
    print(f"prompt_kl_sweep: {sum(met)}/3 targets met at the default weight {DEFAULT_PROMPT_KL:g}"
          f"{f' (orthogonality {s.orthogonality:g})' if s.orthogonality else ''}: select-one "
          f"{judged['select_one_macro']:.3f}, composition {judged['composition_worst']:.3f}, perplexity "
          f"{judged['perplexity_ratio']:.3f}x; {len(rows)} weights in {minutes:.1f} min")
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
