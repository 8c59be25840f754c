"""Type stubs for `openk._core.feetech` (rust/py/src/feetech.rs): the Feetech STS3215 codec on
bytes, `FeetechBus` and the `FeetechSim` simulator. Checked by
`python -m mypy.stubtest openk._core`."""

from typing import final

# pyo3 lists every export in the module's __all__; stubtest checks this copy against it.
__all__ = [
    "BROADCAST_ID",
    "FeetechBus",
    "FeetechSim",
    "FeetechStatus",
    "baud_from_code",
    "checksum",
    "code_from_baud",
    "control_table",
    "decode_status",
    "decode_value",
    "encode_action",
    "encode_ping",
    "encode_read",
    "encode_reg_write",
    "encode_reset",
    "encode_status",
    "encode_sync_read",
    "encode_sync_write",
    "encode_value",
    "encode_write",
    "error_names",
]

BROADCAST_ID: int

def checksum(body: bytes) -> int:
    """Checksum over id, len, instruction/error and params: !(sum) & 0xFF."""

def encode_ping(id: int) -> bytes: ...
def encode_read(id: int, address: int, length: int) -> bytes: ...
def encode_write(id: int, address: int, data: bytes) -> bytes: ...
def encode_reg_write(id: int, address: int, data: bytes) -> bytes: ...
def encode_action(id: int = 0xFE) -> bytes: ...
def encode_reset(id: int) -> bytes: ...
def encode_sync_read(address: int, length: int, ids: list[int]) -> bytes: ...
def encode_sync_write(address: int, length: int, items: list[tuple[int, bytes]]) -> bytes:
    """SYNC_WRITE of raw per-servo data; each item's bytes must be `length` long."""

def encode_status(id: int, error: int = 0, params: bytes | list[int] = ...) -> bytes:
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

def decode_status(data: bytes) -> list[FeetechStatus]:
    """Every status packet in `data`, garbage skipped. Raises ProtocolError on a bad checksum."""

def error_names(error: int) -> list[str]: ...
def control_table() -> list[dict[str, object]]:
    """STS3215 registers: name, address, size, access, area, sign_bit, unit, scale."""

def encode_value(register: str, value: int) -> int:
    """Raw value (sign-magnitude where signed); ValueError if it does not fit."""

def decode_value(register: str, raw: int) -> int: ...
def baud_from_code(code: int) -> int | None:
    """Official register-6 codes (5 = 76800, 6 = 57600, 7 = 38400)."""

def code_from_baud(baud: int) -> int | None: ...

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
