"""Publishing and pulling zoos with the real huggingface_hub client against the in-process Hub of hub_server.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
import re
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi
from transformers import LlamaConfig, LlamaForCausalLM

from cli_runner import run, user_error
from hub_server import OTHER_TOKEN, READ_TOKEN, HubServer, Response
from pft_adapters import PFTError, ValueSpace, Zoo
from pft_adapters.card import model_card
from pft_adapters.head import MixingHead
from pft_adapters.hub import assemble, fetch, list_zoos, parse_zoo_name, pull, push
from pft_adapters.layers import LoraSpec, add_pole_adapters
from pft_adapters.zoo import MANIFEST, BaseRef, fingerprint, read_manifest, sha256_file

USER = "pft-tester"
SPEC = LoraSpec(r=2, alpha=4.0, target_modules=("q_proj", "v_proj"))


def make_zoo(dims: list[str], seed: int = 0, base_seed: int = 0, base_id: str = "test/tiny-llama") -> Zoo:
    """A real zoo (random LoRA factors, a head) on a tiny Llama; `base_seed` picks a different base."""
    torch.manual_seed(base_seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).eval()
    space = ValueSpace.builtin().select(dims)
    base = BaseRef(id=base_id, revision=None, fingerprint=fingerprint(model))
    torch.manual_seed(seed)
    adapters = add_pole_adapters(model, SPEC, space.pole_slugs)
    with torch.no_grad():
        for layer in adapters.layers.values():
            layer.lora_B.normal_(0, 0.1)
    head = MixingHead(32, space.pole_slugs, [d.slug for d in space])
    return Zoo(space=space, spec=SPEC, base=base, poles={p: adapters.pole_state_dict(p) for p in space.pole_slugs},
               head=head, training={"epochs": 1, "seed": seed})


@pytest.fixture
def local_zoo(tmp_path: Path) -> Path:
    return make_zoo(["risk", "time"]).save_pretrained(tmp_path / "zoo")


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def resolve_paths(server: HubServer, since: int = 0) -> list[str]:
    return [p for m, p in server.requests[since:] if m == "GET" and "/resolve/" in p]


# ------------------------------------------------------------------------------------------------ names


def test_parse_zoo_name(tmp_path: Path) -> None:
    assert parse_zoo_name("org/zoo") == ("org/zoo", None, None)
    assert parse_zoo_name("org/zoo:risk-averse, delayed-gratification@v1.0") == (
        "org/zoo", ["risk-averse", "delayed-gratification"], "v1.0")
    assert parse_zoo_name("org/zoo@exp/branch") == ("org/zoo", None, "exp/branch")
    odd = tmp_path / "a:b@c"
    odd.mkdir()
    assert parse_zoo_name(str(odd)) == (str(odd), None, None)  # an existing folder is always local
    assert parse_zoo_name(f"{tmp_path}:risk-averse") == (str(tmp_path), ["risk-averse"], None)
    assert parse_zoo_name(f"{odd}:risk-averse,risk-taking") == (str(odd), ["risk-averse", "risk-taking"], None)
    for bad in ("./no-such-folder", "org/zoo:", "org/zoo@", "org/zoo@v1:risk-averse", "zoo", "a/b/c"):
        with pytest.raises(PFTError, match="org/name"):
            parse_zoo_name(bad)



def test_card_texts_are_never_run_as_a_template(local_zoo: Path) -> None:
    """A zoo from the Hub is untrusted: its descriptions stay text, whatever template syntax they hold."""
    manifest = read_manifest(local_zoo)
    hostile = "Bold {{ cycler.__init__.__globals__.os.system('exit 3') }} {% if 1 %}x{% endif %} {#1 ranked} a|b\nc"
    manifest["dimensions"][0]["first"]["description"] = hostile
    card = huggingface_hub.ModelCard(model_card(manifest, f"{USER}/z"))
    data = card.data.to_dict()
    assert data["library_name"] == "pft-adapters" and data["base_model"] == "test/tiny-llama"
    row = next(line for line in card.text.splitlines() if line.startswith("| `risk` |"))
    assert "Bold {{ cycler.__init__.__globals__.os.system('exit 3') }} {% if 1 %}x{% endif %} {#1 ranked} a\\|b c" in row
    assert len(re.split(r"(?<!\\)\|", row)) == 7  # five cells: the description's '|' is escaped

# ------------------------------------------------------------------------------------------------ push / pull


def test_push_then_pull_is_byte_identical(hub: HubServer, local_zoo: Path, tmp_path: Path) -> None:
    url = push(local_zoo, f"{USER}/values-zoo", message="first zoo")
    assert f"{USER}/values-zoo" in url and hub.count("POST", "/commit/main") == 1
    info = HfApi().model_info(f"{USER}/values-zoo")
    assert info.library_name == "pft-adapters" and "pft-adapters" in (info.tags or [])
    assert info.card_data is not None and info.card_data.base_model == "test/tiny-llama"

    got = pull(f"{USER}/values-zoo", to=tmp_path / "z")
    pushed, pulled = files_of(local_zoo), files_of(got)
    card = pulled.pop("README.md").decode()
    assert card == model_card(read_manifest(local_zoo), f"{USER}/values-zoo")  # card regenerated with the repo id
    assert f'Zoo.from_pretrained("{USER}/values-zoo")' in card and "| `risk` |" in card
    pushed.pop("README.md")
    assert pulled == pushed

    cached = pull(f"{USER}/values-zoo")  # no `to`: the snapshot folder of the HF cache
    assert cached.name == info.sha and (cached / MANIFEST).read_bytes() == pushed[MANIFEST]
    zoo, original = Zoo.from_pretrained(f"{USER}/values-zoo"), Zoo.load_folder(local_zoo)
    assert zoo.pole_slugs == original.pole_slugs and zoo.head is not None and zoo.base == original.base
    assert all(torch.equal(t, original.poles[p][k]) for p in zoo.poles for k, t in zoo.poles[p].items())


def test_second_push_and_pinned_pull(hub: HubServer, local_zoo: Path, tmp_path: Path) -> None:
    repo = f"{USER}/values-zoo"
    push(local_zoo, repo)
    first = HfApi().model_info(repo).sha
    make_zoo(["risk", "time"], seed=1).push_to_hub(repo, message="retrained")
    assert HfApi().model_info(repo).sha != first

    old = Zoo.from_pretrained(repo, revision=first)
    new = Zoo.from_pretrained(repo)
    key = next(iter(old.poles["risk-taking"]))
    assert torch.equal(old.poles["risk-taking"][key], Zoo.load_folder(local_zoo).poles["risk-taking"][key])
    assert not torch.equal(old.poles["risk-taking"][key], new.poles["risk-taking"][key])
    pinned = pull(f"{repo}@{first}", to=tmp_path / "old")
    assert (pinned / MANIFEST).read_bytes() == (local_zoo / MANIFEST).read_bytes()


def test_push_to_a_branch_and_private(hub: HubServer, local_zoo: Path) -> None:
    push(local_zoo, f"{USER}/values-zoo", private=True, revision="exp-margin")
    assert HfApi().model_info(f"{USER}/values-zoo").private is True
    assert {b.name for b in HfApi().list_repo_refs(f"{USER}/values-zoo").branches} == {"main", "exp-margin"}
    with pytest.raises(PFTError, match=f"has no {MANIFEST}: it is not a pft-adapters zoo"):  # main holds only .gitattributes
        pull(f"{USER}/values-zoo")
    assert Zoo.from_pretrained(f"{USER}/values-zoo@exp-margin").pole_slugs


def test_pull_one_pole_downloads_only_its_files(hub: HubServer, local_zoo: Path, tmp_path: Path) -> None:
    push(local_zoo, f"{USER}/values-zoo")
    since = len(hub.requests)
    got = fetch(f"{USER}/values-zoo:risk-averse", to=tmp_path / "z")
    fetched = resolve_paths(hub, since)
    assert sorted(p.split("/resolve/")[1].split("/", 1)[1] for p in fetched) == sorted([
        MANIFEST, "README.md", "head/config.json", "head/model.safetensors",
        "poles/risk-averse/adapter_config.json", "poles/risk-averse/adapter_model.safetensors"])
    assert got.poles == ["risk-averse"] and "poles/risk-taking/adapter_config.json" not in got.files
    # The folder is a complete zoo of its own: its manifest lists only what was pulled.
    zoo = Zoo.from_pretrained(tmp_path / "z")
    assert zoo.pole_slugs == ["risk-averse"] and read_manifest(tmp_path / "z")["poles"] == ["risk-averse"]
    assert Zoo.from_pretrained(f"{USER}/values-zoo", poles=["Risk-averse"]).pole_slugs == ["risk-averse"]
    with pytest.raises(PFTError, match="unknown pole 'frugal'"):
        pull(f"{USER}/values-zoo:frugal")


def test_tampered_file_is_refused_and_nothing_is_left(hub: HubServer, local_zoo: Path, tmp_path: Path) -> None:
    push(local_zoo, f"{USER}/values-zoo")
    hub.tamper(f"{USER}/values-zoo", "poles/risk-averse/adapter_model.safetensors", b"evil" * 100)
    target = tmp_path / "z"
    with pytest.raises(PFTError, match="sha256") as err:
        pull(f"{USER}/values-zoo", to=target)
    assert f"retry `pft-adapters pull {USER}/values-zoo --to {target}`" in str(err.value)
    assert not target.exists() and set(tmp_path.iterdir()) == {tmp_path / "hf_home", local_zoo}
    with pytest.raises(PFTError, match="sha256"):  # the bad copy was dropped, so a retry downloads it again
        pull(f"{USER}/values-zoo")
    # A pull that never touches the tampered pole still works.
    assert pull(f"{USER}/values-zoo:risk-taking", to=target) == target


def test_network_error_midway_leaves_nothing(hub: HubServer, local_zoo: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    push(local_zoo, f"{USER}/values-zoo")
    handle = hub.handle

    def drop_one_pole(method: str, raw_path: str, headers, body: bytes):
        if "poles/risk-averse/adapter_model" in raw_path:
            raise ConnectionResetError("network gone")  # the server closes the connection without answering
        return handle(method, raw_path, headers, body)

    monkeypatch.setattr(hub, "handle", drop_one_pole)
    with pytest.raises(PFTError, match="cannot reach the Hub.*retry `pft-adapters pull"):
        pull(f"{USER}/values-zoo", to=tmp_path / "z")
    assert not (tmp_path / "z").exists() and set(tmp_path.iterdir()) == {tmp_path / "hf_home", local_zoo}


def test_pickle_weights_are_refused(hub: HubServer, local_zoo: Path) -> None:
    push(local_zoo, f"{USER}/values-zoo")
    hub.put_file(f"{USER}/values-zoo", "poles/risk-averse/adapter_model.bin", b"\x80\x04pickle")
    with pytest.raises(PFTError, match="pickle weights .*adapter_model.bin"):
        pull(f"{USER}/values-zoo")
    assert not any(p.endswith(".bin") for p in resolve_paths(hub))


def test_escaping_manifest_paths_are_refused(hub: HubServer, local_zoo: Path, tmp_path: Path) -> None:
    manifest = read_manifest(local_zoo)
    for bad in ("../x", "/etc/passwd"):
        evil = {**manifest, "files": {**manifest["files"], bad: "0" * 64}}
        hub.put_file(f"{USER}/evil-zoo", MANIFEST, json.dumps(evil).encode())
        with pytest.raises(PFTError, match=f"{MANIFEST}: 'files' lists '{bad}', a path outside the zoo"):
            pull(f"{USER}/evil-zoo", to=tmp_path / "z")
        assert not (tmp_path / "z").exists() and not (tmp_path / "x").exists()
    local = tmp_path / "local"
    local.mkdir()
    (local / MANIFEST).write_text(json.dumps({**manifest, "files": {"../x": "0" * 64}}))
    with pytest.raises(PFTError, match=f"{local / MANIFEST}: 'files' lists '../x', a path outside the zoo"):
        Zoo.from_pretrained(f"{local}:risk-averse")


def test_not_a_zoo_and_missing_things(hub: HubServer, local_zoo: Path) -> None:
    with pytest.raises(PFTError, match=f"no repo '{USER}/nope'.*HF_TOKEN"):
        pull(f"{USER}/nope")
    hub.put_file(f"{USER}/plain", "README.md", b"# hi\n")
    with pytest.raises(PFTError, match="not a pft-adapters zoo"):
        pull(f"{USER}/plain")
    push(local_zoo, f"{USER}/values-zoo")
    with pytest.raises(PFTError, match="no branch, tag or commit 'v9'"):
        pull(f"{USER}/values-zoo@v9")
    with pytest.raises(PFTError, match="already names its revision"):
        pull(f"{USER}/values-zoo@main", revision="v1")


def test_list_finds_zoos_by_tag_and_author(hub: HubServer, local_zoo: Path) -> None:
    push(local_zoo, f"{USER}/values-zoo")
    push(local_zoo, "pft-org/shared-zoo")
    push(local_zoo, "someone-else/their-zoo", token=OTHER_TOKEN)
    hub.put_file(f"{USER}/not-a-zoo", "README.md", b"# no tags\n")
    assert [z["id"] for z in list_zoos(author=USER)] == [f"{USER}/values-zoo"]
    assert {z["id"] for z in list_zoos()} == {f"{USER}/values-zoo", "pft-org/shared-zoo", "someone-else/their-zoo"}
    found = list_zoos(search="shared")
    assert [z["id"] for z in found] == ["pft-org/shared-zoo"] and found[0]["base_model"] == "test/tiny-llama"


def test_missing_or_read_only_token(hub: HubServer, local_zoo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PFTError, match="cannot write to .*read-only.*HF_TOKEN"):
        push(local_zoo, f"{USER}/values-zoo", token=READ_TOKEN)
    with pytest.raises(PFTError, match="cannot write to 'someone-else/zoo'"):
        push(local_zoo, "someone-else/zoo")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PFTError, match=r"needs a token with write access: set HF_TOKEN or run `hf auth login`"):
        push(local_zoo, f"{USER}/values-zoo")
    assert hub.count("POST", "/commit/") == 0 and not hub.repos


def test_offline_mode_loads_from_the_cache(hub: HubServer, local_zoo: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    push(local_zoo, f"{USER}/values-zoo")
    online = pull(f"{USER}/values-zoo:risk-averse")
    seen = len(hub.requests)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert pull(f"{USER}/values-zoo:risk-averse") == online
    assert Zoo.from_pretrained(f"{USER}/values-zoo:risk-averse").pole_slugs == ["risk-averse"]
    assert pull(f"{USER}/values-zoo:risk-averse", to=tmp_path / "z") == tmp_path / "z"
    assert len(hub.requests) == seen
    with pytest.raises(PFTError, match="not in the local cache and HF_HUB_OFFLINE=1"):
        pull(f"{USER}/values-zoo:risk-taking")  # never pulled online
    with pytest.raises(PFTError, match="this needs the Hub, but HF_HUB_OFFLINE=1 forbids reaching it: .*retry `pft-adapters push"):
        push(local_zoo, f"{USER}/values-zoo")  # the cache cannot stand in for the Hub here


@pytest.mark.parametrize("field, value, message", [
    ("head_encoder", "bert", "'head_encoder' must be null or hold exactly 'id' and 'fingerprint'"),
    ("base_model", {"id": 7, "revision": None, "fingerprint": "sha256:0"}, "'base_model' must hold exactly"),
    ("base_model", {"id": "a/b", "revision": 1, "fingerprint": "sha256:0"}, "'base_model' must hold exactly"),
    ("base_model", {"id": "a/b", "revision": None, "fingerprint": 5}, "'base_model' must hold exactly"),
    ("dimensions", [{"slug": "risk", "label": "Risk"}], "'dimensions': dimension 1: a dimension needs exactly two poles"),
    ("poles", ["risk-averse", "risk-averse"], "'poles' must name each pole once, as 'dimensions' define it"),
    ("poles", ["risk-averse", "frugal"], "'poles' must name each pole once, as 'dimensions' define it"),
])
def test_a_malformed_manifest_is_one_line_to_pull_push_and_load(hub: HubServer, local_zoo: Path, tmp_path: Path,
                                                                 field: str, value: object, message: str) -> None:
    manifest = json.loads((local_zoo / MANIFEST).read_text())
    (local_zoo / MANIFEST).write_text(json.dumps(manifest | {field: value}))
    for attempt in (lambda: pull(local_zoo, to=tmp_path / "z"), lambda: push(local_zoo, f"{USER}/bad"),
                    lambda: Zoo.from_pretrained(local_zoo)):
        with pytest.raises(PFTError, match=message) as err:
            attempt()
        assert "\n" not in str(err.value) and "the manifest is damaged" in str(err.value)
    assert not (tmp_path / "z").exists() and not hub.repos


def test_naming_every_pole_in_any_order_is_the_whole_zoo(local_zoo: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    risk = make_zoo(["risk"]).save_pretrained(tmp_path / "risk")  # poles: risk-taking, risk-averse
    got = fetch(f"{risk}:risk-averse,risk-taking", to=tmp_path / "whole")
    assert got.complete and got.poles == ["risk-taking", "risk-averse"]
    assert files_of(tmp_path / "whole") == files_of(risk)  # byte-identical, manifest included
    some = fetch(f"{local_zoo}:delayed-gratification,risk-averse", to=tmp_path / "some")
    assert not some.complete and some.poles == read_manifest(tmp_path / "some")["poles"] == [
        "risk-averse", "delayed-gratification"]
    for name in (f"{risk}:risk-averse,risk-taking", f"{risk}:risk-averse"):  # a local folder holds every pole
        code, _, err = run(capsys, "pull", name)
        assert code == 0 and err == ""


def test_a_pull_hashes_each_file_once(hub: HubServer, local_zoo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pull checks every file against the manifest; loading what it fetched does not hash it again."""
    import pft_adapters.hub as hub_module
    import pft_adapters.zoo as zoo_module

    hashed: list[str] = []

    def counting(path: Path) -> str:
        hashed.append(str(path))
        return sha256_file(path)

    push(local_zoo, f"{USER}/values-zoo")
    monkeypatch.setattr(zoo_module, "sha256_file", counting)
    monkeypatch.setattr(hub_module, "sha256_file", counting)
    for name in (f"{local_zoo}:risk-averse", f"{USER}/values-zoo:risk-averse"):
        hashed.clear()
        assert Zoo.from_pretrained(name).pole_slugs == ["risk-averse"]
        assert len(hashed) == len(set(hashed)) == 4, hashed  # the pole's two files and the head's two


# ------------------------------------------------------------------------------------------------ assemble


def test_assemble_two_zoos_on_one_base(hub: HubServer, tmp_path: Path) -> None:
    risk_time = make_zoo(["risk", "time"], seed=0).save_pretrained(tmp_path / "a")
    make_zoo(["social"], seed=1).push_to_hub(f"{USER}/social-zoo")
    zoo = Zoo.from_pretrained([f"{risk_time}:risk-averse,delayed-gratification", f"{USER}/social-zoo:competitive"])
    assert zoo.pole_slugs == ["risk-averse", "delayed-gratification", "competitive"]
    assert [d.slug for d in zoo.space] == ["risk", "time", "social"]
    assert zoo.head is None  # the first zoo's head does not cover `social`
    # a published card names a local folder by its own name, never by where it lay
    assert zoo.training["assembled_from"] == f"a:risk-averse,delayed-gratification, {USER}/social-zoo:competitive"
    key = next(iter(zoo.poles["competitive"]))
    assert torch.equal(zoo.poles["competitive"][key], make_zoo(["social"], seed=1).poles["competitive"][key])
    head = assemble([f"{risk_time}:risk-averse"]).head
    assert head is not None and head.dimension_slugs == ["risk"]  # head kept, narrowed

    out = zoo.save_pretrained(tmp_path / "combined")
    assert Zoo.from_pretrained(out).pole_slugs == zoo.pole_slugs
    with pytest.raises(PFTError, match="comes from both"):
        assemble([risk_time, f"{risk_time}:risk-averse"])


def test_assemble_keeps_the_longest_row_length_and_refuses_conditioned_zoos(tmp_path: Path) -> None:
    risk, time = make_zoo(["risk"]), make_zoo(["time"], seed=1)
    risk.training["max_length"], time.training["max_length"] = 128, 256
    a, b = risk.save_pretrained(tmp_path / "a"), time.save_pretrained(tmp_path / "b")
    assert assemble([a, b]).training["max_length"] == 256
    time.training["method"] = "conditioned"
    c = time.save_pretrained(tmp_path / "c")
    with pytest.raises(PFTError, match=f"'{c}' is a conditioned zoo"):
        assemble([a, c])


def test_assemble_refuses_different_bases(tmp_path: Path) -> None:
    a = make_zoo(["risk"]).save_pretrained(tmp_path / "a")
    b = make_zoo(["time"], base_seed=1, base_id="test/other-llama").save_pretrained(tmp_path / "b")
    with pytest.raises(PFTError, match="'test/tiny-llama'.*'test/other-llama'"):
        assemble([a, b])
    c = dataclasses.replace(make_zoo(["time"]), spec=dataclasses.replace(SPEC, alpha=8.0)).save_pretrained(tmp_path / "c")
    with pytest.raises(PFTError, match="every pole of a zoo needs the same rank, alpha and target modules"):
        assemble([a, c])
    risk = make_zoo(["risk"])
    other = risk.space.dimension("risk")
    other = dataclasses.replace(other, first=dataclasses.replace(other.first, description="Bets on long odds."))
    d = dataclasses.replace(risk, space=ValueSpace([other])).save_pretrained(tmp_path / "d")
    with pytest.raises(PFTError, match=f"'{a}:risk-taking' and '{d}:risk-averse' define dimension 'risk' differently"):
        assemble([f"{a}:risk-taking", f"{d}:risk-averse"])


def test_a_damaged_head_or_a_manifest_without_head_files_is_one_line(local_zoo: Path, tmp_path: Path) -> None:
    manifest = read_manifest(local_zoo)
    head = local_zoo / "head" / "model.safetensors"
    head.write_bytes(head.read_bytes()[:40])  # truncated, and the manifest updated to match (a damaged publication)
    (local_zoo / MANIFEST).write_text(json.dumps(manifest | {"files": manifest["files"] | {
        "head/model.safetensors": sha256_file(head)}}))
    with pytest.raises(PFTError, match=r"'head/model.safetensors' is not a readable safetensors file"):
        Zoo.from_pretrained(local_zoo)
    headless = {k: v for k, v in manifest["files"].items() if not k.startswith("head/")}
    (local_zoo / MANIFEST).write_text(json.dumps(manifest | {"files": headless}))
    with pytest.raises(PFTError, match="says the zoo has a mixing head but lists no head files"):
        pull(local_zoo, to=tmp_path / "z")
    assert not (tmp_path / "z").exists()


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_push_pull_list_assemble(hub: HubServer, local_zoo: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, "push", str(local_zoo), f"{USER}/cli-zoo", "-m", "from the cli")
    assert code == 0 and out.startswith(f"pushed {local_zoo} -> ") and f"{USER}/cli-zoo" in out
    assert HfApi().list_repo_commits(f"{USER}/cli-zoo")[0].title == "from the cli"

    code, out, _ = run(capsys, "pull", f"{USER}/cli-zoo:risk-averse,delayed-gratification@main",
                       "--to", str(tmp_path / "z"), "--json")
    got = json.loads(out)
    assert code == 0 and got["path"] == str(tmp_path / "z") and got["poles"] == ["risk-averse", "delayed-gratification"]
    assert got["commit"] == HfApi().model_info(f"{USER}/cli-zoo").sha

    code, out, err = run(capsys, "pull", f"{USER}/cli-zoo:risk-averse")  # into the cache: the folder lacks the rest
    assert code == 0 and f"load them by this name ('{USER}/cli-zoo:risk-averse')" in err
    code, out, _ = run(capsys, "list", "--author", USER, "--json")
    assert code == 0 and [z["id"] for z in json.loads(out)] == [f"{USER}/cli-zoo"]
    code, out, _ = run(capsys, "list", "--search", "cli")
    assert code == 0 and out.startswith(f"{USER}/cli-zoo  base test/tiny-llama")
    hub.put_file(f"{USER}/merged-card", "README.md", b"---\ntags: [pft-adapters]\nbase_model: [a/b, c/d]\n---\n")
    code, out, _ = run(capsys, "list", "--search", "merged")
    assert code == 0 and out.startswith(f"{USER}/merged-card  base a/b, c/d")

    code, out, _ = run(capsys, "assemble", f"{USER}/cli-zoo:risk-averse", f"{tmp_path / 'z'}:delayed-gratification",
                       "--out", str(tmp_path / "both"), "--json")
    assert code == 0 and json.loads(out)["poles"] == ["risk-averse", "delayed-gratification"]
    assert json.loads(out)["head"] is True  # first zoo's head covers risk and time

    assert "already exists and is not empty" in user_error(capsys, "pull", f"{USER}/cli-zoo", "--to", str(tmp_path / "z"))
    # refused before anything is pulled
    assert "already exists and is not empty" in user_error(capsys, "assemble", f"{USER}/no-such-zoo", "--out", str(tmp_path / "z"))
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    assert user_error(capsys, "push", str(local_zoo), f"{USER}/cli-zoo").startswith("error: your token cannot write to")


def test_cli_assemble_refuses_an_out_holding_an_input_named_with_poles(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    inner = make_zoo(["risk"]).save_pretrained(out / "risk")
    err = user_error(capsys, "assemble", f"{inner}:risk-averse", "--out", out, "--overwrite")
    assert f"--out {out} holds {inner}, which this command reads" in err
    assert Zoo.from_pretrained(inner).pole_slugs == ["risk-taking", "risk-averse"]  # not deleted by --overwrite


def test_push_takes_only_the_zoo_and_words_refusals_in_one_line(hub: HubServer, local_zoo: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (local_zoo / "notes.pt").write_bytes(b"\x80\x04pickle")  # a stray file stays local, and blocks nothing
    code, _, err = run(capsys, "push", local_zoo, f"{USER}/stray")
    assert code == 0, err
    assert "notes.pt" not in {s.rfilename for s in HfApi().model_info(f"{USER}/stray").siblings or []}
    assert "'a/b/c' is not a Hub repo id: give one like org/name" in user_error(capsys, "push", local_zoo, "a/b/c")
    hub.refuse("POST", r"/api/models/.+/commit/.+", 422, "Your storage quota is exceeded")
    err = user_error(capsys, "push", local_zoo, f"{USER}/full")
    assert f"refused the request for '{USER}/full' (422: Your storage quota is exceeded" in err and "retry" not in err


def test_a_download_cut_short_is_one_line(hub: HubServer, local_zoo: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy's error page in place of a file: huggingface_hub's own size check raises OSError, not a traceback."""
    push(local_zoo, f"{USER}/values-zoo")
    handle = hub.handle

    def proxy_page(method: str, raw_path: str, headers, body: bytes) -> Response:
        response = handle(method, raw_path, headers, body)
        if method == "GET" and "poles/risk-averse/adapter_model" in raw_path:
            return Response(response.status, b"<html>proxy error</html>", response.headers)
        return response

    monkeypatch.setattr(hub, "handle", proxy_page)
    with pytest.raises(PFTError, match=r"downloading from 'pft-tester/values-zoo' failed \(.*\): retry `pft-adapters pull"):
        pull(f"{USER}/values-zoo", to=tmp_path / "z")
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize("name", ["", ":risk-averse", "@main"])
def test_an_empty_name_is_no_zoo_not_the_current_folder(local_zoo: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(local_zoo)  # Path("") is the current folder: it must not be pulled as the zoo
    with pytest.raises(PFTError, match="is neither a zoo folder nor a Hub name"):
        pull(name)


def test_push_refuses_what_pull_could_not_read_back(hub: HubServer, local_zoo: Path) -> None:
    with pytest.raises(PFTError, match="'values-zoo' is not a Hub repo id: give one like org/name"):
        push(local_zoo, "values-zoo")  # the Hub would file it under the token's user; pull needs org/name
    for revision in ("a:b", "has space", "..", "main\n"):
        with pytest.raises(PFTError, match="is not a branch name"):
            push(local_zoo, f"{USER}/values-zoo", revision=revision)
    hub.put_file(f"{USER}/old-repo", "pytorch_model.bin", b"\x80\x04pickle")
    with pytest.raises(PFTError, match="already holds pickle weights \\('pytorch_model.bin'\\)"):
        push(local_zoo, f"{USER}/old-repo")
    assert hub.count("POST", "/commit/") == 0


def test_a_damaged_cached_manifest_is_downloaded_anew(hub: HubServer, local_zoo: Path) -> None:
    """huggingface_hub serves a cached file again while its ETag matches: a cut-short copy would fail every pull."""
    push(local_zoo, f"{USER}/values-zoo")
    snapshot = pull(f"{USER}/values-zoo")
    blob = (snapshot / MANIFEST).resolve()
    blob.write_bytes(blob.read_bytes()[:50])
    assert pull(f"{USER}/values-zoo") == snapshot and read_manifest(snapshot) == read_manifest(local_zoo)


def test_a_cached_manifest_is_checked_against_the_hubs_hash(hub: HubServer, local_zoo: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest holds every other file's checksum: a cached copy altered consistently (valid JSON, files
    listed as they are) is replaced online and refused offline, not used."""
    push(local_zoo, f"{USER}/values-zoo")
    blob = (pull(f"{USER}/values-zoo") / MANIFEST).resolve()
    shared = blob.parent / "store" / ("ab" * 32)  # a blob entry linking into a store shared by repos, under another hash
    shared.parent.mkdir()
    blob.rename(shared)
    blob.symlink_to(shared)
    assert read_manifest(pull(f"{USER}/values-zoo")) == read_manifest(local_zoo)
    altered = json.loads(shared.read_text())
    altered["dimensions"][0]["first"]["description"] = "Takes whatever the cache says."
    shared.write_text(json.dumps(altered))
    snapshot = pull(f"{USER}/values-zoo")  # downloaded anew: the link goes, the shared file stays
    assert read_manifest(snapshot) == read_manifest(local_zoo) and shared.is_file()
    (snapshot / MANIFEST).resolve().write_text(json.dumps(altered))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PFTError, match="the cached pft_zoo.json does not match the Hub's hash of it .*online"):
        pull(f"{USER}/values-zoo")


def test_a_zoo_changed_while_it_is_copied_is_not_pushed(hub: HubServer, local_zoo: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    source = shutil.copytree(local_zoo, tmp_path / "changing")
    copy = shutil.copyfile

    def rewritten_meanwhile(src, dst):  # a run writing the folder between the file's check and its copy
        if str(src).endswith("risk-averse/adapter_model.safetensors"):
            Path(src).write_bytes(Path(src).read_bytes()[:-1] + b"\x00")
        return copy(src, dst)

    monkeypatch.setattr("pft_adapters.hub.shutil.copyfile", rewritten_meanwhile)
    with pytest.raises(PFTError, match="'poles/risk-averse/adapter_model.safetensors' changed while it was copied .*retry"):
        push(source, f"{USER}/values-zoo")
    assert hub.count("POST", "/commit/") == 0
