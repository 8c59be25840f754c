//! Frame schema, wait-free ring and Arrow batch builder.
//!
//! The control thread pushes fixed-size [`Row`]s into a wait-free SPSC ring (no allocation, no
//! lock); a builder thread turns them into Arrow `RecordBatch`es with the dataset schema
//! ([`schema::frame_schema`]) and queues them for Python, which reads them zero-copy through
//! the Arrow C stream interface ([`stream::BatchStream`]).

pub mod builder;
pub mod row;
pub mod schema;
pub mod stream;

pub use arrow_schema::SchemaRef;
pub use builder::{BatchBuilder, BatchQueue, BuilderConfig};
pub use row::{Row, RowKind, MAX_ACTION, MAX_STATE};
pub use schema::{frame_schema, FrameLayout};
pub use stream::BatchStream;

/// Errors of the record layer.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("frame layout has {got} {what} values but at most {max} fit a row; reduce the joints")]
    TooWide {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("could not build an Arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("could not start the batch builder thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl crate::error::Classified for RecordError {
    fn fault_kind(&self) -> crate::error::FaultKind {
        use crate::error::FaultKind;
        match self {
            // Too many joints for a row: the device configuration must change.
            RecordError::TooWide { .. } => FaultKind::Config,
            RecordError::Arrow(_) => FaultKind::Dataset,
            RecordError::Thread(_) => FaultKind::Other,
        }
    }
}
