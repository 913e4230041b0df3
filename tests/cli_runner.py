"""The console entry point run in-process, as the CLI tests use it."""

from __future__ import annotations

import pytest

from pft_adapters_cli.app import main


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run `pft-adapters ARGS...`; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = exit_info.value.code  # None exits 0, a message exits 1, as the interpreter does
    return (0 if code is None else code if isinstance(code, int) else 1), out, err


def user_error(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """Run a command that must fail with one `error:` line, exit code 1 and no traceback; returns that line."""
    code, _, err = run(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
