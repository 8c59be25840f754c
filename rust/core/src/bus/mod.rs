//! Motor buses: transactions over a transport.

pub mod damiao;
pub mod feetech;
