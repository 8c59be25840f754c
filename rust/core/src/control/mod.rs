//! The hard-timed teleop/record loop and its telemetry.
//!
//! One dedicated thread ticks on absolute deadlines (sleep, then spin), reads the leader,
//! commands the follower, and pushes every dataset row whose time (episode start + i / fps)
//! has come into the wait-free ring of [`crate::record`]. Buses are served in parallel ([`workers`]), so a tick costs the slowest
//! bus. Nothing on the tick path allocates, logs or touches Python.

pub mod loop_spec;
pub mod rt;
pub mod schedule;
pub mod telemetry;
pub mod teleop;
/// In-memory parts and the wait-with-deadline helper for the crate's tests and benchmarks
/// (cargo feature `testing`, which the crate's dev-dependency on itself turns on; the library
/// other crates link does not have it).
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod workers;

pub use loop_spec::LoopNames;
pub use rt::{ActiveRealtime, RealtimeMode};
pub use telemetry::{RoundSummary, Telemetry, TelemetryReport};
pub use teleop::{
    ControlError, GoalSource, LoopCore, LoopFailure, LoopShared, LoopSpec, SafetyEvent, TeleopArms,
    TeleopLoop, TickOutcome,
};
