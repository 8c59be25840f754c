"""`openk` as a subprocess: help for every command and one-line errors that name the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CONFIG_DIR, RunOpenk, _env, one_line_error

COMMANDS = [
    "record",
    "teleoperate",
    "replay",
    "calibrate",
    "find-port",
    "find-cameras",
    "scan",
    "info",
    "verify",
    "push",
    "recover",
]

SIM_RECORD = [
    "record",
    "--robot.type=openk-1-alpha_follower",
    "--robot.port=sim",
    "--teleop.type=openk-1-sts_leader",
    "--teleop.port=sim",
    "--dataset.push_to_hub=false",
]


def test_top_level_help_lists_every_command(run_openk: RunOpenk) -> None:
    proc = run_openk("--help")
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert f"  {command} " in proc.stdout, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(run_openk: RunOpenk, command: str) -> None:
    proc = run_openk(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Example" in proc.stdout
    assert f"openk {command}" in proc.stdout


def test_record_help_names_the_guide_options(run_openk: RunOpenk) -> None:
    out = run_openk("record", "--help").stdout
    for flag in (
        "--robot.type",
        "--robot.port",
        "--robot.cameras",
        "--teleop.port",
        "--dataset.repo_id",
        "--dataset.single_task",
        "--dataset.num_episodes",
        "--dataset.push_to_hub",
        "--resume",
        "--control_hz",
        "--realtime",
        "--vcodec",
        "--config_path",
    ):
        assert flag in out, flag


def test_openk_record_alias_is_the_record_command(tmp_path: Path) -> None:
    code = (
        "import sys; from openk.cli import record_alias; "
        "sys.argv[0] = 'openk-record'; record_alias()"
    )
    help_proc = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert help_proc.returncode == 0 and "--dataset.repo_id" in help_proc.stdout
    bad = subprocess.run(
        [sys.executable, "-c", code, "--dataset.repo_idd=x"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert "did you mean --dataset.repo_id?" in one_line_error(bad)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--robot.prot=sim"], "unknown flag --robot.prot; did you mean --robot.port?"),
        (["--dataset.num_episodes=two"], "--dataset.num_episodes has value 'two', expected int"),
        (
            ["--dataset.repo_id=me/ds", "--dataset.single_task=t", "--dataset.fps=-5"],
            "--dataset.fps is -5; it must be > 0",
        ),
        (["--dataset.single_task=t"], "missing --dataset.repo_id; add --dataset.repo_id="),
        (["--dataset.repo_id=me/ds"], "missing --dataset.single_task; add --dataset.single_task="),
        (["--dataset.repo_id=../x", "--dataset.single_task=t"], "not a valid dataset repo id"),
        (["--dataset.repo_id=/abs/x", "--dataset.single_task=t"], "not a valid dataset repo id"),
        (["--robot.type=so101_follower"], "valid types: openk-1-alpha_follower"),
    ],
)
def test_bad_record_input_is_one_line_naming_the_fix(
    run_openk: RunOpenk, tmp_path: Path, args: list[str], expected: str
) -> None:
    line = one_line_error(run_openk(*SIM_RECORD, *args))
    assert expected in line
    # Nothing was recorded before the error.
    assert not (tmp_path / "outputs").exists()


def test_unknown_key_in_config_file(run_openk: RunOpenk, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        (CONFIG_DIR / "record_sim.yaml").read_text().replace("reset_time_s", "rest_time_s")
    )
    line = one_line_error(run_openk("record", f"--config_path={cfg}"))
    assert "dataset.rest_time_s" in line and "did you mean dataset.reset_time_s?" in line


def test_missing_config_file(run_openk: RunOpenk) -> None:
    line = one_line_error(run_openk("record", "--config_path=nope.yaml"))
    assert "nope.yaml does not exist" in line


def test_nonexistent_port_names_the_port_and_find_port(run_openk: RunOpenk, tmp_path: Path) -> None:
    proc = run_openk(
        "record",
        "--robot.type=openk-1-alpha_follower",
        "--robot.port=/dev/ttyOPENK_NOPE",
        "--robot.sts_port=sim",
        "--teleop.type=openk_leader",
        "--teleop.port=sim",
        "--dataset.repo_id=me/ds",
        "--dataset.single_task=t",
        f"--dataset.root={tmp_path / 'ds'}",
    )
    line = one_line_error(proc)
    assert "/dev/ttyOPENK_NOPE" in line and "openk find-port" in line
    assert not (tmp_path / "ds").exists()


def test_debug_shows_the_traceback(run_openk: RunOpenk) -> None:
    proc = run_openk(*SIM_RECORD, "--robot.prot=x", "--debug")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "did you mean --robot.port?" in proc.stderr


def test_log_file_parent_is_created(run_openk: RunOpenk, tmp_path: Path) -> None:
    log_file = tmp_path / "deep" / "dir" / "rec.log"
    run_openk(
        *SIM_RECORD,
        "--robot.port=/dev/ttyOPENK_NOPE",
        "--robot.sts_port=sim",
        "--dataset.repo_id=me/ds",
        "--dataset.single_task=t",
        f"--log_file={log_file}",
        "--daily_log_file_name=true",
    )
    logs = list((tmp_path / "deep" / "dir").glob("rec_*.log"))
    assert len(logs) == 1 and "openk record config" in logs[0].read_text()


def test_find_port_unplug_flow(tmp_path: Path) -> None:
    for name in ("ttyFAKE0", "ttyFAKE1"):
        (tmp_path / name).touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "openk.cli", "find-port", f"--glob={tmp_path}/tty*"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stdin is not None
    first = proc.stdout.readline()
    assert "ttyFAKE0" in first and "ttyFAKE1" in first
    assert "Remove the USB cable" in proc.stdout.readline()
    (tmp_path / "ttyFAKE1").unlink()  # the user unplugs the adapter
    out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0, err
    assert f"'{tmp_path}/ttyFAKE1'" in out and "Reconnect" in out


def test_find_port_without_a_change_says_what_to_do(run_openk: RunOpenk, tmp_path: Path) -> None:
    (tmp_path / "ttyFAKE0").touch()
    line = one_line_error(run_openk("find-port", f"--glob={tmp_path}/tty*", input="\n"))
    assert "no port disappeared" in line


def test_info_reports_versions_and_realtime(run_openk: RunOpenk) -> None:
    proc = run_openk("info")
    assert proc.returncode == 0, proc.stderr
    for key in ("python", "pyarrow", "SCHED_FIFO permitted", "rtprio limit", "latency_timer"):
        assert key in proc.stdout, key


def test_verify_of_a_missing_folder(run_openk: RunOpenk) -> None:
    line = one_line_error(run_openk("verify", "no/such/dir/at/all"))
    assert "neither an existing dataset folder nor a repo id" in line


def test_find_cameras_always_offers_the_synthetic_camera(run_openk: RunOpenk) -> None:
    proc = run_openk("find-cameras")
    assert proc.returncode == 0, proc.stderr
    assert "synthetic" in proc.stdout
