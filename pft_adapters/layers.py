"""Multi-pole LoRA: every pole's factors live side by side in one layer.

For a frozen linear layer `W` and poles `p` with factors `A_p (r x in)`,
`B_p (out x r)` and scale `s = alpha / r`:

    y = W x + sum_p c_p * s * B_p (A_p x)

The factors are stored stacked (`A: P x r x in`, `B: out x P x r`), so the
concatenated factors `A_cat (P*r x in)` and `B_cat (out x P*r)` are free views and
scaling their rank blocks by `c` mixes the poles in one pair of matmuls. The
coefficients live in one `MixState` shared by every layer of a model, so setting a
new vector is a single small tensor write, not a rebuild. Four modes:

- `off`: the bare base model (nothing added);
- `shared`: one coefficient row for the whole batch;
- `rows`: a coefficient row per batch row (many users in one forward pass);
- `route`: one pole per batch row (training, or rows that each weight one pole);
  only that pole's factors are computed, so the cost equals a single LoRA adapter's.

`shared` and `rows` compute only the poles some coefficient uses (`MixState.poles`):
a vector names at most one pole per dimension, so a typical mix costs the rank of its
active poles, not of the whole zoo.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from .errors import PFTError


@dataclass(frozen=True)
class LoraSpec:
    """Shape of every pole adapter in a zoo (the same for all poles)."""

    r: int = 8
    alpha: float = 16.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


@dataclass
class MixState:
    """Coefficients read by every multi-pole layer of one model."""

    n_poles: int
    r: int
    scaling: float
    mode: str = "off"
    columns: torch.Tensor | None = None  # (k*r,) or (batch, k*r): c_p * s of the k computed poles, over each rank block
    poles: torch.Tensor | None = None  # indices of the k computed poles; None: all P
    route: torch.Tensor | None = None  # (batch,) pole index per row, for `route`
    route_scale: torch.Tensor | None = None  # (batch,) coefficient per routed row
    dropout: float = 0.0  # on each adapter's input while the model trains (peft's lora_dropout); inference ignores it

    def expand(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Pole coefficients (..., P) -> rank-column scales (..., P*r)."""
        return (coefficients * self.scaling).repeat_interleave(self.r, dim=-1)


class MultiPoleLinear(nn.Module):
    """A frozen `nn.Linear` plus the LoRA factors of every pole."""

    def __init__(self, base: nn.Linear, state: MixState):
        super().__init__()
        self.base = base
        self.state = state
        p, r = state.n_poles, state.r
        self.lora_A = nn.Parameter(torch.empty(p, r, base.in_features, device=base.weight.device, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, p, r, device=base.weight.device, dtype=torch.float32))
        for a in self.lora_A:  # peft's default init: Kaiming-uniform A, zero B (each pole starts as the base)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self._original_weight: torch.Tensor | None = None

    @property
    def merged(self) -> bool:
        return self._original_weight is not None

    def delta_weight(self, coefficients: torch.Tensor) -> torch.Tensor:
        """sum_p c_p s B_p A_p, the exact weight change of a mix."""
        a = self.lora_A.reshape(-1, self.base.in_features)
        b = self.lora_B.reshape(self.base.out_features, -1)
        return (b * self.state.expand(coefficients.to(b))) @ a

    def merge(self, coefficients: torch.Tensor) -> None:
        if self.merged:
            raise PFTError("the mix is already merged into the weights: unmerge it before merging another")
        delta = self.delta_weight(coefficients).to(self.base.weight.dtype)  # first: a failure here changes nothing
        self._original_weight = self.base.weight.data.clone()
        self.base.weight.data += delta

    def unmerge(self) -> None:
        """Restore the original weights bit for bit (a copy, not a subtraction)."""
        if self._original_weight is not None:
            self.base.weight.data.copy_(self._original_weight)
            self._original_weight = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        st = self.state
        if st.mode == "off" or self.merged:
            return y
        dtype = self.lora_A.dtype if not torch.is_autocast_enabled(x.device.type) else x.dtype
        h_in = x.to(dtype)
        if st.dropout and self.training:
            h_in = nn.functional.dropout(h_in, st.dropout, training=True)
        if st.mode == "route":
            assert st.route is not None and st.route_scale is not None  # `use_route` sets both
            _check_rows(len(st.route), x.shape[0])
            # index_select, not lora_A[route]: the backward of advanced indexing sums repeated rows in an
            # order that varies from call to call on a multi-threaded CPU, which makes training irreproducible
            a = self.lora_A.index_select(0, st.route).to(dtype)  # (batch, r, in)
            b = self.lora_B.index_select(1, st.route).permute(1, 2, 0).to(dtype)  # (batch, r, out)
            h = torch.bmm(h_in.reshape(x.shape[0], -1, x.shape[-1]), a.transpose(1, 2))
            h = h * (st.route_scale.to(dtype) * st.scaling)[:, None, None]
            delta = torch.bmm(h, b).reshape(*x.shape[:-1], -1)
        else:
            a, b = (self.lora_A, self.lora_B) if st.poles is None else (
                self.lora_A.index_select(0, st.poles), self.lora_B.index_select(1, st.poles))
            a, b = a.reshape(-1, x.shape[-1]).to(dtype), b.reshape(y.shape[-1], -1).to(dtype)
            h = h_in @ a.T
            assert st.columns is not None  # set in modes "shared" and "rows"
            cols = st.columns.to(dtype)
            if st.mode == "rows":  # (batch, k*r) -> broadcast over every position of the row
                _check_rows(cols.shape[0], x.shape[0])
                cols = cols.reshape(cols.shape[0], *([1] * (h.dim() - 2)), cols.shape[-1])
            delta = (h * cols) @ b.T
        return y + delta.to(y.dtype)


def _check_rows(weight_rows: int, batch: int) -> None:
    """Per-row weights pair with batch rows one to one: broadcasting would pair rows with the wrong vectors, or
    silently widen."""
    if weight_rows != batch:
        raise PFTError(f"{weight_rows} rows of pole weights for a batch of {batch}: give one vector per batch row")


def _is_target(name: str, module: nn.Module, targets: tuple[str, ...]) -> bool:
    return isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets


@dataclass
class PoleAdapters:
    """Handle on a model whose target layers carry multi-pole LoRA factors."""

    model: nn.Module
    spec: LoraSpec
    pole_slugs: list[str]
    state: MixState
    layers: dict[str, MultiPoleLinear] = field(default_factory=dict)
    merged_with: torch.Tensor | None = None  # the (P,) mix folded into the weights, while it is
    absent: frozenset[str] = frozenset()  # poles whose adapters were not loaded (a partial pull): weighting them is refused

    @property
    def n_poles(self) -> int:
        return len(self.pole_slugs)

    def parameters(self) -> Iterator[nn.Parameter]:
        for layer in self.layers.values():
            yield layer.lora_A
            yield layer.lora_B

    def _device(self) -> torch.device:
        if not self.layers:
            raise PFTError("these pole adapters were detached from their model: attach the zoo again")
        return next(iter(self.layers.values())).lora_A.device

    def coefficients(self, weights: Mapping[str, float] | torch.Tensor) -> torch.Tensor:
        """Pole weights as a (P,) tensor, or (batch, P) for a tensor given so; a mapping names poles by slug (missing
        = 0). A vector gives each in [0, 1]; the math is exact for any finite coefficient (above 1 extrapolates a
        pole, below 0 negates its adapter), so only NaN and the infinities are refused."""
        if isinstance(weights, torch.Tensor):
            c = weights.detach().to(self._device(), torch.float32)
            if c.dim() not in (1, 2) or c.shape[-1] != self.n_poles or weights.is_complex():
                raise PFTError(f"pole weights must be a real tensor of shape ({self.n_poles},) or (batch, "
                               f"{self.n_poles}), one column per pole ({', '.join(self.pole_slugs)}); got "
                               f"{tuple(weights.shape)}")
        elif isinstance(weights, Mapping):
            unknown = [str(k) for k in weights if k not in self.pole_slugs]
            if unknown:
                raise PFTError(f"unknown pole(s) {sorted(unknown)}: this zoo has {', '.join(self.pole_slugs)}")
            bad = next((k for k, v in weights.items() if isinstance(v, bool) or not isinstance(v, numbers.Real)), None)
            if bad is not None:
                raise PFTError(f"the weight of pole '{bad}' is {type(weights[bad]).__name__}, not a number")
            c = torch.tensor([float(weights.get(s, 0.0)) for s in self.pole_slugs], device=self._device())
        else:
            raise PFTError(f"pole weights must be a mapping like {{'{self.pole_slugs[0]}': 1.0}} or a tensor, got "
                           f"{type(weights).__name__} (a vector like 'risk=0.8' goes through MixedModel or Zoo.vector)")
        infinite = ~torch.isfinite(c)
        if bool(infinite.any()):
            pole = self.pole_slugs[int(infinite.nonzero()[0, -1])]
            raise PFTError(f"the weight of pole '{pole}' is {float(c[infinite][0]):g}: give a finite number (a vector "
                           "gives each pole a weight in [0, 1])")
        return c

    def _loaded(self, c: torch.Tensor) -> torch.Tensor:
        """`c`, refused if it weights a pole not loaded: the mix asked for would silently lack it. (Inside, a mirror
        may weight one on purpose, as the nothing it adds.)"""
        idle = [p for i, p in enumerate(self.pole_slugs) if p in self.absent and bool(c[..., i].any())]
        if idle:
            raise PFTError(f"pole(s) {idle} were not loaded with this zoo: pull them, or leave their weight at 0")
        return c

    # -- setting the coefficients -------------------------------------------------
    def _only_the_merged_mix(self, rows: torch.Tensor | None) -> None:
        """While a mix is merged the wrappers are out of the model: any other mix (or none) would silently run it."""
        if self.merged_with is not None and (rows is None or not bool((rows == self.merged_with).all())):
            raise PFTError("a mix is merged into the weights: another vector, or the bare base, runs only after "
                           "it is unmerged (outside `merged()`)")

    def off(self) -> None:
        self._only_the_merged_mix(None)
        self.state.mode, self.state.columns, self.state.poles, self.state.route = "off", None, None, None

    def _active(self, c: torch.Tensor) -> torch.Tensor | None:
        """Indices of the poles some coefficient (of (P,) or (batch, P)) uses; None when all are."""
        used = c.reshape(-1, self.n_poles).ne(0).any(0)
        return None if bool(used.all()) else used.nonzero().flatten()

    def use_weights(self, weights: Mapping[str, float] | torch.Tensor) -> None:
        """One mix for the whole batch; all-zero weights mean the bare base model."""
        c = self._loaded(self.coefficients(weights))
        if c.dim() == 2:
            self._use_rows(c)
            return
        self._only_the_merged_mix(c)
        if not bool(c.any()):
            self.off()
            return
        poles = self._active(c)
        cols = self.state.expand(c if poles is None else c[poles])
        st, current = self.state, self.state.columns
        same_poles = (st.poles is None and poles is None) or (st.poles is not None and poles is not None
                                                                 and torch.equal(st.poles, poles))
        graphed = torch.is_grad_enabled() and next(self.parameters()).requires_grad
        if (st.mode == "shared" and current is not None and current.shape == cols.shape and same_poles and not graphed
                and (torch.is_inference_mode_enabled() or not current.is_inference())):
            current.copy_(cols)  # in place (not while a graph may hold the old one): one small copy per switch
        else:
            st.mode, st.columns, st.poles, st.route = "shared", cols, poles, None

    def use_rows(self, weights: torch.Tensor) -> None:
        """A (batch, P) coefficient row per batch row; rows that weight one pole each are routed."""
        w = self.coefficients(weights)
        if w.dim() != 2:
            raise PFTError(f"per-row weights must have shape (batch, {self.n_poles}), got {tuple(w.shape)}")
        self._use_rows(w)

    def _use_rows(self, w: torch.Tensor) -> None:
        """`use_rows` on coefficients already checked (`coefficients`)."""
        self._only_the_merged_mix(w)
        if bool((w.ne(0).sum(1) <= 1).all()):  # a zero row routes to pole 0 at scale 0: the base
            pole = w.abs().argmax(1)
            self.use_route(pole, w.gather(1, pole[:, None]).squeeze(1))
            return
        poles = self._active(w)
        self.state.mode, self.state.route = "rows", None
        self.state.columns, self.state.poles = self.state.expand(w if poles is None else w[:, poles]), poles

    def use_route(self, pole_index: torch.Tensor, scale: torch.Tensor | None = None) -> None:
        """One pole per batch row (optionally weighted): the training path."""
        idx = pole_index.to(self._device(), torch.long)
        if self.merged_with is not None:
            rows = torch.zeros(len(idx), self.n_poles, device=idx.device)
            self._only_the_merged_mix(rows.scatter_(1, idx[:, None], 1.0 if scale is None else scale[:, None].float()))
        self.state.mode, self.state.columns, self.state.poles = "route", None, None
        self.state.route = idx
        self.state.route_scale = scale.to(self._device()) if scale is not None else torch.ones(len(idx), device=self._device())

    @contextmanager
    def kept(self) -> Iterator[PoleAdapters]:
        """Whatever coefficients the block sets, the previous ones come back afterwards."""
        st = self.state
        saved = (st.mode, st.columns, st.poles, st.route, st.route_scale)
        if st.columns is not None:  # the mix stays on inside the block, but a new vector never writes into the saved tensor
            st.columns = st.columns.clone()
        try:
            yield self
        finally:
            st.mode, st.columns, st.poles, st.route, st.route_scale = saved

    @contextmanager
    def weighted(self, weights: Mapping[str, float] | torch.Tensor) -> Iterator[PoleAdapters]:
        """Temporarily apply a mix; the previous coefficients come back afterwards."""
        with self.kept():
            self.use_weights(weights)
            yield self

    # -- folding the mix into the weights -----------------------------------------
    def merge(self, weights: Mapping[str, float] | torch.Tensor) -> None:
        """Fold the mix into the base weights and put the plain `nn.Linear` layers back in
        the model, so a merged model runs exactly the base's code (zero overhead)."""
        if self.merged_with is not None:  # before the all-or-nothing block, whose rollback would unmerge the mix in place
            raise PFTError("a mix is already merged into the weights: unmerge it before merging another")
        c = self._loaded(self.coefficients(weights))
        try:
            for name, layer in self.layers.items():
                layer.merge(c)
                _set_module(self.model, name, layer.base)
        except BaseException:  # all or nothing: the layers merged so far go back
            self.unmerge()
            raise
        self.merged_with = c

    def unmerge(self) -> None:
        for name, layer in self.layers.items():
            _set_module(self.model, name, layer)
            layer.unmerge()
        self.merged_with = None

    def detach(self) -> nn.Module:
        """Put the model's own linear layers back (its weights as they were), so another zoo can be attached to it;
        this handle is spent."""
        if self.merged_with is not None:
            raise PFTError("a mix is merged into the weights: detach once it is unmerged (outside `merged()`)")
        for name, layer in self.layers.items():
            _set_module(self.model, name, layer.base)
        self.layers.clear()
        delattr(self.model, _ATTACHED)
        return self.model

    def cross_dimension_overlap(self, dimension_of: Sequence[str]) -> torch.Tensor:
        """Mean squared cosine between the LoRA directions of poles of different dimensions, summed over layers.

        `dimension_of[p]` is the dimension of pole `p`. Two dimensions whose
        adapters read (rows of A) and write (columns of B) orthogonal directions barely
        see each other's effect, so a mix of dimensions keeps each close to its behaviour
        alone (`TrainConfig.orthogonality`). Poles of one dimension may share directions.
        """
        device = self._device()
        total = torch.zeros((), device=device)
        cross = torch.tensor([[a != b for b in dimension_of] for a in dimension_of], device=device)
        if not bool(cross.any()):
            return total
        r = self.state.r
        mask = cross.repeat_interleave(r, 0).repeat_interleave(r, 1).float()
        for layer in self.layers.values():
            a = nn.functional.normalize(layer.lora_A.reshape(-1, layer.lora_A.shape[-1]), dim=-1)
            b = nn.functional.normalize(layer.lora_B.reshape(layer.lora_B.shape[0], -1), dim=0, eps=1e-6)  # B starts at 0
            for gram in (a @ a.T, b.T @ b):
                total = total + ((gram * mask) ** 2).sum() / mask.sum()
        return total

    # -- per-pole factors in peft's layout ----------------------------------------
    @staticmethod
    def peft_key(layer: str, factor: str) -> str:
        """The key of a layer's LoRA factor ("A" or "B") in a saved peft adapter."""
        return f"base_model.model.{layer}.lora_{factor}.weight"

    def pole_state_dict(self, pole: str) -> dict[str, torch.Tensor]:
        """One pole's factors with the keys of a saved peft LoRA adapter."""
        p = self.pole_slugs.index(pole)
        out = {}
        for name, layer in self.layers.items():
            out[self.peft_key(name, "A")] = layer.lora_A[p].detach().contiguous().cpu()
            out[self.peft_key(name, "B")] = layer.lora_B[:, p].detach().contiguous().cpu()
        return out

    def load_pole_state_dict(self, pole: str, tensors: dict[str, torch.Tensor]) -> None:
        p = self.pole_slugs.index(pole)
        expected = {self.peft_key(n, x) for n in self.layers for x in "AB"}
        missing, extra = expected - set(tensors), set(tensors) - expected
        if missing or extra:
            some = sorted(missing or extra)[0]
            raise PFTError(
                f"adapter for pole '{pole}' does not fit this base model ({'missing' if missing else 'unexpected'} "
                f"tensor {some}): it was trained for another architecture or target modules"
            )
        with torch.no_grad():
            for name, layer in self.layers.items():
                a, b = tensors[self.peft_key(name, "A")], tensors[self.peft_key(name, "B")]
                if a.shape != layer.lora_A[p].shape or b.shape != layer.lora_B[:, p].shape:
                    raise PFTError(f"adapter for pole '{pole}' has shape {tuple(a.shape)} at {name}, expected {tuple(layer.lora_A[p].shape)}: it was trained for another base model")
                layer.lora_A[p].copy_(a)
                layer.lora_B[:, p].copy_(b)


_ATTACHED = "_pft_pole_adapters"  # set on a model while it carries pole adapters (merged or not)


def refuse_attached(model: nn.Module) -> None:
    """A model carries one set of pole adapters at a time: wrapping it again would wrap the wrappers, and while a mix
    is merged its weights are not the base's."""
    if getattr(model, _ATTACHED, False):
        raise PFTError("this model already carries pole adapters: detach them first (PoleAdapters.detach()), or load "
                       "a fresh base model (Zoo.load_base)")


def target_names(model: nn.Module, targets: Iterable[str]) -> list[str]:
    """The model's `nn.Linear` layers named by `targets`; a target naming another kind of layer is refused, and so
    is a model that carries pole adapters already."""
    refuse_attached(model)
    targets = tuple(targets)
    other = next(((n, m) for n, m in model.named_modules()
                  if n.rsplit(".", 1)[-1] in targets and not isinstance(m, nn.Linear)), None)
    if other is not None:  # e.g. GPT-2's Conv1D: skipping it silently would adapt fewer layers than asked
        raise PFTError(f"target module '{other[0]}' is a {type(other[1]).__name__}, not a linear layer: pft-adapters "
                       "adapts nn.Linear layers only; pass --target-modules with linear layers' names")
    names = [n for n, m in model.named_modules() if _is_target(n, m, targets)]
    if not names:
        raise PFTError(f"no linear layer named {list(targets)} in this model: pass --target-modules with names it has")
    return names


def tied_target(model: nn.Module, names: Iterable[str]) -> str | None:
    """The first of the layers `names` whose weight is the input embeddings' (tied): a mix merged into it would
    change the embeddings too."""
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    weight = getattr(embeddings, "weight", None)
    def own(name: str) -> object:  # a wrapped layer's weight is its base's
        module = model.get_submodule(name)
        return getattr(getattr(module, "base", module), "weight", None)

    return next((n for n in names if weight is not None and own(n) is weight), None)


def check_new_adapters(model: nn.Module, spec: LoraSpec) -> None:
    """Refuse, before training, adapters that could never be merged (a target tied to the input embeddings) or whose
    rank is above a target's width (it adds only memory, and a huge one fails to allocate). Zoos trained before
    these checks still load."""
    names = target_names(model, spec.target_modules)
    tied = tied_target(model, names)
    if tied is not None:
        raise PFTError(f"target module '{tied}' shares its weights with the input embeddings (tied): a merged mix would "
                       "change them too; pass --target-modules without it")
    narrowest = min(min(cast(nn.Linear, model.get_submodule(n)).weight.shape) for n in names)
    if spec.r > narrowest:
        raise PFTError(f"--rank {spec.r} is above the width of the narrowest adapted layer ({narrowest}): give at most that")


def add_pole_adapters(model: nn.Module, spec: LoraSpec, pole_slugs: list[str]) -> PoleAdapters:
    """Freeze `model` and wrap its target linear layers with multi-pole LoRA factors."""
    names = target_names(model, spec.target_modules)  # refuses a model that carries adapters already
    setattr(model, _ATTACHED, True)
    for p in model.parameters():
        p.requires_grad_(False)
    state = MixState(n_poles=len(pole_slugs), r=spec.r, scaling=spec.scaling)
    handle = PoleAdapters(model, spec, list(pole_slugs), state)
    for name in names:
        layer = MultiPoleLinear(cast(nn.Linear, model.get_submodule(name)), state)  # target_names: linear layers only
        _set_module(model, name, layer)
        handle.layers[name] = layer
    return handle


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
