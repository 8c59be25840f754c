"""Ctrl-C (SIGINT) and `kill` (SIGTERM) during `openk record` keep every finished episode and
the rows of the one in progress; the dataset stays valid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from openk.dataset import pending_journal

from ..helpers import wait_until
from .conftest import REPO_ROOT, _env
from .scripted_record import FIRST_EPISODE_ROWS

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_signal_mid_episode_keeps_finished_episodes(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "rec.log"
    # Episode 1 ends after 15 rows; episode 2 would last two minutes, so the signal surely
    # comes while it records, however slow the machine.
    proc = subprocess.Popen(
        _scripted(tmp_path, "--dataset.num_episodes=5", "--dataset.episode_time_s=120"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env({FIRST_EPISODE_ROWS: "15"}),
        cwd=tmp_path,
    )
    try:
        wait_until(
            lambda: log.exists() and log.read_text().count("started (dataset episode") >= 2,
            "episode 2 started",
            details=lambda: log.read_text() if log.exists() else "(no log)",
        )
        wait_until(lambda: newest_episode_rows(tmp_path / "ds"), "episode 2 has rows in the writer")
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "interrupted: kept episode 1" in out
    meta = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert meta["total_episodes"] == 2
    verified = subprocess.run(
        [sys.executable, "-m", "openk.cli", "verify", str(tmp_path / "ds")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def newest_episode_rows(root: Path) -> int:
    """Rows the writer holds for the episode it started last (the newest journal entry)."""
    journal = pending_journal(root)
    return journal[-1].rows if journal else 0


def _scripted(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(HERE / "scripted_record.py"),
        f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
        f"--dataset.root={tmp_path / 'ds'}",
        "--dataset.episode_time_s=1.5",
        "--dataset.reset_time_s=0.2",
        "--robot.cameras={front: {type: synthetic, width: 160, height: 120}}",
        "--vcodec=h264",
        f"--log_file={tmp_path / 'rec.log'}",
        *extra,
    ]


def test_kill_9_mid_episode_then_resume_offers_the_episode_back(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _scripted(tmp_path, "--dataset.num_episodes=5", "--dataset.episode_time_s=30"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        cwd=tmp_path,
    )
    # Rows and camera frames of the episode in progress reached the journal (the camera's
    # file appears some frames after the rows), then SIGKILL: no cleanup at all.
    root = tmp_path / "ds"
    wait_until(
        lambda: any(
            ep.saved is None and ep.frames and ep.length > 0 for ep in pending_journal(root)
        ),
        "the journal holds rows and camera frames of the episode",
    )
    proc.kill()
    proc.wait(timeout=60)

    resumed = subprocess.run(
        _scripted(tmp_path, "--dataset.num_episodes=1", "--resume=true"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "keeping the interrupted episode" in resumed.stdout
    meta = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert meta["total_episodes"] == 2, resumed.stdout  # the recovered one, then the new one
    verified = subprocess.run(
        [sys.executable, "-m", "openk.cli", "verify", str(tmp_path / "ds")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
