"""Shared fixtures: the VCD data, a tiny base built in-process, and a small trained zoo.

Everything is built once per session from the real VCD training split; nothing is
downloaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pft_adapters.base import corpus_texts, load_base, make_base
from pft_adapters.data import load_scenarios
from pft_adapters.layers import LoraSpec
from pft_adapters.train import TrainConfig, train_zoo
from pft_adapters.values import ValueSpace

VCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "vcd"
TRAIN_DIMS = ("risk", "time")
SPEC = LoraSpec(r=4, alpha=32.0)
pytest_plugins = ["hub_fixtures"]  # the `hub` fixture: a Hub-compatible server on 127.0.0.1 (tests/hub_server.py)


def pytest_configure(config):
    torch.set_num_threads(max(1, torch.get_num_threads()))


def vcd_file(name: str) -> Path:
    path = VCD / name
    if not path.exists():
        pytest.skip("VCD data not found next to the repository (shared/data/vcd)")
    return path


@pytest.fixture(scope="session")
def vcd_train() -> Path:
    return vcd_file("vcd_train.json")


@pytest.fixture(scope="session")
def vcd_dev() -> Path:
    return vcd_file("vcd_dev.json")


@pytest.fixture(scope="session")
def scenarios(vcd_train):
    return load_scenarios(vcd_train)


@pytest.fixture(scope="session")
def train_slice(scenarios):
    """24 scenarios of each trained dimension."""
    out = []
    for dim in TRAIN_DIMS:
        out += [s for s in scenarios if s.dimension == dim][:24]
    return out


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, vcd_train) -> Path:
    """A tiny Llama-style base with a tokenizer trained on VCD text, pre-trained 2 epochs (about 10 s), in HF format.

    Limited by epochs, not minutes, so every machine builds the same base and the tests see the same models.
    """
    return make_base(corpus_texts(vcd_train)[:1500], tmp_path_factory.mktemp("base") / "tiny",
                     size="tiny", pretrain_minutes=None, pretrain_epochs=2, seed=0, progress=False)


@pytest.fixture()
def base_model(base_dir):
    return load_base(base_dir)


def quick_config(**overrides) -> TrainConfig:
    config = TrainConfig(lora=SPEC, epochs=3, batch_size=8, lr=5e-3, max_length=256, seed=0, head_steps=150)
    return dataclasses.replace(config, **overrides)


@pytest.fixture(scope="session")
def trained(base_dir, train_slice):
    """A zoo for risk and time trained on the slice (the TrainResult)."""
    model, tokenizer = load_base(base_dir)
    space = ValueSpace.builtin().select(TRAIN_DIMS)
    return train_zoo(model, tokenizer, train_slice, space, quick_config(), base_id=str(base_dir), progress=False)


@pytest.fixture(scope="session")
def zoo_dir(trained, tmp_path_factory) -> Path:
    return trained.zoo.save_pretrained(tmp_path_factory.mktemp("zoo") / "zoo")


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory, vcd_train) -> Path:
    """A tiny BERT-style sentence encoder (random weights, WordPiece trained on VCD text), in HF format."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus_texts(vcd_train)[:1500], trainers.WordPieceTrainer(vocab_size=800, special_tokens=special))
    # the trainer finds the same tokens in every process but numbers them in a different order each time,
    # which would give every test run another encoder: number them in a fixed order
    learned = sorted(set(tok.get_vocab()) - set(special))
    tok.model = models.WordPiece({t: i for i, t in enumerate(special + learned)}, unk_token="[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]", model_max_length=256)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    path = tmp_path_factory.mktemp("encoder") / "tiny-encoder"
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def scorer_config(**overrides) -> TrainConfig:
    config = TrainConfig(kind="scorer", lora=LoraSpec(r=4, alpha=8.0, target_modules=("query", "key", "value", "dense")),
                         epochs=4, batch_size=8, lr=1e-2, max_length=64, seed=0, head_steps=100)
    return dataclasses.replace(config, **overrides)


def same_zoo(a, b, atol: float = 0.0, rtol: float | None = None) -> None:
    """Two zoos hold the same pole adapters and score heads (exactly, or to atol; rtol 1e-4 then, unless given)."""
    rtol = (0.0 if atol == 0 else 1e-4) if rtol is None else rtol
    for part in ("poles", "score_heads"):
        for pole, tensors in getattr(a, part).items():
            for key, value in tensors.items():
                torch.testing.assert_close(value, getattr(b, part)[pole][key], atol=atol, rtol=rtol)


def float32_and_finite(zoo) -> bool:
    """Every trained tensor of a zoo (pole adapters, score heads) is float32 and finite."""
    return all(v.dtype == torch.float32 and bool(v.isfinite().all())
               for part in (zoo.poles, zoo.score_heads) for t in part.values() for v in t.values())


@pytest.fixture(scope="session")
def scorer_trained(encoder_dir, train_slice):
    """A scorer zoo for risk and time trained on the slice (the TrainResult)."""
    from pft_adapters.base import load_encoder

    model, tokenizer = load_encoder(encoder_dir)
    space = ValueSpace.builtin().select(TRAIN_DIMS)
    return train_zoo(model, tokenizer, train_slice, space, scorer_config(), base_id=str(encoder_dir), progress=False)


@pytest.fixture(scope="session")
def scorer_dir(scorer_trained, tmp_path_factory) -> Path:
    return scorer_trained.zoo.save_pretrained(tmp_path_factory.mktemp("scorer") / "scorer-zoo")
