//! Helpers shared by the integration tests. Each test binary compiles this module on its own
//! and uses only part of it, hence the dead-code allowance.
#![allow(dead_code)]

pub mod counting_alloc;
pub mod vectors;
