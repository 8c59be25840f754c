//! The one clock: CLOCK_MONOTONIC in nanoseconds, the same clock as Python's
//! `time.monotonic_ns()`, so camera stamps taken in Python and loop stamps taken here compare.

/// Nanoseconds on CLOCK_MONOTONIC.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_counts_real_time() {
        let a = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = now_ns();
        // sleep() guarantees at least the requested time on CLOCK_MONOTONIC.
        assert!(b - a >= 5_000_000, "{} ns", b - a);
    }
}
