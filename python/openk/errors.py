"""The openk exception hierarchy. The native module raises these same classes.

Every error of the Rust core has one fault kind (`rust/core/src/error.rs`), mapped to one class
here by `rust/py/src/errors.rs`: port -> PortError, timeout -> BusTimeoutError, motor ->
MotorError, protocol -> ProtocolError, config -> ConfigError, calibration -> CalibrationError,
dataset -> DatasetError, a bad argument -> ValueError, anything else -> OpenKError. So a fault
raises the same class from a bus method, from opening a device and from the control loop."""

from __future__ import annotations


class OpenKError(Exception):
    """Root of every error openk raises on purpose."""


class ProtocolError(OpenKError):
    """Bytes on the wire did not parse: bad checksum, framing, length or header."""


class MotorError(OpenKError):
    """A motor answered with an error status (voltage, overheat, overload, ...)."""


class BusTimeoutError(OpenKError):
    """A motor did not answer in time."""


class PortError(OpenKError):
    """A serial port could not be opened, is busy, or went away."""


class ConfigError(OpenKError):
    """A configuration value, flag or robot type is wrong."""


class CalibrationError(ConfigError):
    """Calibration is missing, malformed or does not match the motors."""


class DatasetError(OpenKError):
    """A dataset could not be written, read or resumed."""


class DatasetBusyError(DatasetError):
    """Another live process writes the dataset (records, edits or recovers it); nothing was
    changed. Wait for it to finish or stop it."""

    holder = "another openk process"  # "process 123 (openk record ...)"


class HubError(OpenKError):
    """A Hugging Face Hub operation failed; the local dataset is intact."""


class RepoIdError(ConfigError, DatasetError, HubError):
    """A dataset repo id is malformed; raised before any path or request is made from it."""


__all__ = [
    "BusTimeoutError",
    "CalibrationError",
    "ConfigError",
    "DatasetBusyError",
    "DatasetError",
    "HubError",
    "MotorError",
    "OpenKError",
    "PortError",
    "ProtocolError",
    "RepoIdError",
]
