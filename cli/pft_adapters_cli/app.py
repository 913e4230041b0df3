"""The `pft-adapters` Typer app: one verb per job; user errors print one line, not a traceback."""

from __future__ import annotations

import sys

import typer

from pft_adapters import __version__
from pft_adapters.errors import PFTError  # neither imports torch: `pft_adapters` imports it on first use

from .commands import build, evaluate, hub, infer, mix, pairs, rerank

app = typer.Typer(
    name="pft-adapters",
    help="Preference-paired LoRA adapter zoos: one adapter per value pole, mixed by a preference vector.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)

for module in (build, hub, mix, rerank, pairs, evaluate, infer):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pft-adapters {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit.")) -> None:
    """Preference-paired LoRA adapter zoos."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app, turning user errors into one red line and exit code 1."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-file loading bars are noise for zoos this size
        app(args=argv, prog_name="pft-adapters")  # Typer itself exits 130 on Ctrl-C in a command
    except PFTError as err:
        typer.secho(f"error: {err}", err=True, fg="red")
        sys.exit(1)
    except KeyboardInterrupt:  # while starting up, before Typer runs: no traceback of the import it cut short
        sys.exit(130)
