"""Helpers of the lerobot plugin tests (fixtures in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_ROOT = REPO_ROOT / "plugins" / "lerobot_robot_openk"

RunLerobot = Callable[..., subprocess.CompletedProcess[str]]


def plugin_project() -> tuple[str, str]:
    """The plugin's distribution name and version, from its pyproject."""
    text = (PLUGIN_ROOT / "pyproject.toml").read_text()
    name = re.search(r'^name = "([^"]+)"', text, re.M)
    version = re.search(r'^version = "([^"]+)"', text, re.M)
    assert name and version, "plugins/lerobot_robot_openk/pyproject.toml lacks name/version"
    return name.group(1), version.group(1)


def lerobot_env(home: Path, pythonpath: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.pop("OPENK_DEBUG", None)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
            "HF_HUB_OFFLINE": "1",
            "HF_LEROBOT_HOME": str(home / "lerobot_home"),
            "HF_HOME": str(home / "hf_home"),
            "WANDB_MODE": "disabled",
            "NO_COLOR": "1",
        }
    )
    return env


def summary(output: str) -> dict[str, object]:
    """The plugin's `openk summary: {json}` line (logged when the robot disconnects)."""
    found = re.findall(r"openk summary: (\{.*\})", output)
    assert found, output[-4000:]
    return dict(json.loads(found[-1]))
