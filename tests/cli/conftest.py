"""Fixtures for CLI tests: run `openk` as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The sources under test come first, whether or not openk is installed in this Python.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT / "python"), env.get("PYTHONPATH", "")) if p
    )
    env.pop("OPENK_DEBUG", None)
    env["NO_COLOR"] = "1"
    if extra:
        env.update(extra)
    return env


RunOpenk = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_openk(tmp_path: Path) -> RunOpenk:
    """Run `openk ARGS...` in tmp_path (so logs/ and outputs/ land there)."""

    def run(
        *args: str,
        timeout: float = 300,
        input: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "openk.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=_env(env),
            cwd=cwd or tmp_path,
            check=False,
        )

    return run


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert the failure a user sees: exit code ≠ 0 and exactly one line, no traceback."""
    assert proc.returncode != 0, f"expected failure, got exit 0:\n{proc.stdout}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return lines[0]
