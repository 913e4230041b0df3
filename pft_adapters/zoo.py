"""The zoo on disk: a manifest, one plain PEFT LoRA folder per pole, and the mixing head.

    pft_zoo.json                                  manifest (format, base model, dimensions, files + sha256, training)
    README.md                                     model card with Hub metadata
    poles/<pole-slug>/adapter_config.json         a plain PEFT LoRA adapter, loadable with
    poles/<pole-slug>/adapter_model.safetensors   PeftModel.from_pretrained(base, zoo, subfolder="poles/<slug>")
    poles/<pole-slug>/score_head.safetensors      scorer zoos only: the pole's score head (see `scorer`)
    head/config.json, head/model.safetensors      the mixing head

Saving is atomic (everything goes to a temporary sibling folder that is renamed
into place), and loading checks every file it reads against the manifest's
sha256, so a truncated or altered file is refused instead of half-used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import cast

import peft
import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .atomic import atomic_folder
from .errors import JSONError, PFTError, loads
from .head import MixingHead
from .layers import LoraSpec, PoleAdapters, add_pole_adapters, refuse_attached
from .values import ValueSpace
from .vector import PreferenceVector, VectorSpec, parse_vector

MANIFEST = "pft_zoo.json"
FORMAT = "pft-zoo"
FORMAT_VERSION = 1
KINDS = ("llm", "scorer")  # a causal LM's adapters, or a sentence encoder's adapters with score heads
SCORE_HEAD = "score_head.safetensors"
DAMAGED = "the manifest is damaged; re-download or re-train the zoo"


@dataclass(frozen=True)
class BaseRef:
    """Which base model a zoo belongs to; the fingerprint tells two bases apart even under one name."""

    id: str
    revision: str | None
    fingerprint: str


def _folder_name(name: str) -> bool:
    """Whether a base model's name can only be a folder: a path form, or no Hub id."""
    if name.startswith((".", "/", "~")) or name.endswith(("/", "\\")):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def fingerprint(model: nn.Module) -> str:
    """Hash of the base's parameter names, shapes and a sample of its values.

    Values are rounded to bfloat16 first, so the same checkpoint loaded in fp32 or
    bf16 gives one fingerprint, while a different checkpoint does not. (An fp32
    checkpoint loaded in fp16 does not match: rounding to fp16 and then to bf16
    differs from rounding to bf16 directly for a few percent of values.)
    """
    digest = hashlib.sha256()
    for name, param in sorted(_base_parameters(model)):
        digest.update(f"{name}:{tuple(param.shape)};".encode())
        sample = param.detach().reshape(-1)[:256].to("cpu", torch.bfloat16).view(torch.int16)
        digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _base_parameters(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Named parameters of the frozen base, with multi-pole wrappers seen through."""
    return [(n.replace(".base.", "."), p) for n, p in model.named_parameters() if "lora_" not in n]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inside(path: str) -> bool:
    """Whether a manifest path names a file inside the zoo (not absolute, no `..`, no backslash)."""
    p = PurePosixPath(path)
    return bool(p.parts) and not p.is_absolute() and ".." not in p.parts and "\\" not in path


@dataclass
class Zoo:
    """One base model, its value dimensions, one LoRA adapter per pole, and the mixing head."""

    space: ValueSpace
    spec: LoraSpec
    base: BaseRef
    poles: dict[str, dict[str, torch.Tensor]]  # pole slug -> peft-layout LoRA tensors
    head: MixingHead | None = None
    training: dict = field(default_factory=dict)
    source: str | None = None  # where it was loaded from, for messages
    kind: str = "llm"
    score_heads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # scorer zoos: pole slug -> head

    def __post_init__(self) -> None:
        unknown = set(self.poles) - set(self.space.pole_slugs)
        if unknown:
            raise PFTError(f"zoo holds adapters for poles {sorted(unknown)} that none of its dimensions define")
        if self.kind not in KINDS:
            raise PFTError(f"unknown zoo kind '{self.kind}': this pft-adapters reads {', '.join(KINDS)}; upgrade it")
        if self.kind == "scorer" and set(self.score_heads) != set(self.poles):
            raise PFTError("a scorer zoo needs a score head for every pole it holds, and no other")

    @property
    def pole_slugs(self) -> list[str]:
        """Poles present, in the value space's order."""
        return [p for p in self.space.pole_slugs if p in self.poles]

    def vector(self, spec: VectorSpec) -> PreferenceVector:
        """`spec` parsed against this zoo's dimensions, refusing poles it does not hold: with the zoo
        alone, before its base model loads, so a typo costs no load."""
        vector = parse_vector(spec, self.space)  # a PreferenceVector built by hand is checked too
        absent = [p for p, w in vector.pole_weights(self.space).items() if w and p not in self.poles]
        if absent:
            raise PFTError(f"the vector uses pole(s) {absent}, which this zoo does not hold: pull them or change the vector")
        return vector

    # -- applying to a base model ---------------------------------------------------
    def check_base(self, model: nn.Module, name: str | None = None) -> None:
        found = fingerprint(model)
        if found != self.base.fingerprint:
            raise PFTError(
                f"this zoo was trained on base '{self.base.id}' ({self.base.fingerprint[:19]}), but the model given is "
                f"'{name or getattr(model, 'name_or_path', '?')}' ({found[:19]}): load the zoo's own base model"
            )

    def attach(self, model: nn.Module, name: str | None = None) -> PoleAdapters:
        """Wrap `model` (checked to be this zoo's base) with every pole's adapter, mix off, frozen for inference."""
        refuse_attached(model)  # before the fingerprint, which a merged mix changes
        self.check_base(model, name)
        adapters = add_pole_adapters(model, self.spec, self.space.pole_slugs)
        for p in adapters.parameters():
            p.requires_grad_(False)
        for slug, tensors in self.poles.items():
            adapters.load_pole_state_dict(slug, tensors)
        adapters.absent = frozenset(self.space.pole_slugs) - set(self.poles)  # weighting one is refused
        if adapters.absent:  # poles not pulled stay at zero (B = 0): they add nothing
            with torch.no_grad():
                for layer in adapters.layers.values():
                    for pole in adapters.absent:
                        layer.lora_B[:, self.space.pole_slugs.index(pole)].zero_()
        adapters.model.eval()
        return adapters

    def to_peft(self, model: nn.Module, name: str | None = None) -> peft.PeftModel:
        """`model` (checked to be this zoo's base) as a plain `PeftModel` holding every pole's adapter under
        its slug, for tools built on peft (`set_adapter`, `add_weighted_adapter`, ...); in eval mode."""
        self.check_base(model, name)
        poles = self.pole_slugs
        if not poles:
            raise PFTError("this zoo holds no pole adapters: pull it with at least one pole")
        wrapped = peft.get_peft_model(model, self.peft_config(), adapter_name=poles[0])
        for pole in poles[1:]:
            wrapped.add_adapter(pole, self.peft_config())
        for pole in poles:  # peft skips a tensor without a place, and one without a tensor stays 0: refused instead
            expected = {k: tuple(t.shape) for k, t in peft.get_peft_model_state_dict(wrapped, adapter_name=pole).items()}
            if expected != {k: tuple(t.shape) for k, t in self.poles[pole].items()}:
                raise PFTError(f"adapter for pole '{pole}' does not fit {name or self.base.id}: its tensors are not the "
                               "LoRA factors peft makes for this model with the zoo's settings; re-download or re-train the zoo")
            peft.set_peft_model_state_dict(wrapped, self.poles[pole], adapter_name=pole)
        return wrapped.eval()

    def load_base(self, base: str | None = None, device: str | None = None, dtype: torch.dtype | None = None):
        """The base model and tokenizer this zoo was trained on (or `base`, checked by fingerprint)."""
        from .base import load_base, load_encoder

        load = load_encoder if self.kind == "scorer" else load_base
        if base is None and _folder_name(self.base.id) and not os.path.isdir(self.base.id):
            raise PFTError(f"this zoo's base model is the folder {self.base.id!r} (recorded as given when the zoo was "
                           "trained; a relative path is read from the current folder), which is not here: pass its path "
                           "with --base (base= in Python)")
        return load(base or self.base.id, revision=None if base else self.base.revision, dtype=dtype, device=device)

    # -- disk format ------------------------------------------------------------------
    @property
    def method(self) -> str:
        """How the poles were trained (`train --method`): paired, conditioned (one shared adapter) or single."""
        return self.training.get("method", "paired")

    @property
    def max_length(self) -> int:
        """Tokens per row the poles trained on, where rows are cut when scored (a zoo that does not record it: 512 for
        an LLM zoo, the scorer default for a scorer zoo)."""
        from .scorer import DEFAULT_MAX_LENGTH

        return self.training.get("max_length", DEFAULT_MAX_LENGTH if self.kind == "scorer" else 512)

    @property
    def lora_dropout(self) -> float:
        """The adapter dropout the poles trained with (`train --lora-dropout`); 0 when off."""
        return self.training.get("lora_dropout", 0.0)

    def peft_config(self) -> peft.LoraConfig:
        return peft.LoraConfig(
            r=self.spec.r, lora_alpha=self.spec.alpha, target_modules=list(self.spec.target_modules),  # type: ignore[arg-type]  # peft types lora_alpha as int; it takes a float
            lora_dropout=self.lora_dropout, base_model_name_or_path=self.base.id,
            revision=self.base.revision,
            inference_mode=True,
        )

    def manifest(self, files: dict[str, str]) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "created_with": f"pft-adapters {__version__}",
            "base_model": asdict(self.base),
            "dimensions": self.space.to_json(),
            "poles": self.pole_slugs,
            "lora": {"r": self.spec.r, "alpha": self.spec.alpha, "target_modules": list(self.spec.target_modules)},
            "head": "head" if self.head is not None else None,
            "head_encoder": self.head_encoder(),
            "files": files,
            "training": self.training,
        }

    def head_encoder(self) -> dict | None:
        """`{"id", "fingerprint"}` of the encoder the head reads texts through; None: the base's own hidden states."""
        return asdict(self.head.encoder) if self.head is not None and self.head.encoder else None

    def save_pretrained(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the zoo atomically: a killed save leaves the old folder (or none), never half a zoo."""
        from .card import model_card

        with atomic_folder(path, overwrite) as tmp:
            written: list[Path] = []
            for slug in self.pole_slugs:
                folder = tmp / "poles" / slug
                save_peft_config(self.peft_config(), folder)
                save_file(self.poles[slug], folder / "adapter_model.safetensors")
                written += [folder / "adapter_config.json", folder / "adapter_model.safetensors"]
                if self.kind == "scorer":
                    save_file(self.score_heads[slug], folder / SCORE_HEAD)
                    written.append(folder / SCORE_HEAD)
            if self.head is not None:
                written += self.head.save(tmp / "head")
            files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in written}
            manifest = self.manifest(files)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            (tmp / "README.md").write_text(model_card(manifest), encoding="utf-8")  # descriptions may be any language
        return Path(path)

    # Not huggingface_hub's ModelHubMixin: its from_pretrained downloads a whole snapshot (no per-pole pulls,
    # no manifest checksums) and its __init__ capture serialises constructor arguments into a config.json,
    # which does not fit a dataclass holding tensors, a ValueSpace and a head.
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | Sequence[str | Path], revision: str | None = None,
                        poles: Iterable[str] | None = None) -> Zoo:
        """A zoo from a local folder, a Hub name (`org/name[:pole,pole][@revision]`), or a list of those (assembled)."""
        from . import hub

        if isinstance(name_or_path, (list, tuple)):
            if revision is not None or poles is not None:
                raise PFTError("when assembling, pin poles and revisions per zoo in the names: 'org/name:pole,pole@rev'")
            return hub.assemble(name_or_path)
        path = Path(cast("str | Path", name_or_path))  # lists and tuples were assembled above
        if hub.is_folder(path) and revision is None:
            return cls.load_folder(path, poles)
        pulled = hub.fetch(str(name_or_path), poles=list(poles) if poles is not None else None, revision=revision)
        zoo = cls.load_folder(pulled.path, pulled.poles, checked=pulled.files)
        zoo.source = str(name_or_path)
        return zoo

    def push_to_hub(self, repo_id: str, private: bool = False, revision: str | None = None,
                    message: str | None = None, token: str | None = None) -> str:
        """Publish this zoo as one commit to a Hub model repo; returns the commit URL (see `pft_adapters.hub.push`)."""
        from . import hub

        return hub.push(self, repo_id, private=private, revision=revision, message=message, token=token)

    @classmethod
    def load_folder(cls, path: Path, poles: Iterable[str] | None = None, checked: Collection[str] = ()) -> Zoo:
        """The zoo in a folder, every file it reads checked against the manifest; `checked`: files the pull that
        fetched them has just hashed, which are not hashed twice."""
        manifest = read_manifest(path)
        space = ValueSpace.from_json(manifest["dimensions"], source=str(path / MANIFEST))
        wanted = wanted_poles(manifest, poles, str(path))
        files = manifest["files"]
        tensors = {slug: _load_checked(path, f"poles/{slug}/adapter_model.safetensors", files, checked) for slug in wanted}
        _check_factors(path, tensors, manifest["lora"]["r"])
        for slug in wanted:
            _check_peft_config(path, f"poles/{slug}/adapter_config.json", files, checked, manifest["lora"])
        kind = manifest.get("kind", "llm")
        score_heads = {slug: _load_checked(path, f"poles/{slug}/{SCORE_HEAD}", files, checked)
                       for slug in wanted} if kind == "scorer" else {}
        head = None
        if manifest.get("head"):
            verify(path, "head/config.json", files, checked)
            head = MixingHead.load(path / "head", _load_checked(path, "head/model.safetensors", files, checked))
            if any(not space.has_dimension(d) or [p.slug for p in space.dimension(d).poles] != head.pole_slugs[2 * i: 2 * i + 2]
                   for i, d in enumerate(head.dimension_slugs)):
                raise PFTError(f"{path}: head/config.json names dimensions or poles the manifest does not define as it "
                               "does: re-download or re-train the zoo")
        lora = manifest["lora"]
        zoo = cls(
            space=space,
            spec=LoraSpec(r=int(lora["r"]), alpha=float(lora["alpha"]), target_modules=tuple(lora["target_modules"])),
            base=BaseRef(**manifest["base_model"]),
            poles=tensors,
            head=head,
            training=manifest.get("training", {}),
            source=str(path),
            kind=kind,
            score_heads=score_heads,
        )
        if manifest.get("head_encoder") != zoo.head_encoder():  # a pull fetches the manifest's encoder, the head reads its own
            raise PFTError(f"{path}: the manifest's head_encoder differs from head/config.json's encoder: re-download or re-train the zoo")
        return zoo


def save_peft_config(config: peft.LoraConfig, folder: Path) -> None:
    """`config.save_pretrained(folder)`, but the same bytes from every process: peft holds target_modules as a set
    and would write it in hash order, which changes with each Python process (so re-saving an unchanged zoo would
    change its files, and pushing it would make a new commit)."""
    values = {k: sorted(v) if isinstance(v, set) else v for k, v in config.to_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(values, indent=2, sort_keys=True), encoding="utf-8")


def wanted_poles(manifest: dict, poles: Iterable[str] | None, label: str) -> list[str]:
    """The poles to load (all the zoo holds when `poles` is None), by slug, each once, in the manifest's order
    (so naming all of them, in any order, is the whole zoo); one it lacks is refused."""
    held = list(manifest["poles"])
    if poles is None:
        return held
    space = ValueSpace.from_json(manifest["dimensions"], source=f"{label}/{MANIFEST}")
    wanted = list(dict.fromkeys(space.pole(p).slug for p in poles))
    absent = [p for p in wanted if p not in held]
    if absent:
        raise PFTError(f"'{label}' has no adapter for pole(s) {absent}: it holds {', '.join(held)}")
    return [p for p in held if p in wanted]


def read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    try:
        manifest = loads(file.read_text(encoding="utf-8"), allow_nan=True)  # no key given twice; older versions wrote NaN
        # in the training summary, so NaN is read here and refused where it matters (lora.alpha)
    except FileNotFoundError:
        raise PFTError(f"{path} is not a zoo ({MANIFEST} missing): point at a folder made by `pft-adapters train`") from None
    except JSONError as err:
        raise PFTError(f"{file} is corrupted (not valid JSON: {err}): re-download or re-train the zoo") from None
    except UnicodeDecodeError:
        raise PFTError(f"{file} is corrupted (not UTF-8 text): re-download or re-train the zoo") from None
    except OSError as err:
        raise PFTError(f"cannot read {file} ({err.strerror or err}): check the zoo folder") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PFTError(f"{file} is not a pft-adapters manifest: point at a folder made by `pft-adapters train`")
    version = manifest.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise PFTError(f"{file}: 'format_version' is {version!r}, not a whole number of at least 0: re-download or re-train the zoo")
    if version > FORMAT_VERSION:
        raise PFTError(f"{file} uses zoo format {version}, newer than this pft-adapters supports: upgrade pft-adapters")
    for key in ("base_model", "dimensions", "poles", "lora", "files"):
        if key not in manifest:
            raise PFTError(f"{file} lacks '{key}': the manifest is incomplete; re-download or re-train the zoo")
    problem = _manifest_problem(manifest)
    if problem:
        raise PFTError(f"{file}: {problem}: {DAMAGED}")
    try:
        space = ValueSpace.from_json(manifest["dimensions"], source="'dimensions'")
    except PFTError as err:
        raise PFTError(f"{file}: {err}: {DAMAGED}") from None
    poles = manifest["poles"]
    if len(set(poles)) < len(poles) or not set(poles) <= set(space.pole_slugs):
        raise PFTError(f"{file}: 'poles' must name each pole once, as 'dimensions' define it: {DAMAGED}")
    manifest["dimensions"] = space.to_json()  # checked here once, in one shape for every reader (the model card too)
    manifest["files"] = {PurePosixPath(rel).as_posix(): digest for rel, digest in manifest["files"].items()}  # "./a" is "a"
    return manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What is malformed in a manifest's required fields (their types and shapes), or None."""
    def strings(value: object) -> bool:
        return isinstance(value, list) and all(isinstance(x, str) for x in value)

    base, lora, files = manifest["base_model"], manifest["lora"], manifest["files"]
    if not (isinstance(base, dict) and set(base) == {"id", "revision", "fingerprint"} and isinstance(base["id"], str)
            and isinstance(base["revision"], (str, type(None))) and isinstance(base["fingerprint"], str)):
        return "'base_model' must hold exactly 'id', 'revision' and 'fingerprint', texts ('revision' may be null)"
    encoder = manifest.get("head_encoder")
    if encoder is not None and not (isinstance(encoder, dict) and set(encoder) == {"id", "fingerprint"}
                                    and all(isinstance(v, str) for v in encoder.values())):
        return "'head_encoder' must be null or hold exactly 'id' and 'fingerprint', both texts"
    if not isinstance(manifest["dimensions"], list):
        return "'dimensions' must be a list"
    if not strings(manifest["poles"]):
        return "'poles' must be a list of pole slugs"
    if not (isinstance(lora, dict) and isinstance(lora.get("r"), int) and not isinstance(lora.get("r"), bool)
            and lora["r"] > 0 and isinstance(lora.get("alpha"), (int, float)) and not isinstance(lora["alpha"], bool)
            and 0 < lora["alpha"] < math.inf and strings(lora.get("target_modules")) and lora["target_modules"]):
        return "'lora' must hold a positive whole 'r', a positive finite 'alpha' and a list of 'target_modules'"
    if not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
        return "'files' must map each file to its sha256"
    outside = [rel for rel in files if not _inside(rel)]
    if outside:
        return f"'files' lists '{outside[0]}', a path outside the zoo (a zoo may only name files inside itself)"
    training = manifest.get("training", {})
    if not isinstance(training, dict):
        return "'training' must be an object"
    length = training.get("max_length", 8)
    if isinstance(length, bool) or not isinstance(length, int) or length < 8:
        return "'training.max_length' must be a whole number of tokens, at least 8"
    dropout = training.get("lora_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        return "'training.lora_dropout' must be a number in [0, 1)"
    return None


def verify(root: Path, rel: str, files: dict[str, str], checked: Collection[str] = ()) -> Path:
    """The path of a file the manifest lists, refused unless present and matching its sha256 (not hashed again
    when in `checked`)."""
    if rel not in files:
        raise PFTError(f"{root}: file '{rel}' is not listed in the manifest; only listed files are loaded")
    target = root / rel
    if not target.is_file():
        raise PFTError(f"{root}: file '{rel}' is missing: re-download or re-train the zoo")
    if rel not in checked and sha256_file(target) != files[rel]:
        raise PFTError(f"{root}: file '{rel}' is corrupted or truncated (sha256 differs from the manifest): re-download or re-train the zoo")
    return target


def _check_peft_config(root: Path, rel: str, files: dict[str, str], checked: Collection[str], lora: dict) -> None:
    """A pole's adapter_config.json, read as peft reads it: a LoRA config of the manifest's rank, alpha and target
    modules (plain peft loads the pole folder by it alone)."""
    try:
        config = loads(verify(root, rel, files, checked).read_text(encoding="utf-8"), allow_nan=True)
    except (JSONError, UnicodeDecodeError):
        config = None
    if not (isinstance(config, dict) and config.get("peft_type") == "LORA" and config.get("r") == lora["r"]
            and config.get("lora_alpha") == lora["alpha"] and isinstance(config.get("target_modules"), list)
            and sorted(map(str, config["target_modules"])) == sorted(lora["target_modules"])):
        raise PFTError(f"{root}: '{rel}' is not the LoRA config of the manifest's lora (r {lora['r']}, alpha "
                       f"{lora['alpha']:g}, its target modules): re-download or re-train the zoo")


def _check_factors(root: Path, poles: dict[str, dict[str, torch.Tensor]], r: int) -> None:
    """Every pole's tensors are LoRA factors in pairs of rank `r` (A: r x in, B: out x r), the same in every pole:
    what any base needs of them, checked before one loads (attaching then checks that they fit that base)."""
    shapes = {slug: {k: tuple(t.shape) for k, t in tensors.items()} for slug, tensors in poles.items()}
    for slug, found in shapes.items():
        problem = None if found else "no tensors"
        for key, shape in found.items():
            factor = key.removesuffix(".weight")[-6:]  # lora_A or lora_B
            partner = key.replace(factor, "lora_B" if factor == "lora_A" else "lora_A")
            if factor not in ("lora_A", "lora_B") or partner not in found or len(shape) != 2 \
                    or shape[0 if factor == "lora_A" else 1] != r:
                problem = f"tensor '{key}' of shape {shape}"
                break
        if problem is None and found != next(iter(shapes.values())):
            problem = "other tensors than the other poles"
        if problem is not None:
            raise PFTError(f"{root}: the adapter of pole '{slug}' holds {problem}, not LoRA factors of rank {r} (the "
                           "manifest's lora.r) like the other poles': re-download or re-train the zoo")


def _load_checked(root: Path, rel: str, files: dict[str, str], checked: Collection[str] = ()) -> dict[str, torch.Tensor]:
    """A listed safetensors file's tensors, refused when unreadable or not finite (a NaN would spoil every mix using it)."""
    try:
        tensors = load_file(verify(root, rel, files, checked))
    except SafetensorError as err:
        raise PFTError(f"{root}: '{rel}' is not a readable safetensors file ({err}): re-download the zoo") from None
    integral = next((k for k, t in tensors.items() if not t.is_floating_point()), None)
    if integral is not None:
        raise PFTError(f"{root}: '{rel}' holds {str(tensors[integral].dtype).removeprefix('torch.')} values ({integral}), "
                       "not floating-point weights: re-download or re-train the zoo")
    damaged = next((k for k, t in tensors.items() if not bool(torch.isfinite(t.float()).all())), None)  # float8 too
    if damaged is not None:
        raise PFTError(f"{root}: '{rel}' holds NaN or infinite values ({damaged}): the run that wrote it diverged; "
                       "retrain the zoo (with a lower --lr)")
    return tensors
