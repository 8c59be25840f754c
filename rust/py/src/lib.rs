//! `openk._core`: thin pyo3 bindings over openk-core. This crate only converts types, maps
//! errors to the Python hierarchy in `openk.errors`, and releases the GIL around blocking work.
//! Each motor protocol is a submodule (`openk._core.feetech`, `openk._core.damiao`); the arms,
//! the loop and calibration are at the top.

use pyo3::prelude::*;

mod catalog;
mod control;
mod convert;
mod damiao;
mod errors;
mod feetech;
mod telemetry;

/// Nanoseconds on CLOCK_MONOTONIC: the one clock shared by the loop and Python's
/// `time.monotonic_ns()` camera stamps.
#[pyfunction]
fn now_ns() -> u64 {
    openk_core::clock::now_ns()
}

/// Adds the submodule `<parent>.<name>` filled by `fill`, and registers it in `sys.modules` so
/// `import openk._core.feetech` and `from openk._core.feetech import FeetechBus` work as for a
/// Python package (an extension module's attributes alone are not importable by dotted name).
fn submodule(
    parent: &Bound<'_, PyModule>,
    name: &str,
    doc: &str,
    fill: impl FnOnce(&Bound<'_, PyModule>) -> PyResult<()>,
) -> PyResult<()> {
    let py = parent.py();
    let m = PyModule::new(py, name)?;
    m.setattr("__doc__", doc)?;
    fill(&m)?;
    parent.add_submodule(&m)?;
    let full = format!("{}.{name}", parent.name()?);
    m.setattr("__name__", &full)?;
    py.import("sys")?.getattr("modules")?.set_item(full, &m)?;
    Ok(())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(now_ns, m)?)?;
    submodule(
        m,
        "feetech",
        "Feetech STS3215: the codec on bytes, FeetechBus and the FeetechSim simulator.",
        feetech::register,
    )?;
    submodule(
        m,
        "damiao",
        "DAMIAO USB-CAN: the codec on bytes, DamiaoBus, StsCanBus and the DamiaoSim simulator.",
        damiao::register,
    )?;
    control::register(m)?;
    catalog::register(m)?;
    telemetry::register(m)?;
    Ok(())
}
