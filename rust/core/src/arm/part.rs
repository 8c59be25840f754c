//! The unit the loop drives: one motor bus of an arm ("part"). A leader arm is one or more
//! parts that report positions; a follower is parts that take goals and report state. Each part
//! can be served by its own thread so a tick costs the slowest bus, not the sum.

/// What the follower does when the loop stops (Ctrl-C, leader loss, bus errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAction {
    /// Keep torque on and hold the present position.
    Hold,
    /// Disable torque (the arm goes limp).
    Limp,
}

use crate::error::Classified;
pub use crate::error::FaultKind;

/// A failed exchange with one part. `motor` indexes the part's `motor_names()` when the fault
/// is tied to one motor.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PartError {
    pub kind: FaultKind,
    pub motor: Option<usize>,
    pub message: String,
}

impl PartError {
    pub fn new(kind: FaultKind, motor: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            kind,
            motor,
            message: message.into(),
        }
    }
}

impl Classified for PartError {
    fn fault_kind(&self) -> FaultKind {
        self.kind
    }
}

/// One motor bus of a leader or follower.
///
/// Values are normalised (calibrated) feature values. `goal_names()` lists what `exchange`
/// takes (e.g. `shoulder_pan.pos`), `state_names()` what it returns (e.g. `shoulder_pan.pos`,
/// `shoulder_pan.vel`, `shoulder_pan.tor`). `exchange` must not allocate on success: it runs on
/// the control thread every tick.
pub trait Part: Send {
    /// Who this is, for messages: e.g. `follower DAMIAO bus on /dev/ttyACM1`.
    fn label(&self) -> &str;
    fn motor_names(&self) -> &[String];
    fn goal_names(&self) -> &[String];
    fn state_names(&self) -> &[String];
    /// One tick: send `goal` (empty for a leader), fill `state`. Adds bus retries per motor
    /// into `retries` (indexed like `motor_names`; the extra last slot counts retries not
    /// tied to one motor).
    fn exchange(
        &mut self,
        goal: &[f32],
        state: &mut [f32],
        retries: &mut [u32],
    ) -> Result<(), PartError>;
    /// Present state without commanding anything (used before the first command, so the
    /// follower's first goal is where it already is).
    fn read_state(&mut self, state: &mut [f32]) -> Result<(), PartError>;
    /// Bring the part to a safe state when the loop ends.
    fn stop(&mut self, action: StopAction) -> Result<(), PartError>;
}

/// The four name accessors of a [`Part`] that keeps its label and names in fields, written
/// inside `impl Part for ...`: `part_names!(label, motor_names, goal_names, state_names);`
/// (the fields holding each, in the trait's order).
macro_rules! part_names {
    ($label:ident, $motors:ident, $goals:ident, $states:ident) => {
        fn label(&self) -> &str {
            &self.$label
        }
        fn motor_names(&self) -> &[String] {
            &self.$motors
        }
        fn goal_names(&self) -> &[String] {
            &self.$goals
        }
        fn state_names(&self) -> &[String] {
            &self.$states
        }
    };
}
pub(crate) use part_names;
