"""Scheduled goals (replay, policy rollout) and the motion-safety options, on simulated arms."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import openk._core as _core
from openk.errors import ConfigError, OpenKError

from ..helpers import wait_until

N_ACTIONS = 7


def drain(session: Any) -> pa.Table:
    batches = []
    while (b := session.next_batch(0.0)) is not None:
        batches.append(pa.table(b))
    return pa.concat_tables(batches) if batches else pa.table({})


def test_a_sequence_plays_on_the_loop_clock_and_wait_idle_waits_for_its_end(
    make_session: Callable[..., Any],
) -> None:
    s = make_session(control_hz=500.0, record_fps=50.0)
    s.start()
    s.start_episode()
    actions = np.tile(np.linspace(0.0, 20.0, 25, dtype=np.float32)[:, None], (1, N_ACTIONS))
    start = time.monotonic_ns() + 100_000_000
    s.send_actions(actions, start_ns=start)
    assert s.pending_actions == 25
    assert s.wait_idle(10.0)
    # The last row is due 24 / 50 s after the start: waiting ended no earlier.
    assert time.monotonic_ns() >= start + 480_000_000
    assert s.pending_actions == 0
    report = s.end_episode()
    table = drain(s)
    sent = np.asarray(table.column("action").to_pylist())
    # The episode's last row may be a tick before the last action was reached (rows come at
    # 50 fps): at most one row's step away from it.
    assert sent[-1] == pytest.approx([20.0] * N_ACTIONS, abs=20.0 / 24 + 1e-3)
    # The goal rose through the rows in order (the even steps are proven in loop_goals.rs).
    assert np.all(np.diff(sent[:, 0]) >= -1e-3)
    assert report.late_actions == 0


def test_a_nan_action_holds_the_goal_and_names_the_joint(
    make_session: Callable[..., Any],
) -> None:
    s = make_session(control_hz=200.0, record_fps=50.0, max_invalid_actions=3)
    s.start()
    s.send_action([5.0] * N_ACTIONS)
    assert s.wait_idle(5.0)
    bad = [5.0] * N_ACTIONS
    bad[3] = math.nan
    s.send_action(bad)
    assert s.wait_idle(5.0)
    events = s.events()
    assert any(
        e["motor"] == "elbow_flex.pos" and "not a finite number" in str(e["reason"]) for e in events
    ), events
    assert s.is_running
    # Far outside a joint's calibrated range (wrong units, a policy gone wrong): refused too.
    far = [5.0] * N_ACTIONS
    far[6] = 1e4
    s.send_action(far)
    assert s.wait_idle(5.0)
    assert any(
        e["motor"] == "grip.pos" and "outside its range" in str(e["reason"]) for e in s.events()
    ), s.events()
    # Three in a row stop the loop with a failure naming the actions.
    s.send_actions([bad, bad, bad])
    wait_until(lambda: not s.is_running, "three invalid actions stopped the loop")
    failure = s.failure()
    assert failure is not None and "invalid actions" in str(failure), failure
    with pytest.raises(OpenKError, match="invalid actions"):
        s.wait_idle(1.0)


def test_stop_returns_home_before_the_stop_state(make_session: Callable[..., Any]) -> None:
    s = make_session(
        control_hz=200.0,
        record_fps=50.0,
        end_home_ramp_time_s=0.4,
        end_home_settle_s=0.2,
    )
    s.start()
    s.send_action([10.0] * N_ACTIONS)
    assert s.wait_idle(5.0)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 >= 0.6


def test_scheduling_is_refused_while_teleoperating_and_bad_options_name_the_fix(
    make_session: Callable[..., Any],
) -> None:
    s = make_session(teleop={"type": "openk-1-sts_leader", "port": "sim", "id": "leader"})
    s.start()
    with pytest.raises(ConfigError, match="teleoperator"):
        s.send_actions([[0.0] * N_ACTIONS])
    robot = {"type": "openk-1-alpha_follower2", "port": "sim", "sts_port": "sim"}
    for kwargs, match in [
        ({"start_ramp_time_s": -1.0}, "start_ramp_time_s"),
        ({"end_home_ramp_dt_s": 0.0}, "end_home_ramp_dt_s"),
        ({"goal_velocity_limit": {"elbow": 1.0}}, "elbow_flex"),
        ({"max_invalid_actions": 0}, "max_invalid_actions"),
    ]:
        with pytest.raises(ConfigError, match=match):
            _core.TeleopSession(robot, **kwargs)
    r = make_session(control_hz=200.0, record_fps=50.0)
    r.start()
    with pytest.raises(ConfigError, match="row 1 of actions has 2 values"):
        r.send_actions([[0.0] * N_ACTIONS, [1.0, 2.0]])
