//! A `RecordBatchReader` over batches already built, for export through the Arrow C stream
//! interface (`FFI_ArrowArrayStream`), which is what Python's `__arrow_c_stream__` hands out.

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};

/// Yields the given batches once, in order.
pub struct BatchStream {
    schema: SchemaRef,
    batches: std::vec::IntoIter<RecordBatch>,
}

impl BatchStream {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self {
            schema,
            batches: batches.into_iter(),
        }
    }
}

impl Iterator for BatchStream {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next().map(Ok)
    }
}

impl RecordBatchReader for BatchStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Wraps `batches` into a C stream that a consumer (pyarrow, polars, duckdb) imports
/// without copying the buffers.
pub fn to_ffi_stream(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> arrow_array::ffi_stream::FFI_ArrowArrayStream {
    arrow_array::ffi_stream::FFI_ArrowArrayStream::new(Box::new(BatchStream::new(schema, batches)))
}
