//! Robots and teleoperators: joints, calibration, normalisation, safety.

pub mod calibration;
pub mod config;
pub mod damiao_part;
pub mod device;
pub mod part;
pub mod spec;
pub mod sts_can_part;
pub mod sts_part;

use std::path::PathBuf;

use crate::error::{Classified, FaultKind};

/// Errors of the arm layer (configuration and calibration).
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("unknown {kind} type {given:?}; valid types: {valid}")]
    UnknownType {
        given: String,
        kind: &'static str,
        valid: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("no calibration for {device} at {path}; calibrate it first: {command}")]
    CalibrationMissing {
        device: String,
        path: PathBuf,
        command: String,
    },
    #[error("calibration file {path} does not match this arm: {detail}; recalibrate: {command}")]
    CalibrationInvalid {
        path: PathBuf,
        detail: String,
        command: String,
    },
    /// A bus failed while opening or configuring a device.
    #[error("{device}: {message}")]
    Bus {
        kind: FaultKind,
        device: String,
        motor: Option<String>,
        message: String,
    },
    #[error(
        "{device}: motor {motor} was re-zeroed since calibration (m_off now {current:.4}, file \
         says {cached:.4}); its ranges no longer hold — recalibrate: {command}"
    )]
    Rezeroed {
        device: String,
        motor: String,
        cached: f64,
        current: f64,
        command: String,
    },
}

impl Classified for ArmError {
    fn fault_kind(&self) -> FaultKind {
        match self {
            ArmError::UnknownType { .. } | ArmError::Config(_) => FaultKind::Config,
            ArmError::CalibrationMissing { .. }
            | ArmError::CalibrationInvalid { .. }
            | ArmError::Rezeroed { .. } => FaultKind::Calibration,
            ArmError::Bus { kind, .. } => *kind,
        }
    }
}
