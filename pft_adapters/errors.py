"""One exception type for mistakes a user can fix, so the CLI can print one line instead of a traceback."""


class PFTError(Exception):
    """A user-facing error: the message names the problem and how to fix it."""
