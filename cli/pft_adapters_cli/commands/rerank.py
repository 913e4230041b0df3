"""`rerank`: rank candidate texts by a person's values with a scorer zoo."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import COMPOSE_OPTION, JSON_OPTION, echo_json
from .infer import HALF_LIFE_HELP, HISTORY_HELP, METHOD_HELP, check_inference_options, infer_from_history
from .mix import VECTOR_HELP


def rerank_command(
    zoo: str = typer.Argument(..., help="Scorer zoo folder or Hub name (made by `train --kind scorer`)."),
    candidates: Path = typer.Option(..., "--candidates", "-c", help="JSONL: one JSON string or {\"text\"[, \"context\", "
                                    "\"group\", \"vector\", \"id\"]} per line (see docs/rerank.md)."),
    vector: str | None = typer.Option(None, "--vector", "-v", help=VECTOR_HELP + " Lines with their own 'vector' keep it."),
    history: Path | None = typer.Option(None, "--history", help="Infer the vector from this history first. " + HISTORY_HELP),
    method: str = typer.Option("head", "--method", help="With --history: how to infer. " + METHOD_HELP),
    half_life: str | None = typer.Option(None, "--half-life", help="With --history: the recency half-life, " + HALF_LIFE_HELP),
    top: int | None = typer.Option(None, "--top", min=1, help="Show only the best N of each group."),
    compose: str = COMPOSE_OPTION,
    base: str | None = typer.Option(None, "--base", help="Read the encoder from here instead of the id in the zoo (checked by fingerprint)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: the encoder's own)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Rank candidate texts (answers written by any model, even a remote one) for a preference vector.

    Candidates of one 'group' are ranked against each other (all of them when no line names a
    group); each line may carry its own vector, so one batch ranks for many users.

    Examples:

      pft-adapters rerank scorer-zoo/ --vector "risk=-1,time=0.5" --candidates answers.jsonl --json

      pft-adapters rerank scorer-zoo/ --history alice.jsonl --candidates answers.jsonl --top 1
    """
    from pft_adapters.errors import PFTError, shorten
    from pft_adapters.mix import composition, load_mixed
    from pft_adapters.rerank import read_candidates, rerank
    from pft_adapters.zoo import Zoo

    if vector is not None and history is not None:
        raise PFTError("give --vector or --history, not both")
    check_inference_options(history, method, half_life)
    composition(compose, "--compose")
    items = read_candidates(candidates)  # a bad file fails before the model loads
    held = Zoo.from_pretrained(zoo)
    if held.kind != "scorer":  # before its base, maybe gigabytes, loads
        raise PFTError(f"{zoo} is an LLM zoo: rerank needs a scorer zoo (`pft-adapters train --kind scorer`); "
                       "an LLM zoo picks among options with `mix --scenarios`")
    scorer = load_mixed(held, base=base, device=device)
    inferred = infer_from_history(scorer, history, method, half_life) if history is not None else None
    ranked, vectors = rerank(scorer, items, inferred.vector if inferred is not None else vector, compose)
    shown = [r for r in ranked if top is None or r.rank <= top]
    if json_out:
        out = {"ranking": [r.to_json(vectors[r.index]) for r in shown]}
        echo_json(out | ({"inferred": inferred.to_json()} if inferred is not None else {}))
        return
    if inferred is not None:
        typer.echo(f"inferred from {history} ({inferred.method}): {inferred.vector.describe()}", err=True)
    group, headed = None, len({r.candidate.group for r in shown}) > 1
    for r in shown:
        if headed and r.candidate.group != group:  # ungrouped lines rank among themselves, under a header too
            typer.echo(f"[{r.candidate.group or '(no group)'}]")
        group = r.candidate.group
        typer.echo(f"{r.rank:3d}. {r.score:+.3f}  {shorten(r.candidate.text, 100)}")


def register(app: typer.Typer) -> None:
    app.command("rerank")(rerank_command)
