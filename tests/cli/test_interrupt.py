"""Ctrl-C (SIGINT) and `kill` (SIGTERM) during `openk record` keep every finished episode and
the rows of the one in progress; the dataset stays valid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, _env

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_signal_mid_episode_keeps_finished_episodes(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "rec.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "scripted_record.py"),
            f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.num_episodes=5",
            "--dataset.episode_time_s=1.5",
            "--dataset.reset_time_s=0.2",
            "--robot.cameras={front: {type: synthetic, width: 160, height: 120}}",
            "--vcodec=h264",
            f"--log_file={log}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count("started (dataset episode") >= 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError(f"episode 2 never started:\n{proc.communicate()}")
    time.sleep(0.5)  # some rows into episode 2
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
    log = tmp_path / "rec.log"
    proc = subprocess.Popen(
        _scripted(tmp_path, "--dataset.num_episodes=5", "--dataset.episode_time_s=30"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and "started (dataset episode" in log.read_text():
            break
        time.sleep(0.05)
    time.sleep(2.5)  # more than the journal's one-second sync
    proc.kill()  # SIGKILL: no cleanup at all
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
    assert meta["total_episodes"] == 2  # the recovered one, then the new one
    verified = subprocess.run(
        [sys.executable, "-m", "openk.cli", "verify", str(tmp_path / "ds")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
