"""Ctrl-C (SIGINT) while a policy run stops: the follower's return home is cut short safely,
the command ends normally, and the episode already recorded is kept."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from ..helpers import wait_until
from ..tiny_act import ROBOT, TASK, offline_env, sim_record_flags

EVAL_REPO = "tester/eval_policy"
CUT_SHORT = "the return home is cut short"
# Long enough that the return home is surely under way when the signal comes, however slow
# the machine; the test only ends in time if Ctrl-C cuts it short.
RETURN_HOME = ["--end_home_ramp_time_s=600", "--end_home_settle_s=0"]


def _start(argv: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=offline_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _log(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _interrupt_the_return_home(proc: subprocess.Popen[str], log: Path) -> tuple[str, str]:
    """Waits until the loop is being stopped (the return home under way), then Ctrl-C; again
    if that one came just before the stop began (it then only started it)."""
    try:
        wait_until(lambda: "stopping the loop" in _log(log), "the loop is stopping",
                   details=lambda: _log(log))  # fmt: skip
        for _ in range(5):
            proc.send_signal(signal.SIGINT)
            try:
                wait_until(
                    lambda: CUT_SHORT in _log(log) or proc.poll() is not None,
                    "the return home cut short",
                    timeout=5,
                )
                break
            except AssertionError:
                continue
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)


def test_ctrl_c_during_the_return_home_of_a_policy_record_keeps_the_episode(
    trained_policy: Path, oracle_python: str, tmp_path: Path
) -> None:
    root = tmp_path / "eval_ds"
    log = tmp_path / "rec.log"
    proc = _start(
        [
            oracle_python, "-m", "openk.cli", "record",
            *sim_record_flags(root, tmp_path / "calibration"),
            f"--policy.path={trained_policy}",
            f"--dataset.repo_id={EVAL_REPO}",
            "--dataset.num_episodes=1",
            "--dataset.episode_time_s=2",
            *RETURN_HOME,
            f"--log_file={log}",
        ],
        tmp_path,
    )  # fmt: skip
    out, err = _interrupt_the_return_home(proc, log)
    assert proc.returncode == 0, out + err
    assert CUT_SHORT in _log(log), _log(log)
    assert f"dataset: {root} (1 episodes, 1 new)" in out, out + err
    verified = subprocess.run(
        [oracle_python, "-m", "openk.cli", "verify", str(root)],
        cwd=tmp_path,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_ctrl_c_during_the_return_home_of_a_rollout_ends_it(
    trained_policy: Path, oracle_python: str, tmp_path: Path
) -> None:
    log = tmp_path / "rollout.log"
    proc = _start(
        [
            oracle_python, "-m", "openk.cli", "rollout",
            f"--robot.type={ROBOT}",
            "--robot.port=sim",
            "--robot.id=follower",
            "--robot.cameras={front: {type: synthetic, width: 64, height: 48}}",
            f"--robot.calibration_dir={tmp_path / 'calibration'}",
            f"--policy.path={trained_policy}",
            f"--task={TASK}",
            "--duration=0",  # until Ctrl-C
            "--realtime=off",
            *RETURN_HOME,
            f"--log_file={log}",
        ],
        tmp_path,
    )  # fmt: skip
    try:
        wait_until(lambda: "rollout started" in _log(log), "the rollout runs",
                   details=lambda: _log(log))  # fmt: skip
    except AssertionError:
        proc.kill()
        proc.communicate(timeout=60)
        raise
    proc.send_signal(signal.SIGINT)  # ends the rollout: the return home begins
    out, err = _interrupt_the_return_home(proc, log)
    assert proc.returncode == 0, out + err
    assert "stopped (Ctrl-C)" in out, out + err
    assert CUT_SHORT in _log(log), _log(log)
