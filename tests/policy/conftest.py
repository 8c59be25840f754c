"""Fixtures for the policy tests: `openk` run inside the lerobot oracle venv (where torch
lives). The tiny ACT they run is the session fixture `trained_policy` of tests/conftest.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..tiny_act import RunIn, offline_env, run_cmd


@pytest.fixture
def run_openk_oracle(oracle_python: str, tmp_path: Path) -> RunIn:
    """`openk ARGS...` from this checkout, run by the oracle venv's Python 3.12 (torch and
    lerobot 0.6.1 there), in tmp_path."""

    def run(*args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_cmd(
            [oracle_python, "-m", "openk.cli", *args],
            tmp_path,
            offline_env(tmp_path, **extra),
            timeout,
        )

    return run
