"""Fixtures for CLI tests: run `openk` as a user would, in a subprocess."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"

# The Hub engineer's loopback fake Hub (tests/hub) serves the push tests here too.
sys.path.insert(0, str(REPO_ROOT / "tests" / "hub"))

from fakehub import WRITE_TOKEN, FakeHub  # noqa: E402

from ..helpers import wait_until  # noqa: E402


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


class Tmux:
    """One private tmux server running one command in a 200x50 terminal."""

    def __init__(self, tmp_path: Path) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed; install it (apt-get install tmux) to run this test")
        self.socket = f"openk-test-{uuid.uuid4().hex[:8]}"
        self.tmp_path = tmp_path

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise AssertionError(f"tmux {args} failed: {proc.stderr}")
        return proc.stdout

    def start(self, argv: list[str]) -> None:
        env = _env()
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k in ("PYTHONPATH",))
        done = self.tmp_path / "exit_code"
        command = (
            f"cd {shlex.quote(str(self.tmp_path))} && {exports} {shlex.join(argv)};"
            f" echo $? > {shlex.quote(str(done))}; sleep 600"
        )
        self.tmux("new-session", "-d", "-x", "200", "-y", "50", "bash", "-c", command)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def exit_code(self, timeout: float) -> int:
        done = self.tmp_path / "exit_code"
        code = wait_until(
            lambda: done.exists() and done.read_text().strip(),
            "the command in tmux ended",
            timeout,
            interval=0.1,
            details=lambda: f"screen:\n{self.screen()}",
        )
        return int(code)

    def screen(self) -> str:
        """The terminal's text including its scrollback, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-2000")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    session = Tmux(tmp_path)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    server = FakeHub(tmp_path_factory.mktemp("fakehub"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def hub_env(hub: FakeHub, tmp_path: Path, token: str | None = WRITE_TOKEN) -> dict[str, str]:
    env = {k: v for k, v in _env().items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env
