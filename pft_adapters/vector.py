"""Preference vectors: one signed number in [-1, 1] per dimension.

+1 is the dimension's first pole at full strength, -1 the second, 0 (or absent)
the dimension switched off. Accepted spellings, all validated the same way:

    risk=0.8,time=-0.5            dimension slugs
    risk-averse=0.6               a pole name as key (= risk=-0.6)
    {"risk": 0.8}                 a JSON object
    @alice.json                   a file holding such an object, or the `infer --json` output
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .errors import JSONError, PFTError, decimal, loads, quote, read_json, shorten
from .values import ValueSpace


class PreferenceVector(dict[str, float]):
    """Dimension slug -> value in [-1, 1]; missing dimensions are 0."""

    def pole_weights(self, space: ValueSpace) -> dict[str, float]:
        """Unfold per pole: w[first] = max(v, 0), w[second] = max(-v, 0)."""
        weights = {}
        for dim in space:
            v = self.get(dim.slug, 0.0)
            weights[dim.first.slug] = max(v, 0.0)
            weights[dim.second.slug] = max(-v, 0.0)
        return weights

    def tensor(self, space: ValueSpace) -> torch.Tensor:
        """Pole weights as a (P,) tensor in the space's pole order."""
        weights = self.pole_weights(space)
        return torch.tensor([weights[p] for p in space.pole_slugs])

    def describe(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.items()) or "(all dimensions off)"


VectorSpec = str | Mapping[str, object] | PreferenceVector


def parse_vector(spec: str | Mapping[str, object], space: ValueSpace) -> PreferenceVector:
    """Parse any accepted spelling into a validated vector (see the module docstring)."""
    if isinstance(spec, Mapping):
        return _from_items(_object_items(dict(spec), "vector"), space, "vector")
    if not isinstance(spec, str):
        raise PFTError(f"a vector is a text like 'risk=0.8' or a mapping like {{'risk': 0.8}}, not "
                       f"{type(spec).__name__}")
    text = spec.strip()
    if text.startswith("@"):
        return _from_items(_read_file(Path(text[1:])), space, text[1:])
    if text.startswith("{"):
        try:
            obj = loads(text)
        except JSONError as err:
            raise PFTError(f"--vector is not valid JSON ({err}): write it like {{\"risk\": 0.8}}") from None
        return _from_items(_object_items(obj, "--vector"), space, "--vector")
    if not text.strip(", "):
        raise PFTError("--vector is empty: give at least one DIM=VALUE, like risk=0.8 (risk=0 switches a dimension off)")
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise PFTError(f"--vector entry '{part}' is not NAME=VALUE: write it like risk=0.8,time=-0.5")
        items.append((name.strip(), value.strip()))
    return _from_items(items, space, "--vector")


def _read_file(path: Path) -> list[tuple[str, object]]:
    obj = read_json(path, "vector file", 'it should hold an object like {"risk": 0.8}')
    return _object_items(obj, str(path))


_INFERRED = {"vector", "confidence", "evidence", "method"}  # the fields of `pft-adapters infer --json`


def _object_items(obj: object, where: str) -> list[tuple[str, object]]:
    if isinstance(obj, dict) and "vector" in obj and set(obj) <= _INFERRED:  # the output of `infer --json`
        obj = obj["vector"]
        if not isinstance(obj, dict):
            raise PFTError(f"{where}: field 'vector' must be a JSON object mapping dimensions to numbers, like {{\"risk\": 0.8}}")
    if not isinstance(obj, dict):
        raise PFTError(f"{where}: a vector must be a JSON object mapping dimensions to numbers, like {{\"risk\": 0.8}}")
    return list(obj.items())


def _number(name: str, raw: object, where: str) -> float:
    value: float | None = None
    if isinstance(raw, str):  # not float(raw): it takes '0_1', '١' and 'inf' too
        value = math.nan if raw.strip().lower().lstrip("+-") == "nan" else decimal(raw)
    elif isinstance(raw, numbers.Real) and not isinstance(raw, bool):  # numpy's floats too, as pole weights take
        try:
            value = float(raw)
        except OverflowError:  # an integer beyond a float's range: the range check says so
            value = math.inf
    if value is None:
        raise PFTError(f"{where}: value of {quote(name)} is {quote(raw, 24)}, not a number in [-1, 1]")
    if math.isnan(value):
        raise PFTError(f"{where}: value of {quote(name)} is NaN: give a number in [-1, 1]")
    if not -1.0 <= value <= 1.0:
        shown = f"{value:g}" if math.isfinite(value) else shorten(str(raw), 12)  # 1e400 read as inf: show what was given
        raise PFTError(f"{where}: value of {quote(name)} is {shown}, outside [-1, 1]: +1 is the first pole, -1 the second")
    return value


def _from_items(items: Sequence[tuple[str, object]], space: ValueSpace, where: str) -> PreferenceVector:
    vector = PreferenceVector()
    source: dict[str, str] = {}
    for name, raw in items:
        name = str(name)
        value = _number(name, raw, where)
        if space.has_dimension(name):
            dim = space.dimension(name)
        elif space.has_pole(name):
            if value < 0:
                raise PFTError(f"{where}: '{name}={raw}' is negative; a pole's strength is in [0, 1] (name the other pole instead)")
            dim = space.dimension_of(name)
            value = value * dim.sign(space.pole(name).slug)
        else:
            raise PFTError(f"{where}: unknown dimension or pole {quote(name)}{space.suggest(name)}")
        if dim.slug in vector:
            kind = "duplicate" if source[dim.slug] == name else "contradictory"
            raise PFTError(f"{where}: {kind} entries {quote(source[dim.slug])} and {quote(name)} both set dimension '{dim.slug}': give it once")
        vector[dim.slug], source[dim.slug] = value, name
    return vector
