"""Type stubs for `openk._core.damiao` (rust/py/src/damiao.rs): the DAMIAO USB-CAN codec on
bytes, `DamiaoBus`, `StsCanBus` and the `DamiaoSim` simulator. Checked by
`python -m mypy.stubtest openk._core`."""

from typing import TypeAlias, final

# pyo3 lists every export in the module's __all__; stubtest checks this copy against it.
__all__ = [
    "DamiaoBus",
    "DamiaoSim",
    "DamiaoStreamDecoder",
    "StsCanBus",
    "decode_feedback",
    "encode_mit",
    "encode_pos_vel",
    "host_frame",
    "model_limits",
    "scan",
]

_DamiaoFeedback: TypeAlias = dict[str, float | int | str]
"""q (rad), dq (rad/s), tau (N·m), state (e.g. "enabled", "overload"), t_mos, t_rotor (°C),
id_nibble."""

def host_frame(can_id: int, payload: bytes) -> bytes:
    """The 30-byte host → adapter frame carrying one 8-byte CAN payload."""

def encode_mit(
    q: float,
    dq: float,
    kp: float,
    kd: float,
    tau: float,
    model: str = "DM4310",
    limits: tuple[float, float, float] | None = None,
) -> bytes:
    """MIT payload; fields are clamped to their ranges, NaN/inf raise ProtocolError."""

def encode_pos_vel(position: float, velocity: float) -> bytes:
    """POS_VEL payload (f32 LE position, f32 LE speed limit)."""

def decode_feedback(
    payload: bytes, model: str = "DM4310", limits: tuple[float, float, float] | None = None
) -> _DamiaoFeedback:
    """Decodes an 8-byte feedback payload, state nibble and temperatures included."""

def model_limits(model_name: str) -> tuple[float, float, float]:
    """Default (PMAX, VMAX, TMAX) of a model such as "DM4310" or "DM6006"."""

def scan(
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
