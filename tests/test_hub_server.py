"""The real, unpatched ``huggingface_hub`` client against the in-memory Hub of ``tests/hub_server.py``.

These tests pin down the contract the rest of the suite relies on: uploads, metadata, downloads (pinned, branch,
filtered), listings and the Hub's error semantics all work over real HTTP with only ``HF_ENDPOINT``-style
configuration (no ``endpoint=`` / ``token=`` arguments in the calls below unless a test is about them).
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import HfApi, hf_hub_download, list_models, snapshot_download, upload_folder
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from hub_server import OTHER_TOKEN, READ_TOKEN, HubServer, git_blob_sha, parse_front_matter

USER = "pft-tester"
README = """---
library_name: pft-adapters
tags:
- pft-adapters
- lora
license: apache-2.0
---
# Adapter zoo
"""


def _zoo_folder(root: Path, scale: bytes = b"1") -> Path:
    """A tiny adapter-zoo-like folder: README with metadata, a manifest and two binary "adapters"."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(README)
    (root / "zoo.json").write_text('{"poles": ["concise", "verbose"]}')
    for pole in ("concise", "verbose"):
        (root / pole).mkdir(exist_ok=True)
        (root / pole / "adapter_config.json").write_text(f'{{"r": 4, "pole": "{pole}"}}')
        (root / pole / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 8 + scale)
    return root


def _resolve_gets(server: HubServer) -> int:
    return server.count("GET", "/resolve/")


def test_fixture_configures_the_already_imported_client(hub: HubServer) -> None:
    assert huggingface_hub.constants.ENDPOINT == hub.url
    assert HfApi().endpoint == hub.url
    assert HfApi().whoami()["name"] == USER


def test_create_repo_and_exist_ok(hub: HubServer) -> None:
    api = HfApi()
    url = api.create_repo("zoo")  # namespace defaults to the token's user
    assert url.repo_id == f"{USER}/zoo"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(f"{USER}/zoo")
    assert err.value.response.status_code == 409
    assert api.create_repo(f"{USER}/zoo", exist_ok=True).repo_id == f"{USER}/zoo"
    assert api.create_repo("pft-org/shared").repo_id == "pft-org/shared"  # organisation namespace
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("not-my-org/zoo")
    assert err.value.response.status_code == 403


def test_upload_folder_model_info_and_download(hub: HubServer, tmp_path: Path) -> None:
    folder = _zoo_folder(tmp_path / "zoo")
    HfApi().create_repo("zoo")
    info = upload_folder(folder_path=folder, repo_id=f"{USER}/zoo", commit_message="add zoo")
    assert hub.count("POST", "/commit/main") == 1

    model = HfApi().model_info(f"{USER}/zoo")
    assert model.sha == info.oid
    assert model.library_name == "pft-adapters"
    assert {"pft-adapters", "lora"} <= set(model.tags or [])
    assert model.card_data is not None and model.card_data.license == "apache-2.0"
    assert sorted(s.rfilename for s in model.siblings or []) == sorted(
        [".gitattributes", "README.md", "zoo.json"]
        + [f"{p}/{f}" for p in ("concise", "verbose") for f in ("adapter_config.json", "adapter_model.safetensors")]
    )

    path = hf_hub_download(f"{USER}/zoo", "verbose/adapter_model.safetensors")
    assert Path(path).read_bytes() == (folder / "verbose" / "adapter_model.safetensors").read_bytes()
    assert Path(path).parent.parent.name == info.oid  # cached under snapshots/<commit sha>/

    # Uploading identical content again is a no-op: the client compares the preupload oids (git blob shas).
    upload_folder(folder_path=folder, repo_id=f"{USER}/zoo")
    assert hub.count("POST", "/commit/main") == 1
    assert HfApi().model_info(f"{USER}/zoo").sha == info.oid


def test_snapshot_download_allow_patterns_fetches_only_matches(hub: HubServer, tmp_path: Path) -> None:
    HfApi().create_repo("zoo")
    upload_folder(folder_path=_zoo_folder(tmp_path / "zoo"), repo_id=f"{USER}/zoo")
    before = _resolve_gets(hub)
    local = Path(snapshot_download(f"{USER}/zoo", allow_patterns=["*.json"]))
    got = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert got == ["concise/adapter_config.json", "verbose/adapter_config.json", "zoo.json"]
    assert _resolve_gets(hub) - before == 3
    # A second identical call is served from the cache: no file is downloaded again.
    snapshot_download(f"{USER}/zoo", allow_patterns=["*.json"])
    assert _resolve_gets(hub) - before == 3


def test_download_pinned_to_an_earlier_commit(hub: HubServer, tmp_path: Path) -> None:
    HfApi().create_repo("zoo")
    first = upload_folder(folder_path=_zoo_folder(tmp_path / "v1", b"1"), repo_id=f"{USER}/zoo").oid
    second = upload_folder(folder_path=_zoo_folder(tmp_path / "v2", b"2"), repo_id=f"{USER}/zoo").oid
    assert first != second
    name = "concise/adapter_model.safetensors"
    assert Path(hf_hub_download(f"{USER}/zoo", name, revision=first)).read_bytes().endswith(b"1")
    assert Path(hf_hub_download(f"{USER}/zoo", name)).read_bytes().endswith(b"2")
    snap = Path(snapshot_download(f"{USER}/zoo", revision=first))
    assert snap.name == first and (snap / name).read_bytes().endswith(b"1")
    assert [c.commit_id for c in HfApi().list_repo_commits(f"{USER}/zoo")][:2] == [second, first]


def test_upload_to_a_new_branch(hub: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo("zoo")
    main_sha = upload_folder(folder_path=_zoo_folder(tmp_path / "zoo"), repo_id=f"{USER}/zoo").oid
    api.create_branch(f"{USER}/zoo", branch="exp/new-pole")
    api.create_branch(f"{USER}/zoo", branch="exp/new-pole", exist_ok=True)
    api.upload_file(path_or_fileobj=b"extra", path_in_repo="extra.txt", repo_id=f"{USER}/zoo", revision="exp/new-pole")

    assert Path(hf_hub_download(f"{USER}/zoo", "extra.txt", revision="exp/new-pole")).read_bytes() == b"extra"
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(f"{USER}/zoo", "extra.txt")
    assert api.model_info(f"{USER}/zoo").sha == main_sha
    refs = {b.name: b.target_commit for b in api.list_repo_refs(f"{USER}/zoo").branches}
    assert set(refs) == {"main", "exp/new-pole"} and refs["main"] == main_sha

    api.create_tag(f"{USER}/zoo", tag="v1", revision="exp/new-pole")
    assert Path(hf_hub_download(f"{USER}/zoo", "extra.txt", revision="v1")).read_bytes() == b"extra"


def test_list_models_by_author_and_tag(hub: HubServer, tmp_path: Path) -> None:
    HfApi().create_repo("zoo")
    upload_folder(folder_path=_zoo_folder(tmp_path / "zoo"), repo_id=f"{USER}/zoo")
    hub.put_file(f"{USER}/untagged", "README.md", b"# no metadata\n")
    hub.put_file("someone-else/zoo2", "README.md", README.encode())
    hub.put_file(f"{USER}/secret-zoo", "README.md", README.encode(), private=True)

    assert [m.id for m in list_models(author=USER, filter="pft-adapters")] == [f"{USER}/secret-zoo", f"{USER}/zoo"]
    assert {m.id for m in list_models(filter="pft-adapters", token=False)} == {f"{USER}/zoo", "someone-else/zoo2"}
    assert [m.id for m in list_models(search="untag")] == [f"{USER}/untagged"]
    found = next(iter(list_models(author=USER, filter=["pft-adapters", "lora"], search="zoo", cardData=True)))
    assert found.card_data is not None and found.card_data.library_name == "pft-adapters"


def test_write_without_token_is_401(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.put_file(f"{USER}/zoo", "a.txt", b"a")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HfHubHTTPError) as err:
        HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=f"{USER}/zoo")
    assert err.value.response.status_code == 401
    assert hf_hub_download(f"{USER}/zoo", "a.txt")  # public reads still work anonymously


def test_read_only_or_foreign_token_is_403(hub: HubServer) -> None:
    hub.put_file(f"{USER}/zoo", "a.txt", b"a")
    for token in (READ_TOKEN, OTHER_TOKEN):
        with pytest.raises(HfHubHTTPError) as err:
            HfApi(token=token).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=f"{USER}/zoo")
        assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=READ_TOKEN).create_repo("another")
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_unknown").model_info(f"{USER}/zoo")
    assert err.value.response.status_code == 401
    assert set(hub.repos[f"{USER}/zoo"].resolve("main").files) == {".gitattributes", "a.txt"}  # nothing written


def test_missing_repo_revision_and_entry(hub: HubServer) -> None:
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info(f"{USER}/nope")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{USER}/nope", "README.md")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(f"{USER}/nope")
    hub.put_file(f"{USER}/zoo", "a.txt", b"a")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(f"{USER}/zoo", "a.txt", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(f"{USER}/zoo", "b.txt")


def test_private_repo_needs_a_token(hub: HubServer) -> None:
    hub.put_file(f"{USER}/private-zoo", "a.txt", b"secret", private=True)
    assert HfApi().model_info(f"{USER}/private-zoo").private is True
    assert Path(hf_hub_download(f"{USER}/private-zoo", "a.txt")).read_bytes() == b"secret"
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(f"{USER}/private-zoo")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=OTHER_TOKEN).model_info(f"{USER}/private-zoo")


def test_tamper_changes_bytes_but_not_commit(hub: HubServer) -> None:
    sha = hub.put_file(f"{USER}/zoo", "w.bin", b"good weights")
    hub.tamper(f"{USER}/zoo", "w.bin", b"evil weights")
    assert HfApi().model_info(f"{USER}/zoo").sha == sha
    path = Path(hf_hub_download(f"{USER}/zoo", "w.bin"))
    assert path.read_bytes() == b"evil weights" and path.parent.name == sha


def test_offline_mode_reuses_the_cache(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.put_file(f"{USER}/zoo", "a.txt", b"cached")
    online = hf_hub_download(f"{USER}/zoo", "a.txt")
    seen = len(hub.requests)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert hf_hub_download(f"{USER}/zoo", "a.txt") == online
    assert len(hub.requests) == seen


def test_server_helpers() -> None:
    assert git_blob_sha(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # `git hash-object /dev/null`
    assert parse_front_matter("---\na: 'x'\nb: [c, d]\ne:\n  - f\n---\nbody") == {"a": "x", "b": ["c", "d"], "e": ["f"]}
    assert parse_front_matter("no front matter") == {}
    with HubServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
    with pytest.raises(RuntimeError):
        _ = server.url
