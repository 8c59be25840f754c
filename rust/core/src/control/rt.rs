//! Realtime setup of the control thread and the absolute-deadline sleep.
//!
//! Measured on the shared 2-core VM (spec/stack-notes §3): SCHED_FIFO plus "sleep to
//! deadline − spin window, then spin" is the only combination with sub-µs p99 lateness; under
//! SCHED_OTHER the kernel's 50 µs default timer slack dominates, so we drop it to 1 ns.

use std::fmt;
use std::str::FromStr;

use crate::clock::now_ns;

/// What the user asked for (`--realtime auto|require|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RealtimeMode {
    /// SCHED_FIFO when permitted, otherwise carry on with normal scheduling.
    #[default]
    Auto,
    /// SCHED_FIFO or fail to start.
    Require,
    /// Normal scheduling.
    Off,
}

impl FromStr for RealtimeMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "require" | "required" => Ok(Self::Require),
            "off" | "none" | "false" => Ok(Self::Off),
            other => Err(format!(
                "realtime must be one of auto, require, off (got {other:?})"
            )),
        }
    }
}

/// Scheduling the control thread actually got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRealtime {
    /// "fifo" or "other".
    pub policy: &'static str,
    /// SCHED_FIFO priority (0 under SCHED_OTHER).
    pub priority: i32,
    /// CPU the thread is pinned to, if any.
    pub cpu: Option<usize>,
    /// Why FIFO is not active, when it was asked for but refused.
    pub fallback_reason: Option<String>,
}

impl fmt::Display for ActiveRealtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.policy == "fifo" {
            write!(f, "SCHED_FIFO priority {}", self.priority)?;
        } else {
            write!(f, "SCHED_OTHER (timer slack 1 ns)")?;
        }
        if let Some(cpu) = self.cpu {
            write!(f, ", pinned to CPU {cpu}")?;
        }
        Ok(())
    }
}

/// Errors of realtime setup.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error(
        "realtime=require but SCHED_FIFO was refused ({0}); run as root, grant CAP_SYS_NICE, or add \
         an rtprio limit in /etc/security/limits.conf — or use realtime=auto"
    )]
    FifoRefused(String),
    #[error("cpu {cpu} does not exist on this machine (it has {available} CPUs)")]
    NoSuchCpu { cpu: usize, available: usize },
}

impl crate::error::Classified for RealtimeError {
    /// Both are settings the machine cannot honour: change `realtime` or the CPU.
    fn fault_kind(&self) -> crate::error::FaultKind {
        crate::error::FaultKind::Config
    }
}

/// Priority used for SCHED_FIFO: high, but below the kernel's own threaded IRQs (50 is
/// their default) is not what we want either; 80 is what the measurements used.
pub const FIFO_PRIORITY: i32 = 80;

/// Applies `mode` (and optional pinning) to the calling thread.
pub fn apply_to_current_thread(
    mode: RealtimeMode,
    cpu: Option<usize>,
) -> Result<ActiveRealtime, RealtimeError> {
    if let Some(cpu) = cpu {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let Some(core) = cores.iter().find(|c| c.id == cpu) else {
            return Err(RealtimeError::NoSuchCpu {
                cpu,
                available: cores.len(),
            });
        };
        core_affinity::set_for_current(*core);
    }
    set_timer_slack_1ns();
    let mut active = ActiveRealtime {
        policy: "other",
        priority: 0,
        cpu,
        fallback_reason: None,
    };
    if mode == RealtimeMode::Off {
        return Ok(active);
    }
    match set_fifo(FIFO_PRIORITY) {
        Ok(()) => {
            active.policy = "fifo";
            active.priority = FIFO_PRIORITY;
            Ok(active)
        }
        Err(reason) if mode == RealtimeMode::Require => Err(RealtimeError::FifoRefused(reason)),
        Err(reason) => {
            active.fallback_reason = Some(reason);
            Ok(active)
        }
    }
}

#[cfg(target_os = "linux")]
fn set_timer_slack_1ns() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(not(target_os = "linux"))]
fn set_timer_slack_1ns() {}

/// Puts the calling thread under SCHED_FIFO at `priority`; the OS's refusal as text.
#[cfg(unix)]
pub(crate) fn set_fifo(priority: i32) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is always valid for the calling thread; param is initialised.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc).to_string())
    }
}

#[cfg(not(unix))]
pub(crate) fn set_fifo(_priority: i32) -> Result<(), String> {
    Err("SCHED_FIFO is only available on Unix".into())
}

/// Puts the calling thread back to SCHED_OTHER (used by helper threads that inherit FIFO).
#[cfg(unix)]
pub fn reset_to_normal() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as in `set_fifo`.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_OTHER, &param) };
}

#[cfg(not(unix))]
pub fn reset_to_normal() {}

/// Sleeps until `deadline_ns` (CLOCK_MONOTONIC): a kernel sleep to `deadline − spin_ns`, then
/// a busy-wait for the rest, which removes the wake-up latency of the sleep. Returns the
/// wake-up time.
pub fn sleep_until(deadline_ns: u64, spin_ns: u64) -> u64 {
    let coarse = deadline_ns.saturating_sub(spin_ns);
    let mut now = now_ns();
    if now < coarse {
        kernel_sleep_until(coarse);
        now = now_ns();
    }
    while now < deadline_ns {
        std::hint::spin_loop();
        now = now_ns();
    }
    now
}

#[cfg(target_os = "linux")]
fn kernel_sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // EINTR just returns early; the spin (or the caller's loop) covers the rest.
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn kernel_sleep_until(deadline_ns: u64) {
    let now = now_ns();
    if deadline_ns > now {
        std::thread::sleep(std::time::Duration::from_nanos(deadline_ns - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!("AUTO".parse::<RealtimeMode>().unwrap(), RealtimeMode::Auto);
        assert_eq!(
            "require".parse::<RealtimeMode>().unwrap(),
            RealtimeMode::Require
        );
        assert_eq!("off".parse::<RealtimeMode>().unwrap(), RealtimeMode::Off);
        assert!("fast"
            .parse::<RealtimeMode>()
            .unwrap_err()
            .contains("auto, require, off"));
    }

    #[test]
    fn never_wakes_before_the_deadline() {
        for _ in 0..20 {
            let deadline = now_ns() + 300_000;
            let woke = sleep_until(deadline, 100_000);
            assert!(woke >= deadline);
        }
    }

    #[test]
    fn off_mode_reports_normal_scheduling() {
        let handle = std::thread::spawn(|| apply_to_current_thread(RealtimeMode::Off, None));
        let active = handle.join().unwrap().unwrap();
        assert_eq!(active.policy, "other");
    }

    #[test]
    fn unknown_cpu_is_an_error() {
        let err = apply_to_current_thread(RealtimeMode::Off, Some(4096)).unwrap_err();
        assert!(err.to_string().contains("cpu 4096"));
    }
}
