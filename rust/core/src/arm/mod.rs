//! Robots and teleoperators: joints, calibration, normalisation, safety.

pub mod part;
