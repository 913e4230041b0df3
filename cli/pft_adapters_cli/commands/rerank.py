"""`rerank`: rank candidate texts by a person's values with a scorer zoo."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (BASE_OPTION, COMPOSE_OPTION, DEVICE_OPTION, HALF_LIFE_OPTION, HISTORY_OPTION, JSON_OPTION, METHOD_OPTION,
                     checked_device, echo_json, inferred_vector)
from .infer import check_inference_options
from .mix import VECTOR_HELP


def rerank_command(
    zoo: str = typer.Argument(..., help="Scorer zoo folder or Hub name (made by `train --kind scorer`)."),
    candidates: Path = typer.Option(..., "--candidates", "-c", help="JSONL: one JSON string or {\"text\"[, \"context\", "
                                    "\"group\", \"vector\", \"id\"]} per line (see docs/rerank.md)."),
    vector: str | None = typer.Option(None, "--vector", "-v", help=VECTOR_HELP + " Lines with their own 'vector' keep it."),
    history: Path | None = HISTORY_OPTION,
    method: str = METHOD_OPTION,
    half_life: str | None = HALF_LIFE_OPTION,
    top: int | None = typer.Option(None, "--top", min=1, help="Show only the candidates ranked N or better in each "
                                   "group (equal scores share a rank)."),
    compose: str = COMPOSE_OPTION,
    base: str | None = BASE_OPTION,
    device: str | None = DEVICE_OPTION,
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
    from pft_adapters.history import load_history
    from pft_adapters.infer import check_decisions, infer
    from pft_adapters.mix import composition, load_mixed
    from pft_adapters.rerank import candidate_vectors, read_candidates, rerank
    from pft_adapters.zoo import Zoo

    if vector is not None and history is not None:
        raise PFTError("give --vector or --history, not both")
    check_inference_options(history, method, half_life)
    composition(compose, "--compose")
    device = checked_device(device)
    items = read_candidates(candidates)
    # every input is checked against the zoo (manifest and adapters) before its base, maybe gigabytes, loads
    held = Zoo.from_pretrained(zoo)
    if held.kind != "scorer":
        raise PFTError(f"{zoo} is an LLM zoo: rerank needs a scorer zoo (`pft-adapters train --kind scorer`); "
                       "an LLM zoo picks among options with `mix --scenarios`")
    decisions = load_history(history, held.space) if history is not None else None
    if decisions is not None:
        check_decisions(held, decisions)
    candidate_vectors(held, items, vector, inferred=decisions is not None)  # each line's and --vector, checked now
    scorer = load_mixed(held, base=base, device=device)
    inferred = infer(scorer, decisions, method=method, half_life=half_life) if decisions is not None else None
    if inferred is not None:
        inferred_vector(held, inferred, history)
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
