"""Small helpers every command shares: JSON output and reading a --pairs file."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pft_adapters.atomic import check_target
from pft_adapters.errors import PFTError
from pft_adapters.values import ValueSpace, load_pairs

if TYPE_CHECKING:  # annotations only: --help starts without importing torch
    from pft_adapters.data import Scenario
    from pft_adapters.infer import Inference
    from pft_adapters.vector import PreferenceVector
    from pft_adapters.zoo import Zoo

JSON_OPTION = typer.Option(False, "--json", help="Print the output as JSON (for scripts) instead of text.")
PAIRS_OPTION = typer.Option(None, "--pairs", help="JSON file defining extra value dimensions (see docs/formats.md).")
PAIR_OPTION = typer.Option(None, "--pair", help="Dimension of A/B items in the data (A/B items do not name one; "
                           "default: the only one --pairs defines).")
COMPOSE_OPTION = typer.Option("model", "--compose", help="How a vector over several dimensions scores options: model (the "
                              "mixed model's score; default) or dimensions (each dimension mixed in alone, the scores "
                              "added, so under the mirror each dimension chooses as it does alone); see docs/concepts.md#composition.")
MATCHING_OPTION = typer.Option(None, "--matching", help="Pole of the A/B matching answer (default: the pair's first pole).")
CALIBRATE_OPTION = typer.Option("mirror", "--calibrate", help="What option scores are measured against when choosing: "
                                "mirror (the vector with the scenario's dimension flipped; default), base (the bare base "
                                "model, PMI) or none (raw score); see docs/mix.md.")
BASE_OPTION = typer.Option(None, "--base", help="Read the base model (a scorer zoo's encoder) from here instead of the id "
                           "in the zoo (checked by fingerprint).")
DEVICE_OPTION = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, ... (default: the base's own); checked "
                             "before anything loads.")

HISTORY_HELP = "The user's past decisions, JSONL: one {\"scenario\", \"options\", \"chosen\"[, \"timestamp\", \"dimension\"]} per line (see docs/personalize.md)."
METHOD_HELP = ("head: the mixing head reads every option, the chosen one against the others (one forward pass, fast); "
               "likelihood: fit the vector so the mixed model prefers what the user chose (reads choices better, "
               "several forward passes per option; see docs/personalize.md#the-two-estimators).")
HALF_LIFE_HELP = ("a number of decisions (5: a decision 5 places before the newest counts half), a duration when every "
                  "decision has a timestamp (3d, 12h, 90m, 2w), or 'none' for equal weights. Default: 3 decisions.")
# `mix` and `rerank`: a vector inferred from a history instead of given
HISTORY_OPTION = typer.Option(None, "--history", help="Infer the vector from this history first (instead of --vector). " + HISTORY_HELP)
METHOD_OPTION = typer.Option("head", "--method", help="With --history: how to infer. " + METHOD_HELP)
HALF_LIFE_OPTION = typer.Option(None, "--half-life", help="With --history: the recency half-life, " + HALF_LIFE_HELP)


def seed_option(default: int | None, help: str):
    """A --seed option: any seed torch takes (0 to 2**63 - 1)."""
    return typer.Option(default, "--seed", min=0, max=2**63 - 1, help=help)


def checkpoint_folder(out: Path) -> Path:
    """Where `train` and `extend` keep the checkpoint of a run writing `out` (beside it; removed when the run ends)."""
    return out.with_name(out.name + ".checkpoint")


def check_out(out: Path, overwrite: bool, reads: Iterable[str | Path | None], resume: bool) -> None:
    """Refuse, before any loading or training, an --out of `train` or `extend` that cannot be written or would touch
    one of their inputs, and a `<out>.checkpoint` beside it that is no checkpoint (the run replaces, then removes it)
    or is one that a run without --resume (or --overwrite) would start over from nothing."""
    given = [p for p in reads if p]
    check_target(out, overwrite, reads=given)
    folder = checkpoint_folder(out)
    if folder.exists() and not (folder / "progress.json").is_file():
        raise PFTError(f"{folder} is in the way: a run writing --out {out} keeps its checkpoint there; move it, "
                       "or choose another --out")
    if folder.exists() and not (resume or overwrite):
        raise PFTError(f"an interrupted run left its checkpoint in {folder}: rerun with --resume to go on from it, "
                       "or with --overwrite to start over")
    check_target(folder, True, "--out's checkpoint", reads=given)


def held_out(dev: Path | None, space: ValueSpace, pair: str | None, matching: str | None,
             wanted: list[str]) -> list[Scenario] | None:
    """The --dev scenarios of the dimensions trained (None without --dev); a file with none of them is refused, as
    it would measure nothing."""
    if dev is None:
        return None
    from pft_adapters.data import load_scenarios

    scenarios = [s for s in load_scenarios(dev, space, pair=pair, matching=matching) if s.dimension in wanted]
    if not scenarios:
        raise PFTError(f"--dev {dev} holds no scenarios of {', '.join(wanted)}: give held-out data of the dimensions "
                       "trained, or leave --dev out")
    return scenarios


def drop_checkpoint(out: Path) -> None:
    shutil.rmtree(checkpoint_folder(out), ignore_errors=True)


def echo_json(obj: object) -> None:
    """Print valid JSON: a non-finite number (a zoo written by an older version may record NaN) is null."""
    typer.echo(json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False))


def _finite(obj: object) -> object:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def refuse_unused(ctx: typer.Context, options: dict[str, str], job: str, running: str) -> None:
    """Refuse the options (parameter name -> flag) the command line set: they go with `job`, not the `running` one,
    and would be ignored. Asked of the context, so a default written out is refused too and no default is restated
    (the source is read by name: typer ships its own copy of click's ParameterSource)."""
    unused = [flag for name, flag in options.items()
              if getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")]
    if unused:
        raise PFTError(f"{', '.join(unused)} {'goes' if len(unused) == 1 else 'go'} with {job}, not {running}: "
                       f"leave {'it' if len(unused) == 1 else 'them'} out")


def inferred_vector(zoo: Zoo, inferred: Inference, history: Path | None) -> PreferenceVector:
    """The vector inferred from `history`, checked against the zoo as loaded: one using a pole it does not hold
    (a zoo pulled with some poles only) is refused saying where it came from, since the user gave no vector."""
    try:
        return zoo.vector(inferred.vector)
    except PFTError as err:
        raise PFTError(f"the vector inferred from {history} is {inferred.vector.describe()}, but {err}") from None


def checked_device(device: str | None) -> str | None:
    """--device checked before any model loads (a typo or a GPU this machine lacks costs no load), 'auto' resolved;
    None keeps the base's own device."""
    from pft_adapters.train import pick_device

    return None if device is None else str(pick_device(device))


def value_space(pairs: Path | None) -> ValueSpace:
    """The built-in dimensions, plus those of a --pairs file."""
    return load_pairs(pairs) if pairs else ValueSpace.builtin()


def added_dimensions(space: ValueSpace) -> list:
    """The dimensions of `space` that are not built in."""
    builtin = ValueSpace.builtin().dimensions
    return [d for d in space if d not in builtin]


def default_pair(space: ValueSpace, pair: str | None, pairs_file: Path | None) -> str | None:
    """--pair, or the one dimension a --pairs file defines when it defines exactly one."""
    if pair is not None or pairs_file is None:
        return pair
    added = added_dimensions(space)
    return added[0].slug if len(added) == 1 else None
