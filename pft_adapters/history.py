"""A user's history: past decisions, one JSON object per line (JSONL).

    {"scenario": "text", "options": ["text", ...], "chosen": 1,
     "timestamp": "2025-03-01T18:30:00Z", "dimension": "risk"}

- `options`: two to ten option texts, each a string or an object with a `text`
  field (so VCD-style options `{"text": ..., "bias": ...}` are accepted; the
  `bias` is ignored: what counts is what the user chose);
- `chosen`: the index of the chosen option (0-based) or its exact text;
- `timestamp` (optional): ISO-8601 (`2025-03-01`, `2025-03-01T18:30:00+01:00`;
  no zone = UTC) or Unix epoch seconds;
- `dimension` (optional): the dimension the decision is about, by slug or label;
  left out, the zoo works it out.

Other fields are ignored. Every line is checked, and every bad one is reported, by
its line number and field, in one error (one line each).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .atomic import atomic_write_text
from .data import option_list, text_field
from .errors import PFTError, decimal, jsonl_records, parse_every, quote, read_text, shorten
from .values import ValueSpace


@dataclass(frozen=True)
class Decision:
    """One past decision: the scenario, its options, which one the user chose, and when."""

    scenario: str
    options: tuple[str, ...]
    chosen: int  # 0-based index into options
    timestamp: float | None = None  # Unix epoch seconds
    dimension: str | None = None  # dimension slug, when the history says
    line: int | None = None  # where it was read from, for messages

    @property
    def chosen_text(self) -> str:
        return self.options[self.chosen]

    def place(self, index: int) -> str:
        """Where the decision is, for messages: its history line, else its index in the list it came in."""
        return f"line {self.line}" if self.line else f"decisions[{index}]"

    def to_json(self) -> dict:
        out: dict = {"scenario": self.scenario, "options": list(self.options), "chosen": self.chosen}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.dimension is not None:
            out["dimension"] = self.dimension
        return out


# epoch seconds of 0001-01-01 and 9999-12-31T23:59:59 UTC, ISO-8601's range, widened by a day of time zones so that every
# ISO time reads back as epoch seconds (a Decision built in Python holds them so, and is checked again)
_DAY = 86400.0
_FIRST, _LAST = -62135596800.0 - _DAY, 253402300799.0 + _DAY


def _epoch_seconds(value: float, raw: object, where: str) -> float:
    """Epoch seconds within ISO-8601's years (1-9999), as a time given as text must be: a time far out of it is a
    mistake, most often milliseconds, that would give every other decision a weight of 0."""
    if not _FIRST <= value <= _LAST:  # also refuses NaN and the infinities
        raise PFTError(f"{where}: field 'timestamp' is {shorten(repr(raw), 24)}, not epoch seconds within the years 1-9999 "
                       "(epoch milliseconds? divide by 1000): give ISO-8601 text or epoch seconds")
    return value


_BASIC_DATE = re.compile(r"[0-9]{8}")  # 20250301: a date, as ISO-8601's basic form (not seconds of 1970)


def parse_timestamp(raw: object, where: str) -> float:
    """ISO-8601 text or epoch seconds -> epoch seconds (a naive time is read as UTC)."""
    if isinstance(raw, bool):
        raise PFTError(f"{where}: field 'timestamp' is {raw!r}: give ISO-8601 text or epoch seconds")
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        return _epoch_seconds(value, raw, where)
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise PFTError(f"{where}: field 'timestamp' is empty: give ISO-8601 text or epoch seconds, or leave it out")
        basic = _BASIC_DATE.fullmatch(text)
        seconds = None if basic else decimal(text)
        if seconds is not None:
            return _epoch_seconds(seconds, text, where)
        try:
            if basic:  # Python 3.10's fromisoformat does not read the basic form
                moment = datetime.strptime(text, "%Y%m%d")
            else:
                moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise PFTError(f"{where}: field 'timestamp' is {quote(text)}, not ISO-8601 (like 2025-03-01T18:30:00Z) "
                           "or epoch seconds") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    raise PFTError(f"{where}: field 'timestamp' must be ISO-8601 text or epoch seconds, got {type(raw).__name__}")


def parse_decision(raw: object, where: str, space: ValueSpace | None = None, line: int | None = None) -> Decision:
    """One validated decision; `space` checks (and normalises to a slug) a given dimension."""
    if not isinstance(raw, dict):
        raise PFTError(f"{where}: expected a JSON object with 'scenario', 'options' and 'chosen'")
    for key in ("scenario", "options", "chosen"):
        if key not in raw:
            raise PFTError(f"{where}: missing field '{key}'")
    scenario = text_field(raw["scenario"], where, "scenario")
    items = option_list(raw["options"], where)
    options = []
    for j, item in enumerate(items):
        if isinstance(item, dict):
            options.append(text_field(item.get("text"), where, f"options[{j}].text"))
        else:
            options.append(text_field(item, where, f"options[{j}]"))
        if options[-1] in options[:-1]:
            raise PFTError(f"{where}: options[{j}] repeats options[{options.index(options[-1])}]: every option must "
                           "differ, or the choice says nothing")
    chosen = raw["chosen"]
    if isinstance(chosen, bool) or not isinstance(chosen, (int, str)):
        raise PFTError(f"{where}: field 'chosen' must be an option's index (0-based) or its text")
    if isinstance(chosen, int):
        if not 0 <= chosen < len(options):
            raise PFTError(f"{where}: field 'chosen' is {shorten(str(chosen), 12)}, but the {len(options)} options are numbered 0 to {len(options) - 1}")
        index = chosen
    else:
        text = chosen.strip()
        if text not in options:
            raise PFTError(f"{where}: field 'chosen' is {quote(text)}, which is none of the options: give its index (0-based) or its exact text")
        index = options.index(text)
    timestamp = None if raw.get("timestamp") is None else parse_timestamp(raw["timestamp"], where)
    dimension = raw.get("dimension")
    if dimension is not None:
        dimension = text_field(dimension, where, "dimension")
        if space is not None:
            if not space.has_dimension(dimension):
                raise PFTError(f"{where}: field 'dimension' is {quote(dimension)}, not a dimension of this zoo{space.suggest(dimension)}")
            dimension = space.dimension(dimension).slug
    return Decision(scenario, tuple(options), index, timestamp, dimension, line)


def check_decision(decision: object, index: int, space: ValueSpace | None = None) -> Decision:
    """`decision` (the `index`th of a list) checked and normalised as a history line is (`parse_decision`), so that one
    built in Python cannot slip through: an index out of range, a lone option or a NaN timestamp would read as a choice."""
    if not isinstance(decision, Decision):
        raise PFTError(f"decisions[{index}] is a {type(decision).__name__}, not a Decision: pass Decision objects "
                       "(parse_decision reads one from a dict, load_history a file)")
    return parse_decision(vars(decision), decision.place(index), space, decision.line)


def parse_history(lines: Sequence[str] | str, space: ValueSpace | None = None, source: str = "history") -> list[Decision]:
    """Decisions from JSONL text (or its lines); blank lines are skipped, every bad line is reported."""
    errors: list[str] = []
    decisions = parse_every(jsonl_records(lines, source, "write one decision object per line", errors),
                            lambda number, where, raw: parse_decision(raw, where, space, number), errors, source)
    if not decisions:
        raise PFTError(f"{source} holds no decisions: write one JSON object per line with 'scenario', 'options' and 'chosen'")
    return decisions


def load_history(path: str | Path, space: ValueSpace | None = None) -> list[Decision]:
    """Every decision of a JSONL history file, in file order, each checked (see the module docstring)."""
    path = Path(path)
    text = read_text(path, "history file")
    return parse_history(text, space, str(path))


def write_history(decisions: Sequence[Decision], path: str | Path) -> Path:
    """The decisions as JSONL (the format `load_history` reads), written whole or not at all."""
    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in decisions))
    return path
