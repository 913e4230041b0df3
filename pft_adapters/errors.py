"""One exception type for mistakes a user can fix, so the CLI can print one line instead of a traceback."""

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TypeVar

T = TypeVar("T")


_UNPRINTABLE = ("Cc", "Zl", "Zp", "Cs")  # control characters, line and paragraph separators, lone surrogates


def printable(text: str) -> str:
    """`text` with line breaks, other control characters and lone surrogates written as escapes (\\n, \\u2028,
    \\ud800), so that a message quoting user input stays on its line and can be printed whatever it quotes (other
    characters, a no-break space or an emoji sequence, are kept)."""
    if text.isprintable():
        return text
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNPRINTABLE else c
                   for c in text)


class PFTError(Exception):
    """A user-facing error: one line that names the problem and how to fix it; `details` (a file's bad
    records) follow it, one per line. User input quoted in either cannot break a line."""

    def __init__(self, message: str, details: Sequence[str] = ()):
        self.message, self.details = message, tuple(details)
        super().__init__("\n  ".join(printable(line) for line in (message, *details)))

    def __reduce__(self):  # pickled (as by a worker process) with its lines apart, not as one escaped line
        return type(self), (self.message, self.details)


def at_least_one(value: int, what: str) -> int:
    """A count that must be a positive integer (a batch size, a number of new tokens)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PFTError(f"{what} must be a positive integer, got {value!r}")
    return value


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters with an ellipsis, to quote user input in a message or a listing."""
    return text if len(text) <= width else text[: width - 1] + "…"


def quote(value: object, width: int = 60) -> str:
    """A user's value quoted in a message: in quotes, shortened, on one line."""
    return "'" + shorten(printable(str(value)), width) + "'"


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # no two parts match the same text


def decimal(text: str) -> float | None:
    """The number that `text` writes in plain ASCII decimals ('0.5', '-1', '2e3'), or None: float() also reads
    '1_000', other scripts' digits, 'nan' and 'inf', which nobody types as a number here. Linear in the length."""
    text = text.strip()
    return float(text) if _DECIMAL.fullmatch(text) else None


def read_text(path, what: str) -> str:
    """A user's file as UTF-8 text; a missing, unreadable or non-UTF-8 file becomes one PFTError line."""
    from pathlib import Path

    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as err:
        raise PFTError(f"{what} {path} is not UTF-8 text (byte {err.start}): save it as UTF-8") from None
    except IsADirectoryError:
        raise PFTError(f"cannot read {what} {path}: it is a folder; give a file") from None
    except OSError as err:
        raise PFTError(f"cannot read {what} {path}: {'not found' if isinstance(err, FileNotFoundError) else err.strerror or err}; check the path") from None
    except ValueError:  # a NUL byte in the path, which no file name holds
        raise PFTError(f"cannot read {what} {quote(path)}: a path cannot hold a NUL byte; check the path") from None


class JSONError(ValueError):
    """Text that is not usable JSON: malformed, a key given twice, a number too long, nesting too deep."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise JSONError(f"key '{key}' is given twice")
        obj[key] = value
    return obj


def _no_constant(name: str) -> NoReturn:
    raise JSONError(f"{name} is not a JSON number")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: object) -> str | None:
    """A string in `value` (keys too) holding half of a UTF-16 surrogate pair, which JSON escapes can
    spell ("\\ud800") but no text can hold: it would fail the first time it is written or printed."""
    stack = [value]
    while stack:  # a loop, not recursion: nesting as deep as the parser takes
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return None


def loads(text: str, allow_nan: bool = False) -> object:
    """`json.loads` that refuses a key given twice in one object (plain JSON keeps the last one silently),
    NaN, Infinity and -Infinity (Python's extension, which no other JSON reader takes) unless `allow_nan`,
    and a string with an unpaired surrogate escape. Where the text is bad, the message says where."""
    import json

    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=None if allow_nan else _no_constant)
    except JSONError:
        raise
    except json.JSONDecodeError as err:
        at = f"line {err.lineno}, column {err.colno}" if "\n" in text else f"column {err.colno}"
        raise JSONError(f"{err.msg.removesuffix(' at')} at {at}") from None
    except RecursionError:
        raise JSONError("nesting too deep") from None
    except ValueError:  # Python's guard against integers of thousands of digits
        raise JSONError("a number has more digits than can be read (over 4300)") from None
    if "\\u" in text and (found := _lone_surrogate(value)) is not None:
        raise JSONError(f"the string {quote(found)} holds an unpaired surrogate escape (\\ud800-\\udfff), not a character")
    return value


def read_json(path, what: str, fix: str) -> object:
    """Parse a user's JSON file; a missing or malformed file becomes one PFTError line."""
    try:
        return loads(read_text(path, what))
    except JSONError as err:
        raise PFTError(f"{what} {path} is not valid JSON ({err}): {fix}") from None


def one_object_over_lines(text: str) -> bool:
    """Whether the text is one pretty-printed JSON object: its first line is no JSON, but the whole is an object
    (read as JSONL, each of its lines would be reported as bad JSON)."""
    text = text.lstrip()
    if not text.startswith("{"):
        return False
    try:
        loads(text.split("\n", 1)[0])
        return False
    except JSONError:
        pass
    try:
        return isinstance(loads(text), dict)
    except JSONError:
        return False


def jsonl_records(text, source: str, fix: str, errors: list[str] | None = None):
    """(line number, "SOURCE, line N", parsed value) for each non-blank JSONL line; bad JSON names its line.

    `text` is the file's text or its lines. Text is split at '\n' only, JSONL's one line break:
    `str.splitlines` also breaks at U+2028, U+0085 and the like, which JSON strings hold raw.
    With an `errors` list, a line of bad JSON is reported there and skipped instead of stopping.
    """
    if isinstance(text, str) and one_object_over_lines(text):  # one line, not one per line of the object
        raise PFTError(f"{source} holds one JSON object over several lines, where JSONL takes one per line: {fix}")
    lines = text.split("\n") if isinstance(text, str) else text
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, str):  # lines handed in from Python
            raise PFTError(f"{source}, line {number} is a {type(line).__name__}, not text: pass JSONL text or its lines "
                           "(json.dumps writes a record as one)")
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            value = loads(line)
        except JSONError as err:
            message = f"{where}: not valid JSON ({err}): {fix}"
            if errors is None:
                raise PFTError(message) from None
            errors.append(message)
            continue
        yield number, where, value


MAX_REPORTED = 10  # bad records listed in one error before "... and N more"


def parse_every(items: Iterable[tuple], parse: Callable[..., T], errors: list[str], source: str) -> list[T]:
    """`parse(*item)` for every item a reader yields; what `parse` refuses joins what the reader put
    in `errors` (bad JSON, as it reads), and all of it is reported at once (`raise_bad_records`)."""
    out = []
    for item in items:
        try:
            out.append(parse(*item))
        except PFTError as err:
            errors.append(str(err))
    raise_bad_records(errors, source)
    return out


def raise_bad_records(errors: list[str], source: str) -> None:
    """One PFTError for every bad record of a file, if there are any: a lone one as its own line,
    several counted and listed one per line, so that a file is fixed in one pass."""
    if len(errors) == 1:
        raise PFTError(errors[0])
    if errors:
        more = [f"... and {len(errors) - MAX_REPORTED} more"] if len(errors) > MAX_REPORTED else []
        raise PFTError(f"{len(errors)} bad record(s) in {source}:", errors[:MAX_REPORTED] + more)
