//! The hard-timed teleop/record loop and its telemetry.
