"""One exception type for mistakes a user can fix, so the CLI can print one line instead of a traceback."""


class PFTError(Exception):
    """A user-facing error: the message names the problem and how to fix it."""


def read_json(path, what: str, fix: str) -> object:
    """Parse a user's JSON file; a missing or malformed file becomes one PFTError line."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PFTError(f"{what} {path} not found: check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PFTError(f"{what} {path} is not valid JSON ({err}): {fix}") from None
