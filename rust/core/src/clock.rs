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
    fn monotonic_and_in_step_with_instant() {
        let a = now_ns();
        let t0 = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = now_ns();
        let elapsed = t0.elapsed().as_nanos() as u64;
        assert!(b > a);
        // Both read CLOCK_MONOTONIC: the two intervals agree to well under a millisecond.
        assert!((b - a).abs_diff(elapsed) < 1_000_000, "{} vs {}", b - a, elapsed);
    }
}
