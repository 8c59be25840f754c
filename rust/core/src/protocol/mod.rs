//! Pure wire codecs: bytes in, typed values out (and back). No I/O, no clocks, never panics on
//! input data.

pub mod damiao;
pub mod feetech;
pub mod sts_can;
