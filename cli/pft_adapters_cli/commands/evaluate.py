"""`eval`: measure a zoo like the paper does (select-one, select-all, open-ended), per pole, per scene and overall."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pft_adapters.atomic import atomic_write_text, check_file_target, refuse_inputs
from pft_adapters.errors import PFTError

from .common import (BASE_OPTION, CALIBRATE_OPTION, COMPOSE_OPTION, DEVICE_OPTION, JSON_OPTION, PAIRS_OPTION, checked_device,
                     echo_json, refuse_unused, value_space)


def evaluate(
    ctx: typer.Context,
    zoo: str = typer.Argument(..., help="Zoo folder or Hub name."),
    data: Path = typer.Option(..., "--data", help="Scenarios to evaluate on (VCD JSON/JSONL or paired JSONL), e.g. vcd_dev.json."),
    all_poles: bool = typer.Option(False, "--all-poles", help="Every pole at +-1 of its dimension, on that dimension's scenarios."),
    vector: str | None = typer.Option(None, "--vector", "-v", help="One vector, e.g. 'risk=-1' or 'risk=1,time=-1': each set dimension's "
                               "scenarios, target pole = the sign."),
    task: str = typer.Option("select-one", "--task", help="select-one, select-all or open-ended."),
    judge: str = typer.Option("head", "--judge", help="open-ended judge: 'head' (the zoo's mixing head, offline) or the URL "
                              "of an OpenAI-compatible API (key from PFT_JUDGE_API_KEY or OPENAI_API_KEY)."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Model name for --judge URL."),
    judge_timeout: float = typer.Option(60.0, "--judge-timeout", help="Seconds within which a judge reply must arrive in full, at most 86400 (timeouts are retried once)."),
    judge_workers: int = typer.Option(4, "--judge-workers", min=1, help="Requests to a --judge URL in flight at once "
                                      "(at most the 8 answers generated together)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N scenarios per dimension (quick runs)."),
    calibrate: str = CALIBRATE_OPTION,
    compose: str = COMPOSE_OPTION,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Answer length for open-ended."),
    base: str | None = BASE_OPTION,
    pairs: Path | None = PAIRS_OPTION,
    device: str | None = DEVICE_OPTION,
    out: Path | None = typer.Option(None, "--out", help="Also write the results, with one record per case, to this JSON file. "
                             "Open-ended: cases are kept in OUT.judged.jsonl as they are judged, so a run that fails or is "
                             "interrupted goes on from them when run again."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Evaluate a zoo on held-out scenarios: select-one, select-all (with micro P/R/F1) or open-ended (0-10 judge score).

    Examples:

      pft-adapters eval zoo/ --data vcd_dev.json --all-poles --task select-one --json

      pft-adapters eval zoo/ --data vcd_dev.json --vector risk=-1 --task select-all

      pft-adapters eval zoo/ --data vcd_dev.json --all-poles --task open-ended --judge http://localhost:8000/v1 --judge-model qwen
    """
    from pft_adapters.data import load_scenarios
    from pft_adapters.values import data_space
    from pft_adapters.evaluate import JudgedLog, check_task, check_vector_data, evaluate as run
    from pft_adapters.judges import make_judge
    from pft_adapters.mix import calibration, composition, load_mixed
    from pft_adapters.hub import parse_zoo_name
    from pft_adapters.zoo import Zoo

    if all_poles == (vector is not None):
        raise PFTError("give exactly one of --all-poles or --vector")
    check_task(task, composition(compose, "--compose"))
    if task != "open-ended":  # ignored by the choosing tasks: refused, as `mix` refuses options of another job
        refuse_unused(ctx, {"judge": "--judge", "judge_model": "--judge-model", "judge_timeout": "--judge-timeout",
                            "judge_workers": "--judge-workers", "max_new_tokens": "--max-new-tokens"},
                      "--task open-ended", f"--task {task}")
    calibration(calibrate, "--calibrate")
    device = checked_device(device)
    if out is not None:  # never over or into what this command reads
        check_file_target(out, reads=[p for p in (parse_zoo_name(zoo)[0], data, pairs, base) if p])
    # an HTTP judge is checked (URL, model name, timeout, key) before any model loads; the head judge needs the zoo
    scorer = make_judge(None, judge, judge_model, judge_timeout, judge_workers) if task == "open-ended" and judge != "head" else None
    held = Zoo.from_pretrained(zoo)  # the data and vector are checked against it before its base loads
    if out is not None and base is None:  # the zoo's own base, a folder perhaps, is read too
        refuse_inputs(out, "--out", [held.base.id])
    check_task(task, compose, held.kind)  # again, now that the zoo's kind is known
    scenarios = load_scenarios(data, data_space(held.space, value_space(pairs)))
    vec = held.vector(vector) if vector is not None else None
    if vec is not None:
        check_vector_data([s for s in scenarios if held.space.has_dimension(s.dimension)], vec)  # before the base loads
    mixed = load_mixed(held, base=base, device=device)
    if task == "open-ended" and scorer is None:
        scorer = make_judge(mixed, judge, judge_model, judge_timeout, judge_workers)
    log = JudgedLog(out.with_name(out.name + ".judged.jsonl")) if out is not None and task == "open-ended" else None
    result = run(mixed, scenarios, task, vector=vec, limit=limit, calibrate=calibrate, judge=scorer,
                 max_new_tokens=max_new_tokens, log=log, compose=compose)
    summary = {"zoo": zoo, "data": str(data), "method": mixed.zoo.method,
               "vector": dict(vec) if vec is not None else "all-poles", **result.to_json()}
    if out:
        atomic_write_text(out, json.dumps({**summary, "items": result.items}, indent=2, ensure_ascii=False) + "\n")
        if log is not None:
            log.remove()
    if json_out:
        echo_json(summary)
        return
    _print(summary)
    if out:
        typer.echo(f"results written to {out}")


def _print(summary: dict) -> None:
    figure = summary["metric"]
    fmt = (lambda x: "  n/a" if x is None else f"{x:5.2f}") if figure == "score" else (lambda x: "  n/a" if x is None else f"{x:5.3f}")
    typer.echo(f"{summary['task']} on {summary['data']} ({summary['cases']} cases, zoo {summary['zoo']}, method {summary['method']})")
    for title, key in (("per pole", "per_pole"), ("per dimension", "per_dimension"), ("per scene", "per_scene")):
        typer.echo(f"  {title} ({figure}):")
        for name, value in summary[key].items():
            typer.echo(f"    {name:34s} {fmt(value)}")
    typer.echo(f"  accuracy {summary['accuracy']:.3f}   macro over poles {summary['macro_accuracy']:.3f}")
    if summary["task"] == "select-all":
        typer.echo(f"  micro precision {summary['precision']:.3f}   recall {summary['recall']:.3f}   F1 {summary['f1']:.3f}")
    if summary["task"] == "open-ended":
        typer.echo(f"  score {summary['score']:.2f}/10 (judge: {summary['judge']})")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
