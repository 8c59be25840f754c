"""`openk calibrate` as a person runs it in a terminal (tmux): middle pose and Enter, the live
range table during the sweep, Enter, the JSON file — and the next command running on it.

On `sim` ports a leader is moved by the simulator's scripted hand; a follower's joints stay
where they are, which stands in for a user who presses Enter without moving anything.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from openk import _core
from openk.commands.calibrate import MIN_SWEEP_DEG, radian_joints, unswept_joints
from openk.terminal import LiveBlock

from ..helpers import wait_until
from .conftest import RunOpenk, Tmux, one_line_error

MIDDLE_PROMPT = "Move every joint to the middle of its range, then press Enter."
SWEEP_PROMPT = "Move every joint through its whole range; press Enter when every row says ok."
ROW = re.compile(
    r"^(?P<joint>\w+)\s+(?P<min>-?\d+(?:\.\d+)?)\s+(?P<pos>-?\d+(?:\.\d+)?)"
    r"\s+(?P<max>-?\d+(?:\.\d+)?)\s+(?P<unit>rad|step)\s+(?P<state>ok|move it)\s*$"
)


def joints_of(type_name: str, role: str) -> list[str]:
    names = _core.device_features(type_name, role)["action"]["names"]
    return [n.removesuffix(".pos") for n in names if n.endswith(".pos")]


def shown_table(screen: str) -> dict[str, dict[str, str]]:
    """The rows of the range table last drawn on the screen, by joint."""
    rows: dict[str, dict[str, str]] = {}
    for line in screen.splitlines():
        match = ROW.match(line)
        if match:
            rows[match["joint"]] = match.groupdict()
    return rows


def wait_for_screen(
    tmux: Tmux, ready: Callable[[str], bool], what: str, timeout: float = 30
) -> str:
    def ready_screen() -> str | None:
        screen = tmux.screen()
        return screen if ready(screen) else None

    screen = wait_until(
        ready_screen,
        f"the screen shows {what}",
        timeout,
        interval=0.1,
        details=lambda: f"screen:\n{tmux.screen()}",
    )
    return screen


def every_row(joints: list[str], state: str) -> Callable[[str], bool]:
    def ready(screen: str) -> bool:
        rows = shown_table(screen)
        return all(j in rows and rows[j]["state"] == state for j in joints)

    return ready


def min_sweep(unit: str) -> float:
    turn = 6.283185307179586 if unit == "rad" else 4096
    return turn * MIN_SWEEP_DEG / 360


def calibrate_argv(tmp_path: Path, *device: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "openk.cli",
        "calibrate",
        *device,
        f"--log_file={tmp_path / 'calibrate.log'}",
    ]


@pytest.mark.parametrize("leader", ["openk-1-sts_leader", "openk_leader"])
def test_calibrating_a_leader_in_a_terminal_then_teleoperating_with_it(
    tmux: Tmux, tmp_path: Path, run_openk: RunOpenk, leader: str
) -> None:
    calib = tmp_path / "calibration"
    joints = joints_of(leader, "teleop")
    tmux.start(
        calibrate_argv(
            tmp_path,
            f"--teleop.type={leader}",
            "--teleop.port=sim",
            "--teleop.id=x",
            f"--teleop.calibration_dir={calib}",
        )
    )
    wait_for_screen(tmux, lambda s: MIDDLE_PROMPT in s, "the middle-pose prompt")
    tmux.keys("Enter")
    # The hand sweeps the joints; the live table says when each one has moved far enough.
    screen = wait_for_screen(tmux, every_row(joints, "ok"), "every joint ok in the table")
    assert SWEEP_PROMPT in screen
    tmux.keys("Enter")
    assert tmux.exit_code(timeout=30) == 0, tmux.screen()
    screen = tmux.screen()
    saved = calib / "x.json"
    assert f"calibration saved to {saved}" in screen
    assert "Not saved" not in screen

    cal = json.loads(saved.read_text())
    assert sorted(cal) == sorted(joints)
    shown = shown_table(screen)
    for joint in joints:
        entry, row = cal[joint], shown[joint]
        assert row["unit"] == ("rad" if leader == "openk_leader" else "step")
        assert entry["range_max"] - entry["range_min"] >= min_sweep(row["unit"]), joint
        # The table's last draw shows the very ranges that were saved, to its precision.
        digits = len(row["min"].partition(".")[2])
        assert float(row["min"]) == pytest.approx(entry["range_min"], abs=0.51 * 10**-digits)
        assert float(row["max"]) == pytest.approx(entry["range_max"], abs=0.51 * 10**-digits)
        assert float(row["min"]) <= float(row["pos"]) <= float(row["max"])

    # The next command on the same id runs on that file, without asking to calibrate again.
    proc = run_openk(
        "teleoperate",
        "--robot.type=openk-1-alpha_follower",
        "--robot.port=sim",
        "--robot.sts_port=sim",
        "--robot.id=follower",
        f"--robot.calibration_dir={calib}",
        f"--teleop.type={leader}",
        "--teleop.port=sim",
        "--teleop.id=x",
        f"--teleop.calibration_dir={calib}",
        "--teleop_time_s=1",
        "--realtime=off",
        f"--log_file={tmp_path / 'teleop.log'}",
        input="",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "calibrat" not in (proc.stdout + proc.stderr).lower()
    assert "teleoperation ended" in proc.stdout
    log = (tmp_path / "teleop.log").read_text()
    assert f"teleop {leader} (id x): calibration {saved}" in log


def test_enter_before_anything_moved_saves_nothing_and_says_what_to_do(
    tmux: Tmux, tmp_path: Path
) -> None:
    calib = tmp_path / "calibration"
    follower = "openk-1-alpha_follower"
    joints = joints_of(follower, "robot")
    tmux.start(
        calibrate_argv(
            tmp_path,
            f"--robot.type={follower}",
            "--robot.port=sim",
            "--robot.sts_port=sim",
            "--robot.id=still",
            f"--robot.calibration_dir={calib}",
        )
    )
    wait_for_screen(tmux, lambda s: MIDDLE_PROMPT in s, "the middle-pose prompt")
    tmux.keys("Enter")
    screen = wait_for_screen(tmux, every_row(joints, "move it"), "the range table")
    # DAMIAO joints read radians, the STS grip and wrist_flex read steps.
    units = {j: row["unit"] for j, row in shown_table(screen).items()}
    assert units == {j: "step" if j in ("grip", "wrist_flex") else "rad" for j in joints}

    tmux.keys("Enter")
    screen = wait_for_screen(tmux, lambda s: "Not saved:" in s, "the not-saved message")
    advice = next(line for line in screen.splitlines() if line.startswith("Not saved:"))
    for joint in joints:
        assert joint in advice
    assert "press Enter again" in advice and "Ctrl-C" in advice
    assert not calib.exists() or not list(calib.iterdir())
    assert not (tmp_path / "exit_code").exists(), "the dialog ended instead of waiting"

    # Enter again without moving: asked again, still nothing written.
    tmux.keys("Enter")
    wait_for_screen(tmux, lambda s: s.count("Not saved:") == 2, "the message a second time")
    tmux.keys("C-c")
    assert tmux.exit_code(timeout=30) == 130
    screen = tmux.screen()
    assert f"calibration of robot {follower} (id still) not saved (interrupted)" in screen
    assert "Traceback" not in screen
    assert not calib.exists() or not list(calib.iterdir())


def test_calibrate_without_a_terminal_says_how_to_run_it(
    run_openk: RunOpenk, tmp_path: Path
) -> None:
    # No Enter will ever come: the input ends at once.
    line = one_line_error(
        run_openk(
            "calibrate",
            "--teleop.type=openk-1-sts_leader",
            "--teleop.port=sim",
            "--teleop.id=x",
            f"--teleop.calibration_dir={tmp_path / 'calibration'}",
            input="",
            timeout=60,
        )
    )
    assert "input ended" in line and "terminal" in line and "--scripted=true" in line
    assert not (tmp_path / "calibration" / "x.json").exists()


def test_a_joint_that_only_jittered_is_not_swept() -> None:
    assert radian_joints("openk-1-alpha_follower", "robot") == {
        "shoulder_pan",
        "shoulder_lift",
        "shoulder_roll",
        "elbow_flex",
        "wrist_roll",
    }
    rows = [
        ("shoulder_pan", -0.001, 0.0, 0.002),  # encoder noise, radians
        ("elbow_flex", -0.6, 0.1, 0.7),
        ("grip", 2046.0, 2047.0, 2049.0),  # a step or two of flicker
        ("wrist_flex", 1500.0, 2047.0, 2600.0),
    ]
    assert unswept_joints(rows, {"shoulder_pan", "elbow_flex"}) == ["shoulder_pan", "grip"]


def test_live_block_redraws_in_place_on_a_terminal_and_prints_once_elsewhere() -> None:
    out = io.StringIO()
    block = LiveBlock(out, tty=True)
    block.update(["a 1", "b 1"])
    block.update(["a 2", "b 2"])
    first = "\ra 1\x1b[K\n\rb 1\x1b[K\n\x1b[J"
    assert out.getvalue() == first + "\x1b[2A\ra 2\x1b[K\n\rb 2\x1b[K\n\x1b[J"
    block.detach()
    block.update(["c"])
    assert out.getvalue().endswith("\x1b[J\rc\x1b[K\n\x1b[J")  # below, no cursor-up

    plain = io.StringIO()
    block = LiveBlock(plain, tty=False)
    block.update(["a 1"])
    block.update(["a 2"])
    assert plain.getvalue() == ""
    block.close()
    assert plain.getvalue() == "a 2\n"
