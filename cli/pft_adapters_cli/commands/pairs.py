"""Verbs for your own value pairs: `pairs`, `convert ab|vcd`, `extend` (see docs/add-a-value-pair.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from pft_adapters.atomic import check_file_target, refuse_inputs
from pft_adapters.errors import PFTError
from pft_adapters.values import ValueSpace, data_space

from .common import (JSON_OPTION, MATCHING_OPTION, PAIR_OPTION, PAIRS_OPTION, check_out, held_out, added_dimensions, checkpoint_folder,
                     default_pair, drop_checkpoint, echo_json, seed_option, value_space)


def _dimension_json(dim, source: str) -> dict:
    return {"slug": dim.slug, "name": dim.label, "source": source,
            "poles": [{"slug": p.slug, "name": p.name, "sign": s, "description": p.description}
                      for p, s in zip(dim.poles, (1, -1))]}


def pairs(
    pairs_file: Path | None = PAIRS_OPTION,
    check: Path | None = typer.Option(None, "--check", help="Validate this pair definition file: print OK, or the error naming the dimension and pole (exit 1)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List the value dimensions and their poles: the built-in ones, plus those of --pairs.

    A pair definition file adds dimensions with no code (JSON Schema: docs/pairs.schema.json):

      [{"slug": "patience", "name": "Patience",
        "poles": [{"name": "Patient", "description": "..."}, {"name": "Impulsive", "description": "..."}]}]

      pft-adapters pairs
      pft-adapters pairs --pairs my-pairs.json --json
      pft-adapters pairs --check my-pairs.json
    """
    if check is not None:
        try:
            added = added_dimensions(value_space(check))
        except PFTError as err:
            if not json_out:
                raise
            echo_json({"file": str(check), "ok": False, "error": str(err)})
            raise typer.Exit(1) from None
        if json_out:
            echo_json({"file": str(check), "ok": True, "dimensions": [_dimension_json(d, str(check)) for d in added]})
        else:
            listed = ", ".join(f"{d.slug} ({d.first.slug} / {d.second.slug})" for d in added)
            typer.echo(f"OK: {check} defines {len(added)} dimension{'s' if len(added) != 1 else ''}: {listed}")
        return
    space = value_space(pairs_file)
    builtin = ValueSpace.builtin().dimensions
    sources = {d.slug: "built-in" if d in builtin else str(pairs_file) for d in space}
    if json_out:
        echo_json({"dimensions": [_dimension_json(d, sources[d.slug]) for d in space]})
        return
    for dim in space:
        note = "" if sources[dim.slug] == "built-in" else f"  (from {pairs_file})"
        typer.echo(f"{dim.slug}: {dim.label}{note}")
        for pole, sign in zip(dim.poles, ("+1", "-1")):
            typer.echo(f"  {sign} {pole.slug:26s} {pole.description}")


# -- convert --------------------------------------------------------------------------------
convert_app = typer.Typer(
    help="Turn VCD or A/B behaviour items into paired JSONL: {\"prompt\": ..., \"responses\": {pole_slug: text}}.",
    no_args_is_help=True,
)


def _convert(source: Path, out: Path, space: ValueSpace, pair: str | None, matching: str | None,
             overwrite: bool, json_out: bool) -> None:
    from pft_adapters.data import load_scenarios, to_paired, write_jsonl

    check_file_target(out, reads=[source])
    if out.exists() and not overwrite:
        raise PFTError(f"{out} already exists: choose another --out or pass --overwrite")
    scenarios = load_scenarios(source, space, pair=pair, matching=matching)
    records = [r for s in scenarios for r in to_paired(s)]
    dropped = sum(1 for s in scenarios for o in s.options if o.pole is None)
    write_jsonl(records, out)
    summary = {"source": str(source), "out": str(out), "records_in": len(scenarios), "records_out": len(records),
               "options_without_pole_left_out": dropped,
               "dimensions": sorted({s.dimension for s in scenarios})}
    if json_out:
        echo_json(summary)
    else:
        typer.echo(f"converted {len(scenarios)} records of {source} into {len(records)} paired records -> {out}"
                   + (f" ({dropped} options without a pole left out)" if dropped else ""))


@convert_app.command("ab")
def convert_ab(
    source: Path = typer.Argument(..., help="A/B behaviour items (JSON list or JSONL): 'question' with lettered choices, 'answer_matching_behavior', 'answer_not_matching_behavior'."),
    out: Path = typer.Option(..., "--out", help="Paired JSONL file to write (atomically)."),
    pairs_file: Path | None = PAIRS_OPTION,
    pair: str | None = PAIR_OPTION,
    matching: str | None = MATCHING_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Convert A/B behaviour items (the model-written evaluations format) into paired JSONL.

    The question without its choices becomes the prompt; the matching answer becomes the
    response of the pair's first pole (or of --matching), the not-matching answer that of
    the other pole. Every bad record is reported with its position, and nothing is written.

      pft-adapters convert ab items.json --pairs my-pairs.json --pair patience --out patience.jsonl
    """
    space = value_space(pairs_file)
    pair = default_pair(space, pair, pairs_file)
    if pair is None:
        raise PFTError("A/B items do not say which value pair they measure: pass --pair SLUG (see `pft-adapters pairs`)")
    _convert(source, out, space, pair, matching, overwrite, json_out)


@convert_app.command("vcd")
def convert_vcd(
    source: Path = typer.Argument(..., help="VCD scenarios (JSON list or JSONL): 'scenario', 'preference domain', 'options' with a 'bias' each."),
    out: Path = typer.Option(..., "--out", help="Paired JSONL file to write (atomically)."),
    pairs_file: Path | None = PAIRS_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Convert VCD scenarios into paired JSONL (one response per pole per record).

    A scenario with several options of one pole becomes several records, pairing the
    options in order, so every option is kept. Bad records are reported with their position.

      pft-adapters convert vcd vcd_train.json --out vcd_train.jsonl
    """
    _convert(source, out, value_space(pairs_file), None, None, overwrite, json_out)


# -- extend ---------------------------------------------------------------------------------
def extend(
    zoo: str = typer.Argument(..., help="Zoo to grow (folder or Hub name); it is left unchanged."),
    data: Path = typer.Option(..., "--data", help="Data for the new poles: paired JSONL, VCD or A/B items."),
    out: Path = typer.Option(..., "--out", help="Folder to write the grown zoo to (written atomically)."),
    pairs_file: Path | None = PAIRS_OPTION,
    pair: str | None = PAIR_OPTION,
    matching: str | None = MATCHING_OPTION,
    dims: str | None = typer.Option(None, "--dims", help="Comma-separated dimensions to add (default: those in --data that the zoo lacks)."),
    base: str | None = typer.Option(None, "--base", help="Where to load the zoo's base model from (default: the id in its manifest); checked by fingerprint."),
    dev: Path | None = typer.Option(None, "--dev", help="Held-out data for the new poles, to measure the mixing head (default: a tenth of --data)."),
    old_data: Path | None = typer.Option(None, "--old-data", help="Held-out data of the zoo's own dimensions, to show the head still reads them (default: not measured)."),
    epochs: float | None = typer.Option(None, "--epochs", show_default=False, help="Passes over the new data (default: the zoo kind's, as `train`)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Rows per optimizer step."),
    lr: float | None = typer.Option(None, "--lr", show_default=False, help="Peak learning rate (default: the zoo kind's, as `train`)."),
    max_length: int | None = typer.Option(None, "--max-length", show_default=False,
                                   help="Longest row in tokens; long prompts lose their start (default: the zoo's own, "
                                   "the length it scores rows at)."),
    seed: int = seed_option(0, "Seed for the new adapters' initialisation and the row order."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Grow a zoo with new value pairs: train only the new poles, on the zoo's own base.

    The existing pole adapters are copied unchanged (their files stay byte-identical). The
    mixing head keeps its rows for the old poles and learns rows for the new ones; its
    accuracy on new (and, with --old-data, old) poles is printed and recorded in the
    zoo's training summary. The LoRA rank and target modules are the zoo's own.

      pft-adapters extend zoo/ --pairs my-pairs.json --data patience.jsonl --out zoo2/
    """
    from pft_adapters.data import dimensions_in, load_scenarios
    from pft_adapters.extend import check_extendable, check_extension, extend_zoo
    from pft_adapters.train import TrainConfig, is_main_process, pick_device
    from pft_adapters.hub import parse_zoo_name
    from pft_adapters.zoo import Zoo

    out = Path(out)
    check_out(out, overwrite, reads=(parse_zoo_name(zoo)[0], data, pairs_file, dev, old_data, base), resume=resume)
    grown_from = Zoo.from_pretrained(zoo)  # a Hub zoo is pulled only once --out is known to be writable
    check_extendable(grown_from)
    encoder = grown_from.head_encoder()
    zoo_reads = [r for r in (None if base else grown_from.base.id, encoder["id"] if encoder else None) if r]
    for target in (out, checkpoint_folder(out)):  # the zoo's own base and head encoder, folders perhaps, are read too
        refuse_inputs(target, "--out", zoo_reads)
    file_space = value_space(pairs_file)
    space = data_space(grown_from.space, file_space)  # the zoo may carry dimensions of an earlier extension
    pair = default_pair(file_space, pair, pairs_file)
    scenarios = load_scenarios(data, space, pair=pair, matching=matching)
    wanted = [d.slug for d in space.select(d.strip() for d in dims.split(","))] if dims else [
        d for d in dimensions_in(scenarios) if not grown_from.space.has_dimension(d)]
    if not wanted:
        raise PFTError(f"{data} holds no dimension that {zoo} lacks: extend adds new value pairs (use --pairs to define them)")
    new = space.select(wanted)
    scenarios = [s for s in scenarios if s.dimension in wanted]
    check_extension(grown_from, scenarios, new)  # before the base loads
    dev_scenarios = held_out(dev, space, pair, matching, wanted)
    old_scenarios = load_scenarios(old_data, space) if old_data else None
    config = TrainConfig(lora=grown_from.spec, kind=grown_from.kind, epochs=epochs, batch_size=batch_size, lr=lr,
                         max_length=max_length, seed=seed)
    pick_device(device)  # before the base loads
    model, tokenizer = grown_from.load_base(base)
    result = extend_zoo(grown_from, model, tokenizer, scenarios, new, config, dev=dev_scenarios,
                        old_data=old_scenarios, base_name=base or grown_from.base.id, device=device,
                        checkpoint_dir=checkpoint_folder(out), resume=resume)
    if not is_main_process():
        return
    result.zoo.save_pretrained(out, overwrite=overwrite)
    drop_checkpoint(out)
    entry = result.zoo.training["extensions"][-1]
    summary = {"zoo": str(out), "extended": zoo, "added_dimensions": wanted, "added_poles": entry["poles"],
               "poles": result.zoo.pole_slugs, "final_loss": entry["final_loss"], "head": result.report,
               "seconds": round(result.seconds, 1)}
    if json_out:
        echo_json(summary)
        return
    head = result.report
    old = "not measured (pass --old-data)" if head.get("old_pole_accuracy") is None else (
        f"{head['old_pole_accuracy']} (before: {head['old_pole_accuracy_before']})")
    typer.echo(f"zoo written to {out}: added {', '.join(entry['poles'])} to {zoo}, final loss {entry['final_loss']}")
    if "new_pole_accuracy" in head:
        typer.echo(f"  mixing head pole accuracy: new poles {head['new_pole_accuracy']}, old poles {old}")
    else:
        typer.echo(f"  {head['head']}")


def register(app: typer.Typer) -> None:
    app.command("pairs")(pairs)
    app.add_typer(convert_app, name="convert")
    app.command("extend")(extend)
