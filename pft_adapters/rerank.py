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
from typing import TYPE_CHECKING

from .data import optional_text, text_field
from .errors import PFTError, jsonl_records, parse_every, read_text

if TYPE_CHECKING:  # annotations only: reading candidates needs no torch
    from .vector import PreferenceVector, VectorSpec
    from .zoo import Zoo

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
    vector = raw.get("vector")
    if vector is not None and not isinstance(vector, (str, Mapping)):
        raise PFTError(f"{where}: field 'vector' must be a string like 'risk=-1' or an object like {{\"risk\": -1}}")
    id_ = raw.get("id")
    if id_ is not None and (isinstance(id_, bool) or not isinstance(id_, (str, int))):  # echoed back as given
        raise PFTError(f"{where}: field 'id' must be a string or an integer")
    context = optional_text(raw.get("context"), where, "context")  # "" is no context: scored alone, as without one
    return Candidate(text, context, optional_text(raw.get("group"), where, "group") or "", vector, id_, line, where)


def check_candidates(candidates: Sequence[Candidate | str]) -> list[Candidate]:
    """Candidates handed in from Python (a string is a candidate's text), checked as a file's lines are (`_candidate`);
    one not read from a file is named by its index."""
    out = []
    for i, c in enumerate(candidates):
        c = Candidate(c) if isinstance(c, str) else c
        if not isinstance(c, Candidate):
            raise PFTError(f"candidates[{i}] is a {type(c).__name__}: pass a Candidate or a candidate's text")
        out.append(_candidate({field: getattr(c, field) for field in FIELDS}, c.where or f"candidates[{i}]", c.line))
    return out


def candidate_vectors(zoo: Zoo, candidates: Sequence[Candidate], vector: VectorSpec | None = None,
                      inferred: bool = False) -> list[PreferenceVector | None]:
    """The vector each candidate is scored under, its own (a bad one reported by its line) or else `vector`,
    all checked against the zoo alone, so that a caller can check them before the model loads.

    `vector` is parsed whenever given, even if every line has its own, so a typo in it is reported.
    `inferred`: the vector for lines without their own is inferred later; they get None here.
    """
    if vector is None and not inferred:
        missing = next((c for c in candidates if c.vector is None), None)
        if missing is not None:
            fix = ("give --vector or --history, or a 'vector' on every line" if missing.line  # a file's, on the CLI
                   else "pass rerank a vector, or give every candidate its own")
            raise PFTError(f"{missing.place} has no vector: {fix}")
    shared = zoo.vector(vector) if vector is not None else None
    return [_line_vector(zoo, c.vector, c.place) if c.vector is not None else shared for c in candidates]


def _line_vector(zoo: Zoo, spec: VectorSpec, place: str) -> PreferenceVector:
    """A line's own vector, a bad one reported by its line."""
    try:
        return zoo.vector(spec)
    except PFTError as err:
        raise PFTError(f"{place}: field 'vector': {err}") from None


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    index: int  # position in the input
    score: float
    rank: int  # 1 = best within its group; equal scores share a rank

    def to_json(self, vector: Mapping[str, float]) -> dict:
        c = self.candidate
        out = {"index": self.index, "rank": self.rank, "score": round(self.score, 4), "text": c.text}
        out |= {k: v for k, v in (("id", c.id), ("group", c.group or None), ("context", c.context)) if v is not None}
        return out | {"vector": dict(vector)}


def rerank(scorer, candidates: Sequence[Candidate | str], vector=None, compose: str = "model") -> tuple[list[Ranked], list]:
    """Score every candidate (a `Candidate` or its text) under its vector (its own, else `vector`) in batched passes;
    rank within groups. No candidates rank as none, as `choose` picks among no scenarios.

    `compose`: how a vector over several dimensions scores (`ScorerModel.scores`).

    Returns the candidates grouped in order of first appearance, best first in each group,
    and the vector each input line was scored under.
    """
    items = check_candidates(candidates)
    vectors = candidate_vectors(scorer.zoo, items, vector)
    if not items:
        return [], vectors
    contexts = [c.context for c in items]
    scores = scorer.scores([c.text for c in items], vectors, contexts if any(contexts) else None, compose=compose)
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(items):
        groups.setdefault(c.group, []).append(i)
    ranked = []
    for members in groups.values():
        order = sorted(members, key=lambda i: -float(scores[i]))  # stable: tied candidates stay in input order
        above = 0  # candidates scored strictly higher: tied ones share a rank (1, 1, 3), as --top counts them
        for place, i in enumerate(order):
            if place and float(scores[i]) < float(scores[order[place - 1]]):
                above = place
            ranked.append(Ranked(items[i], i, float(scores[i]), above + 1))
    return ranked, vectors
