"""Shared test fixtures. Area-specific fixtures live in each test folder's own conftest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .tiny_act import train_tiny_act

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The golden protocol vectors (copied from the reference implementations)."""
    return TEST_DATA / "vectors"


@pytest.fixture(scope="session")
def oracle_python() -> str:
    """Path to the Python of the lerobot 0.6.1 oracle venv.

    Taken from OPENK_ORACLE_PYTHON (set by scripts/test.sh), else built or reused by
    scripts/oracle-venv.sh. A missing oracle is a failure, never a skip.
    """
    path = os.environ.get("OPENK_ORACLE_PYTHON")
    if not path:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "oracle-venv.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"lerobot oracle venv could not be built:\n{proc.stderr[-4000:]}")
        path = proc.stdout.strip().splitlines()[-1]
    if not Path(path).exists():
        pytest.fail(f"lerobot oracle python {path!r} does not exist; run scripts/oracle-venv.sh")
    return path


@pytest.fixture(scope="session")
def run_oracle(oracle_python: str) -> Callable[..., Any]:
    """Run a Python snippet in the oracle venv; it must print one JSON document last.

    Returns the parsed JSON. Extra keyword arguments become environment variables.
    """

    def run(code: str, timeout: float = 600, **env: str) -> Any:
        full_env = {**os.environ, **env}
        # The oracle must never see openk's own environment or sources.
        full_env.pop("PYTHONPATH", None)
        full_env.pop("VIRTUAL_ENV", None)
        proc = subprocess.run(
            [oracle_python, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"oracle snippet failed (exit {proc.returncode}):\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}"
            )
        lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
        return json.loads(lines[-1])

    return run


@pytest.fixture(scope="session")
def trained_policy(tmp_path_factory: pytest.TempPathFactory, oracle_python: str) -> Path:
    """A tiny ACT trained once per session (tests/tiny_act.py); its pretrained_model folder.
    The policy tests run it with openk, the plugin tests with lerobot's async inference."""
    return train_tiny_act(tmp_path_factory.mktemp("policy_train"), oracle_python)


@pytest.fixture(scope="session")
def trained_policy_pos_vel(tmp_path_factory: pytest.TempPathFactory, oracle_python: str) -> Path:
    """The tiny ACT trained on openk-1-alpha_follower2 observing no torque
    (`--robot.state_channels=[pos,vel]`): the state lerobot-rollout feeds a policy."""
    return train_tiny_act(
        tmp_path_factory.mktemp("policy_train_pos_vel"),
        oracle_python,
        ["--robot.type=openk-1-alpha_follower2", "--robot.state_channels=[pos,vel]"],
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"openk tests; python {sys.version.split()[0]}"
