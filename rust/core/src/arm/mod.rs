//! Robots and teleoperators: joints, calibration, normalisation, safety.
