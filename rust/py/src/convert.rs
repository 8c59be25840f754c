//! Argument conversions shared by the binding modules.

use std::time::Duration;

use pyo3::PyResult;

use crate::errors::ConfigError;

/// A duration argument given in seconds (`what` names it in the message). Negative, NaN or
/// infinite values are a configuration mistake, not a bug, hence `ConfigError`.
pub fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        ConfigError::new_err(format!(
            "{what} must be a non-negative number of seconds, got {value}"
        ))
    })
}
