"""`openk find-joint-limits`: what the follower and leader reached, after the warm-up only."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from openk.commands.find_joint_limits import find_joint_limits
from openk.config import FindJointLimitsConfig, parse_config
from openk.errors import ConfigError
from openk.terminal import StatusLine

from .conftest import RunOpenk, one_line_error
from .fakes import ScriptedSession

SIM = [
    "--robot.type=one-motor-test_follower",
    "--robot.port=sim",
    "--teleop.type=one-motor-test_leader",
    "--teleop.port=sim",
]


def _cfg(tmp_path: Path, *extra: str) -> FindJointLimitsConfig:
    return parse_config(FindJointLimitsConfig, [*SIM, f"--log_file={tmp_path / 'l.log'}", *extra])


def test_ranges_cover_what_was_measured_after_the_warm_up(tmp_path: Path) -> None:
    # The scripted rows' first value counts up from 0 (3 rows per read), the second stays 0.5.
    session = ScriptedSession(rows_per_read=3)
    out = io.StringIO()
    result = find_joint_limits(
        _cfg(tmp_path, "--warmup_time_s=0", "--teleop_time_s=0.3"),
        session_factory=lambda c: session,
        ui=StatusLine(out, tty=False),
    )
    assert result.samples > 0 and session.closed
    assert result.follower.of("shoulder_pan.pos") == (0.0, float(result.samples - 1))
    assert result.leader.of("grip.pos") == (0.5, 0.5)
    text = out.getvalue()
    assert re.search(r"shoulder_pan\s+0\.00\s+" + f"{result.samples - 1:.2f}", text), text


def test_bad_times_are_refused_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--teleop_time_s"):
        _cfg(tmp_path, "--teleop_time_s=0")
    with pytest.raises(ConfigError, match="--warmup_time_s"):
        _cfg(tmp_path, "--warmup_time_s=-1")
    with pytest.raises(ConfigError, match="urdf_path"):
        _cfg(tmp_path, "--urdf_path=arm.urdf")


def test_on_simulated_arms_the_joint_moves(run_openk: RunOpenk, tmp_path: Path) -> None:
    result = run_openk(
        "find-joint-limits",
        *SIM,
        "--warmup_time_s=0.5",
        "--teleop_time_s=3",
        "--start_ramp_time_s=0.2",
        "--end_home_ramp_time_s=0.2",
        "--end_home_settle_s=0",
        "--realtime=off",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    row = re.search(r"^motor1\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", result.stdout, re.M)
    assert row is not None, result.stdout
    f_lo, f_hi, l_lo, l_hi = map(float, row.groups())
    # The simulated hand sweeps the leader; the follower follows it.
    assert l_hi - l_lo > 5 and f_hi - f_lo > 5, row.group(0)
    bad = run_openk("find-joint-limits", *SIM, "--teleop_time_s=0")
    assert bad.returncode != 0 and "--teleop_time_s" in one_line_error(bad)
