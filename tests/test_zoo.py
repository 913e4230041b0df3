"""The zoo on disk: round trip, checksums, base fingerprint, atomic save, PEFT interop, model card."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file, save_file

import pft_adapters.zoo as zoo_module
from pft_adapters.atomic import atomic_write_text
from pft_adapters.base import load_base, tiny_base
from pft_adapters.errors import PFTError
from pft_adapters.zoo import MANIFEST, Zoo, fingerprint, sha256_file


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture()
def zoo_copy(zoo_dir, tmp_path):
    """A private copy of the saved zoo, free to damage."""
    return shutil.copytree(zoo_dir, tmp_path / "zoo")


# -- round trip -----------------------------------------------------------------------
def test_round_trip(trained, zoo_dir):
    saved = trained.zoo
    loaded = Zoo.from_pretrained(zoo_dir)
    assert loaded.space == saved.space
    assert loaded.pole_slugs == saved.pole_slugs == ["risk-taking", "risk-averse",
                                                    "immediate-gratification", "delayed-gratification"]
    assert loaded.spec == saved.spec
    assert loaded.base == saved.base
    assert loaded.training == json.loads(json.dumps(saved.training))
    assert loaded.training["rows"] > 0 and "head_dev_pole_accuracy" in loaded.training
    for pole, tensors in saved.poles.items():
        assert loaded.poles[pole].keys() == tensors.keys()
        for key, value in tensors.items():
            assert torch.equal(loaded.poles[pole][key], value), (pole, key)
    assert loaded.head is not None
    assert loaded.head.pole_slugs == saved.head.pole_slugs
    assert loaded.head.dimension_slugs == saved.head.dimension_slugs
    for key, value in saved.head.state_dict().items():
        assert torch.equal(loaded.head.state_dict()[key], value), key
    assert loaded.source == str(zoo_dir)


def test_a_base_recorded_as_a_folder_that_is_not_here_says_to_pass_base(zoo_dir, tmp_path, monkeypatch):
    zoo = Zoo.from_pretrained(zoo_dir)
    zoo.base = dataclasses.replace(zoo.base, id="base/")  # `train --base base/`, loaded from another folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PFTError, match="base model is the folder 'base/' .*which is not here: pass its path with --base"):
        zoo.load_base()
    zoo.base = dataclasses.replace(zoo.base, id="org/gone")  # a Hub id: what the Hub says, no word of folders
    with pytest.raises(PFTError, match="cannot load base model 'org/gone'") as err:
        zoo.load_base()
    assert "--base" not in str(err.value) and "\n" not in str(err.value)


def test_load_only_some_poles(zoo_dir):
    zoo = Zoo.from_pretrained(zoo_dir, poles=["Risk-averse"])
    assert zoo.pole_slugs == ["risk-averse"]
    with pytest.raises(PFTError, match="unknown pole 'honesty'"):
        Zoo.from_pretrained(zoo_dir, poles=["honesty"])


def test_manifest_lists_every_file_with_sha256(zoo_dir, trained):
    manifest = json.loads((zoo_dir / MANIFEST).read_text())
    assert manifest["format"] == "pft-zoo" and manifest["format_version"] == 1
    assert manifest["base_model"]["fingerprint"] == trained.zoo.base.fingerprint
    assert manifest["base_model"]["fingerprint"].startswith("sha256:")
    assert manifest["poles"] == trained.zoo.pole_slugs
    assert [d["slug"] for d in manifest["dimensions"]] == ["risk", "time"]
    assert manifest["lora"] == {"r": 4, "alpha": 32.0, "target_modules": list(trained.zoo.spec.target_modules)}
    assert manifest["head"] == "head"
    on_disk = set(_files(zoo_dir)) - {MANIFEST, "README.md"}
    assert set(manifest["files"]) == on_disk
    for pole in manifest["poles"]:
        assert f"poles/{pole}/adapter_config.json" in on_disk
        assert f"poles/{pole}/adapter_model.safetensors" in on_disk
    assert {"head/config.json", "head/model.safetensors"} <= on_disk
    for rel, digest in manifest["files"].items():
        assert len(digest) == 64 and digest == sha256_file(zoo_dir / rel), rel


def test_pole_configs_are_the_same_bytes_in_every_process(tmp_path):
    """peft keeps target_modules as a set: written in hash order, an unchanged zoo would change on every save."""
    script = ("import sys, peft; from pathlib import Path; from pft_adapters.zoo import save_peft_config; "
              "save_peft_config(peft.LoraConfig(r=4, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', "
              "'up_proj', 'down_proj']), Path(sys.argv[1]))")
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / seed)], check=True, env={**os.environ, "PYTHONHASHSEED": seed})
    assert (tmp_path / "1" / "adapter_config.json").read_bytes() == (tmp_path / "2" / "adapter_config.json").read_bytes()


# -- damaged files --------------------------------------------------------------------
@pytest.mark.parametrize("rel", ["poles/risk-averse/adapter_model.safetensors", "poles/risk-taking/adapter_config.json",
                                 "head/model.safetensors"])
def test_changed_byte_is_refused(zoo_copy, rel):
    target = zoo_copy / rel
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(PFTError) as err:
        Zoo.from_pretrained(zoo_copy)
    msg = str(err.value)
    assert rel in msg and "corrupted or truncated" in msg


def test_truncated_pole_file_is_refused(zoo_copy):
    rel = "poles/delayed-gratification/adapter_model.safetensors"
    target = zoo_copy / rel
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(PFTError) as err:
        Zoo.from_pretrained(zoo_copy)
    assert rel in str(err.value) and "truncated" in str(err.value)


def test_a_pole_with_nan_weights_is_refused_by_name(zoo_dir, tmp_path):
    zoo = Zoo.from_pretrained(zoo_dir)
    key = next(k for k in zoo.poles["risk-averse"] if "lora_B" in k)
    zoo.poles["risk-averse"][key] = torch.full_like(zoo.poles["risk-averse"][key], float("nan"))
    zoo.save_pretrained(tmp_path / "diverged")  # checksums match: the values themselves are what is wrong
    with pytest.raises(PFTError, match=r"poles/risk-averse/adapter_model.safetensors' holds NaN or infinite values .*retrain"):
        Zoo.from_pretrained(tmp_path / "diverged")
    assert Zoo.from_pretrained(tmp_path / "diverged", poles=["risk-taking"]).pole_slugs == ["risk-taking"]


def test_missing_pole_file_is_refused(zoo_copy):
    rel = "poles/risk-taking/adapter_model.safetensors"
    (zoo_copy / rel).unlink()
    with pytest.raises(PFTError) as err:
        Zoo.from_pretrained(zoo_copy)
    assert rel in str(err.value) and "missing" in str(err.value)


def test_damaged_pole_not_loaded_is_ignored(zoo_copy):
    """Only the files being loaded are checked: pulling one pole does not read the others."""
    (zoo_copy / "poles/risk-taking/adapter_model.safetensors").write_bytes(b"junk")
    assert Zoo.from_pretrained(zoo_copy, poles=["risk-averse"]).pole_slugs == ["risk-averse"]


def test_corrupted_manifest_is_refused(zoo_copy):
    (zoo_copy / MANIFEST).write_text('{"format": "pft-zoo", ')
    with pytest.raises(PFTError, match="not valid JSON"):
        Zoo.from_pretrained(zoo_copy)


@pytest.mark.parametrize("field, value, message", [
    ("format_version", "2", "'format_version' is '2'"),
    ("dimensions", None, "'dimensions' must be a list"),
    ("poles", [1, 2], "'poles' must be a list of pole slugs"),
    ("lora", {"alpha": 16, "target_modules": ["q_proj"]}, "'lora' must hold a positive whole 'r'"),
    ("lora", {"r": "8", "alpha": 16, "target_modules": ["q_proj"]}, "'lora' must hold"),
    ("base_model", {"id": "x"}, "'base_model' must hold exactly"),
    ("files", [], "'files' must map"),
    ("files", {"../evil": "0" * 64}, "'files' lists '../evil', a path outside the zoo"),
    ("training", {"max_length": "abc"}, "'training.max_length' must be a whole number of tokens"),
    ("training", [], "'training' must be an object"),
    ("training", {"lora_dropout": "0.1"}, "'training.lora_dropout' must be a number in \\[0, 1\\)"),
])
def test_malformed_manifest_fields_are_one_line(zoo_copy, field, value, message):
    manifest = json.loads((zoo_copy / MANIFEST).read_text())
    (zoo_copy / MANIFEST).write_text(json.dumps(manifest | {field: value}))
    with pytest.raises(PFTError, match=message) as err:
        Zoo.from_pretrained(zoo_copy)
    assert "\n" not in str(err.value) and "re-download or re-train" in str(err.value)


@pytest.mark.parametrize("lora, message", [
    ({"r": 4, "alpha": float("nan"), "target_modules": ["q_proj"]}, "a positive finite 'alpha'"),
    ({"r": 4, "alpha": 0, "target_modules": ["q_proj"]}, "a positive finite 'alpha'"),
    ({"r": 4, "alpha": 32, "target_modules": []}, "a list of 'target_modules'"),
])
def test_lora_settings_that_would_spoil_every_mix_are_refused(zoo_copy, lora, message):
    manifest = json.loads((zoo_copy / MANIFEST).read_text())
    (zoo_copy / MANIFEST).write_text(json.dumps(manifest | {"lora": lora}))  # NaN alpha: every output NaN
    with pytest.raises(PFTError, match=message):
        Zoo.from_pretrained(zoo_copy)


def test_a_key_given_twice_in_the_manifest_is_refused(zoo_copy):
    text = (zoo_copy / MANIFEST).read_text()
    (zoo_copy / MANIFEST).write_text(text.replace('"r": 4', '"r": 4, "r": 2', 1))
    with pytest.raises(PFTError, match="not valid JSON: key 'r' is given twice"):
        Zoo.from_pretrained(zoo_copy)


def _rehashed(folder, rel, write):
    """`write(path)` damages a listed file; the manifest then records its new sha256, as a damaged publication would."""
    write(folder / rel)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][rel] = sha256_file(folder / rel)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _edit_json(change):
    def write(path):
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return write


def _edit_tensors(change):
    def write(path):
        save_file({k: v.contiguous() for k, v in change(load_file(path)).items()}, path)
    return write


POLE = "poles/risk-averse/adapter_model.safetensors"


@pytest.mark.parametrize("rel, write, message", [
    ("head/config.json", _edit_json(lambda c: [1, 2]), "head/config.json does not hold a JSON object"),
    ("head/config.json", _edit_json(lambda c: c | {"pole_slugs": ["a", "b", "c", "d"]}),
     "head/config.json names dimensions or poles the manifest does not define"),
    ("head/config.json", _edit_json(lambda c: c | {"hidden_size": c["hidden_size"] + 1}), "tensor 'mean' is"),
    ("head/config.json", _edit_json(lambda c: c | {"dimension_slugs": ["risk", "risk"]}), "name each dimension once"),
    ("head/model.safetensors", _edit_tensors(lambda t: {k: v for k, v in t.items() if k != "std"}), "tensor 'std' is missing"),
    (POLE, _edit_tensors(lambda t: {k: v.to(torch.int64) for k, v in t.items()}), "holds int64 values"),
    (POLE, _edit_tensors(lambda t: dict(list(t.items())[1:])), "holds tensor .* of shape"),
    (POLE, _edit_tensors(lambda t: {k: v[:, :1] if "lora_B" in k else v[:1] for k, v in t.items()}),
     "not LoRA factors of rank 4"),
    ("poles/risk-averse/adapter_config.json", _edit_json(lambda c: c | {"r": 8}), "is not the LoRA config of the manifest's lora"),
])
def test_a_damaged_file_with_a_matching_checksum_is_one_line(zoo_copy, rel, write, message):
    _rehashed(zoo_copy, rel, write)
    with pytest.raises(PFTError, match=message) as err:
        Zoo.from_pretrained(zoo_copy)
    assert "\n" not in str(err.value) and "re-download or re-train" in str(err.value)


def test_a_float8_pole_is_checked_finite_and_loads(zoo_copy):
    _rehashed(zoo_copy, POLE, _edit_tensors(lambda t: {k: v.to(torch.float8_e4m3fn) for k, v in t.items()}))
    assert Zoo.from_pretrained(zoo_copy).poles["risk-averse"]  # torch has no isfinite for float8: read as float
    _rehashed(zoo_copy, POLE, _edit_tensors(lambda t: {k: torch.full_like(v, float("nan")) for k, v in t.items()}))
    with pytest.raises(PFTError, match="holds NaN or infinite values"):
        Zoo.from_pretrained(zoo_copy)


def test_folder_that_is_not_a_zoo(tmp_path):
    with pytest.raises(PFTError, match="is not a zoo"):
        Zoo.from_pretrained(tmp_path)


# -- base fingerprint -----------------------------------------------------------------
def test_other_base_is_refused_naming_both(trained):
    other, _ = tiny_base(seed=1)
    with pytest.raises(PFTError) as err:
        trained.zoo.attach(other, name="other-tiny")
    msg = str(err.value)
    assert trained.zoo.base.id in msg and "other-tiny" in msg
    assert trained.zoo.base.fingerprint[:19] in msg and fingerprint(other)[:19] in msg


def test_fingerprint_ignores_dtype_but_not_weights(base_dir):
    fp32, _ = load_base(base_dir, dtype=torch.float32)
    bf16, _ = load_base(base_dir, dtype=torch.bfloat16)
    assert next(bf16.parameters()).dtype == torch.bfloat16
    assert fingerprint(fp32) == fingerprint(bf16)
    a, b = tiny_base(seed=0)[0], tiny_base(seed=1)[0]
    assert fingerprint(a) == fingerprint(tiny_base(seed=0)[0]) == fingerprint(a.bfloat16())
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(fp32) != fingerprint(a)


def test_fingerprint_sees_through_adapters(trained, base_dir):
    model, _ = load_base(base_dir)
    before = fingerprint(model)
    trained.zoo.attach(model)
    assert fingerprint(model) == before == trained.zoo.base.fingerprint


# -- saving ---------------------------------------------------------------------------
def test_save_refuses_non_empty_folder(trained, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(PFTError) as err:
        trained.zoo.save_pretrained(target)
    assert str(target) in str(err.value) and "overwrite" in str(err.value)
    assert _files(target) == ["notes.txt"]


def test_save_into_empty_folder(trained, tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    assert trained.zoo.save_pretrained(str(target)) == target  # a Path, whatever the argument's type
    assert Zoo.from_pretrained(target).pole_slugs == trained.zoo.pole_slugs


def _fail_after_first(monkeypatch):
    real = zoo_module.save_file
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise RuntimeError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo_module, "save_file", flaky)
    return calls


def test_interrupted_save_leaves_nothing(trained, tmp_path, monkeypatch):
    calls = _fail_after_first(monkeypatch)
    target = tmp_path / "out" / "zoo"
    with pytest.raises(RuntimeError, match="simulated"):
        trained.zoo.save_pretrained(target)
    assert len(calls) == 2
    assert not target.exists()
    assert os.listdir(target.parent) == []  # no *.partial sibling either


def test_interrupted_overwrite_keeps_the_old_zoo(trained, tmp_path, monkeypatch):
    target = trained.zoo.save_pretrained(tmp_path / "zoo")
    before = {rel: sha256_file(target / rel) for rel in _files(target)}
    _fail_after_first(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated"):
        trained.zoo.save_pretrained(target, overwrite=True)
    assert {rel: sha256_file(target / rel) for rel in _files(target)} == before
    assert os.listdir(tmp_path) == ["zoo"]
    Zoo.from_pretrained(target)


def test_overwrite_replaces_the_folder(trained, tmp_path):
    target = tmp_path / "zoo"
    target.mkdir()
    (target / "stale.txt").write_text("from an older run")
    trained.zoo.save_pretrained(target, overwrite=True)
    assert "stale.txt" not in _files(target)  # swapped, not merged
    assert os.listdir(tmp_path) == ["zoo"]  # no temporary or old sibling left behind
    trained.zoo.save_pretrained(target, overwrite=True)
    assert os.listdir(tmp_path) == ["zoo"]
    assert Zoo.from_pretrained(target).pole_slugs == trained.zoo.pole_slugs


def test_overwrite_is_not_blocked_by_a_leftover_of_a_killed_run(trained, tmp_path):
    target = trained.zoo.save_pretrained(tmp_path / "zoo")
    leftover = tmp_path / f".zoo.old-{os.getpid()}"  # where a killed overwrite once left the old zoo
    leftover.mkdir()
    (leftover / "pft_zoo.json").write_text("{}")
    trained.zoo.save_pretrained(target, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == [leftover.name, "zoo"]
    Zoo.from_pretrained(target)


def test_a_failed_swap_puts_the_old_zoo_back(trained, tmp_path, monkeypatch):
    target = trained.zoo.save_pretrained(tmp_path / "zoo")
    before = {rel: sha256_file(target / rel) for rel in _files(target)}
    real = os.replace

    def no_new_folder(src, dst):  # the old zoo is moved aside, then the new one cannot take its place
        if str(src).endswith(".partial"):
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", no_new_folder)
    with pytest.raises(PFTError, match=f"writing {target} failed, nothing was written: Input/output error"):
        trained.zoo.save_pretrained(target, overwrite=True)
    assert {rel: sha256_file(target / rel) for rel in _files(target)} == before
    assert os.listdir(tmp_path) == ["zoo"]


def test_written_folders_and_files_get_the_modes_the_umask_allows(trained, tmp_path):
    """Not mkdtemp's 0700 and mkstemp's 0600: a zoo or a data file is for teammates to read too."""
    old = os.umask(0o027)
    try:
        target = trained.zoo.save_pretrained(tmp_path / "zoo")
        atomic_write_text(tmp_path / "rows.jsonl", "{}\n")
        private = tmp_path / "private.jsonl"
        private.write_text("old")
        private.chmod(0o600)
        atomic_write_text(private, "new")  # a replaced file keeps its mode, as a plain open would
    finally:
        os.umask(old)
    folders = [target, *(p for p in target.rglob("*") if p.is_dir())]
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o750}
    assert {stat.S_IMODE((target / rel).stat().st_mode) for rel in _files(target)} == {0o640}
    assert stat.S_IMODE((tmp_path / "rows.jsonl").stat().st_mode) == 0o640
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "new"


def test_a_failed_text_write_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    path.write_text("old")

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(PFTError, match=f"writing {path} failed, nothing was written: No space left on device"):
        atomic_write_text(path, "new")
    assert os.listdir(tmp_path) == ["rows.jsonl"] and path.read_text() == "old"


# -- PEFT interop -----------------------------------------------------------------------
@pytest.mark.parametrize("slug", ["risk-averse", "immediate-gratification"])
def test_pole_folder_is_a_plain_peft_adapter(zoo_dir, base_dir, slug):
    model, tokenizer = load_base(base_dir)
    batch = tokenizer(["Scenario: Sam can invest his savings or keep them.\nChosen option:",
                       "Do they keep the old routine?"], return_tensors="pt", padding=True)

    peft_model = PeftModel.from_pretrained(model, str(zoo_dir), subfolder=f"poles/{slug}").eval()
    with torch.no_grad():
        expected = peft_model(**batch).logits

    ours, _ = load_base(base_dir)
    adapters = Zoo.from_pretrained(zoo_dir).attach(ours)
    adapters.use_weights({slug: 1.0})
    with torch.no_grad():
        got = ours(**batch).logits
        adapters.off()
        bare = ours(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (got - bare).abs().max() > 1e-3  # the adapter really changes the output


def test_to_peft_holds_every_pole_under_its_slug_for_this_base_only(zoo_dir, base_dir):
    zoo = Zoo.from_pretrained(zoo_dir)
    model, tokenizer = load_base(base_dir)
    wrapped = zoo.to_peft(model)
    assert sorted(wrapped.peft_config) == sorted(zoo.pole_slugs)
    batch = tokenizer(["Scenario: Sam can invest his savings or keep them.\nChosen option:"], return_tensors="pt")
    reference = PeftModel.from_pretrained(load_base(base_dir)[0], str(zoo_dir), subfolder="poles/risk-taking").eval()
    wrapped.set_adapter("risk-taking")
    with torch.no_grad():
        torch.testing.assert_close(wrapped(**batch).logits, reference(**batch).logits, atol=1e-6, rtol=0)
    with pytest.raises(PFTError, match="trained on base"):
        zoo.to_peft(tiny_base(seed=1)[0])
    with pytest.raises(PFTError, match="no pole adapters"):
        dataclasses.replace(zoo, poles={}).to_peft(load_base(base_dir)[0])
    widened = {k: torch.cat([v, v[:, :1]], 1) if "lora_A" in k else v for k, v in zoo.poles["risk-averse"].items()}
    with pytest.raises(PFTError, match="adapter for pole 'risk-averse' does not fit"):  # peft would raise its own error
        dataclasses.replace(zoo, poles=zoo.poles | {"risk-averse": widened}).to_peft(load_base(base_dir)[0])


# -- model card -----------------------------------------------------------------------
def test_model_card_metadata(zoo_dir):
    text = (zoo_dir / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "pft-adapters"
    assert "pft-adapters" in meta["tags"]
    body = text.split("---\n", 2)[2]
    for pole in ("risk-taking", "risk-averse", "immediate-gratification", "delayed-gratification"):
        assert pole in body
