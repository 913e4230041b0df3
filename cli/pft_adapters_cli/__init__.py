"""The `pft-adapters` command line (Typer)."""
