"""One exception type for mistakes a user can fix, so the CLI can print one line instead of a traceback."""

from collections.abc import Callable, Iterable
from typing import NoReturn, TypeVar

T = TypeVar("T")


class PFTError(Exception):
    """A user-facing error: the message names the problem and how to fix it."""


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters with an ellipsis, to quote user input in a message or a listing."""
    return text if len(text) <= width else text[: width - 1] + "…"


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


def loads(text: str, allow_nan: bool = False) -> object:
    """`json.loads` that refuses a key given twice in one object (plain JSON keeps the last one silently), and
    NaN, Infinity and -Infinity (Python's extension, which no other JSON reader takes) unless `allow_nan`."""
    import json

    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=None if allow_nan else _no_constant)
    except JSONError:
        raise
    except json.JSONDecodeError as err:
        raise JSONError(err.msg if err.msg else str(err)) from None
    except (ValueError, RecursionError) as err:  # an integer of thousands of digits, nesting thousands deep
        raise JSONError("nesting too deep" if isinstance(err, RecursionError) else str(err)) from None


def read_json(path, what: str, fix: str) -> object:
    """Parse a user's JSON file; a missing or malformed file becomes one PFTError line."""
    try:
        return loads(read_text(path, what))
    except JSONError as err:
        raise PFTError(f"{what} {path} is not valid JSON ({err}): {fix}") from None


def jsonl_records(text, source: str, fix: str, errors: list[str] | None = None):
    """(line number, "SOURCE, line N", parsed value) for each non-blank JSONL line; bad JSON names its line.

    `text` is the file's text or its lines. Text is split at '\n' only, JSONL's one line break:
    `str.splitlines` also breaks at U+2028, U+0085 and the like, which JSON strings hold raw.
    With an `errors` list, a line of bad JSON is reported there and skipped instead of stopping.
    """
    lines = text.split("\n") if isinstance(text, str) else text
    for number, line in enumerate(lines, start=1):
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
        more = f"\n  ... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise PFTError(f"{len(errors)} bad record(s) in {source}:\n  " + "\n  ".join(errors[:MAX_REPORTED]) + more)
