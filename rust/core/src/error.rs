//! Fault classification shared by every layer. Each error enum of the core says which
//! [`FaultKind`] it is ([`Classified`]); the bindings map that kind onto the Python exception
//! hierarchy in `openk.errors` in one place, so one fault raises one exception class whatever
//! the call path (a bus method, a device opening, the control loop).

use std::fmt;

/// Broad class of a fault. Mirrors `openk.errors`: each kind is raised as one Python class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The serial port is gone, busy, cannot be opened or does not take bytes
    /// (`PortError`).
    Port,
    /// A motor did not answer in time (`BusTimeoutError`).
    Timeout,
    /// A motor answered with an error status or refused a value (`MotorError`).
    Motor,
    /// Bytes on the wire did not parse (`ProtocolError`).
    Protocol,
    /// A configuration value, motor model, register name or mode is wrong (`ConfigError`).
    Config,
    /// Calibration missing or not matching the motors (`CalibrationError`).
    Calibration,
    /// A recording could not be built or written (`DatasetError`).
    Dataset,
    /// A caller passed an argument out of its range (Python's `ValueError`).
    Usage,
    /// Anything else: internal failures, threads that could not start (`OpenKError`).
    Other,
}

impl FaultKind {
    /// Every kind, for tests that walk the mapping.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Port,
        FaultKind::Timeout,
        FaultKind::Motor,
        FaultKind::Protocol,
        FaultKind::Config,
        FaultKind::Calibration,
        FaultKind::Dataset,
        FaultKind::Usage,
        FaultKind::Other,
    ];
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Port => "port",
            FaultKind::Timeout => "timeout",
            FaultKind::Motor => "motor error",
            FaultKind::Protocol => "protocol error",
            FaultKind::Config => "configuration",
            FaultKind::Calibration => "calibration",
            FaultKind::Dataset => "recording",
            FaultKind::Usage => "invalid argument",
            FaultKind::Other => "error",
        })
    }
}

/// An error that knows its [`FaultKind`]. Every error enum of the core implements it.
pub trait Classified {
    fn fault_kind(&self) -> FaultKind;
}

impl<T: Classified + ?Sized> Classified for &T {
    fn fault_kind(&self) -> FaultKind {
        (**self).fault_kind()
    }
}
