"""Paired training: it learns, it is deterministic, it resumes, it accumulates, it runs data-parallel."""

from __future__ import annotations

import errno
import math
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.multiprocessing as mp
from safetensors import SafetensorError

from conftest import TRAIN_DIMS, float32_and_finite, quick_config, same_zoo
import pft_adapters.train as train_module
from pft_adapters.base import load_base
from pft_adapters.batching import Encoder, row_nll
from pft_adapters.choose import option_scores
from pft_adapters.data import paired_rows
from pft_adapters.errors import PFTError
from pft_adapters.layers import LoraSpec
from pft_adapters.mix import MixedModel
from pft_adapters.train import TrainConfig, lr_factor, train_zoo
from pft_adapters.values import ValueSpace

SPACE = ValueSpace.builtin().select(TRAIN_DIMS)


# Splitting a batch sums the same gradients in another order; Adam divides by sqrt(v), which turns that
# float32 rounding into visible differences where a gradient is near zero (seen: 1.2e-4 on 1 of 256).
ADAM_TOL = 2e-4


def _train(base_dir, data, **kw):
    model, tokenizer = load_base(base_dir)
    options = {k: kw.pop(k) for k in list(kw) if k in ("checkpoint_dir", "resume", "stop_after", "checkpoint_every", "on_step")}
    return train_zoo(model, tokenizer, data, SPACE, quick_config(**kw), base_id="tiny", progress=False, **options)


def test_loss_falls(trained, base_dir, train_slice):
    """On the training rows, each row's own pole adapter beats the base model and the opposite pole."""
    model, tokenizer = load_base(base_dir)
    adapters = trained.zoo.attach(model)
    enc = Encoder(tokenizer, 256)
    rows = paired_rows(train_slice)
    batch = enc.collate([enc(r.prompt, r.target, SPACE.pole_index(r.pole)) for r in rows])
    losses = {}
    with torch.no_grad():
        for name, route in (("base", None), ("own", batch.poles), ("opposite", batch.poles ^ 1)):
            adapters.off() if route is None else adapters.use_route(route)
            losses[name] = row_nll(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits, batch.labels)
    assert losses["own"].mean() < losses["base"].mean() - 0.02
    assert (losses["own"] < losses["opposite"]).float().mean() > 0.75


def test_each_pole_adapter_prefers_its_own_pole(trained, base_dir, train_slice):
    """Pole A's adapter gives pole-A options more probability than pole B's adapter does, and vice versa."""
    model, tokenizer = load_base(base_dir)
    adapters = trained.zoo.attach(model)
    for dim in SPACE:
        data = [s for s in train_slice if s.dimension == dim.slug]
        first = option_scores(adapters, tokenizer, data, {dim.first.slug: 1.0}, calibrate=False)
        second = option_scores(adapters, tokenizer, data, {dim.second.slug: 1.0}, calibrate=False)
        for pole, sign in ((dim.first.slug, 1), (dim.second.slug, -1)):
            gaps = [float(a.mixed[i] - b.mixed[i]) * sign for s, a, b in zip(data, first, second) for i in s.options_of(pole)]
            assert sum(g > 0 for g in gaps) / len(gaps) > 0.75, (dim.slug, pole)


def test_summary_records_head_accuracy(trained):
    summary = trained.zoo.training
    assert summary["method"] == "paired" and summary["rows"] > 0
    assert 0.0 <= summary["head_dev_pole_accuracy"] <= 1.0 and summary["head_dev_examples"] > 0


def test_prompt_tokens_are_masked_and_padding_is_dynamic(base_model):
    _, tokenizer = base_model
    enc = Encoder(tokenizer, 64)
    short, long = enc("Scenario: a", " yes"), enc("Scenario: a much longer prompt here", " no way at all")
    batch = enc.collate([short, long])
    assert batch.input_ids.shape[1] == len(long.ids)  # the longest row, not max_length
    assert (batch.labels[0, : short.n_prompt] == -100).all() and (batch.labels[0, short.n_prompt : len(short.ids)] != -100).all()
    assert (batch.labels[0, len(short.ids) :] == -100).all()
    assert enc("word " * 500, " target").ids[-3:] == enc("x", " target").ids[-3:]  # long prompts keep the target


def test_seed_determinism_and_resume_after_interrupt(base_dir, train_slice, tmp_path):
    data = train_slice[:12]
    full = _train(base_dir, data, epochs=2)
    again = _train(base_dir, data, epochs=2)
    same_zoo(full.zoo, again.zoo)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(PFTError, match="stopped at step 4/.*rerun with --resume"):
        _train(base_dir, data, epochs=2, checkpoint_dir=ckpt, stop_after=4)
    assert (ckpt / "progress.json").exists()
    resumed = _train(base_dir, data, epochs=2, checkpoint_dir=ckpt, resume=True)
    same_zoo(full.zoo, resumed.zoo, atol=1e-6)
    assert resumed.zoo.training["final_loss"] == pytest.approx(full.zoo.training["final_loss"], abs=1e-4)

    def ctrl_c(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt
    with pytest.raises(PFTError, match="interrupted at step 3/.*rerun the same command with --resume"):
        _train(base_dir, data, epochs=2, checkpoint_dir=tmp_path / "c2", on_step=ctrl_c)
    same_zoo(full.zoo, _train(base_dir, data, epochs=2, checkpoint_dir=tmp_path / "c2", resume=True).zoo, atol=1e-6)


def test_a_diverging_run_stops_before_the_update_that_would_spoil_its_poles(base_dir, train_slice, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    real, calls = train_module.CausalObjective.batch_loss, {"n": 0}

    def nan_on_third_call(self, *args, **kwargs):
        loss, tokens = real(self, *args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), tokens

    monkeypatch.setattr(train_module.CausalObjective, "batch_loss", nan_on_third_call)
    with pytest.raises(PFTError, match=r"training diverged at step \d+/\d+ \(the loss is nan\): lower --lr"):
        _train(base_dir, train_slice[:12], epochs=2, checkpoint_dir=tmp_path / "c", checkpoint_every=1)
    saved = load_file(tmp_path / "c" / "adapters.safetensors")  # the last step applied: finite
    assert saved and all(bool(torch.isfinite(t).all()) for t in saved.values())


def test_a_ctrl_c_mid_step_or_while_fitting_the_head_resumes_to_the_same_zoo(base_dir, train_slice, tmp_path, monkeypatch):
    data = train_slice[:12]
    full = _train(base_dir, data, epochs=2, lora_dropout=0.2)  # dropout: the interrupted step must redraw its masks
    calls = {"n": 0}

    def interrupt_at_third_step(step: int, total: int, warmup: float) -> float:  # after the step's backward passes
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return lr_factor(step, total, warmup)

    monkeypatch.setattr(train_module, "lr_factor", interrupt_at_third_step)
    with pytest.raises(PFTError, match="interrupted at step 2/"):
        _train(base_dir, data, epochs=2, lora_dropout=0.2, checkpoint_dir=tmp_path / "c")
    monkeypatch.setattr(train_module, "lr_factor", lr_factor)
    monkeypatch.setattr(train_module, "train_head", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(PFTError, match="interrupted while fitting the mixing head: rerun the same command with --resume"):
        _train(base_dir, data, epochs=2, lora_dropout=0.2, checkpoint_dir=tmp_path / "c", resume=True)
    monkeypatch.undo()
    same_zoo(full.zoo, _train(base_dir, data, epochs=2, lora_dropout=0.2, checkpoint_dir=tmp_path / "c", resume=True).zoo,
             atol=1e-6)


def test_a_ctrl_c_after_a_step_or_during_its_update_resumes_to_the_same_zoo(base_dir, train_slice, tmp_path, monkeypatch):
    """A Ctrl-C once the step is counted (its checkpoint being written, say) saves the random state the next step
    starts from; one while the optimizer updates the parameters takes effect once the update is whole and counted."""
    data = train_slice[:12]
    full = _train(base_dir, data, epochs=2, lora_dropout=0.2)  # dropout: a resumed step must draw the same masks

    def ctrl_c(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt
    with pytest.raises(PFTError, match="interrupted at step 3/"):
        _train(base_dir, data, epochs=2, lora_dropout=0.2, checkpoint_dir=tmp_path / "c1", on_step=ctrl_c)
    same_zoo(full.zoo, _train(base_dir, data, epochs=2, lora_dropout=0.2, checkpoint_dir=tmp_path / "c1", resume=True).zoo,
             atol=1e-6)

    real_step, calls = torch.optim.AdamW.step, {"n": 0}

    def step_then_sigint(self, *args, **kwargs):  # the signal arrives as the update ends, before the step is counted
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_sigint)
    with pytest.raises(PFTError, match="interrupted at step 3/"):
        _train(base_dir, data, epochs=2, lora_dropout=0.2, checkpoint_dir=tmp_path / "c2")
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed = _train(base_dir, data, epochs=2, lora_dropout=0.2, checkpoint_dir=tmp_path / "c2", resume=True)
    same_zoo(full.zoo, resumed.zoo, atol=1e-6)
    assert resumed.zoo.training["final_loss"] == pytest.approx(full.zoo.training["final_loss"], abs=1e-4)


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     SafetensorError("Error while serializing: No space left on device")])
def test_a_checkpoint_that_cannot_be_written_is_one_line(base_dir, train_slice, tmp_path, monkeypatch, failure):
    def full_disk(*args, **kwargs):
        raise failure

    monkeypatch.setattr(train_module, "save_file", full_disk)
    with pytest.raises(PFTError, match=r"writing the checkpoint .*c failed \(.*No space left on device\): free space") as err:
        _train(base_dir, train_slice[:12], epochs=1, checkpoint_dir=tmp_path / "c")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "c.partial").exists() and not (tmp_path / "c").exists()


def test_resume_refuses_the_dimensions_in_another_order(base_dir, train_slice, tmp_path):
    """The checkpoint holds the adapters by pole position: another order would swap them silently."""
    data = train_slice[:12]
    with pytest.raises(PFTError):
        _train(base_dir, data, epochs=2, checkpoint_dir=tmp_path / "c", stop_after=2)
    model, tokenizer = load_base(base_dir)
    with pytest.raises(PFTError, match="made with a different list of poles \\(or --dims order\\)"):
        train_zoo(model, tokenizer, data, SPACE.select(["time", "risk"]), quick_config(epochs=2), base_id="tiny",
                  progress=False, checkpoint_dir=tmp_path / "c", resume=True)

def test_resume_refuses_a_checkpoint_of_other_settings(base_dir, train_slice, tmp_path):
    data = train_slice[:12]
    with pytest.raises(PFTError):
        _train(base_dir, data, epochs=2, checkpoint_dir=tmp_path / "c", stop_after=2)
    with pytest.raises(PFTError, match="different config"):
        _train(base_dir, data, epochs=2, lr=1e-2, checkpoint_dir=tmp_path / "c", resume=True)
    progress = tmp_path / "c" / "progress.json"
    kept = progress.read_text()
    progress.write_text("[]")  # damaged by hand: one line, not an AttributeError
    with pytest.raises(PFTError, match="unreadable \\(its progress or tensors are not those"):
        _train(base_dir, data, epochs=2, checkpoint_dir=tmp_path / "c", resume=True)
    progress.write_text(kept)
    weights = tmp_path / "c" / "adapters.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: one line, not safetensors' own traceback
    with pytest.raises(PFTError, match="unreadable.*train without --resume"):
        _train(base_dir, data, epochs=2, checkpoint_dir=tmp_path / "c", resume=True)


def test_gradient_accumulation_matches_one_big_batch(base_dir, train_slice):
    data = train_slice[:12]
    # unpacked (splitting a batch would regroup packed rows); ADAM_TOL: see there. The orthogonality term counts once per step.
    same_zoo(_train(base_dir, data, epochs=1, pack=False, orthogonality=1.0).zoo,
             _train(base_dir, data, epochs=1, grad_accum=2, pack=False, orthogonality=1.0).zoo, atol=ADAM_TOL)


def test_the_prompt_kl_counts_once_per_prompt_in_the_step_however_it_is_split(base_dir, train_slice):
    """Rows of one scenario and pole share their prompt's KL over the whole step, split over micro-batches or not."""
    data = train_slice[:12]  # 1024 tokens: no prompt is cut, so one scenario's rows share their prompt ids
    for pack in (False, True):
        same_zoo(_train(base_dir, data, epochs=1, pack=pack, max_length=1024, prompt_kl=3.0).zoo,
                 _train(base_dir, data, epochs=1, pack=pack, max_length=1024, prompt_kl=3.0, grad_accum=4).zoo, atol=ADAM_TOL)


@contextmanager
def _process_group(rank: int, world: int, port: int) -> Iterator[None]:
    """This process as one of `world` gloo processes on 127.0.0.1, for the block."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def _ddp_worker(rank: int, world: int, port: int, base_dir: str, data, out: str) -> None:
    with _process_group(rank, world, port):
        result = _train(base_dir, data, epochs=1, head_steps=5, pack=False, orthogonality=1.0)
        if rank == 0:
            result.zoo.save_pretrained(out)


def _ddp_refusal_worker(rank: int, world: int, port: int, base_dir: str, data) -> None:
    with _process_group(rank, world, port), pytest.raises(PFTError, match="rows do not fill one batch of 64 over 2 processes"):
        _train(base_dir, data, epochs=1, batch_size=64, grad_accum=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_batch_too_small_to_feed_every_process_is_refused(base_dir, train_slice):
    """Fewer rows than a batch left a process's micro-batches empty: it skipped the gradient sync
    (the processes' adapters drifted apart) or, with no rows at all, left the others waiting."""
    context = mp.spawn(_ddp_refusal_worker, args=(2, _free_port(), str(base_dir), train_slice[:2]), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("a data-parallel run with fewer rows than a batch hung")


def test_two_gloo_processes_match_one_process(base_dir, train_slice, tmp_path):
    """Data-parallel (torch.distributed, DDP over gloo) gives the single-process adapters to ADAM_TOL.

    With the orthogonality term, which every process adds once per step.
    """
    from pft_adapters.zoo import Zoo

    data = train_slice[:8]
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(base_dir), data, str(tmp_path / "ddp")), nprocs=2, join=True)
    single = _train(base_dir, data, epochs=1, head_steps=5, pack=False, orthogonality=1.0)  # unpacked, as in test_gradient_accumulation...
    same_zoo(single.zoo, Zoo.from_pretrained(tmp_path / "ddp"), atol=ADAM_TOL)


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 0}, "--epochs must be a positive number"),
    ({"epochs": float("nan")}, "--epochs must be a positive number"),
    ({"lr": -1e-3}, "--lr must be a positive number"),
    ({"batch_size": 0}, "--batch-size and --grad-accum must be at least 1"),
    ({"grad_accum": 0}, "--batch-size and --grad-accum must be at least 1"),
    ({"max_length": 4}, "--max-length must be at least 8"),
    ({"warmup": 1.0}, "warmup in \\[0, 1\\)"),
    ({"pole_weights": {"risk-averse": float("inf")}}, "pole weights must be finite"),
    ({"lora": LoraSpec(r=0)}, "--rank must be at least 1"),
    ({"lora": LoraSpec(r=4, alpha=float("nan"))}, "--alpha must be a positive number \\(within float32's range\\), got nan"),
    ({"lora": LoraSpec(r=4, alpha=0.0)}, "--alpha must be a positive number \\(within float32's range\\), got 0.0"),
    ({"lr": 1e300}, "--lr must be a positive number \\(within float32's range\\)"),  # Adam overflowed in float32
    ({"lora": LoraSpec(r=4, target_modules=("q_proj", "q_proj"))}, "--target-modules must name each layer once"),
    ({"prompt_kl": -1.0}, "--prompt-kl must be a finite number >= 0"),
    ({"kind": "scorer", "prompt_kl": 1.0}, "a scorer zoo has none"),
    ({"orthogonality": float("nan")}, "--orthogonality must be a finite number >= 0"),
    ({"orthogonality": 1.0, "method": "conditioned"}, "method 'conditioned' trains one adapter"),
    ({"precision": "fp16"}, "unknown --precision 'fp16': choose one of auto, fp32, bf16"),
    ({"lora_dropout": 1.0}, "--lora-dropout must be a probability in \\[0, 1\\)"),
    ({"lora_dropout": float("nan")}, "--lora-dropout must be a probability"),
    ({"method": "dpo"}, "unknown training method 'dpo'"),
    ({"method": "single"}, "method 'single' needs the pole to train"),
    ({"pole": "risk-averse"}, "--pole goes with --method single"),
    ({"kind": "scorer", "method": "conditioned"}, "scorer zoos train by the paired method only"),
    ({"kind": "scorer", "head_init": "random"}, "unknown --head-init 'random': choose one of descriptions, zeros"),
    ({"head_init": "zeros"}, "an LLM zoo has none"),
])
def test_settings_out_of_range_are_refused_before_any_work(settings, message):
    with pytest.raises(PFTError, match=message):
        TrainConfig(**settings)


def test_settings_changed_after_building_and_bad_devices_are_refused_by_train_zoo(base_dir, train_slice):
    model, tokenizer = load_base(base_dir)
    config = quick_config()
    config.lora = LoraSpec(r=0)
    with pytest.raises(PFTError, match="--rank must be at least 1"):
        train_zoo(model, tokenizer, train_slice, SPACE, config, base_id="tiny", progress=False)
    with pytest.raises(PFTError, match="--checkpoint-every must be at least 1"):
        train_zoo(model, tokenizer, train_slice, SPACE, quick_config(), base_id="tiny", checkpoint_every=0, progress=False)
    with pytest.raises(PFTError, match="--device 'gpu0' is not a device"):
        train_zoo(model, tokenizer, train_slice, SPACE, quick_config(), base_id="tiny", device="gpu0", progress=False)
    with pytest.raises(PFTError, match="--batch-size 8 must be divisible by processes x --grad-accum \\(3\\)"):
        train_zoo(model, tokenizer, train_slice, SPACE, quick_config(batch_size=8, grad_accum=3), base_id="tiny", progress=False)


def test_kind_defaults_fill_in_when_resolved_and_explicit_values_win():
    from dataclasses import replace

    from pft_adapters.scorer import DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_MAX_LENGTH, DEFAULT_TARGETS

    llm, scorer = TrainConfig().resolved(), TrainConfig(kind="scorer").resolved()
    assert llm.lora is not None and scorer.lora is not None
    assert (llm.epochs, llm.lr, llm.max_length, llm.lora.target_modules[0]) == (2.0, 1e-3, 512, "q_proj")
    assert (scorer.epochs, scorer.lr, scorer.max_length, scorer.lora.target_modules) == (
        DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_MAX_LENGTH, DEFAULT_TARGETS)
    explicit = TrainConfig(kind="scorer", epochs=1.0, lr=2e-3, max_length=64).resolved()
    assert (explicit.epochs, explicit.lr, explicit.max_length, TrainConfig(max_length=64).resolved().max_length) == (1.0, 2e-3, 64, 64)
    # a config moved to another kind takes that kind's defaults, as `extend_zoo` moves it to the zoo's kind
    moved = replace(TrainConfig(), kind="scorer").resolved()
    assert (moved.epochs, moved.lr, moved.max_length) == (DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_MAX_LENGTH)
    # a default and the same value given explicitly are the same settings (checkpoints resume across both)
    assert TrainConfig().fingerprint() == TrainConfig(epochs=2.0, lr=1e-3, max_length=512).fingerprint()
    assert TrainConfig(kind="scorer").fingerprint() != TrainConfig(kind="scorer", lr=1e-3).fingerprint()
    # the prompt KL: on by default for LLM zoos (a new setting), absent from scorer settings as before it existed
    assert TrainConfig().resolved().prompt_kl == train_module.DEFAULT_PROMPT_KL > 0 and TrainConfig(kind="scorer").resolved().prompt_kl == 0
    assert TrainConfig().fingerprint() != TrainConfig(prompt_kl=0.0).fingerprint()
    assert TrainConfig(kind="scorer").fingerprint() == TrainConfig(kind="scorer", prompt_kl=0.0).fingerprint()
    assert TrainConfig().fingerprint() != TrainConfig(orthogonality=1.0).fingerprint()
    assert TrainConfig().fingerprint() != TrainConfig(lora_dropout=0.1).fingerprint()
    assert TrainConfig().fingerprint() != TrainConfig(precision="bf16").fingerprint() != TrainConfig(precision="fp32").fingerprint()


def test_bf16_on_a_cpu_is_asked_for_and_learns_with_float32_adapters(base_dir, train_slice):
    """"auto" on a CPU is fp32 (bit for bit); "bf16" autocasts the matmuls there and still learns."""
    data = train_slice[:16]
    fp32, auto = (_train(base_dir, data, epochs=2, precision=p) for p in ("fp32", "auto"))
    same_zoo(fp32.zoo, auto.zoo)
    bf16 = _train(base_dir, data, epochs=2, precision="bf16")
    assert float32_and_finite(bf16.zoo)
    assert not all(torch.equal(v, fp32.zoo.poles[p][k]) for p, t in bf16.zoo.poles.items() for k, v in t.items())
    assert (auto.zoo.training["precision"], bf16.zoo.training["precision"]) == ("fp32", "bf16")
    assert bf16.losses[-1] < bf16.losses[0] and abs(bf16.losses[-1] - fp32.losses[-1]) < 0.1 * fp32.losses[-1]


def test_orthogonality_separates_the_dimensions_adapters(base_dir, train_slice):
    """Trained with the penalty, the two dimensions' adapters share far fewer directions, and the zoo says so."""
    def overlap(zoo) -> float:
        mixed = MixedModel(zoo, *load_base(base_dir))
        return mixed.adapters.cross_dimension_overlap([SPACE.dimension_of(p).slug for p in mixed.adapters.pole_slugs]).item()

    plain = _train(base_dir, train_slice, epochs=1, head_steps=5).zoo
    separated = _train(base_dir, train_slice, epochs=1, head_steps=5, orthogonality=10.0).zoo
    assert separated.training["orthogonality"] == 10.0 and "orthogonality" not in plain.training
    assert overlap(separated) < 0.5 * overlap(plain)


def test_lora_dropout_acts_in_training_only_and_is_recorded_for_peft(base_dir, train_slice, tmp_path):
    """Dropout on the adapters' input changes what training learns (the same seed twice: the same zoo); the
    trained zoo's poles carry it in adapter_config.json, as peft's lora_dropout; inference ignores it."""
    import json

    import peft

    data = train_slice[:12]
    plain = _train(base_dir, data, epochs=1, head_steps=5)
    dropped, again = (_train(base_dir, data, epochs=1, head_steps=5, lora_dropout=0.5) for _ in range(2))
    same_zoo(dropped.zoo, again.zoo)
    assert not all(torch.equal(v, plain.zoo.poles[p][k]) for p, t in dropped.zoo.poles.items() for k, v in t.items())
    assert dropped.zoo.training["lora_dropout"] == 0.5 and "lora_dropout" not in plain.zoo.training
    dropped.zoo.save_pretrained(tmp_path / "zoo")
    pole = SPACE.pole_slugs[0]
    assert json.loads((tmp_path / "zoo" / "poles" / pole / "adapter_config.json").read_text())["lora_dropout"] == 0.5
    model, tokenizer = load_base(base_dir)
    reference = peft.PeftModel.from_pretrained(model, tmp_path / "zoo" / "poles" / pole).eval()
    mixed = MixedModel(dropped.zoo, *load_base(base_dir))
    mixed.adapters.state.dropout = 0.5  # as a model wrapped by train_zoo keeps it
    mixed.adapters.use_weights({pole: 1.0})
    ids = tokenizer("Scenario: a choice", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(mixed.model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
        mixed.model.train()
        assert not torch.allclose(mixed.model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-5)


def test_the_learning_rate_warms_up_linearly_then_decays_to_a_tenth():
    factors = [lr_factor(step, 100, warmup=0.1) for step in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # ten warm-up steps
    assert factors[10] == 1.0 and all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_factor(0, 1, warmup=0.0) == 1.0  # one step: full rate at once
