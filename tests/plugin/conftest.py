"""Fixtures for the lerobot plugin tests: lerobot's own commands run in the oracle venv
(lerobot 0.6.1) with openk and the `lerobot_robot_openk` plugin of this checkout.

lerobot finds plugins by distribution name (`importlib.metadata.distributions()`), which also
scans PYTHONPATH entries; the fixture writes the plugin's dist-info into a temporary folder
on PYTHONPATH, so the plugin is discovered per checkout without touching the venv."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .lerobot_run import PLUGIN_ROOT, REPO_ROOT, RunLerobot, lerobot_env, plugin_project


@pytest.fixture(scope="session")
def plugin_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the plugin's dist-info (name and version from its pyproject)."""
    name, version = plugin_project()
    folder = tmp_path_factory.mktemp("plugin_dist")
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text("lerobot_robot_openk\n")
    return folder


@pytest.fixture
def run_lerobot(oracle_python: str, plugin_dist: Path, tmp_path: Path) -> RunLerobot:
    """`lerobot-<command> ARGS...` in the oracle venv, in tmp_path, with openk and the plugin
    of this checkout (`plugin=False`: without the plugin)."""

    def run(
        command: str, *args: str, plugin: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        path = [REPO_ROOT / "python"]
        if plugin:
            path += [PLUGIN_ROOT, plugin_dist]
        binary = Path(oracle_python).parent / f"lerobot-{command}"
        return subprocess.run(
            [str(binary), *args],
            cwd=tmp_path,
            env=lerobot_env(tmp_path, path),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
