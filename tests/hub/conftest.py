"""Fixtures for Hub tests: a loopback fake Hub and small LeRobot-shaped dataset folders."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakehub import FakeHub
from hubdata import write_dataset_tree


@pytest.fixture
def fake_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """A fresh fake Hub on 127.0.0.1:<free port>; ``fake_hub.endpoint`` is its URL.

    Tokens: ``fakehub.WRITE_TOKEN`` (write), ``fakehub.READ_TOKEN`` (read-only). Hooks:
    ``add_fault(method, path_substring, status_or_"drop", times)``, ``request_log``,
    ``unknown_routes()``, ``file_bytes(repo_id, path, revision)``.
    """
    hub = FakeHub(tmp_path_factory.mktemp("fakehub"))
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub_env(fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this process's huggingface_hub at the fake Hub with the write token.

    huggingface_hub reads HF_ENDPOINT/HF_HOME at import, so the module constants are patched
    too; returns the environment a subprocess needs for the same setup.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    home.mkdir()
    env = fake_hub.client_env(home)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", fake_hub.endpoint)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        fake_hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return env


@pytest.fixture(params=["xet", "lfs"])
def transfer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with hf_xet uploads (the default) and with HF_HUB_DISABLE_XET=1 (LFS)."""
    from huggingface_hub import constants

    disabled = request.param == "lfs"
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", disabled)
    if disabled:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    else:
        monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    return str(request.param)


@pytest.fixture
def dataset_tree(tmp_path: Path) -> Path:
    return write_dataset_tree(tmp_path / "dataset")
