//! `openk._core`: thin pyo3 bindings over openk-core. This crate only converts types, maps
//! errors to the Python hierarchy in `openk.errors`, and releases the GIL around blocking work.

use pyo3::prelude::*;

mod catalog;
mod control;
mod convert;
mod damiao;
mod errors;
mod feetech;

/// Nanoseconds on CLOCK_MONOTONIC: the one clock shared by the loop and Python's
/// `time.monotonic_ns()` camera stamps.
#[pyfunction]
fn now_ns() -> u64 {
    openk_core::clock::now_ns()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(now_ns, m)?)?;
    feetech::register(m)?;
    damiao::register(m)?;
    control::register(m)?;
    catalog::register(m)?;
    Ok(())
}
