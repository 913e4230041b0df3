"""Small helpers every command shares: JSON output and reading a --pairs file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from pft_adapters.values import ValueSpace, load_pairs

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object (for scripts) instead of text.")
PAIRS_OPTION = typer.Option(None, "--pairs", help="JSON file defining extra value dimensions (see docs/formats.md).")
PAIR_OPTION = typer.Option(None, "--pair", help="Dimension of A/B items in the data (A/B items do not name one; "
                           "default: the only one --pairs defines).")
COMPOSE_OPTION = typer.Option("model", "--compose", help="How a vector over several dimensions scores options: model (the "
                              "mixed model's score; default) or dimensions (each dimension mixed in alone, the scores "
                              "added, so under the mirror each dimension chooses as it does alone); see docs/concepts.md#composition.")
MATCHING_OPTION = typer.Option(None, "--matching", help="Pole of the A/B matching answer (default: the pair's first pole).")


def seed_option(default: int | None, help: str):
    """A --seed option: any seed torch takes (0 to 2**63 - 1)."""
    return typer.Option(default, "--seed", min=0, max=2**63 - 1, help=help)


def checkpoint_folder(out: Path) -> Path:
    """Where `train` and `extend` keep the checkpoint of a run writing `out` (beside it; removed when the run ends)."""
    return out.with_name(out.name + ".checkpoint")


def drop_checkpoint(out: Path) -> None:
    shutil.rmtree(checkpoint_folder(out), ignore_errors=True)


def echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


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
