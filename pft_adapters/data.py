"""Scenario data: read and validate it, and unfold it into paired training rows.

Two input shapes map onto one record type, `Scenario`:
- VCD: `{"scenario", "preference domain", "scene", "options": [{"text", "bias"}]}`;
- paired JSONL: `{"prompt", "responses": {pole_slug: text, ...}}`.
Either may be a JSON list or JSONL. Every record is validated; an error names
the file, the record number and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PFTError
from .values import ValueSpace

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Option:
    text: str
    pole: str | None  # pole slug, or None for an option that carries neither pole


@dataclass(frozen=True)
class Scenario:
    text: str
    dimension: str  # dimension slug
    options: tuple[Option, ...]
    scene: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def options_of(self, pole: str) -> list[int]:
        return [i for i, o in enumerate(self.options) if o.pole == pole]


@dataclass(frozen=True)
class PairedRow:
    """One training row: the shared prompt of a scenario and one option of one pole."""

    prompt: str
    target: str
    pole: str
    scenario: int


def format_prompt(scenario: Scenario) -> str:
    """Scenario plus lettered options, ending where the chosen option's text begins."""
    lines = [f"Scenario: {scenario.text}", "Options:"]
    lines += [f"{LETTERS[i]}. {o.text}" for i, o in enumerate(scenario.options)]
    lines.append("Chosen option:")
    return "\n".join(lines)


def format_target(option: Option) -> str:
    return " " + option.text


def read_records(path: str | Path) -> list[tuple[str, object]]:
    """(position, raw record) from a JSON list or a JSONL file; the position reads
    `record N` (1-based) for JSON and `line N` for JSONL."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PFTError(f"data file {path} not found: check the path") from None
    except UnicodeDecodeError:
        raise PFTError(f"{path} is not UTF-8 text: save it as UTF-8 JSON or JSONL") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise PFTError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}): fix the file") from None
        if not isinstance(items, list):
            raise PFTError(f"{path}: expected a JSON list of records or JSONL")
        return [(f"record {n}", item) for n, item in enumerate(items, start=1)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise PFTError(f"{path}, line {number}: not valid JSON ({err.msg}): fix or remove the line") from None
    if not records:
        raise PFTError(f"{path} holds no records: expected a JSON list or JSONL with one record per line")
    return records


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PFTError(f"{where}: field '{key}' must be a non-empty string")
    return value.strip()


def _vcd(raw: dict, space: ValueSpace, where: str) -> Scenario:
    text = _text(raw, "scenario", where)
    label = _text(raw, "preference domain", where)
    if not space.has_dimension(label):
        raise PFTError(f"{where}: field 'preference domain' is '{label}', not a known dimension{space._suggest(label)}")
    dim = space.dimension(label)
    options = raw.get("options")
    if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS):
        raise PFTError(f"{where}: field 'options' must be a list of 2 to {len(LETTERS)} options")
    parsed = []
    for j, opt in enumerate(options, start=1):
        if not isinstance(opt, dict):
            raise PFTError(f"{where}: options[{j}] must be an object with 'text' and 'bias'")
        bias = _text(opt, "bias", f"{where}, options[{j}]")
        if not space.has_pole(bias) or space.pole(bias) not in dim.poles:
            raise PFTError(
                f"{where}, options[{j}]: field 'bias' is '{bias}', not a pole of '{dim.slug}' "
                f"(expected '{dim.first.name}' or '{dim.second.name}')"
            )
        parsed.append(Option(_text(opt, "text", f"{where}, options[{j}]"), space.pole(bias).slug))
    return _checked(Scenario(text, dim.slug, tuple(parsed), raw.get("scene")), dim, where)


def _paired(raw: dict, space: ValueSpace, where: str) -> Scenario:
    text = _text(raw, "prompt", where)
    responses = raw.get("responses")
    if not isinstance(responses, dict) or len(responses) < 2:
        raise PFTError(f"{where}: field 'responses' must map at least two pole slugs to texts")
    options, dims = [], set()
    for slug, response in responses.items():
        if not space.has_pole(slug):
            raise PFTError(f"{where}: 'responses' key '{slug}' is not a known pole{space._suggest(slug)}")
        if not isinstance(response, str) or not response.strip():
            raise PFTError(f"{where}: response for '{slug}' must be a non-empty string")
        dims.add(space.dimension_of(slug).slug)
        options.append(Option(response.strip(), space.pole(slug).slug))
    if len(dims) != 1:
        raise PFTError(f"{where}: 'responses' mixes poles of {sorted(dims)}: one record covers one dimension")
    dim = space.dimension(dims.pop())
    if "dimension" in raw and space.dimension(str(raw["dimension"])) != dim:
        raise PFTError(f"{where}: field 'dimension' is '{raw['dimension']}' but the responses belong to '{dim.slug}'")
    return _checked(Scenario(text, dim.slug, tuple(options), raw.get("scene"), {"format": "paired"}), dim, where)


def _checked(scenario: Scenario, dim, where: str) -> Scenario:
    for pole in dim.poles:
        if not scenario.options_of(pole.slug):
            raise PFTError(f"{where}: no option carries pole '{pole.name}'; each record needs both poles of '{dim.slug}'")
    return scenario


def parse_scenario(raw: object, space: ValueSpace, where: str) -> Scenario:
    """One validated record in either input shape."""
    if not isinstance(raw, dict):
        raise PFTError(f"{where}: expected a JSON object")
    if "responses" in raw:
        return _paired(raw, space, where)
    if "scenario" in raw:
        return _vcd(raw, space, where)
    raise PFTError(f"{where}: unknown record shape: expected VCD fields ('scenario', 'options') or paired fields ('prompt', 'responses')")


def load_scenarios(path: str | Path, space: ValueSpace | None = None) -> list[Scenario]:
    space = space or ValueSpace.builtin()
    return [parse_scenario(raw, space, f"{path}, {where}") for where, raw in read_records(path)]


def paired_rows(scenarios: Iterable[Scenario], poles: Iterable[str] | None = None) -> list[PairedRow]:
    """Each scenario once under each pole of its dimension, one row per option of that pole.

    Rows of the same scenario share the prompt and sit next to each other, so a
    batch of consecutive scenarios holds both sides of every pair.
    `poles` limits the rows to those poles (single-preference baselines, extending a zoo).
    """
    keep = set(poles) if poles is not None else None
    rows = []
    for i, scenario in enumerate(scenarios):
        prompt = format_prompt(scenario)
        for option in scenario.options:
            if option.pole is not None and (keep is None or option.pole in keep):
                rows.append(PairedRow(prompt, format_target(option), option.pole, i))
    return rows


def dimensions_in(scenarios: Iterable[Scenario]) -> list[str]:
    """Dimension slugs present in the data, in first-seen order."""
    return list(dict.fromkeys(s.dimension for s in scenarios))
