//! Helpers shared by the integration tests. Each test binary compiles this module on its own
//! and uses only part of it, hence the dead-code allowance.
#![allow(dead_code)]

pub mod counting_alloc;
pub mod vectors;

use std::time::{Duration, Instant};

// Re-exported so every test waits the same way (not every test binary uses it).
#[allow(unused_imports)]
pub use openk_core::control::testing::{wait_until, PATIENCE};

/// Reads the batches a stopped loop still holds, then its failure: returns the rows read and
/// the error `next_batch` finally raised. Panics if no error comes within [`PATIENCE`].
pub fn rows_then_failure(
    lp: &openk_core::control::TeleopLoop,
) -> (usize, openk_core::control::ControlError) {
    let deadline = Instant::now() + PATIENCE;
    let mut rows = 0;
    while Instant::now() < deadline {
        match lp.next_batch(Duration::from_millis(200)) {
            Ok(Some(b)) => rows += b.num_rows(),
            Ok(None) => {}
            Err(e) => return (rows, e),
        }
    }
    panic!("the loop still raised no failure after {PATIENCE:?} ({rows} rows read)");
}
