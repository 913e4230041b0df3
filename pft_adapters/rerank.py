"""Ranking candidate texts for one person's values with a scorer zoo.

Candidates come as JSONL, one per line: a JSON string, or an object

    {"text": "...", "context": "the shared prompt", "group": "q1", "vector": "risk=-1"}

where only `text` is required. Candidates of one `group` (all of them when no line
names a group) are ranked against each other. `context` is read before the
candidate, as the scenario is in training. `vector` (any form `mix --vector` takes,
or an `infer --json` object) overrides the command's vector for that line, so one
batch can rank for many users. A bad line is reported by its number and field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .data import text_field
from .errors import PFTError, jsonl_records, parse_every, read_text

FIELDS = ("text", "context", "group", "vector", "id")


@dataclass(frozen=True)
class Candidate:
    text: str
    context: str | None = None
    group: str = ""
    vector: str | Mapping | None = None  # this line's own vector, if any
    id: str | int | None = None
    line: int = 0
    where: str = ""  # "FILE, line N", for messages

    @property
    def place(self) -> str:
        return self.where or f"line {self.line}"


def read_candidates(path: str | Path) -> list[Candidate]:
    """Candidates from a JSONL file, every line checked (every bad one reported)."""
    text = read_text(path, "candidates file")
    errors: list[str] = []
    out = parse_every(jsonl_records(text, str(path), "write one JSON string or object per line", errors),
                      lambda number, where, raw: _candidate(raw, where, number), errors, str(path))
    if not out:
        raise PFTError(f"{path} holds no candidates: write one JSON string or object per line")
    return out


def _candidate(raw: object, where: str, line: int) -> Candidate:
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise PFTError(f"{where}: expected a string or an object with 'text', got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise PFTError(f"{where}: unknown field(s) {unknown}; a candidate has {', '.join(FIELDS)}")
    text = text_field(raw.get("text"), where, "text")
    for key in ("context", "group"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise PFTError(f"{where}: field '{key}' must be a string")
    vector = raw.get("vector")
    if vector is not None and not isinstance(vector, (str, dict)):
        raise PFTError(f"{where}: field 'vector' must be a string like 'risk=-1' or an object like {{\"risk\": -1}}")
    context = raw.get("context") or None  # "" is no context: scored alone, as a line without one
    return Candidate(text, context, raw.get("group") or "", vector, raw.get("id"), line, where)


def _line_vector(scorer, candidate: Candidate):
    """A line's own vector, a bad one reported by its line."""
    try:
        return scorer.vector(candidate.vector)
    except PFTError as err:
        raise PFTError(f"{candidate.place}: field 'vector': {err}") from None


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    index: int  # position in the input
    score: float
    rank: int  # 1 = best within its group

    def to_json(self, vector: Mapping[str, float]) -> dict:
        c = self.candidate
        out = {"index": self.index, "rank": self.rank, "score": round(self.score, 4), "text": c.text}
        out |= {k: v for k, v in (("id", c.id), ("group", c.group or None), ("context", c.context)) if v is not None}
        return out | {"vector": dict(vector)}


def rerank(scorer, candidates: Sequence[Candidate], vector=None, compose: str = "model") -> tuple[list[Ranked], list]:
    """Score every candidate under its vector (its own, else `vector`) in batched passes; rank within groups.

    `compose`: how a vector over several dimensions scores (`ScorerModel.scores`).

    Returns the candidates grouped in order of first appearance, best first in each group,
    and the vector each input line was scored under.
    """
    missing = [c.place for c in candidates if c.vector is None and vector is None]
    if missing:
        raise PFTError(f"{missing[0]} has no vector: give --vector or --history, or a 'vector' on every line")
    vectors = [_line_vector(scorer, c) if c.vector is not None else None for c in candidates]
    if vector is not None and any(v is None for v in vectors):
        shared = scorer.vector(vector)
        vectors = [shared if v is None else v for v in vectors]
    contexts = [c.context for c in candidates]
    scores = scorer.scores([c.text for c in candidates], vectors, contexts if any(contexts) else None, compose=compose)
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault(c.group, []).append(i)
    ranked = []
    for members in groups.values():
        order = sorted(members, key=lambda i: -float(scores[i]))
        ranked += [Ranked(candidates[i], i, float(scores[i]), r) for r, i in enumerate(order, 1)]
    return ranked, vectors
