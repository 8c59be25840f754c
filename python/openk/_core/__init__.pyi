"""Type stubs for the native module `openk._core` (rust/py). Checked against the built module
by `python -m mypy.stubtest openk._core` (scripts/test.sh).

Each motor protocol is a submodule, `openk._core.feetech` and `openk._core.damiao` (codec on
bytes, bus, simulator; stubs beside this file); the arms, the loop and calibration are here."""

from collections.abc import Sequence
from typing import final

from . import damiao as damiao
from . import feetech as feetech

# pyo3 lists every export in the module's __all__; stubtest checks this copy against it.
__all__ = [
    "SIM_PORT",
    "BusRoundStats",
    "Calibrator",
    "DeviceInfo",
    "FrameBatch",
    "JointInfo",
    "LeaderReader",
    "LoopTelemetry",
    "SimRig",
    "TeleopSession",
    "__version__",
    "calibration_path",
    "damiao",
    "device_catalog",
    "device_features",
    "device_types",
    "feetech",
    "is_sim_port",
    "now_ns",
    "validate_loop",
]

__version__: str

def now_ns() -> int:
    """Nanoseconds on CLOCK_MONOTONIC, the same clock as `time.monotonic_ns()`."""

# --- control (arms, teleop loop, recording batches) ---

@final
class FrameBatch:
    """Rows of a recording. Zero-copy Arrow: `pa.table(batch)` or
    `pa.RecordBatchReader.from_stream(batch)`.

    Columns: `capture_time_ns` int64 (CLOCK_MONOTONIC, same clock as `now_ns`),
    `observation.state` fixed_size_list<float32>[n], `action` fixed_size_list<float32>[m] (each
    with field metadata `names` = JSON list of feature names), then the telemetry columns
    `tick_index`, `lateness_ns`, `tick_busy_ns`, `episode_index` (int64), and `intervention`
    (bool: the leader drove the row's goal).
    """

    @property
    def num_rows(self) -> int: ...
    def __len__(self) -> int: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

@final
class BusRoundStats:
    """Round-trip times of one bus, ns."""

    def __new__(
        cls, *, p50_ns: int = 0, p99_ns: int = 0, p999_ns: int = 0, max_ns: int = 0
    ) -> BusRoundStats: ...
    @property
    def p50_ns(self) -> int: ...
    @property
    def p99_ns(self) -> int: ...
    @property
    def p999_ns(self) -> int: ...
    @property
    def max_ns(self) -> int: ...
    def to_dict(self) -> dict[str, int]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class LoopTelemetry:
    """The control loop's report of a run or an episode. One unit per quantity: durations in
    nanoseconds (`_ns`, ints), rates in Hz, counts as ints; `bus_errors` / `bus_retries` by
    "<part>.<motor>" (only motors with any), `bus_round` by bus part. `late_actions`: dataset
    row periods without a fresh scheduled action, plus actions that arrived after their time.
    `to_dict()` is the form written into episode metadata (same names and units)."""

    def __new__(
        cls,
        *,
        ticks: int = 0,
        overruns: int = 0,
        rows: int = 0,
        rows_dropped: int = 0,
        rows_repeated: int = 0,
        late_actions: int = 0,
        target_hz: float = 0.0,
        achieved_hz: float = 0.0,
        duration_ns: int = 0,
        lateness_p50_ns: int = 0,
        lateness_p99_ns: int = 0,
        lateness_p999_ns: int = 0,
        lateness_max_ns: int = 0,
        busy_p50_ns: int = 0,
        busy_p99_ns: int = 0,
        busy_max_ns: int = 0,
        bus_round: dict[str, BusRoundStats] | None = None,
        bus_errors: dict[str, int] | None = None,
        bus_retries: dict[str, int] | None = None,
        realtime: str = "",
    ) -> LoopTelemetry: ...
    @property
    def ticks(self) -> int: ...
    @property
    def overruns(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def rows_dropped(self) -> int: ...
    @property
    def rows_repeated(self) -> int: ...
    @property
    def late_actions(self) -> int: ...
    @property
    def target_hz(self) -> float: ...
    @property
    def achieved_hz(self) -> float: ...
    @property
    def duration_ns(self) -> int: ...
    @property
    def lateness_p50_ns(self) -> int: ...
    @property
    def lateness_p99_ns(self) -> int: ...
    @property
    def lateness_p999_ns(self) -> int: ...
    @property
    def lateness_max_ns(self) -> int: ...
    @property
    def busy_p50_ns(self) -> int: ...
    @property
    def busy_p99_ns(self) -> int: ...
    @property
    def busy_max_ns(self) -> int: ...
    @property
    def bus_round(self) -> dict[str, BusRoundStats]: ...
    @property
    def bus_errors(self) -> dict[str, int]: ...
    @property
    def bus_retries(self) -> dict[str, int]: ...
    @property
    def bus_errors_total(self) -> int: ...
    @property
    def realtime(self) -> str: ...
    def to_dict(self) -> dict[str, object]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class TeleopSession:
    """Leader -> follower teleoperation, or, without a teleop, replay and policy rollout, on a
    dedicated Rust thread ticking at `control_hz`.

    `robot`/`teleop` are plain dicts: {type, port, sts_port, id, calibration_dir,
    max_relative_target, disable_torque_on_disconnect, control_type, direction_map,
    damiao_kp, damiao_kd, damiao_velocity_limit, motor_norm_mode, sts_motor_norm_mode}.
    `port: "sim"` starts the matching simulator. Every blocking call releases the GIL.

    Without a teleop the goals come from a schedule of timed actions (`send_action`,
    `send_actions`): the loop interpolates between them at `control_hz` and never waits for
    the producer; when the schedule runs out it holds the last goal and counts every dataset
    row period without a fresh action in the telemetry's `late_actions`. A NaN or infinite
    action, or one more than half its range beyond a joint's calibrated range (wrong units, a
    policy gone wrong), is refused: the goal holds, a safety event names the joint, and
    `max_invalid_actions` of them in a row stop the loop (failure device "actions").

    Motion safety (all 0 = off, the defaults here; the CLI passes its config's values):
    `start_ramp_time_s`: once the first leader value or scheduled action exists, the goal
    blends from the follower's pose then to the live target over this time.
    `end_home_ramp_time_s`: stop() (or a leader loss, or too many invalid actions) first moves
    the goal to home (0 for every `.pos` action, as the reference) over this time, holds it
    `end_home_settle_s`, then the follower holds or goes limp (disable_torque_on_disconnect);
    0 skips the return home. A failing follower bus stops at once. `*_dt_s`: the ramp advances
    in steps this far apart (the reference's ramp_action); None steps every control tick.
    `goal_velocity_limit`: largest goal speed (units/s; one number or {joint: number}) of the
    scheduled goals. `schedule_capacity`: actions the loop holds ahead; more wait on this side
    and are handed over by `wait_idle` / `next_batch`.
    `goal_source` ("leader" or "schedule", only with a teleop): what drives the goals first;
    `set_goal_source` then hands them between the leader and the scheduled actions (DAgger),
    blending from the goal in force over `handover_time_s`. None: the leader drives.
    """

    def __new__(
        cls,
        robot: dict[str, object],
        teleop: dict[str, object] | None = None,
        *,
        control_hz: float = 200.0,
        record_fps: float = 30.0,
        realtime: str = "auto",
        cpu: int | None = None,
        batch_rows: int = 256,
        max_consecutive_errors: int | None = None,
        parallel: bool = True,
        start_ramp_time_s: float = 0.0,
        start_ramp_dt_s: float | None = None,
        end_home_ramp_time_s: float = 0.0,
        end_home_ramp_dt_s: float | None = None,
        end_home_settle_s: float = 0.0,
        goal_velocity_limit: float | dict[str, float] | None = None,
        max_invalid_actions: int = 5,
        schedule_capacity: int = 4096,
        goal_source: str | None = None,
        handover_time_s: float = 0.5,
    ) -> TeleopSession: ...
    def connect(self) -> None: ...
    def start(self) -> None: ...
    @property
    def is_running(self) -> bool: ...
    @property
    def realtime(self) -> str: ...
    @property
    def observation_names(self) -> list[str]: ...
    @property
    def action_names(self) -> list[str]: ...
    def start_episode(self, timeout: float = 5.0) -> int: ...
    def end_episode(self, timeout: float = 10.0) -> LoopTelemetry: ...
    def next_batch(self, timeout: float = 0.1) -> FrameBatch | None: ...
    def telemetry(self) -> LoopTelemetry:
        """The whole run's loop report (published by the loop every 20 ms, exact at episode
        ends and at stop)."""

    def episode_telemetry(self) -> LoopTelemetry:
        """The same report for the current (or last) episode."""

    def set_goal_source(self, source: str) -> None:
        """Hands the goals to "leader" or "schedule" (a session made with `goal_source`),
        blending over `handover_time_s`; rows carry intervention=True while the leader drives
        and scheduled actions are dropped meanwhile. Waits for the loop to take it."""

    def send_action(self, action: dict[str, float] | Sequence[float]) -> None:
        """One action (a dict by action name, or values in `action_names` order): the goal
        reaches it one dataset row period (1/record_fps) after the loop receives it, moving
        linearly from the goal in force at control_hz. Same as `send_actions([action])`.
        Never blocks. Only without a teleop, or with one and `goal_source` set (ConfigError
        otherwise)."""

    def send_actions(self, actions: Sequence[Sequence[float]], start_ns: int | None = None) -> None:
        """A timed sequence of actions (rows in `action_names` order; a list of lists or a 2-D
        numpy array), e.g. a policy's action chunk or a whole episode to replay. Row i is due at
        `start_ns + i / record_fps`, `start_ns` on the loop's clock (`openk._core.now_ns()`,
        which is `time.monotonic_ns()` on Linux); None: row 0 is due one row period after the
        loop receives it. The goal is interpolated between rows at control_hz, reaching each
        row at its time. The sequence replaces whatever was scheduled from its start on (so a
        new chunk supersedes the rest of the previous one), and the interpolation restarts
        from the goal in force: nothing jumps. Rows whose time has already passed when the loop
        receives them are dropped and counted in `late_actions`. Never blocks."""

    @property
    def pending_actions(self) -> int:
        """Scheduled actions not yet reached (nor superseded, dropped as late or refused); a
        policy can compute its next chunk when this runs low."""

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits (GIL released) until every scheduled action has been reached, i.e. a replay
        has played to its end; True when done, False after `timeout` seconds. Raises the
        loop's failure if it stopped."""

    def events(self) -> list[dict[str, object]]: ...
    def failure(self) -> Exception | None: ...
    def simulate_unplug(self, device: str, bus: str = "damiao") -> None: ...
    def stop(self) -> None:
        """Stops the loop and closes the ports; returns once the follower reached its stop
        state (after the return home when end_home_ramp_time_s > 0; Ctrl-C cuts that short)."""

    def __enter__(self) -> TeleopSession: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class Calibrator:
    """Scripted calibration of one device (the CLI adds the prompts)."""

    def __new__(cls, config: dict[str, object], kind: str = "robot") -> Calibrator: ...
    def read_raw(self) -> list[tuple[str, float]]: ...
    def set_homing(self, zero_damiao: bool = True) -> None: ...
    def sample(self) -> list[tuple[str, float, float, float]]: ...
    def save(self) -> str: ...
    @property
    def path(self) -> str: ...
    def close(self) -> None: ...

@final
class LeaderReader:
    """A leader read on its own (no follower, no loop), for teleoperator APIs polled by their
    caller (lerobot's `get_action`). `config` is a teleop dict as for `TeleopSession`."""

    def __new__(cls, config: dict[str, object]) -> LeaderReader: ...
    @property
    def names(self) -> list[str]:
        """The names `read` returns values for, in order (e.g. `shoulder_pan.pos`)."""

    def read(self) -> list[float]:
        """The leader's present calibrated values, in `names` order."""

    def close(self) -> None:
        """Closes the ports (and simulators)."""

@final
class SimRig:
    """Simulators for a robot type (and optionally a teleop type), for benchmarks and peers.

    `ports` maps "robot.port", "robot.sts_port", "teleop.port" to pty paths.
    """

    def __new__(cls, robot_type: str, teleop_type: str | None = None) -> SimRig: ...
    @property
    def ports(self) -> dict[str, str]: ...
    def close(self) -> None: ...

# --- device catalogue (the core's device facts) ---

SIM_PORT: str

@final
class JointInfo:
    """One joint of a device type, in feature order."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str:
        """ "DM4310", "DM6006" or "sts3215"."""

    @property
    def bus(self) -> str:
        """ "damiao" (on `port`) or "sts" (on `sts_port` beside DAMIAO motors, else `port`)."""

    @property
    def motor_id(self) -> int: ...
    @property
    def raw_unit(self) -> str:
        """ "rad" (DAMIAO) or "step" (STS, 4096 per turn)."""

    @property
    def raw_per_turn(self) -> float:
        """Raw units in one turn: 2π (radians) or 4096 (STS steps)."""

    @property
    def radians(self) -> bool: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class DeviceInfo:
    """A robot or teleoperator type as the core knows it."""

    @property
    def type_name(self) -> str: ...
    @property
    def aliases(self) -> list[str]: ...
    @property
    def names(self) -> list[str]:
        """The canonical name, then the aliases."""

    @property
    def kind(self) -> str:
        """ "robot" or "teleop"."""

    @property
    def joints(self) -> list[JointInfo]: ...
    @property
    def radian_joints(self) -> list[str]: ...
    @property
    def needs_sts_port(self) -> bool: ...
    @property
    def sts_link(self) -> str | None:
        """ "ttl" or "can"; None without STS servos."""

    @property
    def config_keys(self) -> list[str]: ...
    @property
    def default_id(self) -> str: ...
    @property
    def default_control_type(self) -> str: ...
    @property
    def default_norm_mode(self) -> str: ...
    @property
    def default_sts_norm_mode(self) -> str: ...
    @property
    def default_disable_torque_on_disconnect(self) -> bool: ...
    @property
    def compliant(self) -> bool: ...
    @property
    def state_channels(self) -> list[str]:
        """The state channels a robot can observe (`state_channels`); empty for teleoperators."""

    @property
    def observation_names(self) -> list[str]:
        """Observation features with every state channel."""

    @property
    def action_names(self) -> list[str]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

def device_catalog() -> list[DeviceInfo]:
    """Every robot and teleoperator type, robots first."""

def is_sim_port(port: str) -> bool:
    """`sim` or `sim://...` selects the simulator; anything else names a serial device."""

def device_features(
    type_name: str, kind: str = "robot", *, state_channels: list[str] | None = None
) -> dict[str, dict[str, object]]: ...
def device_types() -> dict[str, list[str]]: ...
def validate_loop(
    control_hz: float | None = None,
    record_fps: float | None = None,
    *,
    max_consecutive_errors: int | None = None,
    names: dict[str, str] | None = None,
) -> None:
    """Check the loop's rates and error budget as TeleopSession does (ConfigError), naming the
    options as `names` maps them ({"control_hz": "--control_hz", "record_fps": ...})."""

def calibration_path(config: dict[str, object], kind: str = "robot") -> str: ...
