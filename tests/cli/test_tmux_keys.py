"""`openk record` in a real terminal (tmux): → ends an episode, ← re-records, Esc stops."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..helpers import wait_until
from .conftest import REPO_ROOT, Tmux

HERE = Path(__file__).resolve().parent


def wait_for_log(log: Path, text: str, count: int, tmux: Tmux, timeout: float = 120) -> None:
    wait_until(
        lambda: log.exists() and log.read_text().count(text) >= count,
        f"{text!r} appeared {count} times in {log}",
        timeout,
        interval=0.05,
        details=lambda: (
            f"screen:\n{tmux.screen()}\nlog:\n{log.read_text() if log.exists() else '(none)'}"
        ),
    )


def drive_record(tmux: Tmux, tmp_path: Path, argv: list[str]) -> dict[str, object]:
    """Episode 1: →. Episode 2: ← (re-record), then →. Episode 3: Esc. Returns info.json."""
    log = tmp_path / "rec.log"
    tmux.start([*argv, f"--log_file={log}"])
    started = "started (dataset episode"
    wait_for_log(log, started, 1, tmux)
    time.sleep(1.0)  # let rows flow
    tmux.keys("Right")
    wait_for_log(log, started, 2, tmux)
    time.sleep(1.0)
    tmux.keys("Left")
    wait_for_log(log, "discarded for re-recording", 1, tmux)
    wait_for_log(log, started, 3, tmux)
    time.sleep(1.0)
    tmux.keys("Right")
    wait_for_log(log, started, 4, tmux)
    time.sleep(1.0)
    tmux.keys("Escape")
    code = tmux.exit_code(timeout=120)
    screen = tmux.screen()
    assert code == 0, screen
    assert "re-recording episode 2" in screen
    assert "stopped (Esc)" in screen
    # On a terminal the status line refreshes in place with a progress bar.
    assert "recorded episode 1/5 [" in screen
    assert "open it with lerobot" in screen
    root = tmp_path / "ds"
    return json.loads((root / "meta" / "info.json").read_text())


def test_keys_in_a_real_terminal_with_the_scripted_loop(tmux: Tmux, tmp_path: Path) -> None:
    info = drive_record(
        tmux,
        tmp_path,
        [
            sys.executable,
            str(HERE / "scripted_record.py"),
            f"--config_path={REPO_ROOT / 'config' / 'record_sim.yaml'}",
            f"--dataset.root={tmp_path / 'ds'}",
            "--dataset.num_episodes=5",
            "--dataset.episode_time_s=60",
            "--dataset.reset_time_s=0.5",
            "--robot.cameras={front: {type: synthetic, width: 160, height: 120}}",
            "--vcodec=h264",
        ],
    )
    # → saved episode 0, ← dropped the first take of episode 2, → saved its retake,
    # Esc stopped during episode 3 and kept it (as lerobot does).
    assert info["total_episodes"] == 3
    assert info["total_frames"] >= 3 * 20  # about 1 s at 30 fps each
