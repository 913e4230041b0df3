"""The build verbs of the CLI (`make-base`, `train`, `info`) and how they report user errors."""

from __future__ import annotations

import errno
import re
import json

import pytest
import torch

from cli_runner import run, user_error
from conftest import same_zoo
from pft_adapters import __version__
from pft_adapters.atomic import atomic_folder
from pft_adapters.data import load_scenarios
from pft_adapters.errors import PFTError
from pft_adapters.zoo import Zoo
from pft_adapters_cli.app import main


@pytest.fixture(scope="module")
def cli_zoo(tmp_path_factory, base_dir, vcd_train):
    """A zoo trained through the CLI on ten scenarios."""
    out = tmp_path_factory.mktemp("cli") / "zoo"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--base", str(base_dir), "--data", str(vcd_train), "--limit", "10", "--epochs", "1",
              "--rank", "2", "--max-length", "256", "--out", str(out)])
    assert exit_info.value.code in (0, None)
    return out


def test_make_base(capsys, tmp_path, vcd_train):
    out = tmp_path / "base"
    code, stdout, _ = run(capsys, "make-base", "--size", "tiny", "--minutes", "0", "--corpus", vcd_train, "--out", out)
    assert code == 0
    assert str(out) in stdout
    for name in ("config.json", "tokenizer.json", "pft_base.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "pft_base.json").read_text())
    assert info["size"] == "tiny" and info["pretrain"]["steps"] == 0
    # a second run onto the same folder is refused, and --overwrite allows it
    assert "not empty" in user_error(capsys, "make-base", "--size", "tiny", "--minutes", "0", "--corpus", vcd_train,
                                     "--out", out)


def test_make_base_with_an_epoch_budget_stops_on_epochs_not_time(capsys, tmp_path, vcd_train):
    out = tmp_path / "base"
    code, _, _ = run(capsys, "make-base", "--size", "tiny", "--epochs", "0.05", "--corpus", vcd_train, "--out", out)
    assert code == 0
    info = json.loads((out / "pft_base.json").read_text())
    assert info["pretrain_minutes"] is None and info["pretrain_epochs"] == 0.05
    assert info["pretrain"]["steps"] > 0 and info["pretrain"]["epochs"] == pytest.approx(0.05, abs=0.02)


def test_make_base_errors(capsys, tmp_path, vcd_train):
    assert "unknown base size 'huge'" in user_error(capsys, "make-base", "--size", "huge", "--corpus", vcd_train,
                                                     "--out", tmp_path / "b")
    assert "missing.json" in user_error(capsys, "make-base", "--size", "tiny", "--corpus", tmp_path / "missing.json",
                                        "--out", tmp_path / "b")
    for size in (0, 5, 259, 10**9, 10**23):  # one check, with the real bounds (0 took the preset's size, 5 named no
        assert user_error(capsys, "make-base", "--size", "tiny", "--minutes", "0", "--vocab-size", size,  # option, 10**9
                          "--corpus", vcd_train, "--out", tmp_path / "b") == (  # aborted the tokenizer trainer)
            f"error: --vocab-size must be from 260 (byte-level BPE: 256 bytes and 4 special tokens) to 1,000,000, got {size}")
    assert not (tmp_path / "b").exists()


def test_train_then_info(capsys, cli_zoo):
    capsys.readouterr()
    assert (cli_zoo / "pft_zoo.json").is_file()
    assert not cli_zoo.with_name(cli_zoo.name + ".checkpoint").exists()  # dropped after a finished run
    code, out, _ = run(capsys, "info", cli_zoo, "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["poles"] and len(summary["poles"]) == 2 * len(summary["dimensions"])
    for dim, poles in summary["dimensions"].items():
        assert set(poles) <= set(summary["poles"]), dim
    assert summary["lora"]["r"] == 2
    assert summary["head"] is True
    assert summary["training"]["scenarios"] == 10 and summary["training"]["epochs"] == 1


def test_info_text(capsys, cli_zoo):
    capsys.readouterr()
    code, out, _ = run(capsys, "info", cli_zoo)
    assert code == 0
    assert "LoRA r=2" in out and "+1" in out and "-1" in out


def _train_args(base_dir, data, out, *extra):
    return ("train", "--base", base_dir, "--data", data, "--out", out, "--limit", "10", "--epochs", "1", *extra)


def test_train_refuses_a_device_this_machine_lacks_before_loading_the_base(capsys, vcd_train, tmp_path):
    missing = torch.cuda.device_count() if torch.cuda.is_available() else 0
    line = user_error(capsys, *_train_args(tmp_path / "no-base", vcd_train, tmp_path / "z", "--device", f"cuda:{missing}"))
    assert f"--device 'cuda:{missing}': this machine has {missing} CUDA GPU(s)" in line


def test_train_missing_data_file(capsys, base_dir, tmp_path):
    line = user_error(capsys, *_train_args(base_dir, tmp_path / "nope.json", tmp_path / "z"))
    assert "nope.json" in line and "not found" in line


def test_train_bad_record(capsys, base_dir, tmp_path):
    data = tmp_path / "bad.json"
    data.write_text(json.dumps([{"scenario": "x", "preference domain": "Risk Orientation",
                                 "options": [{"text": "a", "bias": "Risk-taking"}, {"text": "b", "bias": "Bold"}]}]))
    line = user_error(capsys, *_train_args(base_dir, data, tmp_path / "z"))
    assert "bad.json, record 1" in line and "'bias'" in line


def test_train_unknown_dimension_suggests(capsys, base_dir, vcd_train, tmp_path):
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z", "--dims", "risk,chnage"))
    assert "unknown dimension 'chnage'" in line and "did you mean 'change'" in line


@pytest.mark.parametrize("weight, words", [("risk-averse", ["POLE=NUMBER"]), ("risk-averse=lots", ["POLE=NUMBER"]),
                                            ("risk-avers=2", ["unknown pole", "did you mean 'risk-averse'"]),
                                            ("risk-averse=nan", ["finite numbers >= 0, got risk-averse=nan"]),
                                            ("risk-averse=-1", [">= 0, got risk-averse=-1"])])
def test_train_bad_pole_weight(capsys, base_dir, vcd_train, tmp_path, weight, words):
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z", "--dims", "risk", "--pole-weight", weight))
    for word in words:
        assert word in line, line


def test_train_non_empty_out(capsys, base_dir, vcd_train, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    line = user_error(capsys, *_train_args(base_dir, vcd_train, out))
    assert str(out) in line and "--overwrite" in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_train_out_that_is_a_file(capsys, base_dir, vcd_train, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    line = user_error(capsys, *_train_args(base_dir, vcd_train, out, "--overwrite"))
    assert "is a file: give a folder path" in line and out.read_text() == "keep me"
    line = user_error(capsys, *_train_args(base_dir, vcd_train, out / "zoo"))  # below a file: refused before training
    assert f"--out {out / 'zoo'} cannot be written: {out} is a file, not a folder" in line and out.read_text() == "keep me"


def test_the_current_folder_is_never_a_target(capsys, base_dir, vcd_train, tmp_path, monkeypatch):
    """It is replaced by a rename at the end, which would leave the shell in a deleted folder."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for out in (".", "..", tmp_path / "here"):
        line = user_error(capsys, *_train_args(base_dir, vcd_train, out, "--overwrite"))
        assert f"--out {out} is the current folder or holds it: give a new folder path" in line


def test_a_write_that_fails_midway_leaves_nothing_and_says_why(tmp_path):
    with pytest.raises(PFTError) as err:
        with atomic_folder(tmp_path / "zoo") as staging:
            (staging / "poles").mkdir()
            raise OSError(errno.ENOSPC, "No space left on device", str(staging / "poles" / "a.safetensors"))
    assert str(err.value).startswith(f"writing {tmp_path / 'zoo'} failed, nothing was written: No space left on device (")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--limit", "--batch-size", "--grad-accum", "--rank", "--checkpoint-every"])
def test_train_counts_below_one_are_usage_errors(capsys, base_dir, vcd_train, tmp_path, option):
    code, _, err = run(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z"), option, "0")
    assert code == 2 and option in err and "Traceback" not in err and not (tmp_path / "z").exists()


def test_train_records_the_lora_settings_it_was_given(capsys, base_dir, vcd_train, tmp_path):
    out = tmp_path / "z"
    code, _, err = run(capsys, *_train_args(base_dir, vcd_train, out, "--dims", "risk", "--rank", "2", "--alpha", "4",
                                            "--target-modules", "v_proj,q_proj"))
    assert code == 0, err
    code, stdout, _ = run(capsys, "info", out, "--json")
    assert json.loads(stdout)["lora"] == {"r": 2, "alpha": 4.0, "target_modules": ["v_proj", "q_proj"]}
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "bad", "--target-modules", "qproj"))
    assert "qproj" in line and not (tmp_path / "bad").exists()
    assert "--alpha must be a positive number" in user_error(capsys, *_train_args("no-such-base", vcd_train, tmp_path / "bad",
                                                                                 "--alpha", "nan"))  # before loading


def test_train_json_stays_valid_without_labelled_dev_options(capsys, base_dir, vcd_train, tmp_path):
    """One scenario leaves none to hold out: the head's dev accuracies are null, not NaN (which no JSON reader takes)."""
    code, out, err = run(capsys, "train", "--base", base_dir, "--data", vcd_train, "--out", tmp_path / "z", "--limit", "1",
                         "--epochs", "1", "--json")
    assert code == 0, err
    summary = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert summary["head_dev_examples"] == 0
    assert summary["head_dev_pole_accuracy"] is None and summary["head_dev_dimension_accuracy"] is None


def test_make_base_refuses_budgets_that_never_end(capsys, vcd_train, tmp_path):
    for option in ("--epochs", "--minutes"):
        line = user_error(capsys, "make-base", "--size", "tiny", option, "inf", "--corpus", vcd_train, "--out", tmp_path / "b")
        assert f"{option} must be a finite number >= 0, got inf" in line
    code, _, err = run(capsys, "make-base", "--seed", str(2**64), "--corpus", vcd_train, "--out", tmp_path / "b")
    assert code == 2 and "--seed" in err and not (tmp_path / "b").exists()

def test_limit_with_dims_takes_every_dimension_in_turn(capsys, base_dir, vcd_train, tmp_path):
    """Data files are sorted by dimension: the first 10 alone would leave time's poles untrained."""
    out = tmp_path / "z"
    code, stdout, err = run(capsys, *_train_args(base_dir, vcd_train, out, "--dims", "risk,time", "--rank", "2", "--json"))
    assert code == 0 and json.loads(stdout)["scenarios"] == 10, err
    zoo = Zoo.from_pretrained(out)
    for pole in zoo.pole_slugs:
        assert any(float(t.abs().max()) > 0 for k, t in zoo.poles[pole].items() if "lora_B" in k), pole
    base = tmp_path / "b"
    base.mkdir()
    (base / "keep.txt").write_text("x")
    line = user_error(capsys, *_train_args(base, vcd_train, tmp_path, "--overwrite"))  # holds --base: never deleted
    assert f"--out {tmp_path} holds" in line and "which this command reads" in line


@pytest.mark.parametrize("args", [
    ("eval", "zoo", "--data", "dev.json", "--all-poles", "--limit", "0"),
    ("rerank", "zoo", "--vector", "risk=1", "--candidates", "answers.jsonl", "--top", "0"),
    ("mix", "zoo", "--vector", "risk=1", "--prompt", "x", "--seed", "-1"),
    ("make-base", "--out", "b", "--corpus", "c.json", "--seed", str(2**63)),  # a seed torch cannot take
    ("train", "--base", "b", "--data", "d.json", "--out", "z", "--seed", str(2**63)),
    ("extend", "zoo", "--pairs", "p.json", "--data", "d.jsonl", "--out", "z2", "--seed", str(2**63)),
])
def test_counts_and_seeds_out_of_their_range_are_usage_errors(capsys, args):
    code, _, err = run(capsys, *args)
    assert code == 2 and args[-2] in err and "Traceback" not in err


@pytest.mark.parametrize("option, key, good, bad, message", [
    ("--orthogonality", "orthogonality", "5", "-1", "--orthogonality must be a finite number >= 0"),
    ("--lora-dropout", "lora_dropout", "0.1", "1", "--lora-dropout must be a probability in [0, 1)"),
])
def test_train_regularisers_are_recorded_and_checked(capsys, base_dir, vcd_train, tmp_path, option, key, good, bad, message):
    code, stdout, _ = run(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z", "--dims", "risk,time", "--rank", "2",
                                               option, good, "--json"))
    assert code == 0 and json.loads(stdout)[key] == float(good)
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "bad", option, bad))
    assert message in line and not (tmp_path / "bad").exists()


def test_train_orthogonality_needs_adapters_of_several_dimensions(capsys, base_dir, vcd_train, tmp_path):
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "c", "--method", "conditioned", "--orthogonality", "1"))
    assert "method 'conditioned' trains one adapter" in line


def test_train_head_init_is_checked_before_any_work(capsys, base_dir, vcd_train, tmp_path):
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z", "--head-init", "random"))
    assert "unknown --head-init 'random': choose one of descriptions, zeros" in line and not (tmp_path / "z").exists()
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z", "--head-init", "zeros"))
    assert "an LLM zoo has none" in line


def test_train_bad_pairs_file(capsys, base_dir, vcd_train, tmp_path):
    pairs = tmp_path / "pairs.json"
    pairs.write_text('[{"slug": "honesty"')
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z", "--pairs", pairs))
    assert "pairs.json" in line and "not valid JSON" in line


def test_info_on_a_folder_that_is_not_a_zoo(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    line = user_error(capsys, "info", tmp_path)
    assert str(tmp_path) in line and "not a zoo" in line


def test_train_help_teaches_resume_and_torchrun(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    assert "--resume" in out and "torchrun" in out
    for option in ("--base", "--data", "--out", "--dims", "--pairs", "--pole-weight", "--grad-accum"):
        assert option in out, option


# -- an interrupted run, resumed through the CLI ------------------------------------------------------
def _counting_lr_factor(monkeypatch, interrupt_at: int | None = None) -> dict[str, int]:
    """Count the optimizer steps a run takes (one `lr_factor` call each); raise Ctrl-C at call `interrupt_at`."""
    import pft_adapters.train as train_module

    real, calls = train_module.lr_factor, {"n": 0}

    def counted(step: int, total: int, warmup: float) -> float:
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return real(step, total, warmup)

    monkeypatch.setattr(train_module, "lr_factor", counted)
    return calls


def test_train_interrupted_then_resumed_through_the_cli_ends_in_the_uninterrupted_zoo(capsys, base_dir, vcd_train,
                                                                                       tmp_path, monkeypatch):
    options = ("--dims", "risk,time", "--rank", "2", "--checkpoint-every", "1", "--json")
    code, stdout, err = run(capsys, *_train_args(base_dir, vcd_train, tmp_path / "full", *options))
    assert code == 0, err
    steps = json.loads(stdout)["steps"]
    assert steps >= 3  # an interrupt after the first step leaves some to resume

    out = tmp_path / "zoo"
    checkpoint = tmp_path / "zoo.checkpoint"
    _counting_lr_factor(monkeypatch, interrupt_at=2)  # Ctrl-C within the second step
    code, stdout, err = run(capsys, *_train_args(base_dir, vcd_train, out, *options))
    last = err.strip().splitlines()[-1]  # after the progress bar
    assert code == 1 and stdout == "" and "Traceback" not in err
    assert last == f"error: interrupted at step 1/{steps}: rerun the same command with --resume to continue"
    assert json.loads((checkpoint / "progress.json").read_text())["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "zoo.checkpoint"]  # no zoo, nothing half-written

    monkeypatch.undo()
    calls = _counting_lr_factor(monkeypatch)
    code, stdout, err = run(capsys, *_train_args(base_dir, vcd_train, out, *options, "--resume"))
    assert code == 0, err
    assert calls["n"] == steps - 1  # went on from the checkpoint, not from the start
    assert json.loads(stdout)["zoo"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "zoo"]  # the checkpoint is dropped once the zoo is written
    resumed, full = Zoo.from_pretrained(out), Zoo.from_pretrained(tmp_path / "full")
    same_zoo(full, resumed, atol=1e-6)
    assert resumed.training["final_loss"] == pytest.approx(full.training["final_loss"], abs=1e-4)


def test_train_resume_without_a_checkpoint_starts_from_the_beginning(capsys, base_dir, vcd_train, tmp_path, monkeypatch):
    options = ("--dims", "risk", "--rank", "2", "--json")
    code, stdout, err = run(capsys, *_train_args(base_dir, vcd_train, tmp_path / "full", *options))
    assert code == 0, err
    steps = json.loads(stdout)["steps"]
    calls = _counting_lr_factor(monkeypatch)
    code, _, err = run(capsys, *_train_args(base_dir, vcd_train, tmp_path / "zoo", *options, "--resume"))
    assert code == 0, err
    assert calls["n"] == steps  # every step, none skipped
    assert not (tmp_path / "zoo.checkpoint").exists()
    same_zoo(Zoo.from_pretrained(tmp_path / "full"), Zoo.from_pretrained(tmp_path / "zoo"))


# -- single-preference training through the CLI ---------------------------------------------------------
def test_train_method_single_trains_the_poles_own_dimension(capsys, base_dir, vcd_train, tmp_path):
    """--dims defaults to the pole's dimension, so --limit takes that dimension's scenarios only."""
    out = tmp_path / "single"
    code, stdout, err = run(capsys, *_train_args(base_dir, vcd_train, out, "--method", "single", "--pole", "Risk-averse",
                                                 "--rank", "2", "--json"))
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["method"] == "single" and summary["pole"] == "risk-averse" and summary["scenarios"] == 10
    risk = [s for s in load_scenarios(vcd_train) if s.dimension == "risk"][:10]  # the file opens with other dimensions
    assert summary["rows"] == sum(len(s.options_of("risk-averse")) for s in risk)
    code, stdout, _ = run(capsys, "info", out, "--json")
    held = json.loads(stdout)
    assert held["poles"] == ["risk-averse"] and list(held["dimensions"]) == ["risk"]
    zoo = Zoo.from_pretrained(out)
    assert any(float(t.abs().max()) > 0 for k, t in zoo.poles["risk-averse"].items() if "lora_B" in k)
    # --dims naming the pole's dimension (by label, among others) trains that dimension alone too
    code, stdout, err = run(capsys, *_train_args(base_dir, vcd_train, tmp_path / "single2", "--method", "single",
                                                 "--pole", "risk-averse", "--dims", "time, Risk Orientation", "--rank", "2",
                                                 "--json"))
    assert code == 0, err
    assert json.loads(stdout)["scenarios"] == 10
    single = Zoo.from_pretrained(tmp_path / "single2")
    assert single.pole_slugs == ["risk-averse"] and [d.slug for d in single.space] == ["risk"]


def test_train_method_single_refuses_a_pole_outside_dims_before_any_work(capsys, vcd_train, tmp_path):
    args = ("--method", "single", "--pole", "risk-averse")
    line = user_error(capsys, *_train_args("no-such-base", vcd_train, tmp_path / "z", *args, "--dims", "time,social"))
    assert line == "error: --pole risk-averse is not a pole of --dims time,social"
    line = user_error(capsys, *_train_args("no-such-base", vcd_train, tmp_path / "z", "--method", "single",
                                           "--pole", "risk-avers"))
    assert "unknown pole 'risk-avers'" in line and "did you mean 'risk-averse'" in line
    line = user_error(capsys, *_train_args("no-such-base", vcd_train, tmp_path / "z", "--method", "single"))
    assert "method 'single' needs the pole to train (--pole)" in line
    line = user_error(capsys, *_train_args("no-such-base", vcd_train, tmp_path / "z", "--pole", "risk-averse"))
    assert "--pole goes with --method single; method 'paired' trains every pole" in line
    assert not (tmp_path / "z").exists()


# -- starting up ---------------------------------------------------------------------------------------
def test_version_and_help_start_without_torch():
    """torch takes seconds to import: --help and --version answer without it."""
    import subprocess
    import sys

    script = ("import sys\nfrom pft_adapters_cli.app import main\nfor args in (['--version'], ['--help']):\n"
              "    try:\n        main(args)\n    except SystemExit as e:\n        assert e.code in (0, None), e\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"pft-adapters {__version__}\n")


def test_ctrl_c_while_starting_up_exits_130_quietly(capsys, monkeypatch):
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("transformers.utils.logging.disable_progress_bar", interrupted)
    assert run(capsys, "--version") == (130, "", "")


def test_shared_options_are_defined_once():
    """--base, --device, --history, --method, --half-life, --calibrate: one definition each, the same in every command."""
    import inspect

    from pft_adapters_cli.commands import common, evaluate, infer, mix, rerank

    params = {name: inspect.signature(f).parameters for name, f in
              (("infer", infer.infer_command), ("mix", mix.mix), ("eval", evaluate.evaluate), ("rerank", rerank.rerank_command))}
    for option, commands in (("BASE", params), ("DEVICE", params), ("CALIBRATE", ("mix", "eval")),
                             ("HISTORY", ("mix", "rerank")), ("METHOD", ("mix", "rerank")), ("HALF_LIFE", ("mix", "rerank"))):
        for command in commands:
            assert params[command][option.lower()].default is getattr(common, f"{option}_OPTION"), (option, command)
    assert "object" not in (common.JSON_OPTION.help or "")  # `list --json` prints an array


def test_an_out_inside_an_input_or_reached_through_a_link_is_refused_and_the_input_kept(capsys, base_dir, vcd_train, tmp_path):
    data = tmp_path / "data" / "train.json"
    data.parent.mkdir()
    data.write_bytes(vcd_train.read_bytes())
    line = user_error(capsys, *_train_args(base_dir, data, base_dir / "zoo", "--overwrite"))
    assert f"--out {base_dir / 'zoo'} lies inside {base_dir}, which this command reads" in line
    (tmp_path / "link").symlink_to(data.parent)
    line = user_error(capsys, *_train_args(base_dir, tmp_path / "link" / "train.json", data.parent, "--overwrite"))
    assert f"--out {data.parent} holds {tmp_path / 'link' / 'train.json'}, which this command reads" in line
    assert data.exists()
    line = user_error(capsys, "convert", "vcd", data, "--out", tmp_path / "link" / "train.json", "--overwrite")
    assert "which this command reads" in line and data.read_bytes() == vcd_train.read_bytes()


def test_an_out_whose_checkpoint_place_is_taken_or_that_cannot_be_written_is_refused_before_training(capsys, base_dir,
                                                                                                    vcd_train, tmp_path):
    (tmp_path / "zoo.checkpoint").mkdir()
    (tmp_path / "zoo.checkpoint" / "notes.txt").write_text("mine")  # not a checkpoint: the run would replace it
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "zoo"))
    assert f"{tmp_path / 'zoo.checkpoint'} is in the way" in line
    assert (tmp_path / "zoo.checkpoint" / "notes.txt").read_text() == "mine"
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / ("z" * 250)))  # its temporary siblings' names
    assert "cannot write" in line and "File name too long" in line  # are too long: found now, not after training


@pytest.mark.parametrize("extra, message", [
    (("--target-modules", "q_proj,q_proj"), "--target-modules must name each layer once"),  # wrote an unloadable zoo
    (("--target-modules", "lm_head"), "shares its weights with the input embeddings"),  # a merge would change them too
    (("--rank", "100000000"), "--rank 100000000 is above the width of the narrowest adapted layer"),
    (("--lr", "1e300"), "--lr must be a positive number \\(within float32's range\\)"),
    (("--pole-weight", "risk-averse=0", "--pole-weight", "risk-taking=0"), "every pole trained has --pole-weight 0"),
    (("--pole-weight", "risk-averse=1", "--pole-weight", "Risk-averse=2"), "gives pole 'risk-averse' twice"),
])
def test_train_refuses_settings_that_would_fail_late_or_train_nothing(capsys, base_dir, vcd_train, tmp_path, extra, message):
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z", "--dims", "risk", *extra))
    assert re.search(message, line), line
    assert not (tmp_path / "z").exists()


def test_a_run_that_would_lose_an_interrupted_runs_checkpoint_or_measure_nothing_is_refused(capsys, base_dir, vcd_train,
                                                                                           vcd_dev, tmp_path):
    (tmp_path / "zoo.checkpoint").mkdir()
    (tmp_path / "zoo.checkpoint" / "progress.json").write_text("{}")  # left by an interrupted run
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "zoo"))  # --resume forgotten
    assert f"an interrupted run left its checkpoint in {tmp_path / 'zoo.checkpoint'}: rerun with --resume" in line
    assert (tmp_path / "zoo.checkpoint" / "progress.json").exists()
    code, _, err = run(capsys, *_train_args(base_dir, vcd_train, tmp_path / "zoo", "--dims", "risk", "--overwrite"))
    assert code == 0, err  # --overwrite starts over
    assert not (tmp_path / "zoo.checkpoint").exists()
    time_only = tmp_path / "time.json"
    time_only.write_text(json.dumps([r for r in json.loads(vcd_dev.read_text()) if r["preference domain"] == "Time Preference"]))
    line = user_error(capsys, *_train_args(base_dir, vcd_train, tmp_path / "z2", "--dims", "risk", "--dev", time_only))
    assert f"--dev {time_only} holds no scenarios of risk" in line
