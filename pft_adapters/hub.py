"""Zoos on the Hugging Face Hub: push, pull (whole zoos or single poles), list, and assemble.

A zoo is published as a plain Hub model repo in the on-disk layout of `pft_adapters.zoo`, so names work
like this everywhere (CLI and Python):

    org/name                         the whole zoo at the default branch
    org/name:risk-averse,risk-taking only these poles (plus manifest and head)
    org/name@v1.0                    a branch, tag or commit
    ./folder[:poles]                 a local zoo folder works wherever a Hub name does

Pulling reads `pft_zoo.json` first and then fetches only the files it lists for the wanted poles, pinned to
the manifest's commit (a push in between cannot mix versions); every file is checked against the manifest's
sha256. Nothing is ever unpickled: a repo that holds pickle weights is refused outright. A zoo whose mixing
head reads texts through a Hub encoder (`head_encoder` in the manifest) brings that encoder along (its
config, tokenizer and safetensors weights), so inference works offline afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NoReturn, TypeVar

from huggingface_hub import HfApi, constants, get_token, hf_hub_download, is_offline_mode, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    HfHubHTTPError,
    HTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .errors import PFTError, printable, quote, shorten
from .values import ValueSpace
from .atomic import atomic_folder, check_target
from .zoo import MANIFEST, read_manifest, sha256_file, verify, wanted_poles

if TYPE_CHECKING:
    from .zoo import Zoo

TAG = "pft-adapters"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ENCODER_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]  # config, tokenizer, vocab, weights: never pickles
CARD = "README.md"
LOGIN_HINT = "set HF_TOKEN or run `hf auth login`"
T = TypeVar("T")
_REVISION = re.compile(r"(?!.*\.\.)(?![./])[\w./-]+(?<![./])")  # a git branch name pull can name: no '..', ':' or space


@dataclass(frozen=True)
class Pulled:
    """Where a pulled zoo lies, and exactly what was fetched (for messages and `--json`)."""

    path: Path
    source: str  # Hub repo id or local folder
    commit: str | None  # the commit every file came from; None for a local folder
    poles: list[str]
    files: list[str]  # manifest-relative paths fetched and verified
    complete: bool = True  # every pole of the zoo; a partial pull without `to` leaves a cache folder that is not a zoo


def pickles(files: Iterable[str]) -> list[str]:
    """The files among `files` that hold pickled weights by their name, which pft-adapters never reads."""
    return [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]


def is_folder(path: str | Path) -> bool:
    """Whether `path` is an existing folder; a name no file system takes (too long, a NUL byte) is none, and may
    still be a Hub name; an empty name is none (Path("") would be the current folder)."""
    if not str(path).strip():
        return False
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def parse_zoo_name(name: str) -> tuple[str, list[str] | None, str | None]:
    """`org/name:pole1,pole2@rev` -> (repo id or folder, poles or None, revision or None).

    An existing directory is always local, even if its name contains `:` or `@`.
    """
    if is_folder(name):
        return name, None, None
    folder, colon, pole_list = name.rpartition(":")
    if colon and "@" not in pole_list and is_folder(folder):  # a folder whose own name holds '@' or ':'
        poles: list[str] | None = _pole_list(pole_list)
        if not poles:
            _bad_name(name)
        return folder, poles, None
    rest, at, revision = name.partition("@")
    repo, colon, pole_list = rest.partition(":")
    poles = _pole_list(pole_list) if colon else None
    if (colon and not poles) or (at and not revision.strip()) or ":" in revision:  # git refs never hold ':'
        _bad_name(name)
    if not is_folder(repo):
        try:
            validate_repo_id(repo)
        except HFValidationError:
            repo = ""
        if repo.count("/") != 1:
            raise PFTError(f"'{name}' is neither a zoo folder nor a Hub name like org/name[:pole,pole][@revision]")
    return repo, poles, revision.strip() or None


def _pole_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _bad_name(name: str) -> NoReturn:
    raise PFTError(f"'{name}' is not of the form org/name[:pole,pole][@revision] (poles before the revision, "
                   "neither left empty)")


# ------------------------------------------------------------------------------------------------ errors


def _endpoint() -> str:
    return constants.ENDPOINT  # read at call time: the endpoint can be changed after import


@contextmanager
def _hub_errors(repo_id: str, revision: str | None, retry: str, writing: bool = False,
                cached: bool = True) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line PFTErrors that name the fix.

    `cached`: the local cache could serve this offline (not so for a push or a listing).
    """
    cached = cached and not writing
    try:
        yield
    except GatedRepoError:
        raise PFTError(f"'{repo_id}' is gated: accept its terms on the Hub, then {LOGIN_HINT}") from None
    except RepositoryNotFoundError:
        raise PFTError(
            f"no repo '{repo_id}' on the Hub at {_endpoint()} (nor a local folder of that name): check the name; "
            f"for a private zoo {LOGIN_HINT}"
        ) from None
    except RevisionNotFoundError:
        raise PFTError(f"'{repo_id}' has no branch, tag or commit '{revision}': check the revision name") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        if isinstance(err.__cause__, HfHubHTTPError):  # the Hub was reached and answered an error status
            raise _status_error(err.__cause__, repo_id, retry, writing) from None
        if is_offline_mode() and not cached:
            raise PFTError(f"this needs the Hub, but HF_HUB_OFFLINE=1 forbids reaching it: unset HF_HUB_OFFLINE and retry `{retry}`") from None
        if is_offline_mode():
            raise PFTError(
                f"'{repo_id}' is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading: "
                f"unset HF_HUB_OFFLINE and retry `{retry}`"
            ) from None
        raise PFTError(f"cannot reach the Hub at {_endpoint()} and '{repo_id}' is not cached: check the network and retry `{retry}`") from None
    except HfHubHTTPError as err:
        raise _status_error(err, repo_id, retry, writing) from None
    except HTTPError as err:
        raise PFTError(f"cannot reach the Hub at {_endpoint()} ({type(err).__name__}): check the network and retry "
                       f"`{retry}`" + (", or set HF_HUB_OFFLINE=1 to use cached zoos" if cached else "")) from None
    except OSError as err:  # a cache that cannot be written, a download cut short (huggingface_hub checks the size)
        if writing:
            raise PFTError(f"uploading to '{repo_id}' failed ({shorten(' '.join(str(err).split()), 160)}): "
                           f"retry `{retry}`") from None
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
            raise PFTError(f"cannot write the Hub cache in {constants.HF_HUB_CACHE} ({err.strerror}): point HF_HOME "
                           f"or HF_HUB_CACHE at a writable folder with space, and retry `{retry}`") from None
        raise PFTError(f"downloading from '{repo_id}' failed ({shorten(' '.join(str(err).split()), 160)}): "
                       f"retry `{retry}`") from None


def _status_error(err: HfHubHTTPError, repo_id: str, retry: str, writing: bool) -> PFTError:
    """The one line for an error status the Hub answered."""
    status = err.response.status_code if err.response is not None else None
    if status == 401:
        doing = "pushing" if writing else "reading"
        return PFTError(f"the Hub did not accept the token for {doing} (401: missing or invalid): {LOGIN_HINT}")
    if status == 403:
        if writing:
            return PFTError(f"your token cannot write to '{repo_id}' (403: read-only token, or a namespace you do not "
                            f"belong to): use a write token ({LOGIN_HINT}) or push under your own namespace")
        return PFTError(f"no access to '{repo_id}' (403): {LOGIN_HINT} with a token that may read it")
    if status is not None and 400 <= status < 500 and status != 429:  # retrying the same request cannot help
        detail = shorten(" ".join(str(getattr(err, "server_message", None) or err).split()), 200)
        return PFTError(f"the Hub at {_endpoint()} refused the request for '{repo_id}' ({status}: {detail})")
    return PFTError(f"the Hub at {_endpoint()} answered {status} for '{repo_id}': retry `{retry}` later")


# ------------------------------------------------------------------------------------------------ sources


class _LocalSource:
    """A zoo folder on disk."""

    def __init__(self, root: Path):
        self.root, self.name, self.label, self.commit = root, str(root), str(root), None

    def manifest(self) -> Path:
        return self.root / MANIFEST

    def read_manifest(self, path: Path) -> dict:
        return read_manifest(path.parent)

    def listing(self) -> None:
        """None: a folder is read file by file, as its manifest lists them; stray files in it are not the zoo's."""
        return None

    def get(self, rel: str) -> Path | None:
        path = self.root / rel
        return path if path.is_file() else None

    def verified(self, rel: str, files: dict[str, str], target: Path | None) -> Path:
        """A file the manifest lists, checked against its sha256 as every zoo load checks it."""
        return verify(self.root, rel, files)


class _HubSource:
    """A Hub repo, read through the huggingface_hub cache (so HF_HUB_OFFLINE=1 works from it)."""

    def __init__(self, repo_id: str, revision: str | None, retry: str):
        self.repo_id, self.revision, self.retry = repo_id, revision, retry
        self.name = repo_id
        self.label = repo_id + (f"@{revision}" if revision else "")
        self.commit: str | None = None

    def manifest(self) -> Path:
        with _hub_errors(self.repo_id, self.revision, self.retry):
            try:
                path = Path(hf_hub_download(self.repo_id, MANIFEST, revision=self.revision))
            except RemoteEntryNotFoundError:
                raise PFTError(f"'{self.label}' has no {MANIFEST}: it is not a pft-adapters zoo") from None
        # The cache layout is snapshots/<commit>/<file>: pin the rest of the pull to that commit.
        self.commit = path.parent.name
        return path

    def read_manifest(self, path: Path) -> dict:
        """The manifest, its bytes checked against the hash the Hub named its cached copy by (a git blob's SHA-1, or
        the SHA-256 of a file kept in LFS): the manifest holds every other file's checksum, so it is checked too."""
        blob = _blob(path)
        if blob is not None and _blob_hash(path.read_bytes(), len(blob.name)) not in (None, blob.name):
            raise PFTError(f"'{self.label}': the cached {MANIFEST} does not match the Hub's hash of it (a damaged or "
                           f"altered cache): retry `{self.retry}` online")
        return read_manifest(path.parent)

    def listing(self) -> list[str] | None:
        """Every file of the commit (a pickle anywhere in it is refused); None offline, where the repo was
        already checked when it was first pulled."""
        if is_offline_mode():
            return None
        with _hub_errors(self.repo_id, self.revision, self.retry):
            info = HfApi().model_info(self.repo_id, revision=self.commit)
        return [s.rfilename for s in info.siblings or []]

    def get(self, rel: str) -> Path | None:
        with _hub_errors(self.repo_id, self.revision, self.retry):
            try:
                return Path(hf_hub_download(self.repo_id, rel, revision=self.commit))
            except RemoteEntryNotFoundError:
                return None
            except LocalEntryNotFoundError:
                if rel == CARD:  # the card is optional, and may be absent from the cache
                    return None
                raise

    def verified(self, rel: str, files: dict[str, str], target: Path | None) -> Path:
        """A file the manifest lists, downloaded and checked against its sha256; a bad copy leaves the cache."""
        path = self.get(rel)
        if path is None:
            raise PFTError(f"'{self.label}' lacks '{rel}', which its manifest lists: the zoo is incomplete")
        if sha256_file(path) != files[rel]:
            self.discard(path)
            where = f"nothing was written to {target}; " if target is not None else ""
            raise PFTError(
                f"'{rel}' from '{self.label}' does not match the sha256 in {MANIFEST} (corrupted download or altered "
                f"file): {where}retry `{self.retry}`; if it fails again the published zoo is damaged, tell its owner"
            )
        return path

    def discard(self, path: Path) -> None:
        """Drop a corrupted file from the cache, so a retry downloads it again (its blob entry too, which may be a
        link into a store shared with other repos: the link goes, the shared file stays)."""
        for item in (path, _blob(path)):
            if item is None:
                continue
            try:
                item.unlink(missing_ok=True)
            except OSError:  # a read-only cache: the checksum error says what matters
                pass


def _blob(path: Path) -> Path | None:
    """The cache's `blobs/<etag>` entry a snapshot file links to (one link followed: the entry may itself link into
    a shared store, under another hash); None where the cache keeps plain files (symlinks disabled)."""
    if not path.is_symlink():
        return None
    return Path(os.path.normpath(path.parent / os.readlink(path)))


def _blob_hash(data: bytes, length: int) -> str | None:
    """The hash the Hub gives `data` in the form of a `length`-digit name: 40, a git blob's SHA-1; 64, the SHA-256
    of an LFS file; None for any other name (a cache that keeps no blobs), which leaves nothing to check against."""
    if length == 40:
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    if length == 64:
        return hashlib.sha256(data).hexdigest()
    return None


# ------------------------------------------------------------------------------------------------ pull


def fetch(name: str | Path, poles: Sequence[str] | None = None, revision: str | None = None,
          to: str | Path | None = None, overwrite: bool = False) -> Pulled:
    """Pull a zoo (or some of its poles) and say what was fetched; `pull` is the same, returning the path.

    Without `to`, the files stay in the huggingface_hub cache and its snapshot folder is returned (a local zoo
    folder is returned as is). With `to`, the zoo is assembled in a temporary sibling folder and renamed into
    place only once every file is verified, so a failure never leaves a partial zoo there. A partial pull to
    `to` gets a manifest listing only the pulled poles, so the folder is a complete zoo of its own.
    """
    text = str(name)
    source, named_poles, named_revision = parse_zoo_name(text)
    poles = _one_of(list(poles) if poles is not None else None, named_poles, "poles", text)
    revision = _one_of(revision, named_revision, "revision", text)
    target = Path(to) if to is not None else None
    if target is not None:
        check_target(target, overwrite, "--to", reads=(source,))
    retry = f"pft-adapters pull {text}" + (f" --to {target}" if target is not None else "")
    if is_folder(source):
        if revision:
            raise PFTError(f"'{source}' is a local folder, which has no revisions: drop '@{revision}'")
        src: _LocalSource | _HubSource = _LocalSource(Path(source))
    else:
        src = _HubSource(source, revision, retry)

    manifest_path = src.manifest()
    try:
        manifest = src.read_manifest(manifest_path)
    except PFTError:
        if not isinstance(src, _HubSource) or is_offline_mode():
            raise
        src.discard(manifest_path)  # a damaged cached copy, which huggingface_hub would serve again: download it anew
        manifest_path = src.manifest()
        manifest = src.read_manifest(manifest_path)
    files = manifest["files"]
    listing = src.listing()
    pickled = pickles([*(listing or []), *files])
    if pickled:
        raise PFTError(
            f"'{src.label}' holds pickle weights ('{pickled[0]}'): pft-adapters never unpickles files; "
            "remove them, or ask the zoo's owner to publish safetensors only"
        )
    wanted = wanted_poles(manifest, poles, src.label)
    needed = [f for f in files if _belongs(f, wanted)]
    if manifest.get("head") and not {"head/config.json", "head/model.safetensors"} <= set(files):
        raise PFTError(f"'{src.label}': the manifest says the zoo has a mixing head but lists no head files: the zoo is incomplete")
    for slug in wanted:
        if f"poles/{slug}/adapter_model.safetensors" not in needed:
            raise PFTError(f"'{src.label}': the manifest lists no adapter file for pole '{slug}': the zoo is incomplete")
    if listing is not None:
        absent = [f for f in needed if f not in listing]
        if absent:
            raise PFTError(f"'{src.label}' lacks '{absent[0]}', which its manifest lists: the zoo was published incompletely; ask its owner to push again")

    fetched = {rel: src.verified(rel, files, target) for rel in needed}
    card = src.get(CARD) if listing is None or CARD in listing else None
    encoder = (manifest.get("head_encoder") or {}).get("id")
    if isinstance(src, _HubSource) and encoder:
        fetch_encoder(encoder, retry)

    complete = wanted == manifest["poles"]  # both in the manifest's order
    if target is None:
        path = manifest_path.parent
    else:
        subset = None if complete else {**manifest, "poles": wanted, "files": {f: files[f] for f in needed}}
        path = _write_folder(target, manifest_path, subset, fetched, card)
    return Pulled(path=path, source=src.name, commit=src.commit, poles=wanted, files=needed, complete=complete)


def fetch_encoder(name: str, retry: str) -> Path | None:
    """Download a head encoder given by Hub id into the cache (safetensors only); None for a local or packaged one."""
    from .base import resolve_encoder

    if is_folder(name) or resolve_encoder(name) != name:
        return None
    with _hub_errors(name, None, retry):
        try:
            path = Path(snapshot_download(name, allow_patterns=ENCODER_FILES))
        except HFValidationError:
            raise PFTError(f"the zoo's head encoder '{name}' is neither a folder here nor a Hub id: put the encoder "
                           "at that path, or retrain the zoo with --head-encoder set to a Hub id") from None
    if not any(path.glob("*.safetensors")):
        raise PFTError(f"the zoo's head encoder '{name}' publishes no safetensors weights: pft-adapters never unpickles "
                       "files; retrain the zoo with --head-encoder set to an encoder that has model.safetensors")
    return path


def pull(name: str | Path, poles: Sequence[str] | None = None, revision: str | None = None,
         to: str | Path | None = None, overwrite: bool = False) -> Path:
    """Pull a zoo by Hub name (or local folder) and return the folder holding it; see `fetch`."""
    return fetch(name, poles=poles, revision=revision, to=to, overwrite=overwrite).path


def _one_of(given: T | None, named: T | None, what: str, name: str) -> T | None:
    """An argument may come from the name (`:poles`, `@rev`) or from a keyword, but not from both differently."""
    if given is not None and named is not None and given != named:
        raise PFTError(f"'{name}' already names its {what}: drop the separate {what} argument or change the name")
    return given if given is not None else named


def _belongs(rel: str, poles: list[str]) -> bool:
    """Is a manifest file part of one of these poles, or of the head (needed by every pole)?"""
    parts = PurePosixPath(rel).parts
    return parts[0] == "head" or (parts[0] == "poles" and len(parts) > 2 and parts[1] in poles)


def _write_folder(target: Path, manifest_path: Path, subset: dict | None, fetched: dict[str, Path],
                  card: Path | None) -> Path:
    """Copy verified files into a temporary sibling of `target`, then rename it into place once the copies are
    checked against the manifest copied with them (a file changed between its check and its copy, as by a
    run writing the source folder meanwhile, must not make a folder whose files its manifest disowns)."""
    with atomic_folder(target, overwrite=True) as tmp:
        for rel, path in fetched.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / rel)
        if subset is None:
            shutil.copyfile(manifest_path, tmp / MANIFEST)  # byte-identical to the published one
        else:
            (tmp / MANIFEST).write_text(json.dumps(subset, indent=2) + "\n")
        if card is not None:
            shutil.copyfile(card, tmp / CARD)
        copied = read_manifest(tmp)["files"]
        for rel in fetched:
            try:
                verify(tmp, rel, copied)
            except PFTError:
                raise PFTError(f"'{rel}' changed while it was copied (a run writing the zoo meanwhile?): nothing was "
                               "written; retry once it is done") from None
    return target


# ------------------------------------------------------------------------------------------------ push


def push(zoo: Zoo | str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         message: str | None = None, token: str | None = None) -> str:
    """Publish a zoo (object or folder) as one commit, with a model card naming the repo; returns the commit URL.

    The repo is created if missing (an existing repo keeps its visibility), `revision` is a branch created from
    the default branch if missing. Only manifest-listed files are uploaded; pole or head files of an earlier
    push that this zoo no longer lists are deleted in the same commit.
    """
    from .card import model_card
    from .zoo import Zoo

    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:  # the Hub would put a bare name under the token's user; pull needs org/name
            raise HFValidationError(repo_id)
    except HFValidationError:
        raise PFTError(f"'{repo_id}' is not a Hub repo id: give one like org/name (letters, digits, '-', '_', '.')") from None
    if revision is not None and not _REVISION.fullmatch(revision):  # what `pull name@revision` can name again
        raise PFTError(f"--revision {quote(revision)} is not a branch name: use letters, digits, '-', '_', '.' and '/'")
    if not (token or get_token()):
        raise PFTError(f"pushing to the Hub needs a token with write access: {LOGIN_HINT}")
    retry = f"pft-adapters push {'<zoo>' if isinstance(zoo, Zoo) else zoo} {repo_id}"
    with tempfile.TemporaryDirectory(prefix="pft-push-") as tmp:
        staged = Path(tmp) / "zoo"
        if isinstance(zoo, Zoo):
            zoo.save_pretrained(staged)
        elif is_folder(zoo):
            fetch(Path(zoo), to=staged)  # verifies checksums, refuses pickles, copies only listed files
        else:
            raise PFTError(f"no zoo folder at '{zoo}': give a folder made by `pft-adapters train`")
        manifest = read_manifest(staged)
        api = HfApi(token=token)
        with _hub_errors(repo_id, revision, retry, writing=True):
            repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            pickled = pickles(api.list_repo_files(repo_id, revision=revision))
            if pickled:  # every pull of the pushed zoo would be refused for them
                raise PFTError(f"'{repo_id}' already holds pickle weights ('{pickled[0]}'), which make every pull of "
                               "a zoo there refused: delete them from the repo, or push to another one")
            (staged / CARD).write_text(model_card(manifest, repo_id), encoding="utf-8")
            info = api.upload_folder(
                repo_id=repo_id, folder_path=staged, revision=revision, delete_patterns=["poles/*", "head/*"],
                commit_message=message or f"Upload pft-adapters zoo ({len(manifest['poles'])} poles)",
            )
    return info.commit_url


# ------------------------------------------------------------------------------------------------ list


def list_zoos(author: str | None = None, search: str | None = None) -> list[dict]:
    """Zoos on the Hub (repos tagged `pft-adapters`), in the order the Hub lists them."""
    if is_offline_mode():
        raise PFTError("listing zoos needs the Hub, but HF_HUB_OFFLINE=1: unset HF_HUB_OFFLINE and retry")
    with _hub_errors(author or "zoos", None, "pft-adapters list", cached=False):
        models = list(HfApi().list_models(filter=TAG, author=author, search=search, cardData=True))
    return [
        {
            "id": m.id,
            "author": m.author,
            "private": m.private,
            "base_model": _one_text(getattr(m.card_data, "base_model", None)),
            "last_modified": m.last_modified.isoformat() if m.last_modified else None,
            "tags": list(m.tags or []),
        }
        for m in models
    ]


# ------------------------------------------------------------------------------------------------ assemble


def assemble(names: Sequence[str | Path]) -> Zoo:
    """One zoo from the poles of several zoos on the same base model (`["org/a", "org/b:risk-averse"]`).

    Dimensions are merged in the order given, keeping only those with at least one pole present. The first
    zoo's mixing head is kept (restricted to those dimensions) only if it covers all of them; otherwise the
    result has no head, since a head trained on fewer dimensions cannot read the others.
    """
    from .zoo import Zoo

    if not names:
        raise PFTError("assemble needs at least one zoo name")
    parts = [(str(n), Zoo.from_pretrained(n)) for n in names]
    first_name, first = parts[0]
    origin: dict[str, str] = {}
    defined: dict[str, str] = {}  # dimension slug -> the zoo it is first taken from
    space = _with_poles(first)
    for name, zoo in parts:
        if zoo.base.fingerprint != first.base.fingerprint:
            raise PFTError(
                f"cannot assemble: '{first_name}' is on base '{first.base.id}' ({first.base.fingerprint[:19]}) but "
                f"'{name}' is on base '{zoo.base.id}' ({zoo.base.fingerprint[:19]}): poles only combine on one base model"
            )
        if zoo.method == "conditioned":
            raise PFTError(f"cannot assemble: '{name}' is a conditioned zoo (one shared adapter steered by the prompt): "
                           "assemble combines zoos of per-pole adapters")
        if zoo.kind != first.kind:
            raise PFTError(f"cannot assemble: '{first_name}' is a {first.kind} zoo but '{name}' is a {zoo.kind} zoo: "
                           "poles only combine within one kind")
        if zoo.spec != first.spec:
            raise PFTError(f"cannot assemble: '{name}' uses LoRA {zoo.spec} but '{first_name}' uses {first.spec}: "
                           "every pole of a zoo needs the same rank, alpha and target modules")
        for slug in zoo.pole_slugs:
            if slug in origin:
                raise PFTError(f"pole '{slug}' comes from both '{origin[slug]}' and '{name}': take it from one, "
                               f"e.g. '{name.split(':')[0]}:<other poles>'")
            origin[slug] = name
        for dim in _with_poles(zoo):  # one at a time, to name the zoo each definition comes from
            where = defined.setdefault(dim.slug, name)
            space = space.merged(ValueSpace([dim]), (f"'{where}'", f"'{name}'"), "take its poles from one of them only")
    head = first.head  # kept when it reads every pole and dimension of the assembled zoo
    if head is not None and set(space.pole_slugs) <= set(head.pole_slugs) and all(d.slug in head.dimension_slugs for d in space):
        head = head.select(space)
    else:
        head = None
    datasets = list(dict.fromkeys(d for _, z in parts for d in z.training.get("datasets") or []))
    licenses = {z.training.get("license", "apache-2.0") for _, z in parts}
    training = {"assembled_from": ", ".join(_shared_name(n) for n, _ in parts),
                "license": licenses.pop() if len(licenses) == 1 else "other"}
    if datasets:
        training["datasets"] = datasets
    lengths = [z.training["max_length"] for _, z in parts if "max_length" in z.training]
    if lengths:  # rows are cut to it when scored: the longest any part trained on cuts none of them shorter
        training["max_length"] = max(lengths)
    poles = {slug: tensors for _, zoo in parts for slug, tensors in zoo.poles.items()}
    score_heads = {slug: tensors for _, zoo in parts for slug, tensors in zoo.score_heads.items()}
    return Zoo(space=space, spec=first.spec, base=first.base, poles=poles,
               head=head, training=training,
               source=" + ".join(n for n, _ in parts), kind=first.kind, score_heads=score_heads)


def _shared_name(name: str) -> str:
    """A zoo name as a published card may show it: a Hub name as given, a local folder by its own name only (its
    path says where it lay on one machine, which the card's readers neither need nor should see)."""
    source, poles, revision = parse_zoo_name(name)
    if not is_folder(source):
        return name
    return Path(source).resolve().name + (":" + ",".join(poles) if poles else "")


def _one_text(value: object) -> str | None:
    """A card field the Hub may hold as one text or a list of them (base_model of a merge), as one line of text;
    another user's card may hold anything there."""
    if value is None:
        return None
    return printable(", ".join(map(str, value)) if isinstance(value, list) else str(value))


def _with_poles(zoo: Zoo) -> ValueSpace:
    """The zoo's dimensions that have at least one pole adapter present."""
    return ValueSpace(d for d in zoo.space if any(p.slug in zoo.poles for p in d.poles))
