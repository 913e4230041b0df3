"""The mixing head: reads which pole (and which dimension) a text expresses.

It is a linear probe on pooled hidden states of the frozen base model, so it is
cheap to train alongside the adapters and cheap to run over a user's history.
Features are standardised with statistics stored in the head itself.

A head may instead read texts through a named sentence encoder (`HeadEncoder`,
recorded with the weights' fingerprint): a pretrained encoder reads options better
than a small base. Every caller that fits or reads a head takes its features from
`head_features`, so a head is always read with the features it was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from .base import load_encoder, resolve_encoder
from .errors import JSONError, PFTError, loads
from .values import ValueSpace


@dataclass
class HeadReport:
    pole_accuracy: float
    dimension_accuracy: float
    examples: int


@dataclass(frozen=True)
class HeadEncoder:
    """The sentence encoder a head reads texts through; the fingerprint pins the weights it was fitted on."""

    id: str  # a Hub id or a folder, as given to training
    fingerprint: str


class MixingHead(nn.Module):
    """Pole logits (one pair per dimension) and dimension logits from one feature vector.

    `encoder` None: the features are the base's own hidden states.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, hidden_size: int, pole_slugs: Sequence[str], dimension_slugs: Sequence[str],
                 encoder: HeadEncoder | None = None):
        super().__init__()
        self.pole_slugs, self.dimension_slugs = list(pole_slugs), list(dimension_slugs)
        self.encoder = encoder
        if len(self.pole_slugs) != 2 * len(self.dimension_slugs):
            raise PFTError("a mixing head needs exactly two poles per dimension")
        self.register_buffer("mean", torch.zeros(hidden_size))
        self.register_buffer("std", torch.ones(hidden_size))
        self.poles = nn.Linear(hidden_size, len(self.pole_slugs))
        self.dimensions = nn.Linear(hidden_size, len(self.dimension_slugs))

    @property
    def hidden_size(self) -> int:
        return self.mean.numel()

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (features.float() - self.mean) / self.std
        return self.poles(z), self.dimensions(z)

    def pole_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """(n, D) P(first pole) - P(second pole) per dimension, in [-1, 1]."""
        logits, _ = self(features)
        pairs = logits.view(len(features), -1, 2).softmax(-1)
        return pairs[..., 0] - pairs[..., 1]

    def fit(self, features: torch.Tensor, poles: Sequence[str], dimensions: Sequence[str],
            steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-3, seed: int = 0) -> None:
        """Train on texts labelled by pole (their dimension follows from the pole)."""
        torch.manual_seed(seed)
        with torch.no_grad():
            self.mean.copy_(features.mean(0))
            spread = features.std(0) if len(features) > 1 else torch.ones_like(features[0])  # one example: no spread
            self.std.copy_(spread.clamp_min(1e-4))
        pole_idx = torch.tensor([self.pole_slugs.index(p) for p in poles])
        dim_idx = torch.tensor([self.dimension_slugs.index(d) for d in dimensions])
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            opt.zero_grad()
            loss = self._loss(features, pole_idx, dim_idx)
            loss.backward()
            opt.step()

    def _loss(self, features: torch.Tensor, pole_idx: torch.Tensor, dim_idx: torch.Tensor) -> torch.Tensor:
        pole_logits, dim_logits = self(features)
        pairs = pole_logits.view(len(features), -1, 2)[torch.arange(len(features)), dim_idx]
        return nn.functional.cross_entropy(pairs, pole_idx % 2) + nn.functional.cross_entropy(dim_logits, dim_idx)

    @torch.no_grad()
    def evaluate(self, features: torch.Tensor, poles: Sequence[str], dimensions: Sequence[str]) -> HeadReport:
        pole_logits, dim_logits = self(features)
        dim_idx = torch.tensor([self.dimension_slugs.index(d) for d in dimensions])
        pole_idx = torch.tensor([self.pole_slugs.index(p) for p in poles])
        pairs = pole_logits.view(len(features), -1, 2)[torch.arange(len(features)), dim_idx]
        return HeadReport(
            pole_accuracy=float((pairs.argmax(-1) == pole_idx % 2).float().mean()),
            dimension_accuracy=float((dim_logits.argmax(-1) == dim_idx).float().mean()),
            examples=len(features),
        )

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        source = "the head encoder" if self.encoder else "the base"
        config = {"hidden_size": self.hidden_size, "pole_slugs": self.pole_slugs,
                  "dimension_slugs": self.dimension_slugs, "features": f"mean-pooled last hidden state of {source}",
                  "encoder": asdict(self.encoder) if self.encoder else None}
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / "model.safetensors")
        return [folder / "config.json", folder / "model.safetensors"]

    @classmethod
    def load(cls, folder: Path, tensors: dict[str, torch.Tensor]) -> MixingHead:
        """The head described by `folder`/config.json with `tensors` (its model.safetensors, read and checked
        finite by the zoo); a config or tensors that do not describe a head are one line."""
        file = folder / "config.json"
        damaged = "re-download or re-train the zoo"
        try:
            config: Any = loads(file.read_text(encoding="utf-8"))
        except (JSONError, UnicodeDecodeError):
            raise PFTError(f"{file} is not valid JSON: {damaged}") from None
        if not isinstance(config, dict):
            raise PFTError(f"{file} does not hold a JSON object: {damaged}")
        size: Any = config.get("hidden_size")
        poles: Any = config.get("pole_slugs")
        dims: Any = config.get("dimension_slugs")
        if not (isinstance(size, int) and not isinstance(size, bool) and size > 0 and _names(dims) and _names(poles)
                and len(poles) == 2 * len(dims)):
            raise PFTError(f"{file}: 'hidden_size' must be a positive whole number, 'dimension_slugs' name each dimension "
                           f"once and 'pole_slugs' two poles of each: {damaged}")
        encoder = config.get("encoder")  # absent in heads written before head encoders existed
        if encoder is not None and not (isinstance(encoder, dict) and {"id", "fingerprint"} <= set(encoder)):
            raise PFTError(f"{file}: 'encoder' needs an 'id' and a 'fingerprint': {damaged}")
        shapes = {"mean": (size,), "std": (size,), "poles.weight": (len(poles), size), "poles.bias": (len(poles),),
                  "dimensions.weight": (len(dims), size), "dimensions.bias": (len(dims),)}
        found = {k: tuple(t.shape) for k, t in tensors.items()}
        if found != shapes:
            wrong = next((k for k in shapes if found.get(k) != shapes[k]), None) or next(k for k in found if k not in shapes)
            raise PFTError(f"{folder / 'model.safetensors'}: tensor '{wrong}' is {found.get(wrong, 'missing')}, where "
                           f"config.json describes {shapes.get(wrong, 'no such tensor')}: {damaged}")
        head = cls(size, poles, dims, HeadEncoder(str(encoder["id"]), str(encoder["fingerprint"])) if encoder else None)
        head.load_state_dict(tensors)
        return head.eval()

    def select(self, space: ValueSpace) -> MixingHead:
        """A head restricted to (and ordered by) the dimensions of `space`."""
        head = MixingHead(self.hidden_size, space.pole_slugs, [d.slug for d in space], self.encoder)
        pi = [self.pole_slugs.index(p) for p in space.pole_slugs]
        di = [self.dimension_slugs.index(d.slug) for d in space]
        with torch.no_grad():
            head.mean.copy_(self.mean)
            head.std.copy_(self.std)
            head.poles.weight.copy_(self.poles.weight[pi])
            head.poles.bias.copy_(self.poles.bias[pi])
            head.dimensions.weight.copy_(self.dimensions.weight[di])
            head.dimensions.bias.copy_(self.dimensions.bias[di])
        return head.eval()


def _names(value: object) -> bool:
    """A non-empty list of distinct texts."""
    return isinstance(value, list) and bool(value) and all(isinstance(x, str) for x in value) and len(set(value)) == len(value)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over each row's masked-in tokens: how sentence encoders embed a text."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1)


@torch.no_grad()
def pooled_features(model: nn.Module, tokenizer, texts: Sequence[str], batch_size: int = 32,
                    max_length: int = 256) -> torch.Tensor:
    """Mean of the last hidden state over each text's tokens (pad excluded)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[i : i + batch_size]), return_tensors="pt", padding=True,
                          truncation=True, max_length=max_length).to(device)
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
        out.append(mean_pool(hidden, batch["attention_mask"]).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)  # type: ignore[union-attr, arg-type]


def head_features(model: nn.Module, tokenizer, texts: Sequence[str], encoder: HeadEncoder | None = None,
                  batch_size: int = 32) -> torch.Tensor:
    """The features a head reads: through `encoder` when it has one (on `model`'s device), else `model`'s own."""
    if encoder is not None:
        model, tokenizer = encoder_model(encoder, next(model.parameters()).device)
    return pooled_features(model, tokenizer, texts, batch_size=batch_size)


def head_encoder(name_or_path: str) -> HeadEncoder:
    """Pin the sentence encoder `name_or_path` (a Hub id or folder) by its weights, for a head to record."""
    return HeadEncoder(str(name_or_path), _loaded_encoder(resolve_encoder(name_or_path))[2])


def encoder_model(encoder: HeadEncoder, device: torch.device | str | None = None) -> tuple[nn.Module, object]:
    """The head's encoder and tokenizer, refused unless its weights are the ones the head was fitted on."""
    model, tokenizer, found = _loaded_encoder(resolve_encoder(encoder.id))
    if found != encoder.fingerprint:
        raise PFTError(
            f"the mixing head was trained on encoder '{encoder.id}' ({encoder.fingerprint[:19]}), but that name now "
            f"loads other weights ({found[:19]}): restore the original encoder there, or retrain the zoo with --head-encoder"
        )
    return (model.to(device) if device is not None else model), tokenizer


@lru_cache(maxsize=4)
def _loaded_encoder(resolved: str) -> tuple[nn.Module, object, str]:
    """(model, tokenizer, fingerprint) of an encoder, loaded once per process: repeated inferences do not reload it."""
    from .zoo import fingerprint  # zoo imports this module

    model, tokenizer = load_encoder(resolved)
    return model, tokenizer, fingerprint(model)
