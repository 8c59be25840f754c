//! The frame schema shared with the Python dataset writer.
//!
//! Contract: `capture_time_ns` int64 (CLOCK_MONOTONIC ns), `observation.state`
//! FixedSizeList<float32>[n] and `action` FixedSizeList<float32>[m], each field carrying the
//! metadata key `names` = JSON list of feature names in order. Extra telemetry columns
//! (`tick_index`, `lateness_ns`, `tick_busy_ns`, `episode_index`,
//! `intervention`) follow; the writer ignores
//! columns it did not declare.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{RecordError, MAX_ACTION, MAX_STATE};

pub const CAPTURE_TIME_NS: &str = "capture_time_ns";
pub const OBSERVATION_STATE: &str = "observation.state";
pub const ACTION: &str = "action";
pub const TICK_INDEX: &str = "tick_index";
pub const LATENESS_NS: &str = "lateness_ns";
pub const TICK_BUSY_NS: &str = "tick_busy_ns";
pub const EPISODE_INDEX: &str = "episode_index";
/// Whether the leader drove the row's goal (lerobot's DAgger `intervention` feature).
pub const INTERVENTION: &str = "intervention";

/// Names of the values a row carries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLayout {
    pub state_names: Vec<String>,
    pub action_names: Vec<String>,
}

impl FrameLayout {
    pub fn new(state_names: Vec<String>, action_names: Vec<String>) -> Result<Self, RecordError> {
        if state_names.len() > MAX_STATE {
            return Err(RecordError::TooWide {
                what: "observation.state",
                got: state_names.len(),
                max: MAX_STATE,
            });
        }
        if action_names.len() > MAX_ACTION {
            return Err(RecordError::TooWide {
                what: "action",
                got: action_names.len(),
                max: MAX_ACTION,
            });
        }
        Ok(Self {
            state_names,
            action_names,
        })
    }

    pub fn state_len(&self) -> usize {
        self.state_names.len()
    }

    pub fn action_len(&self) -> usize {
        self.action_names.len()
    }
}

/// The element field of the fixed-size lists (nullable, as arrow-rs builds them by default).
pub fn list_item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, true))
}

fn named_list_field(name: &str, names: &[String]) -> Field {
    let json = serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned());
    Field::new(
        name,
        DataType::FixedSizeList(list_item_field(), names.len() as i32),
        false,
    )
    .with_metadata(HashMap::from([("names".to_owned(), json)]))
}

/// The Arrow schema of every batch the recorder emits for `layout`.
pub fn frame_schema(layout: &FrameLayout) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(CAPTURE_TIME_NS, DataType::Int64, false),
        named_list_field(OBSERVATION_STATE, &layout.state_names),
        named_list_field(ACTION, &layout.action_names),
        Field::new(TICK_INDEX, DataType::Int64, false),
        Field::new(LATENESS_NS, DataType::Int64, false),
        Field::new(TICK_BUSY_NS, DataType::Int64, false),
        Field::new(EPISODE_INDEX, DataType::Int64, false),
        Field::new(INTERVENTION, DataType::Boolean, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_travel_as_json_metadata() {
        let layout =
            FrameLayout::new(vec!["a.pos".into(), "b.pos".into()], vec!["a.pos".into()]).unwrap();
        let schema = frame_schema(&layout);
        let state = schema.field_with_name(OBSERVATION_STATE).unwrap();
        assert_eq!(state.metadata()["names"], r#"["a.pos","b.pos"]"#);
        assert!(matches!(state.data_type(), DataType::FixedSizeList(_, 2)));
        let action = schema.field_with_name(ACTION).unwrap();
        assert!(matches!(action.data_type(), DataType::FixedSizeList(_, 1)));
    }

    #[test]
    fn rejects_layouts_wider_than_a_row() {
        let names: Vec<String> = (0..MAX_STATE + 1).map(|i| format!("j{i}.pos")).collect();
        assert!(matches!(
            FrameLayout::new(names, vec![]),
            Err(RecordError::TooWide { .. })
        ));
    }
}
