//! Argument conversions and error mappings shared by the binding modules.

use std::time::Duration;

use pyo3::PyErr;
use pyo3::PyResult;

use openk_core::sim::SimError;

use crate::errors::{ConfigError, OpenKError, PortError};

/// A duration argument given in seconds (`what` names it in the message). Negative, NaN or
/// infinite values are a configuration mistake, not a bug, hence `ConfigError`.
pub fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        ConfigError::new_err(format!(
            "{what} must be a non-negative number of seconds, got {value}"
        ))
    })
}

/// Maps a simulator start/config failure: a bad configuration, a pty the OS would not give,
/// or a simulator thread that could not start.
pub fn sim_err(e: SimError) -> PyErr {
    match e {
        SimError::Config(_) => ConfigError::new_err(e.to_string()),
        SimError::Pty { .. } => PortError::new_err(e.to_string()),
        SimError::Thread { .. } => OpenKError::new_err(e.to_string()),
    }
}
