"""Value dimensions and their poles: the vocabulary every other module speaks.

A dimension is an axis with exactly two poles (first, second). The six Value
Conflict Dilemma dimensions are built in; researchers add their own with a small
JSON file (see docs/formats.md, "Pair definition file").
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import PFTError, quote, read_json

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # docs/pairs.schema.json's; fullmatch it (`$` matches before a final "\n")


def slugify(name: str) -> str:
    """Lower-case, dash-separated form of a name: `Risk-taking` -> `risk-taking`, `Ölig` -> `olig`.

    A name in another script (`Терпение`) has no slug of its own: '' (its definition then gives one).
    """
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")


@dataclass(frozen=True)
class Pole:
    name: str
    slug: str
    description: str

    @property
    def definition(self) -> str:
        """The pole stated as its name, then its description: as prompts, judges and score heads read it."""
        return f"{self.name}. {self.description}"


@dataclass(frozen=True)
class Dimension:
    """A named axis with two poles; `label` is the VCD "preference domain" text."""

    slug: str
    label: str
    first: Pole
    second: Pole

    @property
    def poles(self) -> tuple[Pole, Pole]:
        return (self.first, self.second)

    def sign(self, pole_slug: str) -> int:
        """+1 for the first pole, -1 for the second."""
        return 1 if pole_slug == self.first.slug else -1


def _builtin(slug: str, label: str, first: tuple[str, str], second: tuple[str, str]) -> Dimension:
    return Dimension(slug, label, Pole(first[0], slugify(first[0]), first[1]), Pole(second[0], slugify(second[0]), second[1]))


BUILTIN_DIMENSIONS: tuple[Dimension, ...] = (
    _builtin(
        "risk", "Risk Orientation",
        ("Risk-taking", "Embraces uncertainty for a chance at a larger gain: acts boldly, tries the untested "
         "option, accepts possible loss when the upside is worth it."),
        ("Risk-averse", "Protects what is already secure: prefers the known, safe option, avoids exposure to "
         "loss even at the cost of a smaller reward."),
    ),
    _builtin(
        "time", "Time Preference",
        ("Immediate gratification", "Values the reward that is available now: enjoys the moment, takes the "
         "quick payoff, and weighs present wants above future benefits."),
        ("Delayed gratification", "Values the larger reward that comes later: saves, plans and practises "
         "patience, giving up a present pleasure for a future benefit."),
    ),
    _builtin(
        "social", "Social Strategy",
        ("Competitive", "Seeks to win and stand out: pursues personal advantage, compares itself with others "
         "and treats the situation as a contest."),
        ("Collaborative", "Seeks shared success: pools effort, shares credit and looks for the outcome that "
         "works for everyone involved."),
    ),
    _builtin(
        "communication", "Communication Style",
        ("Assertive", "States its needs and views directly and firmly: speaks up, sets boundaries and "
         "pushes for its position."),
        ("Accommodating", "Puts harmony and the other person first: listens, yields, adapts to others' "
         "wishes and avoids confrontation."),
    ),
    _builtin(
        "decision", "Decision-Making Approach",
        ("Intuitive", "Decides by gut feeling and quick impressions: trusts instinct, experience and what "
         "feels right in the moment."),
        ("Analytical", "Decides by careful reasoning: gathers information, compares options systematically "
         "and weighs evidence before acting."),
    ),
    _builtin(
        "change", "Change Preference",
        ("Innovation-seeking", "Welcomes the new: tries novel approaches, experiments and embraces change "
         "as an opportunity."),
        ("Stability-seeking", "Values the familiar and proven: keeps routines, prefers continuity and "
         "changes only what must change."),
    ),
)


class ValueSpace:
    """An ordered set of dimensions with lookups by slug, name or VCD label.

    The order fixes the layout of preference vectors (one entry per dimension)
    and of pole indices (first, second for each dimension in turn).
    """

    def __init__(self, dimensions: Iterable[Dimension]):
        self.dimensions: tuple[Dimension, ...] = tuple(dimensions)
        self._check()
        self._dims = {d.slug: d for d in self.dimensions}
        self._poles = {p.slug: (d, p) for d in self.dimensions for p in d.poles}
        # a name in another script has no key ('') and is found by its slug
        self._labels = {k: d for d in self.dimensions for k in (_key(d.label), d.slug) if k}
        self._pole_names = {k: p for _, p in self._poles.values() for k in (_key(p.name), p.slug) if k}

    def _check(self) -> None:
        if not self.dimensions:
            raise PFTError("no value dimensions given: define at least one dimension with two poles")
        seen: dict[str, str] = {}
        for dim in self.dimensions:
            for slug in (dim.slug, dim.first.slug, dim.second.slug):
                if not _SLUG.fullmatch(slug):
                    raise PFTError(f"{slug!r} is not a valid slug: use lower-case letters, digits and single dashes")
                if slug in seen:
                    places = f"in dimension '{dim.slug}'" if seen[slug] == dim.slug else f"in '{seen[slug]}' and '{dim.slug}'"
                    raise PFTError(f"slug '{slug}' is used twice ({places}): every dimension and pole slug must be unique")
                seen[slug] = dim.slug

    @classmethod
    def builtin(cls) -> ValueSpace:
        return cls(BUILTIN_DIMENSIONS)

    def __iter__(self) -> Iterator[Dimension]:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValueSpace) and self.dimensions == other.dimensions

    @property
    def poles(self) -> list[Pole]:
        return [p for d in self.dimensions for p in d.poles]

    @property
    def pole_slugs(self) -> list[str]:
        return [p.slug for p in self.poles]

    def pole_index(self, pole_slug: str) -> int:
        return self.pole_slugs.index(self.pole(pole_slug).slug)

    def dimension(self, name: str) -> Dimension:
        """A dimension by slug or label (`risk`, `Risk Orientation`)."""
        dim = self._labels.get(_key(name))
        if dim is None:
            raise PFTError(f"unknown dimension {quote(name)}{self.suggest(name)}")
        return dim

    def pole(self, name: str) -> Pole:
        """A pole by slug or name (`risk-averse`, `Risk-averse`)."""
        pole = self._pole_names.get(_key(name))
        if pole is None:
            raise PFTError(f"unknown pole {quote(name)}{self.suggest(name)}")
        return pole

    def dimension_of(self, pole_slug: str) -> Dimension:
        return self._poles[self.pole(pole_slug).slug][0]

    def has_pole(self, name: str) -> bool:
        return _key(name) in self._pole_names

    def has_dimension(self, name: str) -> bool:
        return _key(name) in self._labels

    def names(self) -> list[str]:
        """Every valid dimension and pole slug, for suggestions and help texts."""
        return [d.slug for d in self.dimensions] + self.pole_slugs

    def suggest(self, name: str) -> str:
        """A hint for a name given where it does not fit: a pole for a dimension, the other way round, or a typo."""
        if self.has_pole(name):
            return f"; '{name}' is a pole of dimension '{self.dimension_of(name).slug}'"
        if self.has_dimension(name):
            dim = self.dimension(name)
            return f"; '{name}' is a dimension, with poles '{dim.first.slug}' and '{dim.second.slug}'"
        # labels count too (a typo in a VCD "preference domain"), each standing for its dimension's slug
        candidates = {slugify(d.label): d.slug for d in self.dimensions} | {n: n for n in self.names()}
        close = difflib.get_close_matches(slugify(name), list(candidates), n=1, cutoff=0.5)
        hint = f"; did you mean '{candidates[close[0]]}'?" if close else ""
        return f"{hint} (known: {', '.join(self.names())})"

    def select(self, names: Iterable[str]) -> ValueSpace:
        """The named dimensions (slugs or labels), in the order given; one named twice is refused, naming the entries."""
        given: dict[str, str] = {}
        for name in names:
            slug = self.dimension(name).slug
            if slug in given:
                also = "" if given[slug] == name else f" (as '{given[slug]}' and '{name}')"
                raise PFTError(f"dimension '{slug}' is named twice{also}: name each dimension once")
            given[slug] = name
        return ValueSpace(self._dims[s] for s in given)

    def merged(self, other: ValueSpace, names: tuple[str, str] = ("--pairs", "the zoo"),
               fix: str = "drop the dimension from --pairs or match the zoo's definition") -> ValueSpace:
        """This space plus the dimensions of `other` not already here. A dimension both hold must be defined
        alike (one slug cannot stand for two definitions); else the error names where each comes from
        (`names`: this space's source, then `other`'s) and `fix`."""
        for dim in other:
            if dim.slug in self._dims and self._dims[dim.slug] != dim:
                raise PFTError(f"{names[0]} and {names[1]} define dimension '{dim.slug}' differently "
                               f"(other poles or descriptions): {fix}")
        return ValueSpace(self.dimensions + tuple(d for d in other if d.slug not in self._dims))

    def to_json(self) -> list[dict]:
        return [asdict(d) for d in self.dimensions]

    @classmethod
    def from_json(cls, items: list[dict], source: str = "pairs") -> ValueSpace:
        if not isinstance(items, list):
            raise PFTError(f"{source}: the dimensions must be a list of objects with 'slug' and 'poles'")
        return cls(_parse_dimension(item, f"{source}: dimension {i + 1}") for i, item in enumerate(items))


def _key(name: str) -> str:
    return slugify(name)


def _parse_pole(raw: object, where: str) -> Pole:
    if not isinstance(raw, dict):
        raise PFTError(f"{where}: a pole must be an object with 'name' and 'description'")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PFTError(f"{where}: missing pole 'name'")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise PFTError(f"{where}: 'description' must be a string")
    return Pole(name.strip(), _slug(raw, name, where, "pole"), description.strip())


def _parse_dimension(raw: object, where: str) -> Dimension:
    if not isinstance(raw, dict):
        raise PFTError(f"{where}: expected an object with 'slug' and 'poles'")
    poles = raw.get("poles")
    if poles is None and "first" in raw and "second" in raw:
        poles = [raw["first"], raw["second"]]
    if not isinstance(poles, list) or len(poles) != 2:
        raise PFTError(f"{where}: a dimension needs exactly two poles, got {len(poles) if isinstance(poles, list) else 'none'}")
    first, second = (_parse_pole(p, f"{where}, pole {i + 1}") for i, p in enumerate(poles))
    label = raw.get("name") or raw.get("label") or raw.get("slug")
    if not isinstance(label, str) or not label.strip():
        raise PFTError(f"{where}: missing dimension 'name' or 'slug'")
    slug = _slug(raw, label, where, "dimension")
    if first.slug == second.slug:
        raise PFTError(f"{where}: dimension '{slug}' has two poles with the same slug '{first.slug}': give the poles distinct names")
    return Dimension(slug, label.strip(), first, second)


def _slug(raw: dict, name: str, where: str, what: str) -> str:
    """A pole's or dimension's 'slug' as given, else made from its name (which then needs a Latin letter or digit)."""
    _check_slug(raw, where)  # a slug given is used as given, so it must be one ("" is not "no slug")
    slug = raw["slug"] if "slug" in raw else slugify(name)
    if not slug:
        raise PFTError(f"{where}: the name '{name.strip()}' has no Latin letter or digit to make a slug of: give the {what} a 'slug'")
    return slug


# -- pair definition files (docs/pairs.schema.json describes the same rules) -------------
_PAIR_FILE_KEYS = ("dimensions", "$schema")
_DIMENSION_KEYS = ("slug", "name", "poles")
_POLE_KEYS = ("name", "slug", "description")
_HAS_ALNUM = re.compile(r"[^\W_]")  # a letter or digit of any script


def pair_records(raw: object, source: str) -> list[tuple[str, dict]]:
    """(position, dimension record) of a parsed pair definition file, checked field by field.

    The accepted shapes are exactly those of docs/pairs.schema.json: a list of
    dimensions, an object with a `dimensions` list, or a single dimension object.
    Uniqueness and clashes with existing names are checked by `load_pairs`.
    """
    if isinstance(raw, dict) and "dimensions" in raw:
        _only(raw, _PAIR_FILE_KEYS, source, "the file object")
        items = raw["dimensions"]
        if not isinstance(items, list):
            raise PFTError(f"{source}: field 'dimensions' must be a list of dimension objects")
    elif isinstance(raw, dict):
        items = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        raise PFTError(f"{source}: expected a list of dimensions or an object with 'dimensions' (see docs/pairs.schema.json)")
    if not items:
        raise PFTError(f"{source} defines no dimensions: add at least one dimension with two poles")
    records = []
    for i, item in enumerate(items, start=1):
        where = f"{source}: dimension {i}"
        if not isinstance(item, dict):
            raise PFTError(f"{where}: expected an object with 'slug', 'name' and 'poles'")
        if isinstance(item.get("slug"), str):
            where += f" ({item['slug']!r})"
        _only(item, _DIMENSION_KEYS, where, "a dimension")
        _check_slug(item, where)
        _check_name(item, where, "dimension", required="slug" not in item)
        poles = item.get("poles")
        if not isinstance(poles, list) or len(poles) != 2:
            got = len(poles) if isinstance(poles, list) else "none"
            raise PFTError(f"{where}: a dimension needs exactly two poles in 'poles', got {got}")
        for j, pole in enumerate(poles, start=1):
            at = f"{where}, pole {j}"
            if not isinstance(pole, dict):
                raise PFTError(f"{at}: a pole must be an object with 'name' and 'description'")
            _only(pole, _POLE_KEYS, at, "a pole")
            _check_name(pole, at, "pole", required=True)
            _check_slug(pole, at)
            if not isinstance(pole.get("description", ""), str):
                raise PFTError(f"{at}: 'description' must be a string")
        records.append((where, item))
    return records


def _only(raw: dict, allowed: tuple[str, ...], where: str, what: str) -> None:
    extra = [k for k in raw if k not in allowed]
    if extra:
        raise PFTError(f"{where}: unknown field {quote(extra[0])} ({what} has {', '.join(repr(k) for k in allowed)})")


def _check_slug(raw: dict, where: str) -> None:
    if "slug" in raw and not (isinstance(raw["slug"], str) and _SLUG.fullmatch(raw["slug"])):
        raise PFTError(f"{where}: {raw['slug']!r} is not a valid slug: use lower-case letters, digits and single dashes")


def _check_name(raw: dict, where: str, what: str, required: bool) -> None:
    if "name" not in raw:
        if required:
            raise PFTError(f"{where}: missing {what} 'name'" + ("" if what == "pole" else " (or 'slug')"))
        return
    name = raw["name"]
    if not isinstance(name, str) or not _HAS_ALNUM.search(name):
        raise PFTError(f"{where}: {what} 'name' must be a string with at least one letter or digit")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise PFTError(f"{where}: {what} 'name' holds a control character or line break: write it on one line")


def _names_of(dim: Dimension) -> list[tuple[str, str, str]]:
    """(lookup key, owner, which part) for every slug and name of a dimension; a key must point at one thing
    (a slug and a name of that same thing may share it). A name in another script has no key."""
    keys = [(dim.slug, "", ""), (_key(dim.label), "", "")]
    for j, pole in enumerate(dim.poles, start=1):
        keys += [(pole.slug, f"pole {j}", f", pole {j}"), (_key(pole.name), f"pole {j}", f", pole {j}")]
    return [k for k in keys if k[0]]


def data_space(zoo: ValueSpace, extra: ValueSpace | None = None) -> ValueSpace:
    """The dimensions data read for a zoo may name: the zoo's as the zoo defines them (a built-in dimension worded
    otherwise when the zoo was trained keeps the zoo's wording), the other built-in ones, and the dimensions `extra`
    (a --pairs file's space, `load_pairs`) adds to the built-in ones, which must define a dimension the zoo has alike."""
    builtin = ValueSpace.builtin()
    space = ValueSpace(list(zoo) + [d for d in builtin if not zoo.has_dimension(d.slug)])
    added = [d for d in extra or () if d not in builtin.dimensions]
    return space.merged(ValueSpace(added), ("the zoo", "--pairs"), "drop the dimension from --pairs or match the zoo's "
                        "definition (pft-adapters info ZOO --json shows it)") if added else space


def load_pairs(path: str | Path, base: ValueSpace | None = None) -> ValueSpace:
    """Read a pair definition file and return `base` (built-ins by default) extended by it.

    Every dimension and pole slug and name must be unique in the file, and none may
    clash with a dimension or pole of `base`; errors name the dimension and pole.
    """
    path = Path(path)
    raw = read_json(path, "pair definition file", "fix the file or see docs/pairs.schema.json")
    base = base if base is not None else ValueSpace.builtin()
    added: list[Dimension] = []
    owners: dict[str, tuple[tuple[int, str], str]] = {}  # lookup key -> ((dimension number, owner slug), where)
    for number, (where, item) in enumerate(pair_records(raw, str(path))):
        dim = _parse_dimension(item, where)
        for key, owner, part in _names_of(dim):
            if base.has_dimension(key) or base.has_pole(key):
                what = f"dimension '{base.dimension(key).slug}'" if base.has_dimension(key) else f"pole '{base.pole(key).slug}'"
                raise PFTError(f"{where}{part}: '{key}' clashes with the existing {what}: choose another slug or name")
            if key in owners and owners[key][0] != (number, owner):
                raise PFTError(f"{where}{part}: '{key}' is used twice (also in {owners[key][1]}): every dimension and pole slug and name must be unique")
            owners.setdefault(key, ((number, owner), where.removeprefix(f"{path}: ") + part))
        added.append(dim)
    return ValueSpace(base.dimensions + tuple(added))
