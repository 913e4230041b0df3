"""A small in-memory, Hub-compatible HTTP server for the test suite.

Why: mocking ``huggingface_hub`` would test our assumptions about the client, not the client. This module serves,
on ``127.0.0.1``, the subset of the Hub's HTTP API the real client uses for model repos (create/inspect/list repos,
preupload + NDJSON commits, ``/resolve`` downloads, tree listings, branches, tags, refs, commits, whoami), and the
unpatched client is pointed at it through ``HF_ENDPOINT`` (see ``tests/hub_fixtures.py``).

* Every file is declared ``uploadMode: "regular"`` by the preupload endpoint, so the client sends the bytes inline
  (base64) in the commit body and never needs the LFS batch API or Xet storage.
* ETags are git blob SHA-1s (what the Hub uses for non-LFS files); this is also the ``oid`` the client compares
  against to skip unchanged files.
* Errors carry the Hub's ``X-Error-Code`` / ``X-Error-Message`` headers and a ``{"error": ...}`` body, which is
  what ``hf_raise_for_status`` uses to pick ``RepositoryNotFoundError``, ``RevisionNotFoundError``,
  ``EntryNotFoundError`` and friends.
* Only ``model`` repos exist. README front matter is parsed with a tiny YAML subset (scalars, inline and block
  lists) to keep this module stdlib-only; that is enough for ``tags:`` / ``library_name:`` style metadata.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Sequence, cast
from urllib.parse import parse_qs, unquote, urlsplit

#: Default credentials: token -> (user name, organisations, write access).
DEFAULT_TOKENS: dict[str, tuple[str, Sequence[str], bool]] = {
    "hf_test_write": ("pft-tester", ("pft-org",), True),
    "hf_test_read": ("pft-tester", ("pft-org",), False),
    "hf_test_other": ("someone-else", (), True),
}
WRITE_TOKEN, READ_TOKEN, OTHER_TOKEN = "hf_test_write", "hf_test_read", "hf_test_other"

# The Hub seeds every new repo with a .gitattributes commit; mimic it so listings look realistic.
_GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
_REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_blob_sha(data: bytes) -> str:
    """SHA-1 of a git blob: the Hub's ETag / oid for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _flag(query: dict[str, list[str]], name: str) -> bool:
    """Boolean query parameter as the client encodes it (httpx sends ``true``/``false``; some calls send 1)."""
    return query.get(name, [""])[0].lower() in ("1", "true")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_front_matter(text: str) -> dict[str, Any]:
    """Parse README YAML front matter (tiny subset: ``k: v``, ``k: [a, b]`` and ``k:`` + ``- item`` lines)."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.S)
    if not match:
        return {}
    data: dict[str, Any] = {}
    key: str | None = None
    clean = lambda v: v.strip().strip("'\"")  # noqa: E731
    for line in match.group(1).splitlines():
        item = re.match(r"^\s*-\s+(.*)$", line)
        if item and key is not None:
            data.setdefault(key, [])
            if isinstance(data[key], list):
                data[key].append(clean(item.group(1)))
            continue
        pair = re.match(r"^([A-Za-z0-9_\-]+):\s*(.*)$", line)
        if not pair:
            continue  # nested mappings etc. are outside the supported subset
        key, value = pair.group(1), pair.group(2).strip()
        if value.startswith("[") and value.endswith("]"):
            data[key] = [clean(v) for v in value[1:-1].split(",") if clean(v)]
        elif value:
            data[key] = clean(value)
    return data


class HubError(Exception):
    """An HTTP error answered the way the Hub does (status, JSON body, ``X-Error-*`` headers)."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None,
                 **body: Any) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.body = status, message, code, commit, body


@dataclass(frozen=True)
class Token:
    user: str
    orgs: tuple[str, ...]
    write: bool

    def owns(self, namespace: str) -> bool:
        return namespace == self.user or namespace in self.orgs


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, bytes]  # full snapshot of the repo at this commit


@dataclass
class Repo:
    id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.id.split("/")[0]

    def resolve(self, revision: str) -> Commit:
        """Branch, then tag, then (possibly abbreviated) commit sha, as the Hub does."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and re.fullmatch(r"[0-9a-f]{7,40}", revision):
            hits = [s for s in self.commits if s.startswith(revision)]
            sha = hits[0] if len(hits) == 1 else None
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[sha]

    def history(self, revision: str) -> Iterator[Commit]:
        commit: Commit | None = self.resolve(revision)
        while commit is not None:
            yield commit
            commit = self.commits.get(commit.parent) if commit.parent else None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # bytes are sent raw, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)


class HubServer:
    """In-memory Hub. ``with HubServer() as hub: ...`` or ``start()`` / ``stop()``; see module docstring."""

    def __init__(self, tokens: dict[str, tuple[str, Sequence[str], bool]] | None = None) -> None:
        self.tokens = {t: Token(u, tuple(o), w) for t, (u, o, w) in (tokens or DEFAULT_TOKENS).items()}
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without query), in arrival order
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            (m, re.compile(p), f)
            for m, p, f in cast(list[tuple[str, str, Callable[..., Response]]], [
                ("GET", r"/api/whoami-v2", self._whoami),
                ("GET", r"/api/agent-harnesses", lambda **_: Response(body={"standardEnvVars": [], "harnesses": {}})),
                ("POST", r"/api/validate-yaml", lambda **_: Response(body={"warnings": [], "errors": []})),
                ("POST", r"/api/repos/create", self._create_repo),
                ("GET", r"/api/models", self._list_models),
                ("GET", rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?", self._repo_info),
                ("GET", rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self._tree),
                ("GET", rf"/api/models/{_REPO}/refs", self._refs),
                ("GET", rf"/api/models/{_REPO}/commits/(?P<rev>[^/]+)", self._commits),
                ("POST", rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", self._preupload),
                ("POST", rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", self._commit),
                ("POST", rf"/api/models/{_REPO}/branch/(?P<branch>[^/]+)", self._create_branch),
                ("POST", rf"/api/models/{_REPO}/tag/(?P<rev>[^/]+)", self._create_tag),
                ("GET", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self._resolve),
                ("HEAD", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self._resolve),
            ])
        ]

    # ----------------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "HubServer":
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ test helpers
    def count(self, method: str, contains: str = "") -> int:
        """Number of recorded requests with this method whose path contains ``contains``."""
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and contains in p)

    def put_file(self, repo_id: str, path: str, data: bytes, *, revision: str = "main", private: bool = False) -> str:
        """Commit ``data`` at ``path`` (creating the repo if needed) bypassing HTTP; returns the commit sha."""
        with self._lock:
            repo = self.repos.get(repo_id) or self._new_repo(repo_id, private, repo_id.split("/")[0])
            return self._apply_commit(repo, revision, f"Upload {path}", "", {path: data}, set(), "tests")

    def refuse(self, method: str, path_pattern: str, status: int, message: str) -> None:
        """From now on answer every ``method`` request whose path matches ``path_pattern`` with this error."""

        def refused(**_: Any) -> Response:
            raise HubError(status, message)

        with self._lock:
            self._routes.insert(0, (method, re.compile(path_pattern), refused))

    def tamper(self, repo_id: str, path: str, new_bytes: bytes, revision: str = "main") -> None:
        """Replace the bytes served for ``path`` at ``revision`` *in place*: the commit sha does not change.

        Simulates a corrupted/compromised file behind an unchanged commit. ETag and Content-Length follow the new
        bytes (as a rewritten blob would), so clients without a cached copy download the tampered content.
        """
        with self._lock:
            files = self.repos[repo_id].resolve(revision).files
            if path not in files:
                raise KeyError(path)
            files[path] = new_bytes

    # ---------------------------------------------------------------------------------------- request plumbing
    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response:
        """Route one request; the whole handling runs under one lock, which keeps the model trivially consistent."""
        split = urlsplit(raw_path)
        query = parse_qs(split.query)
        with self._lock:
            self.requests.append((method, split.path))
            try:
                token = self._token(headers.get("Authorization"))
                for route_method, pattern, func in self._routes:
                    match = pattern.fullmatch(split.path)
                    if route_method == method and match:
                        args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                        return func(token=token, query=query, body=body, **args)
                raise HubError(404, f"Not found: {method} {split.path}")
            except HubError as err:
                extra = {"X-Error-Message": err.message.encode("ascii", "replace").decode()}
                if err.code:
                    extra["X-Error-Code"] = err.code
                if err.commit:
                    extra["X-Repo-Commit"] = err.commit
                return Response(err.status, {"error": err.message, **err.body}, extra)

    def _token(self, authorization: str | None) -> Token | None:
        if not authorization:
            return None
        token = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        if token is None:  # exact Hub wording: the client special-cases it
            raise HubError(401, "Invalid credentials in Authorization header")
        return token

    def _repo(self, repo_id: str, token: Token | None) -> Repo:
        """Look a repo up; private repos are invisible (404, like the Hub) to anyone but their namespace."""
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not (token and token.owns(repo.owner))):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def _require_write(token: Token | None, namespace: str) -> Token:
        if token is None:
            raise HubError(401, "You must be authenticated to perform this action")
        if not token.write:
            raise HubError(403, "You don't have the rights to perform this action: read-only token")
        if not token.owns(namespace):
            raise HubError(403, f"You don't have the rights to create or modify content under '{namespace}'")
        return token

    def _new_repo(self, repo_id: str, private: bool, author: str) -> Repo:
        repo = self.repos[repo_id] = Repo(repo_id, private, _now())
        repo.branches["main"] = ""  # empty branch, filled by the initial commit below
        self._apply_commit(repo, "main", "initial commit", "", {".gitattributes": _GITATTRIBUTES}, set(), author)
        return repo

    def _apply_commit(self, repo: Repo, branch: str, title: str, message: str, adds: dict[str, bytes],
                      deletes: set[str], author: str) -> str:  # fmt: skip
        """Append a commit to ``branch``: new snapshot = parent snapshot - deletes + adds."""
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        parent = repo.branches[branch] or None
        files = dict(repo.commits[parent].files) if parent else {}
        for path in deletes:
            if path.endswith("/"):
                files = {p: d for p, d in files.items() if not p.startswith(path)}
            elif files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        files.update(adds)
        seed = json.dumps([parent, title, sorted((p, git_blob_sha(d)) for p, d in files.items()), next(self._counter)])
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[sha] = Commit(sha, parent, title, message, author, _now(), files)
        repo.branches[branch] = sha
        return sha

    def _info(self, repo: Repo, commit: Commit, *, siblings: bool = True, blobs: bool = False) -> dict[str, Any]:
        """The model-info payload (shared by ``/api/models/{id}`` and ``/api/models`` listings)."""
        card = parse_front_matter(commit.files.get("README.md", b"").decode("utf-8", "replace"))
        tags = [str(t) for t in card.get("tags", []) if isinstance(card.get("tags"), list)]
        library = card.get("library_name")
        if isinstance(library, str) and library not in tags:
            tags.append(library)
        info: dict[str, Any] = {
            "_id": repo.id, "id": repo.id, "modelId": repo.id, "author": repo.owner, "sha": commit.sha,
            "lastModified": commit.date, "createdAt": repo.created, "private": repo.private, "disabled": False,
            "gated": False, "downloads": 0, "likes": 0, "tags": tags, "library_name": library,
        }  # fmt: skip
        if card:
            info["cardData"] = card
        if siblings:
            info["siblings"] = [
                {"rfilename": p, **({"size": len(d), "blobId": git_blob_sha(d)} if blobs else {})}
                for p, d in sorted(commit.files.items())
            ]
        return info

    # ------------------------------------------------------------------------------------------- endpoints
    def _whoami(self, token: Token | None, **_: Any) -> Response:
        if token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        role = "write" if token.write else "read"
        return Response(body={
            "type": "user", "id": token.user, "name": token.user, "fullname": token.user,
            "orgs": [{"type": "org", "name": o, "roleInOrg": "write"} for o in token.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": f"test-{role}", "role": role}},
        })  # fmt: skip

    def _create_repo(self, token: Token | None, body: bytes, **_: Any) -> Response:
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") != "model":
            raise HubError(400, "This test server only hosts model repos")
        namespace = payload.get("organization") or (token.user if token else "")
        self._require_write(token, namespace)
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:
            raise HubError(409, "You already created this model repo", url=url)  # client reads "url" on exist_ok
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        self._new_repo(repo_id, private, token.user if token else namespace)
        return Response(body={"url": url, "name": repo_id, "id": repo_id})

    def _list_models(self, token: Token | None, query: dict[str, list[str]], **_: Any) -> Response:
        """``author`` = namespace, every ``filter`` must be a tag, ``search`` = case-insensitive id substring."""
        author, search = query.get("author", [""])[0], query.get("search", [""])[0].lower()
        full, wanted = _flag(query, "full"), query.get("filter", [])
        items = []
        for repo in sorted(self.repos.values(), key=lambda r: r.id):
            if repo.private and not (token and token.owns(repo.owner)):
                continue
            info = self._info(repo, repo.resolve("main"), siblings=full)
            if (author and repo.owner != author) or search not in repo.id.lower():
                continue
            if not all(tag in info["tags"] for tag in wanted):
                continue
            if not (full or _flag(query, "cardData")):
                info.pop("cardData", None)
            items.append(info)
        return Response(body=items)

    def _repo_info(self, repo: str, token: Token | None, query: dict[str, list[str]], rev: str = "main",
                   **_: Any) -> Response:  # fmt: skip
        found = self._repo(repo, token)
        return Response(body=self._info(found, found.resolve(rev), blobs=_flag(query, "blobs")))

    def _tree(self, repo: str, rev: str, token: Token | None, query: dict[str, list[str]], path: str = "",
              **_: Any) -> Response:  # fmt: skip
        """Files and folders under ``path`` (direct children, or everything with ``recursive=true``)."""
        commit = self._repo(repo, token).resolve(rev)
        recursive = _flag(query, "recursive")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit.sha)
        entries: dict[str, dict[str, Any]] = {}
        for file_path, data in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(depth, len(parts) - 1) + 1):  # folders on the way
                folder = prefix + "/".join(parts[:i])
                entries.setdefault(folder, {"type": "directory", "path": folder,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})  # fmt: skip
            if len(parts) == 1 or recursive:
                entries[file_path] = {"type": "file", "path": file_path, "size": len(data), "oid": git_blob_sha(data)}
        return Response(body=list(entries.values()))

    def _refs(self, repo: str, token: Token | None, **_: Any) -> Response:
        found = self._repo(repo, token)
        ref = lambda kind, refs: [  # noqa: E731
            {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in refs.items()
        ]
        return Response(body={"branches": ref("heads", found.branches), "converts": [],
                              "tags": ref("tags", found.tags), "pullRequests": []})  # fmt: skip

    def _commits(self, repo: str, rev: str, token: Token | None, **_: Any) -> Response:
        history = self._repo(repo, token).history(rev)  # newest first, like the Hub
        keys = lambda c: {"id": c.sha, "title": c.title, "message": c.message, "date": c.date}  # noqa: E731
        return Response(body=[{**keys(c), "authors": [{"user": c.author}]} for c in history])

    def _preupload(self, repo: str, rev: str, token: Token | None, body: bytes, **_: Any) -> Response:
        """Declare every file "regular" so the client inlines it in the commit (no LFS batch / Xet upload)."""
        found = self._repo(repo, token)
        self._require_write(token, found.owner)
        existing = found.resolve(rev).files
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": git_blob_sha(existing[f["path"]]) if f["path"] in existing else None}
            for f in json.loads(body or b"{}").get("files", [])
        ]  # fmt: skip
        return Response(body={"files": files, "commitOid": found.resolve(rev).sha})

    def _commit(self, repo: str, rev: str, token: Token | None, query: dict[str, list[str]], body: bytes,
                **_: Any) -> Response:  # fmt: skip
        """Apply an NDJSON commit (``header`` / ``file`` / ``deletedFile`` / ``deletedFolder`` lines)."""
        found = self._repo(repo, token)
        author = self._require_write(token, found.owner).user
        if _flag(query, "create_pr"):
            raise HubError(400, "Pull requests are not supported by the test server")
        header: dict[str, Any] = {}
        adds: dict[str, bytes] = {}
        deletes: set[str] = set()
        for item in map(json.loads, filter(bytes.strip, body.splitlines())):
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                raw = value["content"]
                adds[value["path"]] = base64.b64decode(raw) if value.get("encoding") == "base64" else raw.encode()
            elif key == "deletedFile":
                deletes.add(value["path"])
            elif key == "deletedFolder":
                deletes.add(value["path"].rstrip("/") + "/")
            else:  # "lfsFile" cannot happen: preupload never answers "lfs"
                raise HubError(400, f"Unsupported commit operation: {key}")
        head = found.resolve(rev).sha if rev in found.branches else None
        if header.get("parentCommit") and header["parentCommit"] != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        sha = self._apply_commit(found, rev, header.get("summary", ""), header.get("description", ""), adds,
                                 deletes, author)  # fmt: skip
        return Response(body={"success": True, "commitOid": sha, "commitUrl": f"{self.url}/{repo}/commit/{sha}",
                              "hookOutput": "", "pullRequestUrl": None})  # fmt: skip

    def _create_branch(self, repo: str, branch: str, token: Token | None, body: bytes, **_: Any) -> Response:
        found = self._repo(repo, token)
        self._require_write(token, found.owner)
        if branch in found.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        found.branches[branch] = found.resolve(start).sha
        return Response(body={})

    def _create_tag(self, repo: str, rev: str, token: Token | None, body: bytes, **_: Any) -> Response:
        found = self._repo(repo, token)
        self._require_write(token, found.owner)
        tag = json.loads(body or b"{}")["tag"]
        if tag in found.tags:
            raise HubError(409, f"Tag already exists: {tag}")
        found.tags[tag] = found.resolve(rev).sha
        return Response(body={})

    def _resolve(self, repo: str, rev: str, path: str, token: Token | None, body: bytes, **_: Any) -> Response:
        """File download (GET) / metadata (HEAD): the client needs ETag, X-Repo-Commit and Content-Length."""
        commit = self._repo(repo, token).resolve(rev)
        data = commit.files.get(path)
        if data is None:
            raise HubError(404, "Entry not found", "EntryNotFound", commit.sha)
        headers = {"ETag": f'"{git_blob_sha(data)}"', "X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}  # fmt: skip
        return Response(200, data, headers)


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP/1.1 adapter: read the body, delegate to ``HubServer.handle``, write the response."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls
    hub: HubServer  # set on a per-server subclass by HubServer.start()

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr logging
        pass

    def _dispatch(self) -> None:
        # The client always sends a Content-Length (bodies are built in memory), so chunked uploads are not handled.
        body_in = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        response = self.hub.handle(self.command, self.path, self.headers, body_in)
        body = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
        status, headers = response.status, dict(response.headers)
        headers.setdefault("Content-Type", "application/json")
        # Minimal single-range support so an interrupted download can resume (``Range: bytes=N-`` / ``N-M``).
        span = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")) if status == 200 else None
        if span and isinstance(response.body, bytes):
            start, end = int(span.group(1)), int(span.group(2) or len(body) - 1)
            headers["Content-Range"] = f"bytes {start}-{min(end, len(body) - 1)}/{len(body)}"
            status, body = 206, body[start : end + 1]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch
