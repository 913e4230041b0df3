"""Tests for the offline base builder: tokenizer, presets, pre-training, saving, caching, loading."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from pft_adapters import base
from pft_adapters.base import (
    BASE_INFO_FILE,
    cached_base,
    corpus_texts,
    load_base,
    make_base,
    pretrain,
    tiny_base,
    train_tokenizer,
)
from pft_adapters.errors import PFTError

VCD_TRAIN = Path(__file__).resolve().parents[2] / "shared/data/vcd/vcd_train.json"
POLES = {"Risk-averse", "Risk-taking", "Assertive", "Accommodating", "Stability-seeking", "Innovation-seeking"}
SENTENCES = [
    "Jack decides to start with the classic rules as usual.",
    "Lisa whispers that she's curious about the new version.",
    "Mike, a regular player, seems inclined towards familiarity.",
    "Do they continue with the old version or attempt the new one?",
] * 8


def vcd_record(n: int) -> dict:
    return {
        "scenario": f"Scenario {n}: Anna must choose how to spend her bonus.",
        "preference domain": "Risk Orientation",
        "scene": "Shopping decisions",
        "options": [
            {"text": f"Anna keeps the money safe in savings ({n}).", "bias": "Risk-averse"},
            {"text": f"Anna invests it all in a friend's start-up ({n}).", "bias": "Risk-taking"},
        ],
    }


@pytest.fixture(scope="module")
def vcd_texts() -> list[str]:
    if not VCD_TRAIN.is_file():
        pytest.skip(f"real VCD data not found at {VCD_TRAIN} (the shared/ folder next to the repo)")
    return corpus_texts(VCD_TRAIN)[:200]


@pytest.fixture(scope="module")
def built_base(vcd_texts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bases") / "tiny-base"
    # One thread: a tiny model gains nothing from more, and they stall when other work shares the CPU.
    return make_base(vcd_texts, out, size="tiny", pretrain_minutes=0.08, seed=0, progress=False, threads=1)


# ---------------------------------------------------------------- tokenizer and presets


def test_tokenizer_round_trips_text_and_pads_right():
    tokenizer = train_tokenizer(SENTENCES, vocab_size=300)
    text = "Jack's café — naïve 😀 choice\n\twith  two spaces "
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text

    batch = tokenizer(["Jack decides.", "Do they continue with the old version?"], padding=True, return_tensors="pt")
    short_len = int(batch["attention_mask"][0].sum())
    assert tokenizer.padding_side == "right"
    assert batch["input_ids"].shape[0] == 2
    assert (batch["input_ids"][0, short_len:] == tokenizer.pad_token_id).all()
    assert (batch["attention_mask"][0, short_len:] == 0).all()
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id}) == 4
    assert tokenizer.model_max_length == 1024


def test_tokenizer_rejects_impossible_vocab():
    with pytest.raises(PFTError, match=r"^--vocab-size must be from 260 \(byte-level BPE: 256 bytes and 4 special tokens\) to 1,000,000, got 100$"):
        train_tokenizer(SENTENCES, vocab_size=100)


def test_tiny_base_is_fast_and_has_expected_shape():
    start = time.monotonic()
    model, tokenizer = tiny_base(seed=0)
    assert time.monotonic() - start < 3.0
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 64, 4)
    assert config.intermediate_size == 128 and 512 <= config.vocab_size <= 1024
    assert config.tie_word_embeddings and config.max_position_embeddings == 1024
    assert config.pad_token_id == tokenizer.pad_token_id and config.eos_token_id == tokenizer.eos_token_id
    assert not model.training

    batch = tokenizer(["Jack decides.", "Do they continue?"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, config.vocab_size)
    assert torch.isfinite(logits).all()


def test_tiny_base_is_seeded():
    same = [tiny_base(seed=1)[0].model.embed_tokens.weight for _ in range(2)]
    other = tiny_base(seed=2)[0].model.embed_tokens.weight
    assert torch.equal(same[0], same[1]) and not torch.equal(same[0], other)


def test_unknown_size_is_a_user_error():
    with pytest.raises(PFTError, match="tiny, small, medium"):
        make_base(SENTENCES, Path("unused"), size="huge")


# ---------------------------------------------------------------- corpus


def test_corpus_texts_reads_vcd_json_jsonl_and_txt_without_labels(tmp_path):
    records = [vcd_record(1), vcd_record(2)]
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(records))
    as_jsonl = tmp_path / "c.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    as_txt = tmp_path / "c.txt"
    as_txt.write_text("first line\n\n  second line  \n")

    texts = corpus_texts(as_json)
    assert len(texts) == 6 and texts[0].startswith("Scenario 1")
    assert not POLES & set(texts)
    assert not any("Risk-averse" in t for t in texts)
    assert corpus_texts(as_jsonl) == texts
    assert corpus_texts(as_txt) == ["first line", "second line"]


def test_real_corpus_has_no_pole_labels(vcd_texts):
    full = corpus_texts(VCD_TRAIN)
    assert len(full) > 1000
    assert not POLES & set(full)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.json", json.dumps([vcd_record(1), {"scenario": "no options"}]), "record 2"),
        ("bad.json", json.dumps([vcd_record(1), vcd_record(2), {"options": []}]), "record 3"),
        (
            "bad.json",
            json.dumps([vcd_record(1), {"scenario": "s", "options": [{"bias": "Risk-averse"}]}]),
            "record 2, option 1",
        ),
        ("bad.json", json.dumps({"scenario": "not a list"}), "line 1 has no 'options'"),
        ("bad.json", '[{"scenario": "s",', "not valid JSON"),
        ("deep.json", "[" * 100000 + "]" * 100000, "not valid JSON \\(nesting too deep\\)"),
        ("bad.jsonl", json.dumps(vcd_record(1)) + "\n{not json}\n", "line 2"),
        ("bad.jsonl", json.dumps(vcd_record(1)) + "\n" + json.dumps(["x"]) + "\n", "line 2 is list"),
        ("empty.txt", "\n\n", "no texts"),
        ("corpus.csv", "a,b\n", "unsupported file type"),
    ],
)
def test_corpus_texts_rejects_malformed_files(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PFTError, match=expected) as info:
        corpus_texts(path)
    message = str(info.value)
    assert name in message and "\n" not in message


def test_corpus_texts_reports_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(PFTError, match="cannot read corpus .*missing.json"):
        corpus_texts(tmp_path / "missing.json")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(PFTError, match="not UTF-8"):
        corpus_texts(latin)


# ---------------------------------------------------------------- pre-training


def test_pretrain_needs_a_limit():
    model, tokenizer = tiny_base()
    with pytest.raises(PFTError, match="limit"):
        pretrain(model, tokenizer, SENTENCES, progress=False)


def test_pretrain_by_epochs_is_reproducible():
    runs = []
    for _ in range(2):
        model, tokenizer = tiny_base(seed=0, texts=SENTENCES)
        stats = pretrain(model, tokenizer, SENTENCES * 4, epochs=2, seed=3, batch_tokens=512, progress=False, threads=1)
        runs.append((stats.steps, stats.final_loss, model.lm_head.weight.clone()))
    assert runs[0][0] == runs[1][0] > 0
    assert runs[0][1] == runs[1][1]
    assert torch.equal(runs[0][2], runs[1][2])
    assert not model.training


def test_pretrain_restores_thread_setting():
    model, tokenizer = tiny_base(texts=SENTENCES)
    before = torch.get_num_threads()
    pretrain(model, tokenizer, SENTENCES * 4, epochs=0.5, progress=False, threads=1)
    assert torch.get_num_threads() == before


def test_pretrain_rejects_tiny_corpus():
    model, tokenizer = tiny_base()
    with pytest.raises(PFTError, match="block"):
        pretrain(model, tokenizer, ["too short"], epochs=1, progress=False)


# ---------------------------------------------------------------- make_base, load_base, cached_base


def test_make_base_pretrains_and_saves_hf_folder(built_base, vcd_texts):
    info = json.loads((built_base / BASE_INFO_FILE).read_text())
    assert info["size"] == "tiny" and info["seed"] == 0 and info["pretrain_minutes"] == 0.08
    assert info["corpus_sha256"] == base.corpus_hash(vcd_texts)
    stats = info["pretrain"]
    assert stats["steps"] > 10
    assert stats["final_loss"] < stats["initial_loss"] - 1.0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (built_base / name).is_file(), name
    assert not [p for p in built_base.parent.iterdir() if p.name.startswith(".")], "temp folder left behind"


def test_load_base_reads_a_made_base(built_base):
    model, tokenizer = load_base(built_base)
    assert not model.training
    assert model.config.num_hidden_layers == 2
    assert tokenizer.padding_side == "right" and tokenizer.pad_token is not None
    batch = tokenizer(["Jack decides to start with the classic rules."], return_tensors="pt")
    assert batch["input_ids"][0, 0] == tokenizer.bos_token_id
    with torch.no_grad():
        loss = model(**batch, labels=batch["input_ids"]).loss
    assert loss < 6.0  # ln(512) = 6.24 is chance level; the pre-trained base must do better


def test_load_base_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(PFTError, match="cannot load base model") as info:
        load_base(tmp_path / "no-such-base")
    assert "\n" not in str(info.value)


def test_truncated_weights_and_unknown_devices_are_user_errors(built_base, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(built_base, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a cut-off download
    with pytest.raises(PFTError, match="cannot load base model") as info:
        load_base(damaged)
    assert "\n" not in str(info.value)
    with pytest.raises(PFTError, match="cannot use device 'gpu0'"):
        load_base(built_base, device="gpu0")


def test_pickled_weights_are_never_loaded(tmp_path, monkeypatch):
    """A base (whose id may come from a pulled zoo's manifest) with only pytorch_model.bin is refused, unread."""
    model, tokenizer = tiny_base(seed=0)
    model.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called on a pickled checkpoint")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(PFTError, match="cannot load base model .*safetensors weights") as info:
        load_base(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(PFTError, match="cannot load encoder .*safetensors weights"):
        base.load_encoder(tmp_path)


def test_make_base_refuses_non_empty_out_dir_unless_overwrite(built_base, vcd_texts, tmp_path):
    with pytest.raises(PFTError, match="not empty"):
        make_base(vcd_texts, built_base, size="tiny", pretrain_minutes=0, progress=False)
    target = tmp_path / "existing"
    target.mkdir()
    (target / "old.txt").write_text("old")
    make_base(vcd_texts, target, size="tiny", pretrain_minutes=0, progress=False, overwrite=True)
    assert not (target / "old.txt").exists() and (target / BASE_INFO_FILE).is_file()


def test_cached_base_reuses_matching_base(vcd_texts, tmp_path, monkeypatch):
    first = cached_base(vcd_texts, tmp_path, size="tiny", pretrain_minutes=0, seed=0, progress=False)
    assert (first / "model.safetensors").is_file()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("cached_base rebuilt a base it already had")

    monkeypatch.setattr(base, "make_base", no_rebuild)
    assert cached_base(vcd_texts, tmp_path, size="tiny", pretrain_minutes=0, seed=0, progress=False) == first
    monkeypatch.undo()

    other = cached_base(vcd_texts, tmp_path, size="tiny", pretrain_minutes=0, seed=1, progress=False)
    assert other != first and json.loads((other / BASE_INFO_FILE).read_text())["seed"] == 1
    by_epochs = cached_base(vcd_texts, tmp_path, size="tiny", pretrain_minutes=None, pretrain_epochs=0.02, progress=False)
    assert by_epochs not in (first, other) and json.loads((by_epochs / BASE_INFO_FILE).read_text())["pretrain_epochs"] == 0.02


def test_an_epoch_limited_base_is_the_same_on_every_build(vcd_texts, tmp_path):
    from safetensors.torch import load_file

    built = [make_base(vcd_texts, tmp_path / name, size="tiny", pretrain_minutes=None, pretrain_epochs=0.05, seed=0,
                       progress=False) for name in ("a", "b")]
    a, b = (load_file(path / "model.safetensors") for path in built)
    info = json.loads((built[0] / BASE_INFO_FILE).read_text())
    assert info["pretrain"]["steps"] > 0 and info["pretrain_epochs"] == 0.05
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
