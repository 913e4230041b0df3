"""`mix`: compose a zoo's pole adapters by a preference vector, then generate, choose or export."""

from __future__ import annotations

from pathlib import Path

import typer

from pft_adapters.atomic import check_target, refuse_inputs
from pft_adapters.errors import PFTError, shorten

from .common import (BASE_OPTION, CALIBRATE_OPTION, COMPOSE_OPTION, DEVICE_OPTION, HALF_LIFE_OPTION, HISTORY_OPTION, JSON_OPTION,
                     MATCHING_OPTION, METHOD_OPTION, PAIR_OPTION, PAIRS_OPTION, checked_device, default_pair, echo_json,
                     inferred_vector, refuse_unused, seed_option, value_space)
from .infer import check_inference_options

VECTOR_HELP = (
    "Preference vector: DIM=VALUE pairs in [-1, 1] (+1 = first pole), pole names as keys, a JSON object, "
    "or @file.json. Examples: 'risk=0.8,time=-0.5', 'risk-averse=1', '{\"social\": -1}', @alice.json"
)


def mix(
    ctx: typer.Context,
    zoo: str = typer.Argument(..., help="Zoo folder or Hub name (org/name, org/name:pole,pole@revision)."),
    vector: str | None = typer.Option(None, "--vector", "-v", help=VECTOR_HELP),
    history: Path | None = HISTORY_OPTION,
    method: str = METHOD_OPTION,
    half_life: str | None = HALF_LIFE_OPTION,
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="Generate a response to this prompt (repeatable: one batch)."),
    scenarios: Path | None = typer.Option(None, "--scenarios", help="Pick one option per scenario (VCD JSON/JSONL or paired JSONL)."),
    export: Path | None = typer.Option(None, "--export", help="Write the mix as one standard PEFT LoRA adapter to this folder."),
    merge_out: Path | None = typer.Option(None, "--merge-out", help="Write a full model with the mix merged in (safetensors)."),
    base: str | None = BASE_OPTION,
    pairs: Path | None = PAIRS_OPTION,
    pair: str | None = PAIR_OPTION,
    matching: str | None = MATCHING_OPTION,
    calibrate: str = CALIBRATE_OPTION,
    compose: str = COMPOSE_OPTION,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="With --prompt: the most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="With --prompt: sampling temperature; 0 = greedy decoding."),
    top_p: float = typer.Option(1.0, "--top-p", help="With --prompt and a temperature: nucleus sampling, in (0, 1]."),
    seed: int | None = seed_option(None, "Seed for sampling, for repeatable output."),
    raw: bool = typer.Option(False, "--raw", help="Send the prompt as is, without the scenario template."),
    device: str | None = DEVICE_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --export / --merge-out folder."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Mix a zoo's pole adapters by a preference vector, then generate (--prompt), choose (--scenarios) or export.

    A scorer zoo (`train --kind scorer`) is mixed the same way and chooses with --scenarios; see also `rerank`.

    The vector is given (--vector) or inferred from the user's past decisions (--history; see `infer`).

    Examples:

      pft-adapters mix zoo/ --vector "risk=0.8,time=-0.5" --prompt "Should I take the new job?"

      pft-adapters mix zoo/ --vector "risk-averse=1" --scenarios dilemmas.json --json

      pft-adapters mix zoo/ --vector @alice.json --export alice-adapter/

      pft-adapters mix zoo/ --history alice.jsonl --prompt "Should I take the new job?"
    """
    from pft_adapters.data import load_scenarios, scenarios_of
    from pft_adapters.values import data_space
    from pft_adapters.history import load_history
    from pft_adapters.infer import check_decisions, infer
    from pft_adapters.mix import MixedModel, calibration, composition, load_mixed
    from pft_adapters.hub import parse_zoo_name
    from pft_adapters.zoo import Zoo

    jobs = [name for name, x in (("--prompt", prompt), ("--scenarios", scenarios), ("--export", export),
                                 ("--merge-out", merge_out)) if x]
    if len(jobs) != 1:
        raise PFTError("give exactly one of --prompt, --scenarios, --export or --merge-out")
    target = export or merge_out
    # an option given for another job would be ignored: refuse it, as --method without --history
    for job, running, options in (
        ("--scenarios", scenarios, {"calibrate": "--calibrate", "compose": "--compose", "pairs": "--pairs", "pair": "--pair",
                                    "matching": "--matching"}),
        ("--prompt", prompt, {"max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_p": "--top-p",
                              "seed": "--seed", "raw": "--raw"}),
        ("--export or --merge-out", target, {"overwrite": "--overwrite"}),
    ):
        if not running:
            refuse_unused(ctx, options, job, jobs[0])
    calibration(calibrate, "--calibrate")
    composition(compose, "--compose")
    if not temperature >= 0 or not 0 < top_p <= 1:  # `not >=` also refuses NaN
        raise PFTError("--temperature must be at least 0 (0 = greedy) and --top-p in (0, 1]")
    if (vector is None) == (history is None):
        raise PFTError("give exactly one of --vector (the preference vector) or --history (infer it from past decisions)")
    check_inference_options(history, method, half_life)
    device = checked_device(device)
    option = "--export" if export else "--merge-out"
    if target:  # --overwrite must not delete anything this command reads
        check_target(Path(target), overwrite, option, reads=[p for p in (parse_zoo_name(zoo)[0], base, history) if p])
    # every input is checked against the zoo (manifest and adapters) before its base, maybe gigabytes, loads
    held = Zoo.from_pretrained(zoo)
    if target and base is None:  # the zoo's own base, a folder perhaps, is read too
        refuse_inputs(Path(target), option, [held.base.id])
    if held.kind == "scorer" and not scenarios:
        raise PFTError("a scorer zoo ranks texts, it does not write them or export an LLM adapter: use --scenarios here, "
                       "or `pft-adapters rerank` for free candidates")
    decisions = load_history(history, held.space) if history is not None else None
    if decisions is not None:
        check_decisions(held, decisions)
    vec = held.vector(vector) if vector is not None else None
    if scenarios:
        space = value_space(pairs)
        read = load_scenarios(scenarios, data_space(held.space, space), pair=default_pair(space, pair, pairs), matching=matching)
        data = scenarios_of(held.space, read, others=True)  # as eval does: the zoo has no say on other dimensions
        if not data:
            raise PFTError(f"{scenarios} holds no scenario of this zoo's dimensions ({', '.join(d.slug for d in held.space)})")
        if len(data) < len(read):
            other = sorted({s.dimension for s in read} - {d.slug for d in held.space})
            typer.echo(f"skipped {len(read) - len(data)} scenario(s) of {', '.join(other)}, which this zoo lacks", err=True)
    mixed = load_mixed(held, base=base, device=device)
    inferred = None
    if decisions is not None:
        inferred = infer(mixed, decisions, method=method, half_life=half_life)
        vec = inferred_vector(held, inferred, history)
        if not json_out:
            typer.echo(f"inferred from {history} ({inferred.method}): {vec.describe()}", err=True)
    assert vec is not None  # given or inferred: exactly one of --vector and --history, checked above
    if scenarios:
        picks = mixed.choose(data, vec, calibrate=calibrate, compose=compose)
        rows = [{"scenario": s.text, "chosen": c.index, "text": s.options[c.index].text, "pole": c.pole, "scores": c.rounded()}
                for s, c in zip(data, picks)]
        if json_out:
            echo_json({"vector": dict(vec), "calibrated": calibrate, "composition": compose, "choices": rows}
                      | _inferred(inferred))
            return
        for i, (s, c) in enumerate(zip(data, picks), 1):
            typer.echo(f"{i}. {shorten(s.text, 90)}\n   -> {chr(65 + c.index)}. {shorten(s.options[c.index].text, 110)} [{c.pole}]")
        return
    assert isinstance(mixed, MixedModel)  # a scorer zoo was refused above: it only chooses
    if target:
        path = mixed.export(vec, target, overwrite) if export else mixed.save_merged(vec, target, overwrite)
        result = {"vector": dict(vec), "written": str(path), "kind": "peft-lora" if export else "merged-model"} | _inferred(inferred)
        echo_json(result) if json_out else typer.echo(f"{result['kind']} for {vec.describe()} written to {path}")
        return
    streamer = None
    if len(prompt) == 1 and not json_out:
        from transformers import TextStreamer

        streamer = TextStreamer(mixed.tokenizer, skip_prompt=True, skip_special_tokens=True)
    texts = mixed.generate(prompt, vec, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                           seed=seed, streamer=streamer, raw=raw)
    if json_out:
        echo_json({"vector": dict(vec), "responses": [{"prompt": p, "response": t} for p, t in zip(prompt, texts)]}
                  | _inferred(inferred))
    elif streamer is None:
        for p, t in zip(prompt, texts):
            typer.echo(f"> {p}\n{t}\n")


def _inferred(inference) -> dict:
    """The inference behind the vector (confidence, evidence, method), when it came from --history."""
    return {"inferred": inference.to_json()} if inference is not None else {}


def register(app: typer.Typer) -> None:
    app.command("mix")(mix)
