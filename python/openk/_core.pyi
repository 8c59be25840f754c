"""Type stubs for the native module `openk._core` (rust/py). Checked against the built module
by `python -m mypy.stubtest openk._core` (scripts/test.sh)."""

from collections.abc import Sequence
from typing import TypeAlias, final

# pyo3 lists every export in the module's __all__; stubtest checks this copy against it.
__all__ = [
    "FEETECH_BROADCAST_ID",
    "SIM_PORT",
    "Calibrator",
    "DamiaoBus",
    "DamiaoSim",
    "DamiaoStreamDecoder",
    "DeviceInfo",
    "FeetechBus",
    "FeetechSim",
    "FeetechStatus",
    "FrameBatch",
    "JointInfo",
    "SimRig",
    "StsCanBus",
    "TeleopSession",
    "__version__",
    "calibration_path",
    "damiao_decode_feedback",
    "damiao_encode_mit",
    "damiao_encode_pos_vel",
    "damiao_host_frame",
    "damiao_model_limits",
    "damiao_scan",
    "device_catalog",
    "device_features",
    "device_types",
    "feetech_baud_from_code",
    "feetech_checksum",
    "feetech_code_from_baud",
    "feetech_control_table",
    "feetech_decode_status",
    "feetech_decode_value",
    "feetech_encode_action",
    "feetech_encode_ping",
    "feetech_encode_read",
    "feetech_encode_reg_write",
    "feetech_encode_reset",
    "feetech_encode_status",
    "feetech_encode_sync_read",
    "feetech_encode_sync_write",
    "feetech_encode_value",
    "feetech_encode_write",
    "feetech_error_names",
    "is_sim_port",
    "now_ns",
]

__version__: str

def now_ns() -> int:
    """Nanoseconds on CLOCK_MONOTONIC, the same clock as `time.monotonic_ns()`."""

# --- feetech (STS3215 codec, bus, simulator) ---

FEETECH_BROADCAST_ID: int

def feetech_checksum(body: bytes) -> int:
    """Checksum over id, len, instruction/error and params: !(sum) & 0xFF."""

def feetech_encode_ping(id: int) -> bytes: ...
def feetech_encode_read(id: int, address: int, length: int) -> bytes: ...
def feetech_encode_write(id: int, address: int, data: bytes) -> bytes: ...
def feetech_encode_reg_write(id: int, address: int, data: bytes) -> bytes: ...
def feetech_encode_action(id: int = 0xFE) -> bytes: ...
def feetech_encode_reset(id: int) -> bytes: ...
def feetech_encode_sync_read(address: int, length: int, ids: list[int]) -> bytes: ...
def feetech_encode_sync_write(address: int, length: int, items: list[tuple[int, bytes]]) -> bytes:
    """SYNC_WRITE of raw per-servo data; each item's bytes must be `length` long."""

def feetech_encode_status(id: int, error: int = 0, params: bytes | list[int] = ...) -> bytes:
    """A status packet as a servo sends it."""

@final
class FeetechStatus:
    """A decoded status packet."""

    @property
    def id(self) -> int: ...
    @property
    def error(self) -> int: ...
    @property
    def error_names(self) -> list[str]:
        """Every set error bit by name (input_voltage, angle_sensor, overheat, ...)."""
    @property
    def params(self) -> bytes: ...

def feetech_decode_status(data: bytes) -> list[FeetechStatus]:
    """Every status packet in `data`, garbage skipped. Raises ProtocolError on a bad checksum."""

def feetech_error_names(error: int) -> list[str]: ...
def feetech_control_table() -> list[dict[str, object]]:
    """STS3215 registers: name, address, size, access, area, sign_bit, unit, scale."""

def feetech_encode_value(register: str, value: int) -> int:
    """Raw value (sign-magnitude where signed); ValueError if it does not fit."""

def feetech_decode_value(register: str, raw: int) -> int: ...
def feetech_baud_from_code(code: int) -> int | None:
    """Official register-6 codes (5 = 76800, 6 = 57600, 7 = 38400)."""

def feetech_code_from_baud(baud: int) -> int | None: ...

@final
class FeetechBus:
    """An STS3215 bus on a serial port. Blocking calls release the GIL.

    Errors: PortError (open/unplug), BusTimeoutError (a motor did not answer), MotorError
    (status error bits; `.motor`, `.flags`, `.failures`), ProtocolError (corrupted replies),
    ConfigError (unknown motor/register), ValueError (value does not fit the register).
    """

    def __new__(
        cls,
        port: str,
        motors: dict[str, int] | list[tuple[str, int]],
        baudrate: int = 1_000_000,
        timeout_s: float = 0.01,
        retries: int = 1,
        fail_on_status_error: bool = True,
        write_ack: bool = True,
        scs: bool = False,
    ) -> FeetechBus: ...
    @property
    def port(self) -> str: ...
    @property
    def motors(self) -> list[str]: ...
    def ping(self, motor: str | int) -> int:
        """Status error byte of the motor's answer (0 = fine)."""
    def scan(self, window_s: float = 0.02) -> list[int]:
        """Broadcast PING: ids that answered, sorted."""
    def read(self, register: str, motor: str | int) -> int: ...
    def read_unit(self, register: str, motor: str | int) -> float: ...
    def write(self, register: str, motor: str | int, value: int) -> None: ...
    def sync_read(self, register: str, motors: list[str] | None = None) -> dict[str, int]: ...
    def sync_write(self, register: str, values: dict[str, int] | list[tuple[str, int]]) -> None: ...
    def last_status(self, motor: str | int) -> list[str]: ...
    def close(self) -> None: ...
    def __enter__(self) -> FeetechBus: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class FeetechSim:
    """Simulated STS3215 bus on a pty; open `.port` with any serial client."""

    def __new__(
        cls,
        ids: list[int] = ...,
        baudrate: int = 1_000_000,
        mode: str = "follower",
        positions: list[int] | None = None,
        return_delay: int = 0,
        usb_latency_s: float = 0.0,
        hand_amplitude: float = 300.0,
        hand_period_s: float = 4.0,
        trajectory: str | None = None,
        goal_write_enables_torque: bool = True,
        scs: bool = False,
    ) -> FeetechSim: ...
    @property
    def port(self) -> str: ...
    def drop_replies(self, n: int) -> None: ...
    def corrupt_replies(
        self, n: int, byte_index: int | None = None, truncate: int | None = None
    ) -> None: ...
    def inject_garbage(self, data: bytes) -> None: ...
    def set_extra_latency(self, latency_s: float) -> None: ...
    def unplug(self) -> None: ...
    def clear_faults(self) -> None: ...
    def set_error_bits(self, id: int, bits: int) -> None: ...
    def set_silent(self, id: int, silent: bool) -> None: ...
    def register(self, id: int, name: str) -> int: ...
    def set_register(self, id: int, name: str, value: int) -> None: ...
    def position(self, id: int) -> float: ...
    def set_mode(
        self,
        mode: str,
        hand_amplitude: float = 300.0,
        hand_period_s: float = 4.0,
        trajectory: str | None = None,
    ) -> None:
        """Switch between "follower" dynamics and a scripted "hand" at run time."""
    def stats(self) -> dict[str, int]: ...
    def stop(self) -> None: ...
    def __enter__(self) -> FeetechSim: ...
    def __exit__(self, *args: object) -> bool: ...

# --- damiao (DAMIAO USB-CAN codec, bus, simulator) ---

_DamiaoFeedback: TypeAlias = dict[str, float | int | str]
"""q (rad), dq (rad/s), tau (N·m), state (e.g. "enabled", "overload"), t_mos, t_rotor (°C),
id_nibble."""

def damiao_host_frame(can_id: int, payload: bytes) -> bytes:
    """The 30-byte host → adapter frame carrying one 8-byte CAN payload."""

def damiao_encode_mit(
    q: float,
    dq: float,
    kp: float,
    kd: float,
    tau: float,
    model: str = "DM4310",
    limits: tuple[float, float, float] | None = None,
) -> bytes:
    """MIT payload; fields are clamped to their ranges, NaN/inf raise ProtocolError."""

def damiao_encode_pos_vel(position: float, velocity: float) -> bytes:
    """POS_VEL payload (f32 LE position, f32 LE speed limit)."""

def damiao_decode_feedback(
    payload: bytes, model: str = "DM4310", limits: tuple[float, float, float] | None = None
) -> _DamiaoFeedback:
    """Decodes an 8-byte feedback payload, state nibble and temperatures included."""

def damiao_model_limits(model_name: str) -> tuple[float, float, float]:
    """Default (PMAX, VMAX, TMAX) of a model such as "DM4310" or "DM6006"."""

def damiao_scan(
    port: str, first: int = 1, last: int = 16, window_s: float = 0.02
) -> list[tuple[int, int, str]]:
    """(esc_id, mst_id, state) of every DAMIAO motor that answers a refresh request."""

@final
class DamiaoStreamDecoder:
    """Resynchronising decoder of the adapter → host byte stream."""

    def __new__(cls) -> DamiaoStreamDecoder: ...
    def push(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Feeds bytes; returns complete frames as (cmd, can_id, payload)."""
    @property
    def skipped_bytes(self) -> int: ...

@final
class DamiaoBus:
    """DAMIAO motors behind one USB-CAN adapter. Blocking calls release the GIL.

    `motors` lists (name, model, esc_id, mst_id). Raises PortError, BusTimeoutError,
    MotorError (motor name + decoded state), ProtocolError, ConfigError.
    """

    def __new__(
        cls,
        port: str,
        motors: list[tuple[str, str, int, int]],
        baud: int = 921600,
        timeout_s: float = 0.02,
        retries: int = 2,
        register_timeout_s: float = 0.05,
        read_registers: bool = True,
    ) -> DamiaoBus: ...
    @property
    def port(self) -> str: ...
    @property
    def motor_names(self) -> list[str]: ...
    def connect(self) -> None:
        """Reads PMAX/VMAX/TMAX (RIDs 21–23) and CTRL_MODE of every motor."""
    def enable(self, name: str | None = None) -> None: ...
    def disable(self, name: str | None = None) -> None: ...
    def set_control_mode(self, mode: str, name: str | None = None) -> None:
        """ "MIT", "POS_VEL", "VEL" or "POS_FORCE"; verified by reading RID 10 back."""
    def control_mode(self, name: str) -> str | None: ...
    def mit(
        self, commands: list[tuple[float, float, float, float, float]]
    ) -> list[_DamiaoFeedback]:
        """One (q, dq, kp, kd, tau) per motor, in bus order; returns each motor's feedback."""
    def pos_vel(self, targets: list[tuple[float, float]]) -> list[_DamiaoFeedback]: ...
    def vel(self, velocities: list[float]) -> list[_DamiaoFeedback]: ...
    def refresh(self) -> list[_DamiaoFeedback]: ...
    def angle_offset(self, name: str) -> float | None:
        """The m_off register (RID 54) read at connect: changes when a motor is re-zeroed."""
    def last_feedback(self, name: str) -> _DamiaoFeedback | None: ...
    def read_register(self, name: str, rid: int) -> int | float: ...
    def write_register(self, name: str, rid: int, value: float) -> int | float: ...
    def save_registers(self, name: str) -> None: ...
    def set_zero(self, name: str) -> None: ...
    def clear_error(self, name: str) -> None: ...
    def limits(self, name: str) -> tuple[float, float, float]: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...
    def __enter__(self) -> DamiaoBus: ...
    def __exit__(self, _t: object, _v: object, _tb: object) -> bool: ...

@final
class StsCanBus:
    """STS servos behind OpenK's STS-over-CAN bridge (legacy follower)."""

    def __new__(
        cls,
        port: str,
        controller_id: int = 0xFF00,
        baud: int = 921600,
        timeout_s: float = 0.1,
        retries: int = 2,
    ) -> StsCanBus: ...
    def write_position(self, servo_id: int, position: int) -> None: ...
    def read_position(self, servo_id: int) -> int: ...

@final
class DamiaoSim:
    """DAMIAO USB-CAN adapter simulator on a pty (CAN wire time, USB latency, dynamics).

    `motors` lists (name, model, esc_id, mst_id); None = the OpenK arm (ESC 1–5, MST 0x11–0x15).
    """

    def __new__(
        cls,
        motors: list[tuple[str, str, int, int]] | None = None,
        can_bitrate: int = 1_000_000,
        usb_latency_s: float = 250e-6,
        sts_bridge: bool = False,
        bridge_servo_ids: list[int] = ...,
        bridge_controller_id: int = 0xFF00,
    ) -> DamiaoSim: ...
    @property
    def port(self) -> str: ...
    def inject_fault(self, motor: str, state: str) -> None: ...
    def set_hand(
        self,
        motor: str,
        amplitude: float | None,
        frequency_hz: float = 0.5,
        offset: float = 0.0,
        phase: float = 0.0,
    ) -> None: ...
    def set_position(self, motor: str, q: float) -> None: ...
    def motor_state(self, motor: str) -> dict[str, float | bool | str | None]: ...
    def servo_position(self, servo_id: int) -> int | None: ...
    def set_servo_position(self, servo_id: int, position: int) -> bool: ...
    def drop_replies(self, n: int) -> None: ...
    def corrupt_replies(self, n: int) -> None: ...
    def inject_garbage(self, data: bytes) -> None: ...
    def set_extra_latency(self, seconds: float) -> None: ...
    def unplug(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def stop(self) -> None: ...
    def __enter__(self) -> DamiaoSim: ...
    def __exit__(self, _t: object, _v: object, _tb: object) -> bool: ...

# --- control (arms, teleop loop, recording batches) ---

@final
class FrameBatch:
    """Rows of a recording. Zero-copy Arrow: `pa.table(batch)` or
    `pa.RecordBatchReader.from_stream(batch)`.

    Columns: `capture_time_ns` int64 (CLOCK_MONOTONIC, same clock as `now_ns`),
    `observation.state` fixed_size_list<float32>[n], `action` fixed_size_list<float32>[m] (each
    with field metadata `names` = JSON list of feature names), then the telemetry columns
    `tick_index`, `lateness_ns`, `tick_busy_ns`, `episode_index` (int64).
    """

    @property
    def num_rows(self) -> int: ...
    def __len__(self) -> int: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

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
    def end_episode(self, timeout: float = 10.0) -> dict[str, object]: ...
    def next_batch(self, timeout: float = 0.1) -> FrameBatch | None: ...
    def telemetry(self) -> dict[str, object]:
        """The whole run's loop report (published by the loop every 20 ms, exact at episode
        ends and at stop): `ticks`, `overruns`, `rows`, `rows_dropped`, `rows_repeated`,
        `late_actions` (row periods without a fresh scheduled action, plus actions that arrived
        after their time), `target_hz`, `achieved_hz`, `duration_s`,
        `lateness_{p50,p99,p999,max}_us`,
        `busy_{p50,p99,max}_us`, `bus_round_us` ({part: {p50_us, p99_us, p999_us, max_us}}),
        `bus_errors` / `bus_retries` ({"<part>.<motor>": count}), `realtime`."""

    def episode_telemetry(self) -> dict[str, object]:
        """The same report for the current (or last) episode."""

    def send_action(self, action: dict[str, float] | Sequence[float]) -> None:
        """One action (a dict by action name, or values in `action_names` order): the goal
        reaches it one dataset row period (1/record_fps) after the loop receives it, moving
        linearly from the goal in force at control_hz. Same as `send_actions([action])`.
        Never blocks. Only without a teleop (ConfigError otherwise)."""

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
    def observation_names(self) -> list[str]: ...
    @property
    def action_names(self) -> list[str]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

def device_catalog() -> list[DeviceInfo]:
    """Every robot and teleoperator type, robots first."""

def is_sim_port(port: str) -> bool:
    """`sim` or `sim://...` selects the simulator; anything else names a serial device."""

def device_features(type_name: str, kind: str = "robot") -> dict[str, dict[str, object]]: ...
def device_types() -> dict[str, list[str]]: ...
def calibration_path(config: dict[str, object], kind: str = "robot") -> str: ...
