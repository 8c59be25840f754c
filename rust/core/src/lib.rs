//! openk-core: the OpenK arm's motor protocols, their simulators, and the hard-timed
//! teleop/record loop. Pure Rust; the Python bindings live in `rust/py`.
//!
//! Layers, bottom up (each has its own error enum, classified by [`error::Classified`]):
//! - [`protocol`]: byte codecs, no I/O.
//! - [`transport`]: serial ports and pseudo-terminals, deadline reads.
//! - [`bus`]: motor buses (transactions, retries, timeouts) over a transport.
//! - [`sim`]: motor simulators served on a pty, speaking the exact wire protocols.
//! - [`arm`]: robots and teleoperators, calibration, normalisation, safety clamps.
//! - [`control`]: the hard-timed loop and its telemetry.
//! - [`record`]: frame schema, wait-free ring, Arrow batches for Python.

pub mod arm;
pub mod bus;
pub mod clock;
pub mod control;
pub mod error;
pub mod protocol;
pub mod record;
pub mod sim;
pub mod transport;
