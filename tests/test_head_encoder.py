"""A mixing head that reads texts through a named sentence encoder instead of the base's hidden states.

The tiny encoder of conftest (hidden size 32) stands in for a real one; the tiny base's hidden size is 64,
so the width of the features tells which of the two a head was read with.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

from cli_runner import run, user_error
from conftest import TRAIN_DIMS, quick_config
from hub_server import HubServer
from pft_adapters import head as head_module
from pft_adapters.base import load_base, load_encoder
from pft_adapters.errors import PFTError
from pft_adapters.judges import HeadJudge, Judged
from pft_adapters.extend import grow_head
from pft_adapters.head import HeadEncoder, MixingHead, pooled_features
from pft_adapters.history import Decision
from pft_adapters.hub import fetch_encoder, pull
from pft_adapters.infer import infer, option_features
from pft_adapters.mix import MixedModel
from pft_adapters.train import train_zoo
from pft_adapters.values import ValueSpace
from pft_adapters.zoo import MANIFEST, Zoo, fingerprint, read_manifest, sha256_file

USER = "pft-tester"


@pytest.fixture(scope="module")
def zoo(base_dir, encoder_dir, train_slice) -> Zoo:
    """A tiny LLM zoo whose head reads texts through the tiny encoder (one epoch: the adapters do not matter here)."""
    model, tokenizer = load_base(base_dir)
    space = ValueSpace.builtin().select(TRAIN_DIMS)
    config = quick_config(epochs=1, head_steps=30, head_encoder=str(encoder_dir))
    return train_zoo(model, tokenizer, train_slice, space, config, base_id=str(base_dir), progress=False).zoo


@pytest.fixture(scope="module")
def encoded_dir(zoo, tmp_path_factory) -> Path:
    return zoo.save_pretrained(tmp_path_factory.mktemp("encoded") / "zoo")


@pytest.fixture(scope="module")
def mixed(zoo, base_dir) -> MixedModel:
    return MixedModel(zoo, *load_base(base_dir))


@pytest.fixture(scope="module")
def decisions(train_slice) -> list[Decision]:
    return [Decision(s.text, tuple(o.text for o in s.options), 0, dimension=s.dimension) for s in train_slice[::6]]


@pytest.fixture(scope="module")
def other_encoder(encoder_dir, tmp_path_factory) -> Path:
    """The tiny encoder's architecture and tokenizer with other weights."""
    model, tokenizer = load_encoder(encoder_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("other") / "encoder"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def with_encoder(zoo: Zoo, encoder: HeadEncoder) -> Zoo:
    """The same zoo, its head recording another encoder (the zoo's own head is left as it is)."""
    assert zoo.head is not None
    head = zoo.head.select(zoo.space)
    head.encoder = encoder
    return replace(zoo, head=head)


def test_the_head_records_its_encoder_and_the_zoo_reloads(zoo, encoded_dir, encoder_dir):
    expected = HeadEncoder(str(encoder_dir), fingerprint(load_encoder(encoder_dir)[0]))
    assert zoo.head is not None
    assert zoo.head.encoder == expected and zoo.head.hidden_size == 32  # the encoder's width, not the base's 64
    recorded = {"id": expected.id, "fingerprint": expected.fingerprint}
    assert read_manifest(encoded_dir)["head_encoder"] == recorded
    assert json.loads((encoded_dir / "head" / "config.json").read_text())["encoder"] == recorded
    loaded = Zoo.from_pretrained(encoded_dir)
    assert loaded.head is not None
    assert loaded.head.encoder == expected and loaded.head_encoder() == recorded
    assert all(torch.equal(v, zoo.head.state_dict()[k]) for k, v in loaded.head.state_dict().items())
    assert loaded.head.select(ValueSpace.builtin().select(["time"])).encoder == expected


def test_a_zoo_from_before_head_encoders_loads_as_before(encoded_dir, tmp_path):
    old = shutil.copytree(encoded_dir, tmp_path / "old")
    config = json.loads((old / "head" / "config.json").read_text())
    del config["encoder"]
    (old / "head" / "config.json").write_text(json.dumps(config))
    manifest = read_manifest(old)
    del manifest["head_encoder"]
    manifest["files"]["head/config.json"] = sha256_file(old / "head" / "config.json")
    (old / MANIFEST).write_text(json.dumps(manifest))
    reloaded = Zoo.from_pretrained(old)
    assert reloaded.head is not None and reloaded.head.encoder is None and reloaded.head_encoder() is None

    manifest["head_encoder"] = {"id": "someone/else", "fingerprint": "sha256:0"}
    (old / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PFTError, match="head_encoder differs from head/config.json"):
        Zoo.from_pretrained(old)


def test_infer_reads_options_through_the_encoder_loaded_once(mixed, decisions, encoder_dir, monkeypatch):
    features = option_features(mixed, decisions)
    texts = [t for d in decisions for t in d.options]
    assert features.shape == (len(texts), 32)
    torch.testing.assert_close(features, pooled_features(*load_encoder(encoder_dir), texts))
    loads = []

    def counted_load(*args, **kwargs):
        loads.append(args)
        return load_encoder(*args, **kwargs)

    monkeypatch.setattr(head_module, "load_encoder", counted_load)
    first, second = infer(mixed, decisions, "head"), infer(mixed, decisions, "head")
    assert loads == [] and first.vector == second.vector  # the encoder stays loaded between inferences
    assert first.method == "head" and sum(first.evidence.values()) == len(decisions)


def test_the_head_judge_reads_through_the_encoder(mixed, encoder_dir):
    space = mixed.zoo.space
    risk = space.dimension("risk")
    items = [Judged("s", "I keep my savings safe.", risk.second, risk.first), Judged("s", "", risk.first, risk.second)]
    features = pooled_features(*load_encoder(encoder_dir), ["I keep my savings safe.", " "])
    diff = mixed.zoo.head.pole_probabilities(features)[:, 0].detach()
    expected = [10.0 * (1.0 - float(diff[0])) / 2.0, 10.0 * (1.0 + float(diff[1])) / 2.0]
    assert HeadJudge(mixed)(items) == pytest.approx(expected, abs=1e-4)


def test_a_grown_head_keeps_reading_through_the_encoder(zoo, mixed, scenarios):
    new = next(d for d in ValueSpace.builtin() if d.slug not in TRAIN_DIMS)
    data = [s for s in scenarios if s.dimension == new.slug][:12]
    head, report = grow_head(zoo.head, mixed.model, mixed.tokenizer, data, None, None, ValueSpace([new]),
                             quick_config(head_steps=20))
    assert head.encoder == zoo.head.encoder and head.hidden_size == 32 and report["new_examples"] > 0


def test_another_encoder_under_the_recorded_name_is_refused(zoo, base_dir, other_encoder, decisions):
    swapped = with_encoder(zoo, HeadEncoder(str(other_encoder), zoo.head.encoder.fingerprint))
    with pytest.raises(PFTError, match="trained on encoder .* loads other weights .*--head-encoder") as err:
        infer(MixedModel(swapped, *load_base(base_dir)), decisions, "head")
    assert "\n" not in str(err.value)


def test_cli_train_fails_fast_on_a_bad_encoder_and_info_shows_it(encoded_dir, base_dir, vcd_train, tmp_path, capsys):
    out = tmp_path / "never"
    err = user_error(capsys, "train", "--base", str(base_dir), "--data", str(vcd_train), "--out", str(out), "--limit", "4",
                     "--head-encoder", str(tmp_path / "no-such-encoder"))
    assert "cannot load encoder" in err and not out.exists() and not out.with_name("never.checkpoint").exists()
    code, text, _ = run(capsys, "info", str(encoded_dir), "--json")
    assert code == 0 and json.loads(text)["head_encoder"] == read_manifest(encoded_dir)["head_encoder"]
    code, text, _ = run(capsys, "info", str(encoded_dir))
    assert code == 0 and f"mixing head reads texts through {read_manifest(encoded_dir)['head_encoder']['id']}" in text


def test_pulling_a_zoo_brings_its_hub_encoder_for_offline_inference(hub: HubServer, zoo, encoder_dir, base_dir,
                                                                    decisions, tmp_path, monkeypatch):
    api = HfApi()
    api.create_repo(f"{USER}/tiny-encoder")
    api.upload_folder(repo_id=f"{USER}/tiny-encoder", folder_path=encoder_dir)
    hub.put_file(f"{USER}/tiny-encoder", "pytorch_model.bin", b"\x80\x04pickle")
    published = with_encoder(zoo, HeadEncoder(f"{USER}/tiny-encoder", zoo.head.encoder.fingerprint))
    published.push_to_hub(f"{USER}/encoded-zoo")

    since = len(hub.requests)
    got = pull(f"{USER}/encoded-zoo", to=tmp_path / "z")
    fetched = [p for m, p in hub.requests[since:] if m == "GET" and f"{USER}/tiny-encoder/resolve/" in p]
    assert any(p.endswith("/model.safetensors") for p in fetched) and any(p.endswith("/config.json") for p in fetched)
    assert not any(p.endswith(".bin") for p in fetched)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(hub.requests)
    result = infer(MixedModel(Zoo.from_pretrained(got), *load_base(base_dir)), decisions, "head")
    assert result.method == "head" and len(hub.requests) == seen  # the encoder came from the cache


def test_encoder_download_errors_are_one_line(hub: HubServer, encoder_dir):
    hub.put_file(f"{USER}/pickled-encoder", "config.json", (encoder_dir / "config.json").read_bytes())
    hub.put_file(f"{USER}/pickled-encoder", "pytorch_model.bin", b"\x80\x04pickle")
    with pytest.raises(PFTError, match="publishes no safetensors weights"):
        fetch_encoder(f"{USER}/pickled-encoder", "pft-adapters pull z")
    with pytest.raises(PFTError, match=f"no repo '{USER}/nope'"):
        fetch_encoder(f"{USER}/nope", "pft-adapters pull z")
    with pytest.raises(PFTError, match="neither a folder here nor a Hub id"):
        fetch_encoder("/gone/encoder", "pft-adapters pull z")
    assert fetch_encoder(str(encoder_dir), "pft-adapters pull z") is None  # a local folder needs nothing


def test_a_mixing_head_fitted_on_one_example_reads_numbers():
    head = MixingHead(4, ["risk-taking", "risk-averse"], ["risk"])
    head.fit(torch.tensor([[1.0, -2.0, 0.5, 3.0]]), ["risk-averse"], ["risk"], steps=5)  # the std of one row is NaN
    assert bool(torch.isfinite(head.pole_probabilities(torch.randn(3, 4))).all())
