"""Verbs that build things: `make-base`, `train`, `info`."""

from __future__ import annotations

import itertools
from pathlib import Path

import typer

from pft_adapters.atomic import check_target
from pft_adapters.errors import PFTError

from .common import (JSON_OPTION, MATCHING_OPTION, PAIR_OPTION, PAIRS_OPTION, check_out, held_out, checkpoint_folder, default_pair, drop_checkpoint,
                     echo_json, seed_option, value_space)


def make_base(
    out: Path = typer.Option(..., "--out", help="Folder to write the base model and tokenizer to (Hugging Face format)."),
    corpus: Path = typer.Option(..., "--corpus", help="Texts to learn from: VCD JSON/JSONL (scenarios and options, never labels) or a .txt file."),
    size: str = typer.Option("small", "--size", help="Preset: tiny (tests), small (~4M params, demos), medium (~30M, speed benchmarks)."),
    minutes: float | None = typer.Option(None, "--minutes", min=0, show_default=False,
                                  help="Pre-training time budget in minutes (default: 3 without --epochs; 0 = no pre-training)."),
    epochs: float | None = typer.Option(None, "--epochs", min=0, help="Pre-training budget in passes over --corpus: the same base on "
                                 "any machine (with --minutes too, whichever ends first)."),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="BPE vocabulary size, 260 (the 256 bytes and 4 special tokens) to 1,000,000 (default: the preset's)."),
    seed: int = seed_option(0, "Seed for the weights' initialisation and the data order."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
) -> None:
    """Build a small causal LM offline: a BPE tokenizer trained on --corpus and a Llama-style model pre-trained on it.

    Real users skip this and pass any Hub id or local model folder to `train --base`.
    """
    from pft_adapters.base import DEFAULT_PRETRAIN_MINUTES, base_size, corpus_texts, make_base as build

    base_size(size)
    check_target(out, overwrite, reads=(corpus,))
    if minutes is None and epochs is None:
        minutes = DEFAULT_PRETRAIN_MINUTES
    path = build(corpus_texts(corpus), out, size=size, vocab_size=vocab_size, pretrain_minutes=minutes,
                 pretrain_epochs=epochs, seed=seed, overwrite=overwrite)
    typer.echo(f"base model written to {path}")


def train(
    base: str = typer.Option(..., "--base", help="Base model: a Hub model id or a local folder (a causal LM, e.g. from "
                             "make-base; with --kind scorer a sentence encoder, e.g. sentence-transformers/all-MiniLM-L6-v2)."),
    data: Path = typer.Option(..., "--data", help="Training scenarios: VCD, paired JSONL or A/B items (with --pair)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the zoo to (written atomically)."),
    pairs: Path | None = PAIRS_OPTION,
    pair: str | None = PAIR_OPTION,
    matching: str | None = MATCHING_OPTION,
    dims: str | None = typer.Option(None, "--dims", help="Comma-separated dimensions to train (default: every dimension in --data)."),
    dev: Path | None = typer.Option(None, "--dev", help="Held-out scenarios to measure the mixing head (default: a tenth of --data)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only N scenarios, for quick runs: the first N, or with --dims "
                              "taken from each dimension in turn."),
    epochs: float | None = typer.Option(None, "--epochs", show_default=False, help="Passes over the data (default: 2; scorer: 3)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Rows per optimizer step (global, across processes)."),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1, help="Split each step into this many micro-batches."),
    lr: float | None = typer.Option(None, "--lr", show_default=False, help="Peak learning rate (default: 1e-3; scorer: 3e-4)."),
    rank: int = typer.Option(8, "--rank", "-r", min=1, help="LoRA rank of every pole adapter."),
    alpha: float = typer.Option(16.0, "--alpha", help="LoRA alpha (scale = alpha / rank)."),
    target_modules: str | None = typer.Option(None, "--target-modules", help="Comma-separated names of the linear layers to adapt "
                                       "(default: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; scorer: query,key,value,dense)."),
    max_length: int | None = typer.Option(None, "--max-length", help="Longest row in tokens, long prompts losing their start "
                                   "(default: 512; scorer: 160)."),
    prompt_kl: float | None = typer.Option(None, "--prompt-kl", show_default=False, help="LLM zoos: weight of the KL divergence "
                                    "from the base model on the prompt's own tokens, which keeps the mixes' language model close to "
                                    "the base's (default: 1.5; 0 = off; one extra forward pass per step)."),
    orthogonality: float = typer.Option(0.0, "--orthogonality", help="Weight of a penalty on shared directions between "
                                        "the adapters of different dimensions, which keeps each dimension's behaviour when "
                                        "dimensions are mixed, at some cost in accuracy alone (0 = off; see docs/evaluate.md)."),
    lora_dropout: float = typer.Option(0.0, "--lora-dropout", help="Dropout on each adapter's input while training "
                                       "(peft's lora_dropout; 0 = off)."),
    kind: str = typer.Option("llm", "--kind", help="llm: adapters on a causal LM (default); scorer: adapters on a sentence "
                             "encoder with a score head per pole, for ranking texts (see `rerank`)."),
    head_init: str | None = typer.Option(None, "--head-init", show_default=False, help="Scorer zoos: where each pole's "
                                         "score head starts: descriptions (the encoder's zero-shot reading of the pole's "
                                         "name and description; default) or zeros."),
    pole_weight: list[str] = typer.Option([], "--pole-weight", help="Loss weight of a pole, e.g. --pole-weight risk-averse=2 (repeatable)."),
    method: str = typer.Option("paired", "--method", help="paired: one adapter per pole (default); conditioned: the PFT paper's "
                               "one shared adapter, pole description in the prompt; single: one pole's rows only (--pole)."),
    pole: str | None = typer.Option(None, "--pole", help="The pole trained by --method single (its dimension's data is used)."),
    head_encoder: str | None = typer.Option(None, "--head-encoder", help="Sentence encoder the mixing head reads texts through "
                                     "(Hub id or folder), e.g. sentence-transformers/all-MiniLM-L6-v2; default: the base "
                                     "model's own hidden states."),
    seed: int = seed_option(0, "Seed for the adapters' initialisation and the row "
                             "order: on one machine, the same seed, data and settings train the same zoo."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    precision: str = typer.Option("auto", "--precision", help="fp32, or bf16: matmuls under bfloat16 autocast, the "
                                  "adapters kept in float32 (auto: bf16 on a GPU that computes it, else fp32; on a CPU with "
                                  "AVX512-BF16 or AMX, bf16 trains about 1.4x faster)."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Train a zoo by paired fine-tuning: one LoRA adapter per pole of every dimension, plus the mixing head.

    Runs data-parallel under torchrun:  torchrun --nproc-per-node 2 -m pft_adapters_cli train ...
    Interrupt with Ctrl-C at any time; rerun the same command with --resume to continue.
    """
    from pft_adapters.base import load_base, load_encoder
    from pft_adapters.data import dimensions_in, load_scenarios
    from pft_adapters.head import head_encoder as pin_encoder
    from pft_adapters.layers import LoraSpec
    from pft_adapters.train import TrainConfig, is_main_process, pick_device, train_zoo

    space = value_space(pairs)
    pair = default_pair(space, pair, pairs)
    if method == "single" and pole is not None:  # single-preference SFT: the pole's own dimension only
        if dims and space.dimension_of(pole).slug not in [space.dimension(d.strip()).slug for d in dims.split(",")]:
            raise PFTError(f"--pole {pole} is not a pole of --dims {dims}")
        dims = space.dimension_of(pole).slug
    scenarios = load_scenarios(data, space, pair=pair, matching=matching)
    if dims:
        wanted = [space.dimension(d.strip()).slug for d in dims.split(",")]
        scenarios = _balanced([s for s in scenarios if s.dimension in wanted], wanted, limit)
    else:
        scenarios = scenarios[:limit]
        wanted = dimensions_in(scenarios)
    space = space.select(wanted)
    empty = [d for d in wanted if not any(s.dimension == d for s in scenarios)]
    if empty:  # its poles would be written untrained
        raise PFTError(f"{data} holds no scenarios of {', '.join(empty)}" + (f" (--limit {limit})" if limit else "")
                       + ": check --dims")
    dev_scenarios = held_out(dev, value_space(pairs), pair, matching, wanted)
    out = Path(out)
    check_out(out, overwrite, reads=(base, data, dev, pairs, head_encoder), resume=resume)
    targets = tuple(t.strip() for t in target_modules.split(",") if t.strip()) if target_modules else None
    config = TrainConfig(  # lora=None and max_length=None take the kind's defaults
        epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=lr, max_length=max_length, seed=seed,
        pole_weights=_pole_weights(pole_weight, space), method=method, pole=pole, kind=kind, head_encoder=head_encoder,
        prompt_kl=prompt_kl, lora_dropout=lora_dropout, orthogonality=orthogonality, precision=precision,
        head_init=head_init,
    )
    default_lora = config.resolved().lora
    assert default_lora is not None  # resolved() fills in the kind's default
    config.lora = LoraSpec(r=rank, alpha=alpha, target_modules=targets or default_lora.target_modules)
    config.resolved()  # every setting (--alpha too) checked before anything loads
    pick_device(device)  # a device this machine lacks fails now, not after loading the base
    if head_encoder:
        pin_encoder(head_encoder)  # a bad name fails now, not after training; the loaded encoder is reused
    model, tokenizer = (load_encoder if kind == "scorer" else load_base)(base)
    result = train_zoo(model, tokenizer, scenarios, space, config, base_id=base, dev=dev_scenarios,
                       checkpoint_dir=checkpoint_folder(out), resume=resume,
                       checkpoint_every=checkpoint_every, device=device)
    if is_main_process():
        result.zoo.save_pretrained(out, overwrite=overwrite)
        drop_checkpoint(out)
        summary = {"zoo": str(out), **result.zoo.training, "seconds": round(result.seconds, 1),
                   "tokens_per_second": round(result.tokens_per_second)}
        accuracy = summary["head_dev_pole_accuracy"]  # None without labelled dev options
        echo_json(summary) if json_out else typer.echo(
            f"zoo written to {out}: {len(result.zoo.pole_slugs)} poles, final loss {summary['final_loss']}, "
            f"head dev accuracy {'n/a' if accuracy is None else accuracy}"
        )


def _balanced(scenarios: list, dims: list[str], limit: int | None) -> list:
    """At most `limit` of the scenarios, taken from each dimension in turn (data files are sorted by
    dimension: the first N alone would leave the later --dims untrained), kept in file order."""
    if limit is None:
        return scenarios
    queues = [[s for s in scenarios if s.dimension == d] for d in dims]
    in_turn = [s for row in itertools.zip_longest(*queues) for s in row if s is not None][:limit]
    taken = {id(s) for s in in_turn}
    return [s for s in scenarios if id(s) in taken]


def _pole_weights(items: list[str], space) -> dict[str, float]:
    weights = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise PFTError(f"--pole-weight '{item}' is not POLE=NUMBER, e.g. risk-averse=2")
        try:
            weight = float(value)
        except ValueError:
            raise PFTError(f"--pole-weight '{item}' is not POLE=NUMBER, e.g. risk-averse=2") from None
        slug = space.pole(name.strip()).slug
        if slug in weights:
            raise PFTError(f"--pole-weight gives pole '{slug}' twice: give each pole's weight once")
        weights[slug] = weight
    if weights and all(weights.get(p, 1.0) == 0 for p in space.pole_slugs):  # poles not named weigh 1
        raise PFTError("every pole trained has --pole-weight 0: none would be trained (give one a weight above 0)")
    return weights


def info(
    zoo: str = typer.Argument(..., help="Zoo folder (or Hub name)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show what a zoo holds: base model, dimensions, poles, LoRA settings, head and the training summary."""
    from pft_adapters.zoo import Zoo

    z = Zoo.from_pretrained(zoo)
    encoder = z.head_encoder()
    summary = {
        "zoo": zoo,
        "kind": z.kind,
        "base_model": {"id": z.base.id, "revision": z.base.revision, "fingerprint": z.base.fingerprint},
        "dimensions": {d.slug: [d.first.slug, d.second.slug] for d in z.space},
        "poles": z.pole_slugs,
        "lora": {"r": z.spec.r, "alpha": z.spec.alpha, "target_modules": list(z.spec.target_modules)},
        "head": z.head is not None,
        "head_encoder": encoder,
        "training": z.training,
    }
    if json_out:
        echo_json(summary)
        return
    typer.echo(f"{z.kind} zoo {zoo} on base {z.base.id}")
    for d in z.space:
        typer.echo(f"  {d.slug:14s} +1 {d.first.slug:24s} -1 {d.second.slug}")
    typer.echo(f"  LoRA r={z.spec.r} alpha={z.spec.alpha} on {', '.join(z.spec.target_modules)}")
    if encoder:
        typer.echo(f"  mixing head reads texts through {encoder['id']}")
    for key, value in z.training.items():
        typer.echo(f"  {key}: {value}")


def register(app: typer.Typer) -> None:
    app.command("make-base")(make_base)
    app.command("train")(train)
    app.command("info")(info)
