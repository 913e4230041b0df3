"""Scenario data: read and validate it, and unfold it into paired training rows.

Three input shapes map onto one record type, `Scenario`:
- VCD: `{"scenario", "preference domain", "scene", "options": [{"text", "bias"}]}`;
- paired JSONL: `{"prompt", "responses": {pole_slug: text, ...}}`;
- A/B behaviour items: `{"question": "... (A) ...\n (B) ...", "answer_matching_behavior": " (A)",
  "answer_not_matching_behavior": " (B)"}`. They do not say their dimension, so the
  caller names it (`pair=`), and the pole of the matching answer (`matching=`, by
  default the pair's first pole); `to_paired` and `write_jsonl` convert to paired JSONL.
Any of them may be a JSON list or JSONL. Every record is validated; an error names
the file, the record number and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .atomic import atomic_write_text
from .errors import JSONError, PFTError, jsonl_records, loads, one_object_over_lines, parse_every, quote, read_text, shorten
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


def format_open_prompt(text: str) -> str:
    """A free-form scenario or question in the training layout, without options."""
    return f"Scenario: {text.strip()}\nChosen option:"


def format_target(option: Option) -> str:
    return " " + option.text


def read_records(path: str | Path, what: str = "data file", errors: list[str] | None = None) -> Iterator[tuple[str, object]]:
    """(position, raw record) from a JSON list or a JSONL file, in file order; the position reads
    `record N` (1-based) for JSON and `line N` for JSONL. `what` names the file in errors;
    with an `errors` list, JSONL lines of bad JSON are reported there, in turn, and skipped."""
    path = Path(path)
    text = read_text(path, what)
    stripped = text.lstrip()
    records: Iterable[tuple[str, object]]
    if stripped.startswith("["):
        try:
            items = loads(text)
        except JSONError as err:
            raise PFTError(f"{path} is not valid JSON ({err}): fix the file") from None
        if not isinstance(items, list):
            raise PFTError(f"{path}: expected a JSON list of records or JSONL")
        records = ((f"record {n}", item) for n, item in enumerate(items, start=1))
    elif one_object_over_lines(text):
        raise PFTError(f"{path} holds one JSON object over several lines: give a JSON list of records, "
                       "or JSONL with one record per line")
    else:
        records = ((f"line {number}", raw) for number, _, raw in
                   jsonl_records(text, str(path), "fix or remove the line", errors))
    found = False
    for record in records:
        found = True
        yield record
    if not found and not errors:  # a file of nothing but bad lines is reported by them
        raise PFTError(f"{path} holds no records: expected a JSON list or JSONL with one record per line")


def text_field(value: object, where: str, field: str) -> str:
    """A required text field of a user's record, stripped; anything else is refused, naming the record and the field."""
    if not isinstance(value, str) or not value.strip():
        raise PFTError(f"{where}: field '{field}' must be a non-empty string")
    return value.strip()


def optional_text(value: object, where: str, field: str) -> str | None:
    """An optional text field, stripped; missing, null or blank is None (a scene or context of spaces is none)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PFTError(f"{where}: field '{field}' must be a string")
    return value.strip() or None


def option_list(value: object, where: str) -> Sequence:
    """A record's 'options': a list (or a tuple, as a `Decision` holds them) of 2 to len(LETTERS) items (the prompt
    letters them A, B, ...)."""
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= len(LETTERS):
        raise PFTError(f"{where}: field 'options' must be a list of 2 to {len(LETTERS)} options")
    return value


def _vcd(raw: dict, space: ValueSpace, where: str) -> Scenario:
    text = text_field(raw.get("scenario"), where, "scenario")
    label = text_field(raw.get("preference domain"), where, "preference domain")
    if not space.has_dimension(label):
        raise PFTError(f"{where}: field 'preference domain' is {quote(label)}, not a known dimension{space.suggest(label)}")
    dim = space.dimension(label)
    options = option_list(raw.get("options"), where)
    parsed = []
    for j, opt in enumerate(options):  # options[j] counts from 0, as JSON paths and history files do
        if not isinstance(opt, dict):
            raise PFTError(f"{where}: options[{j}] must be an object with 'text' and 'bias'")
        bias = text_field(opt.get("bias"), f"{where}, options[{j}]", "bias")
        if not space.has_pole(bias) or space.pole(bias) not in dim.poles:
            raise PFTError(
                f"{where}, options[{j}]: field 'bias' is {quote(bias)}, not a pole of '{dim.slug}' "
                f"(expected '{dim.first.name}' or '{dim.second.name}')"
            )
        parsed.append(Option(text_field(opt.get("text"), f"{where}, options[{j}]", "text"), space.pole(bias).slug))
    scene = optional_text(raw.get("scene"), where, "scene")
    return checked(Scenario(text, dim.slug, tuple(parsed), scene), dim, where, "options")


def _paired(raw: dict, space: ValueSpace, where: str) -> Scenario:
    text = text_field(raw.get("prompt"), where, "prompt")
    responses = raw.get("responses")
    if not isinstance(responses, dict) or len(responses) < 2:
        raise PFTError(f"{where}: field 'responses' must map at least two pole slugs to texts")
    options, dims = [], set()
    keys: dict[str, str] = {}
    for slug, response in responses.items():
        if not space.has_pole(slug):
            raise PFTError(f"{where}: 'responses' key {quote(slug)} is not a known pole{space.suggest(slug)}")
        if not isinstance(response, str) or not response.strip():
            raise PFTError(f"{where}: response for '{slug}' must be a non-empty string")
        pole = space.pole(slug).slug
        if pole in keys:  # `risk-averse` and `Risk averse`: a pole's name and slug spelled as two keys
            raise PFTError(f"{where}: 'responses' keys '{keys[pole]}' and '{slug}' both name pole '{pole}': give one response per pole")
        keys[pole] = slug
        dims.add(space.dimension_of(slug).slug)
        options.append(Option(response.strip(), pole))
    if len(dims) != 1:
        raise PFTError(f"{where}: 'responses' mixes poles of {sorted(dims)}: one record covers one dimension")
    dim = space.dimension(dims.pop())
    if "dimension" in raw and not isinstance(raw["dimension"], str):
        raise PFTError(f"{where}: field 'dimension' must be a dimension slug (a string), like \"{dim.slug}\"")
    if "dimension" in raw and not space.has_dimension(raw["dimension"]):
        raise PFTError(f"{where}: field 'dimension' is {quote(raw['dimension'])}, not a known dimension{space.suggest(raw['dimension'])}")
    if "dimension" in raw and space.dimension(raw["dimension"]) != dim:
        raise PFTError(f"{where}: field 'dimension' is {quote(raw['dimension'])} but the responses belong to '{dim.slug}'")
    scene = optional_text(raw.get("scene"), where, "scene")
    return checked(Scenario(text, dim.slug, tuple(options), scene), dim, where, "responses")


def checked(scenario: Scenario, dim, where: str, field: str = "options") -> Scenario:
    """`scenario` if its options can be scored on `dim`: 2 to len(LETTERS) distinct texts, each of a pole of `dim`
    or of none, and both poles present (one pole's options alone make every choice right or every choice wrong)."""
    options = option_list(scenario.options, where)
    blank = next((j for j, o in enumerate(options) if not (isinstance(o, Option) and isinstance(o.text, str)
                                                            and o.text.strip())), None)
    if blank is not None:
        raise PFTError(f"{where}: {field}[{blank}] must be an Option with a non-blank text")
    poles = [p.slug for p in dim.poles]
    stray = next((o.pole for o in scenario.options if o.pole is not None and o.pole not in poles), None)
    if stray is not None:
        raise PFTError(f"{where}: field '{field}' has an option of pole {quote(stray)}, which is not a pole of "
                       f"'{dim.slug}' ({', '.join(poles)}): give each option a pole of the scenario's dimension")
    texts = [o.text for o in scenario.options]
    repeated = next((t for i, t in enumerate(texts) if t in texts[:i]), None)
    if repeated is not None:  # as a history refuses: the choice between two equal texts says nothing
        raise PFTError(f"{where}: field '{field}' gives the text '{shorten(repeated, 60)}' twice: every option must "
                       "differ, or the choice says nothing")
    for pole in dim.poles:
        if not scenario.options_of(pole.slug):
            raise PFTError(f"{where}: field '{field}' has no option of pole '{pole.name}'; each record needs both poles of '{dim.slug}'")
    return scenario


def scenarios_of(space: ValueSpace, scenarios: Iterable[Scenario], others: bool = False) -> list[Scenario]:
    """Scenarios built in Python checked as the file loaders check what they read: each a Scenario with a text,
    naming one of `space`'s dimensions by its slug (the vector and the mirror read it so), with options `checked`.

    `others`: scenarios of dimensions `space` lacks are left out rather than refused (a data file may hold more
    dimensions than a zoo).
    """
    slugs = [d.slug for d in space]
    out = []
    for i, s in enumerate(scenarios):
        where = f"scenarios[{i}]"
        if not isinstance(s, Scenario):
            raise PFTError(f"{where} is a {type(s).__name__}, not a Scenario: pass pft_adapters.data.Scenario objects "
                           "(load_scenarios reads them from a file)")
        if not isinstance(s.text, str) or not s.text.strip():
            raise PFTError(f"{where}: its text is blank: give the scenario's situation as text")
        name = str(s.dimension)
        if others and not space.has_dimension(name):
            continue
        if name not in slugs:
            raise PFTError(f"{where}: dimension {quote(name)} is not the slug of one of the zoo's dimensions "
                           f"({', '.join(slugs)}){space.suggest(name)}")
        out.append(checked(s, space.dimension(name), where))
    return out


# -- A/B behaviour items --------------------------------------------------------------------
_CHOICE = re.compile(r"^\s*\(([A-Z])\)\s*(.*)$")
# fullmatched; no two neighbouring parts can match the same characters, so a long line is read in linear time
_ANSWER = re.compile(r"\s*(\(\s*)?([A-Z])(?(1)\s*\)|\)?)\s*")  # ' (A)', 'A)' or 'A'; a parenthesis opened is closed
_CHOICES_HEADER = re.compile(r"\s*(?:answer\s+)?(?:choices|options)\s*(?::\s*)?", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"\s*answer\s*(?::\s*)?", re.IGNORECASE)


@dataclass(frozen=True)
class ABPoles:
    """Where A/B items sit: their dimension and the poles of the matching and the other answer."""

    dimension: str
    matching: str
    not_matching: str


def ab_poles(space: ValueSpace, pair: str, matching: str | None = None) -> ABPoles:
    """Matching answers express `matching` (default: the pair's first pole), the others its opposite."""
    dim = space.dimension(pair)
    pole = dim.first
    if matching is not None:
        if not space.has_pole(matching) or space.pole(matching) not in dim.poles:
            raise PFTError(f"--matching '{matching}' is not a pole of '{dim.slug}': use '{dim.first.slug}' or '{dim.second.slug}'")
        pole = space.pole(matching)
    other = dim.second if pole == dim.first else dim.first
    return ABPoles(dim.slug, pole.slug, other.slug)


def split_choices(question: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    """The question without its choices, and the lettered choices `(A) ...` in order.

    Each choice starts on its own line; the lines after it continue it up to a blank
    line. A `Choices:` header and an `Answer:` line are dropped; other text after
    the choices stays with the question.
    """
    before: list[str] = []
    after: list[str] = []
    choices: list[list[str]] = []
    open_choice = False
    for line in question.splitlines():
        found = _CHOICE.match(line)
        if found:
            choices.append([found[1], found[2].strip()])
            open_choice = True
        elif _ANSWER_LINE.fullmatch(line):
            open_choice = False
        elif open_choice and line.strip():
            choices[-1][1] = f"{choices[-1][1]} {line.strip()}".strip()
        else:
            open_choice = False
            (after if choices else before).append(line)
    while before and (not before[-1].strip() or _CHOICES_HEADER.fullmatch(before[-1])):
        before.pop()
    if len(choices) < 2:
        raise PFTError(f"{where}: field 'question' needs at least two lettered choices, each on its own line like ' (A) ...'")
    if len(choices) > len(LETTERS):
        raise PFTError(f"{where}: field 'question' has {len(choices)} choices; at most {len(LETTERS)} are supported")
    letters = [letter for letter, _ in choices]
    for letter, text in choices:
        if letters.count(letter) > 1:
            raise PFTError(f"{where}: field 'question' lists choice ({letter}) twice")
        if not text:
            raise PFTError(f"{where}: choice ({letter}) in field 'question' has no text")
    text = "\n".join(before + [line for line in after if line.strip()]).strip()
    if not text:
        raise PFTError(f"{where}: field 'question' holds only choices: put the situation or question before them")
    return text, [(letter, choice) for letter, choice in choices]


def _answer_letters(raw: dict, key: str, letters: list[str], where: str) -> set[str]:
    value = raw.get(key)
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) for v in items):
        raise PFTError(f"{where}: field '{key}' must be a choice letter like ' (A)', or a list of them")
    found = set()
    for item in cast("list[str]", items):  # all checked to be strings above
        answer = _ANSWER.fullmatch(item)
        if answer is None:
            raise PFTError(f"{where}: field '{key}' is {item!r}, not a choice letter like ' (A)'")
        if answer[2] not in letters:
            listed = ", ".join(f"({x})" for x in letters)
            raise PFTError(f"{where}: field '{key}' is {item!r}, but ({answer[2]}) is not among the question's choices {listed}")
        found.add(answer[2])
    return found


def _ab(raw: dict, space: ValueSpace, where: str, ab: ABPoles | None) -> Scenario:
    if ab is None:
        raise PFTError(f"{where}: an A/B item does not say which value pair it measures: convert the file with "
                       "`pft-adapters convert ab --pair SLUG` (train, extend and mix also read it with --pair SLUG)")
    text, choices = split_choices(text_field(raw.get("question"), where, "question"), where)
    letters = [letter for letter, _ in choices]
    matching = _answer_letters(raw, "answer_matching_behavior", letters, where)
    other = _answer_letters(raw, "answer_not_matching_behavior", letters, where)
    if matching & other:
        raise PFTError(f"{where}: choice ({min(matching & other)}) is both the matching and the not-matching answer")
    options = tuple(
        Option(choice, ab.matching if letter in matching else ab.not_matching if letter in other else None)
        for letter, choice in choices
    )
    dim = space.dimension(ab.dimension)
    return checked(Scenario(text, dim.slug, options), dim, where, "question")


def parse_scenario(raw: object, space: ValueSpace, where: str, ab: ABPoles | None = None) -> Scenario:
    """One validated record in any input shape; `ab` places A/B items on a dimension."""
    if not isinstance(raw, dict):
        raise PFTError(f"{where}: expected a JSON object")
    if "responses" in raw:
        return _paired(raw, space, where)
    if any(key in raw for key in ("scenario", "preference domain", "options")):  # VCD, even with a field missing
        return _vcd(raw, space, where)
    if "prompt" in raw:  # paired without 'responses': say which field is missing
        return _paired(raw, space, where)
    if any(key in raw for key in ("question", "answer_matching_behavior", "answer_not_matching_behavior")):
        return _ab(raw, space, where, ab)
    raise PFTError(
        f"{where}: unknown record shape: expected VCD fields ('scenario', 'options'), paired fields "
        "('prompt', 'responses') or A/B fields ('question', 'answer_matching_behavior')"
    )


def load_scenarios(path: str | Path, space: ValueSpace | None = None, pair: str | None = None,
                   matching: str | None = None) -> list[Scenario]:
    """Every record of a data file; `pair` (and `matching`) place A/B items on a dimension.
    Every bad record is reported, in one error."""
    space = space or ValueSpace.builtin()
    if matching is not None and pair is None:
        raise PFTError("--matching needs --pair: name the value pair the A/B items measure")
    ab = ab_poles(space, pair, matching) if pair is not None else None
    errors: list[str] = []
    return parse_every(read_records(path, errors=errors), lambda where, raw: parse_scenario(raw, space, f"{path}, {where}", ab),
                       errors, str(path))


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


def to_paired(scenario: Scenario) -> list[dict]:
    """A scenario as paired JSONL records, each holding one response per pole.

    Where a pole has several options (a VCD scenario may), they are spread over
    several records, paired in order and cycling the shorter side, so every option
    appears; options that carry no pole are left out. Responses keep the options' order.
    """
    indices: dict[str, list[int]] = {}
    for i, option in enumerate(scenario.options):
        if option.pole is not None:
            indices.setdefault(option.pole, []).append(i)
    a, b = indices.values()
    records = []
    for k in range(max(len(a), len(b))):
        picked = sorted([a[k % len(a)], b[k % len(b)]])
        record = {"prompt": scenario.text,
                  "responses": {scenario.options[i].pole: scenario.options[i].text for i in picked},
                  "dimension": scenario.dimension}
        if scenario.scene:
            record["scene"] = scenario.scene
        records.append(record)
    return records


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """One JSON object per line, written to a temporary file and renamed into place."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return Path(path)
