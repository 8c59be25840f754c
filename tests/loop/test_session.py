"""The teleop/record loop seen from Python, on simulated arms (ptys with real wire timing)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import openk._core as _core
from openk.errors import (
    BusTimeoutError,
    CalibrationError,
    ConfigError,
    OpenKError,
    PortError,
)

from ..helpers import GilProbe, wait_until

STS_LEADER = {"type": "openk-1-sts_leader", "port": "sim", "id": "leader"}

FOLLOWER_ACTIONS = [
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "shoulder_roll.pos",
    "elbow_flex.pos",
    "wrist_roll.pos",
    "wrist_flex.pos",
    "grip.pos",
]


def drain(session: Any, timeout: float = 0.0) -> pa.Table:
    batches = []
    while (b := session.next_batch(timeout)) is not None:
        batches.append(pa.table(b))
    return pa.concat_tables(batches) if batches else pa.table({})


def record(session: Any, seconds: float) -> tuple[pa.Table, dict[str, Any]]:
    session.start_episode()
    time.sleep(seconds)
    telemetry = session.end_episode()
    return drain(session), telemetry


def test_features_are_known_before_connecting() -> None:
    f = _core.device_features("openk-1-alpha_follower2")
    assert f["action"]["names"] == FOLLOWER_ACTIONS
    assert f["observation.state"]["shape"] == (17,)
    names = f["observation.state"]["names"]
    assert names[:7] == FOLLOWER_ACTIONS
    assert names[7] == "shoulder_pan.vel" and names[-1] == "wrist_roll.tor"
    leader = _core.device_features("openk-1-sts_leader", "teleop")
    assert leader["action"]["shape"] == (7,)
    types = _core.device_types()
    assert "openk-1-alpha_leader" in types["teleop"]
    assert "one-motor-test_follower" in types["robot"]


def test_state_channels_select_what_the_follower_observes_and_records(
    make_session: Callable[..., Any],
) -> None:
    f = _core.device_features("openk-1-alpha_follower2", state_channels=["vel", "pos"])
    names = f["observation.state"]["names"]
    assert f["observation.state"]["shape"] == (12,)
    assert names[:7] == FOLLOWER_ACTIONS and names[7:] == [
        n.replace(".pos", ".vel") for n in FOLLOWER_ACTIONS[:5]
    ]
    for bad, expected in [
        (["pos", "torque"], 'no state channel "torque"; allowed: pos, vel, tor'),
        (["vel"], "state_channels must include pos"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            _core.device_features("openk-1-alpha_follower2", state_channels=bad)
    with pytest.raises(ConfigError, match="state_channels is a robot option"):
        _core.device_features("openk-1-sts_leader", "teleop", state_channels=["pos"])
    robot = {
        "type": "openk-1-alpha_follower2",
        "port": "sim",
        "sts_port": "sim",
        "id": "follower",
        "state_channels": ["pos", "vel"],
    }
    s = make_session(robot, dict(STS_LEADER), control_hz=200.0, record_fps=30.0)
    assert s.observation_names == names
    s.start()
    table, _ = record(s, 0.5)
    assert table.num_rows > 0
    assert {len(row) for row in table.column("observation.state").to_pylist()} == {12}
    with pytest.raises(ConfigError, match="state_channels"):
        make_session({**robot, "state_channels": ["tor"]})


def test_unknown_robot_type_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="openk-1-alpha_follower2") as e:
        _core.TeleopSession({"type": "so101_follower", "port": "sim"})
    assert "so101_follower" in str(e.value)


def test_bad_direction_map_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="1 or -1"):
        _core.TeleopSession(
            {"type": "one-motor-test_follower", "port": "sim", "direction_map": {"motor1": 3}}
        )


def one_motor_arm(port: str = "sim") -> dict[str, Any]:
    """The one-motor test follower with id arm7 (calibration file arm7.json)."""
    return {"type": "one-motor-test_follower", "port": port, "id": "arm7"}


def write_arm7_calibration(calib_dir: Path, motor_id: int) -> None:
    (calib_dir / "arm7.json").write_text(
        json.dumps(
            {"motor1": {"id": motor_id, "motor_offset": 0.0, "range_min": -1, "range_max": 1}}
        )
    )


def test_missing_calibration_says_how_to_calibrate(make_session: Callable[..., Any]) -> None:
    s = make_session(one_motor_arm("/dev/ttyOPENK_NOPE"))
    with pytest.raises(
        CalibrationError, match=r"openk calibrate --robot\.type=one-motor-test_follower"
    ):
        s.start()


def test_mismatched_calibration_names_the_motor(
    calib_dir: Path, make_session: Callable[..., Any]
) -> None:
    write_arm7_calibration(calib_dir, motor_id=9)
    s = make_session(one_motor_arm())
    with pytest.raises(CalibrationError, match="motor1"):
        s.start()


def test_port_that_does_not_exist_is_a_port_error(
    calib_dir: Path, make_session: Callable[..., Any]
) -> None:
    write_arm7_calibration(calib_dir, motor_id=1)
    s = make_session(one_motor_arm("/dev/ttyOPENK_NOPE"))
    with pytest.raises(PortError, match="/dev/ttyOPENK_NOPE"):
        s.start()


def test_motor_that_does_not_answer_is_named(make_session: Callable[..., Any]) -> None:
    s = make_session(
        {"type": "one-motor-test_follower", "port": "sim://?missing=motor1", "id": "f"}
    )
    with pytest.raises(BusTimeoutError, match="motor1"):
        s.start()


def test_teleop_rows_carry_the_schema_and_clock(make_session: Callable[..., Any]) -> None:
    s = make_session(teleop=dict(STS_LEADER), control_hz=200.0, record_fps=50.0)
    before = time.monotonic_ns()
    s.start()
    table, telemetry = record(s, 1.0)
    after = time.monotonic_ns()

    # The same rows stream through pyarrow's C stream reader too.
    s.start_episode()
    time.sleep(0.2)
    s.end_episode()
    b = s.next_batch(0.0)
    assert b is not None
    reader = pa.RecordBatchReader.from_stream(b)
    assert reader.schema.names[:3] == ["capture_time_ns", "observation.state", "action"]
    assert sum(batch.num_rows for batch in reader) == b.num_rows
    drain(s)

    state = table.schema.field("observation.state")
    action = table.schema.field("action")
    assert state.type == pa.list_(pa.float32(), 17)
    assert action.type == pa.list_(pa.float32(), 7)
    assert json.loads(action.metadata[b"names"]) == FOLLOWER_ACTIONS
    assert table.schema.field("capture_time_ns").type == pa.int64()

    # Every row the loop counted reached Python.
    assert telemetry.rows == table.num_rows
    assert table.num_rows >= 5, table.num_rows
    t = table.column("capture_time_ns").to_pylist()
    # Rows a late tick crossed repeat its state (same capture time) and are counted as such.
    assert all(b >= a for a, b in itertools.pairwise(t))
    assert telemetry.rows_repeated == sum(b == a for a, b in itertools.pairwise(t))
    # Same clock as Python's time.monotonic_ns().
    assert before <= t[0] and t[-1] <= after
    # Rows follow the dataset clock (50 fps), whatever the tick rate: row i is captured at or
    # after t0 + i / 50 s, one per 20 ms of the episode.
    assert all(ti >= t[0] + i * 20_000_000 for i, ti in enumerate(t))
    expected = telemetry.duration_ns * 50 // 1_000_000_000 + 1
    assert abs(table.num_rows - expected) <= 1, (table.num_rows, telemetry.duration_ns)
    ticks = table.column("tick_index").to_pylist()
    assert all(b >= a for a, b in itertools.pairwise(ticks))
    assert telemetry.target_hz == pytest.approx(200.0)


def test_follower_tracks_the_moving_leader(make_session: Callable[..., Any]) -> None:
    s = make_session(teleop=dict(STS_LEADER), control_hz=200.0, record_fps=50.0)
    s.start()
    table, _ = record(s, 1.5)
    actions = table.column("action").to_pylist()
    states = table.column("observation.state").to_pylist()
    # The simulated hand moves the leader: goals change over the episode...
    spread = max(a[0] for a in actions) - min(a[0] for a in actions)
    assert spread > 1.0, spread
    # ...and the follower's position follows them (normalised units, same joint order).
    late = list(zip(actions, states, strict=True))[len(actions) // 2 :]
    err = sum(abs(a[0] - st[0]) for a, st in late) / len(late)
    assert err < spread, (err, spread)


@pytest.mark.parametrize("control_type", ["POS_VEL", "MIT"])
def test_simulated_follower_reports_real_looking_velocity_and_torque(
    make_session: Callable[..., Any], control_type: str
) -> None:
    robot = {
        "type": "openk-1-alpha_follower",
        "port": "sim",
        "sts_port": "sim",
        "id": "follower",
        "control_type": control_type,
    }
    s = make_session(robot, dict(STS_LEADER), control_hz=200.0, record_fps=30.0)
    s.start()
    table, _ = record(s, 3.0)
    names = s.observation_names
    t = np.asarray(table.column("capture_time_ns").to_pylist(), dtype=np.float64) / 1e9
    state = np.asarray(table.column("observation.state").to_pylist(), dtype=np.float64)
    action = np.asarray(table.column("action").to_pylist(), dtype=np.float64)
    # Rows a late tick repeated carry no new measurement: compare measured rows only.
    fresh = np.concatenate(([True], np.diff(t) > 0))
    t, state = t[fresh], state[fresh]
    joints = [n.removesuffix(".vel") for n in names if n.endswith(".vel")]
    assert len(joints) == 5, names
    for j in joints:
        pos, vel = state[:, names.index(f"{j}.pos")], state[:, names.index(f"{j}.vel")]
        tor = state[:, names.index(f"{j}.tor")]
        # .pos is normalised (-100..100 over the calibrated range), .vel in rad/s: the
        # correlation does not care about the scale.
        slope = (pos[2:] - pos[:-2]) / (t[2:] - t[:-2])
        r = float(np.corrcoef(vel[1:-1], slope)[0, 1])
        assert len(np.unique(vel)) >= 10, (j, np.unique(vel))
        assert r > 0.5, (j, r)
        # Smooth motion needs a fraction of the smallest TMAX (10 N·m), never the limit.
        assert np.abs(tor).max() < 2.5, (j, tor.min(), tor.max())
        assert len(np.unique(tor)) >= 10, (j, np.unique(tor))
    # The simulated hand moves the leader's joints each their own way: never all at zero.
    assert not np.any(np.all(action == 0.0, axis=1))


def test_max_relative_target_limits_each_step(make_session: Callable[..., Any]) -> None:
    robot = {
        "type": "openk-1-alpha_follower2",
        "port": "sim",
        "sts_port": "sim",
        "id": "f",
        "max_relative_target": 0.5,
    }
    s = make_session(robot=robot, teleop=dict(STS_LEADER), control_hz=200.0, record_fps=200.0)
    s.start()
    table, _ = record(s, 0.8)
    for a, st in zip(
        table.column("action").to_pylist(),
        table.column("observation.state").to_pylist(),
        strict=True,
    ):
        # The goal sent at a tick is within 0.5 of the position seen one tick before; the
        # position one tick later can differ a bit, so allow a margin of one more step.
        assert all(abs(a[j] - st[j]) <= 1.0 + 1e-3 for j in range(7)), (a, st)


def test_unplugged_leader_stops_safely_and_keeps_rows(make_session: Callable[..., Any]) -> None:
    s = make_session(teleop=dict(STS_LEADER), control_hz=200.0, record_fps=50.0)
    s.start()
    s.start_episode()
    wait_until(lambda: s.telemetry().rows >= 1, "the episode has a row")
    s.simulate_unplug("teleop", "sts")
    rows = 0
    deadline = time.monotonic() + 10
    with pytest.raises((PortError, BusTimeoutError)) as err:
        while time.monotonic() < deadline:
            b = s.next_batch(0.2)
            if b is not None:
                t = pa.table(b)
                rows += t.num_rows
                ts = t.column("capture_time_ns").to_pylist()
                assert ts == sorted(ts)
    assert "leader" in str(err.value)
    assert rows >= 1, rows
    assert not s.is_running
    events = s.events()
    assert any("leader lost" in e["reason"] for e in events), events
    # Stopping again is harmless.
    s.stop()
    s.stop()


def test_replay_moves_the_follower(make_session: Callable[..., Any]) -> None:
    s = make_session(control_hz=200.0, record_fps=50.0)
    s.start()
    s.start_episode()
    goal = dict.fromkeys(FOLLOWER_ACTIONS, 20.0)
    for _ in range(50):
        s.send_action(goal)
        time.sleep(0.01)
    s.end_episode()
    table = drain(s)
    last_action = table.column("action").to_pylist()[-1]
    assert last_action == pytest.approx([20.0] * 7)
    with pytest.raises(ConfigError, match="7 values"):
        s.send_action([1.0, 2.0])


def test_send_action_is_refused_while_teleoperating(make_session: Callable[..., Any]) -> None:
    s = make_session(teleop=dict(STS_LEADER))
    s.start()
    with pytest.raises(ConfigError, match="replay"):
        s.send_action([0.0] * 7)


def test_waiting_for_batches_releases_the_gil(make_session: Callable[..., Any]) -> None:
    s = make_session(teleop=dict(STS_LEADER), control_hz=100.0, record_fps=10.0)
    s.start()
    # No episode is open: nothing comes, so each wait lasts its whole timeout; a Python thread
    # must run meanwhile (it could not if the GIL were held, see tests/test_helpers.py).
    with GilProbe() as probe:
        for _ in range(6):
            assert probe.call(0.2, s.next_batch, 0.2) is None
    assert probe.calls_it_ran_during >= 3, probe.calls_it_ran_during


def test_realtime_mode_is_reported(make_session: Callable[..., Any]) -> None:
    s = make_session(teleop=dict(STS_LEADER), realtime="off")
    s.start()
    assert s.realtime.startswith("SCHED_OTHER")
    auto = make_session(teleop=dict(STS_LEADER), realtime="auto")
    auto.start()
    assert auto.realtime.startswith(("SCHED_FIFO", "SCHED_OTHER"))
    assert auto.telemetry().realtime == auto.realtime


def test_context_manager_stops_the_loop(make_session: Callable[..., Any]) -> None:
    s = make_session(teleop=dict(STS_LEADER))
    with s:
        assert s.is_running
    assert not s.is_running
    with pytest.raises(OpenKError, match="not started"):
        s.start_episode()


def test_scripted_calibration_writes_a_lerobot_file(calib_dir: Path) -> None:
    config = {"type": "one-motor-test_leader", "port": "sim", "id": "l1"}
    config["calibration_dir"] = str(calib_dir)
    cal = _core.Calibrator(config, "teleop")
    try:
        cal.set_homing()
        misses = 0
        rows: list[Any] = []
        for _ in range(40):
            try:
                rows = cal.sample()
                misses = 0
            except BusTimeoutError:
                # As in `openk calibrate`: one late answer (a busy machine delays the
                # simulator) does not spoil the sweep, a motor that stays silent does.
                misses += 1
                if misses >= 5:
                    raise
            time.sleep(0.03)
        assert rows and rows[0][0] == "motor1"
        path = cal.save()
    finally:
        cal.close()
    assert path == _core.calibration_path(config, "teleop")
    entry = json.loads(Path(path).read_text())["motor1"]
    assert entry["id"] == 1 and entry["drive_mode"] == 0
    assert entry["range_min"] < entry["range_max"]
    assert "homing_offset" in entry


def test_calibrating_without_moving_is_refused(calib_dir: Path) -> None:
    config = {"type": "one-motor-test_follower", "port": "sim", "id": "still"}
    config["calibration_dir"] = str(calib_dir)
    cal = _core.Calibrator(config, "robot")
    try:
        cal.sample()
        with pytest.raises(ConfigError, match="did not move"):
            cal.save()
    finally:
        cal.close()
