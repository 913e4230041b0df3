"""Pytest fixtures that run the real ``huggingface_hub`` client against ``tests/hub_server.py``.

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``; a test asks for the server by name::

    def test_push(hub):
        HfApi().create_repo("pft-tester/zoo")          # no endpoint=/token= needed
        assert hub.count("POST", "/api/repos/create") == 1

Why the constants are patched too: ``huggingface_hub`` reads its environment *once, at import time* into
``huggingface_hub.constants`` (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``, cache and token paths, offline /
xet / telemetry flags), and the module-level ``HfApi`` behind ``huggingface_hub.list_models`` & co. captures
``ENDPOINT`` when it is constructed. Setting environment variables alone therefore only works if the library is
imported afterwards. ``use_hub`` sets both the variables (for subprocesses and late imports) and the
environment-derived values (for an already-imported client) through ``monkeypatch``, so everything is restored
after the test. Client behaviour is not patched: requests really go over HTTP to the server.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from hub_server import WRITE_TOKEN, HubServer


def use_hub(monkeypatch: pytest.MonkeyPatch, server: HubServer, home: Path, token: str | None = WRITE_TOKEN) -> None:
    """Point ``huggingface_hub`` (env vars + already-imported constants) at ``server``, caching under ``home``."""
    from huggingface_hub import constants, hf_api

    home.mkdir(parents=True, exist_ok=True)
    cache = str(home / "hub")
    env = {
        "HF_ENDPOINT": server.url, "HF_HOME": str(home), "HF_HUB_CACHE": cache, "HF_XET_CACHE": str(home / "xet"),
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_SYMLINKS_WARNING": "1",
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_DISABLE_IMPLICIT_TOKEN",
                 "HUGGINGFACE_CO_STAGING", "HF_OIDC_RESOURCE", "HF_TOKEN_PATH"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)

    derived: dict[str, object] = {
        "ENDPOINT": server.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS) | {urlsplit(server.url).hostname},
        "HF_HOME": str(home), "HF_HUB_CACHE": cache, "HUGGINGFACE_HUB_CACHE": cache,
        "HF_ASSETS_CACHE": str(home / "assets"), "HUGGINGFACE_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"), "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False, "HF_HUB_DISABLE_TELEMETRY": True, "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_PROGRESS_BARS": True, "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
    }  # fmt: skip
    for constant, setting in derived.items():
        if hasattr(constants, constant):  # names differ across huggingface_hub versions
            monkeypatch.setattr(constants, constant, setting)
    # Copies taken with ``from ..constants import X`` at import time.
    copies: list[tuple[str, str, object]] = [("huggingface_hub.utils.tqdm", "HF_HUB_DISABLE_PROGRESS_BARS", True),
                                             ("huggingface_hub.utils._cache_manager", "HF_HUB_CACHE", cache)]
    for module, constant, setting in copies:
        target = importlib.import_module(module)
        if hasattr(target, constant):
            monkeypatch.setattr(target, constant, setting)
    monkeypatch.setattr(hf_api.api, "endpoint", server.url)  # instance behind huggingface_hub.list_models & co.


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A fresh, running ``HubServer`` with ``huggingface_hub`` pointed at it and ``HF_TOKEN`` = write token."""
    with HubServer() as server:
        use_hub(monkeypatch, server, tmp_path / "hf_home")
        assert os.environ["HF_ENDPOINT"] == server.url
        yield server
