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

/// Column `name` of a batch as its array type `T`; panics naming the column if it is missing
/// or of another type.
pub fn column<'a, T: arrow_array::Array + 'static>(
    batch: &'a arrow_array::RecordBatch,
    name: &str,
) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} is not a {}", std::any::type_name::<T>()))
}

/// The rows of a vector column (`action`, `observation.state`) as f32 vectors.
pub fn vector_rows(batch: &arrow_array::RecordBatch, name: &str) -> Vec<Vec<f32>> {
    use arrow_array::{Array, FixedSizeListArray, Float32Array};
    let list = column::<FixedSizeListArray>(batch, name);
    (0..list.len())
        .map(|r| {
            let v = list.value(r);
            let values = v.as_any().downcast_ref::<Float32Array>();
            values.expect("f32 values").values().to_vec()
        })
        .collect()
}
