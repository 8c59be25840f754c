//! The Python exception hierarchy is defined once, in `openk/errors.py`; the bindings raise those
//! classes. Every core error knows its [`FaultKind`] ([`Classified`]) and [`to_py`] is the one
//! mapping from that kind to a Python class, so a fault raises the same class whether it comes
//! from a bus method, opening a device or the control loop.

use std::fmt::Display;

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

use openk_core::error::{Classified, FaultKind};

pyo3::import_exception!(openk.errors, OpenKError);
pyo3::import_exception!(openk.errors, ProtocolError);
pyo3::import_exception!(openk.errors, MotorError);
pyo3::import_exception!(openk.errors, BusTimeoutError);
pyo3::import_exception!(openk.errors, PortError);
pyo3::import_exception!(openk.errors, ConfigError);
pyo3::import_exception!(openk.errors, CalibrationError);
pyo3::import_exception!(openk.errors, DatasetError);

/// The Python exception raised for a fault of `kind`, with `message`.
pub fn raise(kind: FaultKind, message: String) -> PyErr {
    match kind {
        FaultKind::Port => PortError::new_err(message),
        FaultKind::Timeout => BusTimeoutError::new_err(message),
        FaultKind::Motor => MotorError::new_err(message),
        FaultKind::Protocol => ProtocolError::new_err(message),
        FaultKind::Config => ConfigError::new_err(message),
        FaultKind::Calibration => CalibrationError::new_err(message),
        FaultKind::Dataset => DatasetError::new_err(message),
        FaultKind::Usage => PyValueError::new_err(message),
        FaultKind::Other => OpenKError::new_err(message),
    }
}

/// Any core error as the Python exception of its fault kind; its message is the error's.
pub fn to_py<E: Classified + Display>(e: E) -> PyErr {
    raise(e.fault_kind(), e.to_string())
}
