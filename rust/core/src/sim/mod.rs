//! Motor simulators served on a pseudo-terminal.

pub mod damiao;
pub mod feetech;
