//! Motor simulators served on a pseudo-terminal.
//!
//! [`pty`] is the shared infrastructure: it creates the pty pair, paces bytes at the wire speed
//! of the simulated link, injects wire faults and runs a [`pty::SimDevice`] on its own thread.
//! Each protocol module plugs its device into it.

pub mod damiao;
pub mod feetech;
pub mod pty;

/// Errors of the simulator layer.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not create a pseudo-terminal for the simulator: {source}")]
    Pty {
        #[source]
        source: std::io::Error,
    },

    #[error("could not start the simulator thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },

    #[error("simulator configuration: {0}")]
    Config(String),
}

impl crate::error::Classified for SimError {
    fn fault_kind(&self) -> crate::error::FaultKind {
        use crate::error::FaultKind;
        match self {
            SimError::Pty { .. } => FaultKind::Port,
            SimError::Thread { .. } => FaultKind::Other,
            SimError::Config(_) => FaultKind::Config,
        }
    }
}
