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


def assert_followed_the_policy(
    report: dict[str, object], goal_span_deg: float, track_deg: float
) -> dict[str, float]:
    """The summary shows a policy driving the follower: every joint got goals, which ranged
    over more than `goal_span_deg` in all, and the follower ended among them (within
    `track_deg` of the range of goals it was sent; the last goal itself may have been sent
    just before the state was read, so it is not the reference). Returns the last state."""
    goals, last_state = report["goal_range"], report["last_state"]
    assert isinstance(goals, dict) and isinstance(last_state, dict), report
    assert set(goals) == set(last_state) and len(goals) > 0, report
    assert max(hi - lo for lo, hi in goals.values()) > goal_span_deg, goals
    outside = {
        n: (lo, last_state[n], hi)
        for n, (lo, hi) in goals.items()
        if not lo - track_deg <= last_state[n] <= hi + track_deg
    }
    assert not outside, (outside, report)
    rows = report["rows"]
    assert isinstance(rows, int) and rows > 0, report
    return last_state
