"""`infer`: a user's preference vector from their past decisions (a JSONL history)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import BASE_OPTION, DEVICE_OPTION, HALF_LIFE_HELP, HISTORY_HELP, JSON_OPTION, METHOD_HELP, checked_device, echo_json


def check_inference_options(history: Path | None, method: str, half_life: str | None) -> None:
    """Refuse, before any model loads, --method or --half-life without --history, and values `infer` does not know."""
    from pft_adapters.errors import PFTError
    from pft_adapters.infer import DEFAULT_METHOD, METHODS, parse_half_life

    if history is None:
        if method != DEFAULT_METHOD or half_life is not None:
            raise PFTError("--method and --half-life go with --history: they say how to infer the vector")
        return
    if method not in METHODS:
        raise PFTError(f"--method '{method}' is not one of {', '.join(METHODS)}")
    parse_half_life(half_life)


def describe(result, space) -> list[str]:
    lines = [f"vector ({result.method}): {result.vector.describe()}"]
    for dim in space:
        v = result.vector.get(dim.slug, 0.0)
        n = result.evidence.get(dim.slug, 0)
        if n == 0:
            lines.append(f"  {dim.slug:14s}  0      no evidence")
            continue
        pole = dim.first.name if v > 0 else dim.second.name if v < 0 else "neither pole"
        lines.append(f"  {dim.slug:14s} {v:+.2f}  {pole:24s} confidence {result.confidence.get(dim.slug, 0.0):.2f}, "
                     f"{n} decision{'s' if n != 1 else ''}")
    return lines


def infer_command(
    zoo: str = typer.Argument(..., help="Zoo folder or Hub name (org/name, org/name@revision)."),
    history: Path = typer.Option(..., "--history", help=HISTORY_HELP),
    method: str = typer.Option("head", "--method", help=METHOD_HELP),
    half_life: str | None = typer.Option(None, "--half-life", help="Recency half-life: " + HALF_LIFE_HELP),
    base: str | None = BASE_OPTION,
    device: str | None = DEVICE_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Infer a user's preference vector from their past decisions, with a confidence and evidence count per dimension.

    The JSON output is accepted as is by `mix --vector @file`. Dimensions with no evidence stay 0.

    Examples:

      pft-adapters infer zoo/ --history alice.jsonl --json > alice.json

      pft-adapters infer zoo/ --history alice.jsonl --half-life 5 --method likelihood

      pft-adapters infer zoo/ --history alice.jsonl --half-life 3d
    """
    from pft_adapters.history import load_history
    from pft_adapters.infer import check_decisions, infer
    from pft_adapters.mix import load_mixed
    from pft_adapters.zoo import Zoo

    check_inference_options(history, method, half_life)
    device = checked_device(device)
    held = Zoo.from_pretrained(zoo)
    decisions = load_history(history, held.space)  # checked against the zoo's dimensions before its base loads
    check_decisions(held, decisions)
    mixed = load_mixed(held, base=base, device=device)
    result = infer(mixed, decisions, method=method, half_life=half_life)
    if json_out:
        echo_json(result.to_json())
        return
    for line in describe(result, mixed.zoo.space):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("infer")(infer_command)
