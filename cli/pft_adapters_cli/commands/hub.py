"""Verbs that share zoos: `push`, `pull`, `list`, `assemble` (see docs/share.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JSON_OPTION, echo_json


def push(
    zoo: Path = typer.Argument(..., help="Zoo folder to publish (made by `train` or `assemble`)."),
    repo_id: str = typer.Argument(..., help="Hub repo to publish to, e.g. org/qwen-values-zoo (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private (an existing repo keeps its visibility)."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to commit to (created from main if missing)."),
    message: str | None = typer.Option(None, "--message", "-m", help="Commit message."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Publish a zoo to the Hugging Face Hub in one commit, with a generated model card.

    Needs a token with write access: set HF_TOKEN or run `hf auth login`.

      pft-adapters push ./zoo org/qwen-values-zoo
      pft-adapters push ./zoo org/qwen-values-zoo --revision exp-margin -m "margin loss"
    """
    from pft_adapters.hub import push as publish

    url = publish(zoo, repo_id, private=private, revision=revision, message=message)
    echo_json({"zoo": str(zoo), "repo_id": repo_id, "commit_url": url}) if json_out else typer.echo(f"pushed {zoo} -> {url}")


def pull(
    name: str = typer.Argument(..., help="org/name\\[:pole,pole]\\[@revision], or a local zoo folder."),
    to: Path | None = typer.Option(None, "--to", help="Folder to put the zoo in (default: stay in the Hugging Face cache)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --to folder."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Download a zoo, or only some of its poles, checking every file against the manifest's sha256.

    Only the named poles (plus manifest, head and model card) are downloaded. With HF_HUB_OFFLINE=1 the zoo is served from the cache.

      pft-adapters pull org/qwen-values-zoo
      pft-adapters pull org/qwen-values-zoo:risk-averse,delayed-gratification@v1.0 --to ./z
    """
    from pft_adapters.hub import fetch

    got = fetch(name, to=to, overwrite=overwrite)
    if to is None and not got.complete and got.commit is not None:  # the Hub cache folder lacks the other poles' files
        typer.echo(f"only some poles are in the cache folder: load them by this name ('{name}'), or pull with "
                   "--to DIR for a folder that is a zoo of its own", err=True)
    if json_out:
        echo_json({"zoo": name, "source": got.source, "commit": got.commit, "path": str(got.path),
                   "poles": got.poles, "files": got.files})
        return
    at = f"@{got.commit[:8]}" if got.commit else ""
    typer.echo(f"pulled {got.source}{at} ({len(got.poles)} poles: {', '.join(got.poles)}) -> {got.path}")


def list_zoos(
    author: str | None = typer.Option(None, "--author", help="Only zoos of this user or organisation."),
    search: str | None = typer.Option(None, "--search", help="Only zoos whose id contains this text."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List zoos on the Hub (model repos tagged pft-adapters).

      pft-adapters list --author org
      pft-adapters list --search values --json
    """
    from pft_adapters.hub import list_zoos as find

    zoos = find(author=author, search=search)
    if json_out:
        echo_json(zoos)
        return
    if not zoos:
        typer.echo("no zoos found")
    for z in zoos:
        flags = " (private)" if z["private"] else ""
        typer.echo(f"{z['id']}{flags}  base {z['base_model'] or '?'}  updated {z['last_modified'] or '?'}")


def assemble(
    names: list[str] = typer.Argument(..., help="Zoos to combine: org/name\\[:pole,pole]\\[@revision] or folders."),
    out: Path = typer.Option(..., "--out", help="Folder to write the combined zoo to (written atomically)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Combine poles of several zoos trained on the same base model into one zoo.

    A base-model mismatch is refused. The first zoo's mixing head is kept only if it covers every dimension of the result; otherwise the result has no head.

      pft-adapters assemble org/values-zoo org/extra-zoo:risk-averse --out ./combined
    """
    from pft_adapters.atomic import check_target
    from pft_adapters.hub import assemble as combine, parse_zoo_name

    check_target(out, overwrite, reads=[parse_zoo_name(n)[0] for n in names])  # before any zoo is pulled; "dir:pole" reads dir
    zoo = combine(names)
    zoo.save_pretrained(out, overwrite=overwrite)
    summary = {"zoo": str(out), "base_model": zoo.base.id, "poles": zoo.pole_slugs, "head": zoo.head is not None}
    echo_json(summary) if json_out else typer.echo(
        f"assembled {len(zoo.pole_slugs)} poles on {zoo.base.id} -> {out}" + ("" if zoo.head else " (no mixing head)")
    )


def register(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
    app.command("list")(list_zoos)
    app.command("assemble")(assemble)
