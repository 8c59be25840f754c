//! Loop telemetry: tick lateness histogram, overruns, bus errors and retries by motor,
//! achieved rate. Recording never allocates (fixed-range histograms, preallocated counters).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest lateness / busy time the histograms track exactly (longer values saturate).
const HIST_MAX_NS: u64 = 60_000_000_000;

fn new_histogram() -> Histogram<u64> {
    // 2 significant digits (1 %) over 1 ns..60 s keeps the bucket array small (a merge is a few
    // µs) and fixed, so `record` never reallocates. The bounds are constants, hence valid.
    match Histogram::new_with_bounds(1, HIST_MAX_NS, 2) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds rejected: {e}"),
    }
}

/// Counters of one run or one episode.
#[derive(Clone)]
pub struct Telemetry {
    lateness_ns: Histogram<u64>,
    busy_ns: Histogram<u64>,
    pub ticks: u64,
    /// Deadlines missed entirely (the loop fell more than one period behind).
    pub overruns: u64,
    pub rows: u64,
    /// Rows lost because the ring to the builder was full.
    pub rows_dropped: u64,
    /// Rows (included in `rows`) that repeat the state of the row before: a late tick crossed
    /// several row times of the dataset clock.
    pub rows_repeated: u64,
    /// Dataset row periods a loop without a leader went without a fresh scheduled action
    /// (holding its last goal), plus scheduled actions that arrived after their time.
    pub late_actions: u64,
    pub first_tick_ns: u64,
    pub last_tick_ns: u64,
    motor_labels: Vec<String>,
    errors: Vec<u64>,
    retries: Vec<u64>,
    part_labels: Vec<String>,
    /// Duration of each part's bus round (what bounds the rate of that bus), by part.
    round_ns: Vec<Histogram<u64>>,
}

impl Telemetry {
    /// `motor_labels` name the counter slots, e.g. `follower.shoulder_pan`; `part_labels` the
    /// parts whose round times are kept, e.g. `follower damiao bus`.
    pub fn new(motor_labels: Vec<String>, part_labels: Vec<String>) -> Self {
        let n = motor_labels.len();
        let round_ns = part_labels.iter().map(|_| new_histogram()).collect();
        Self {
            lateness_ns: new_histogram(),
            busy_ns: new_histogram(),
            ticks: 0,
            overruns: 0,
            rows: 0,
            rows_dropped: 0,
            rows_repeated: 0,
            late_actions: 0,
            first_tick_ns: 0,
            last_tick_ns: 0,
            motor_labels,
            errors: vec![0; n],
            retries: vec![0; n],
            part_labels,
            round_ns,
        }
    }

    /// Clears every counter, keeping the allocation.
    pub fn reset(&mut self) {
        self.lateness_ns.reset();
        self.busy_ns.reset();
        self.ticks = 0;
        self.overruns = 0;
        self.rows = 0;
        self.rows_dropped = 0;
        self.rows_repeated = 0;
        self.late_actions = 0;
        self.first_tick_ns = 0;
        self.last_tick_ns = 0;
        self.errors.iter_mut().for_each(|c| *c = 0);
        self.retries.iter_mut().for_each(|c| *c = 0);
        self.round_ns.iter_mut().for_each(Histogram::reset);
    }

    pub fn record_tick(&mut self, wake_ns: u64, lateness_ns: u64, busy_ns: u64) {
        if self.ticks == 0 {
            self.first_tick_ns = wake_ns;
        }
        self.last_tick_ns = wake_ns;
        self.ticks += 1;
        self.lateness_ns.saturating_record(lateness_ns.max(1));
        self.busy_ns.saturating_record(busy_ns.max(1));
    }

    /// Rows one tick emitted: pushed (repeats included), dropped, repeated.
    pub fn add_rows(&mut self, pushed: u64, dropped: u64, repeated: u64) {
        self.rows += pushed;
        self.rows_dropped += dropped;
        self.rows_repeated += repeated;
    }

    pub fn record_error(&mut self, motor_slot: usize) {
        if let Some(c) = self.errors.get_mut(motor_slot) {
            *c += 1;
        }
    }

    pub fn record_retries(&mut self, motor_slot: usize, retries: u64) {
        if let Some(c) = self.retries.get_mut(motor_slot) {
            *c += retries;
        }
    }

    /// Makes this telemetry equal to `other` (same motor and part layout), reusing its buffers.
    pub fn copy_from(&mut self, other: &Telemetry) {
        self.reset();
        self.merge(other);
    }

    /// One finished bus round of part `part` (an index into the part labels).
    pub fn record_round(&mut self, part: usize, round_ns: u64) {
        if let Some(h) = self.round_ns.get_mut(part) {
            h.saturating_record(round_ns.max(1));
        }
    }

    /// Adds another telemetry of the same motor layout into this one.
    pub fn merge(&mut self, other: &Telemetry) {
        if self.ticks == 0 {
            self.first_tick_ns = other.first_tick_ns;
        }
        if other.ticks > 0 {
            self.last_tick_ns = other.last_tick_ns;
        }
        self.ticks += other.ticks;
        self.overruns += other.overruns;
        self.rows += other.rows;
        self.rows_dropped += other.rows_dropped;
        self.rows_repeated += other.rows_repeated;
        self.late_actions += other.late_actions;
        let _ = self.lateness_ns.add(&other.lateness_ns);
        let _ = self.busy_ns.add(&other.busy_ns);
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        for (a, b) in self.retries.iter_mut().zip(&other.retries) {
            *a += b;
        }
        for (a, b) in self.round_ns.iter_mut().zip(&other.round_ns) {
            let _ = a.add(b);
        }
    }

    /// Bus errors of every motor together.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn lateness(&self) -> &Histogram<u64> {
        &self.lateness_ns
    }

    /// A plain summary (allocates; call off the hot path). Durations stay in nanoseconds.
    pub fn report(&self, period_ns: u64, realtime: &str) -> TelemetryReport {
        let at = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        let max = |h: &Histogram<u64>| if h.is_empty() { 0 } else { h.max() };
        let span_ns = self.last_tick_ns.saturating_sub(self.first_tick_ns);
        let achieved_hz = if self.ticks > 1 && span_ns > 0 {
            (self.ticks - 1) as f64 * 1e9 / span_ns as f64
        } else {
            0.0
        };
        let by_motor = |counts: &[u64]| -> BTreeMap<String, u64> {
            self.motor_labels
                .iter()
                .zip(counts)
                .filter(|(_, c)| **c > 0)
                .map(|(l, c)| (l.clone(), *c))
                .collect()
        };
        TelemetryReport {
            ticks: self.ticks,
            overruns: self.overruns,
            rows: self.rows,
            rows_dropped: self.rows_dropped,
            rows_repeated: self.rows_repeated,
            late_actions: self.late_actions,
            target_hz: if period_ns > 0 {
                1e9 / period_ns as f64
            } else {
                0.0
            },
            achieved_hz,
            duration_ns: span_ns,
            lateness_p50_ns: at(&self.lateness_ns, 0.50),
            lateness_p99_ns: at(&self.lateness_ns, 0.99),
            lateness_p999_ns: at(&self.lateness_ns, 0.999),
            lateness_max_ns: max(&self.lateness_ns),
            busy_p50_ns: at(&self.busy_ns, 0.50),
            busy_p99_ns: at(&self.busy_ns, 0.99),
            busy_max_ns: max(&self.busy_ns),
            bus_round: self
                .part_labels
                .iter()
                .zip(&self.round_ns)
                .filter(|(_, h)| !h.is_empty())
                .map(|(label, h)| {
                    let summary = RoundSummary {
                        p50_ns: at(h, 0.50),
                        p99_ns: at(h, 0.99),
                        p999_ns: at(h, 0.999),
                        max_ns: max(h),
                    };
                    (label.clone(), summary)
                })
                .collect(),
            bus_errors: by_motor(&self.errors),
            bus_retries: by_motor(&self.retries),
            realtime: realtime.to_owned(),
        }
    }
}

/// Summary of a [`Telemetry`], as handed to Python and written into episode metadata. One
/// unit per quantity: durations in nanoseconds (`_ns`), rates in Hz, counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TelemetryReport {
    pub ticks: u64,
    pub overruns: u64,
    pub rows: u64,
    pub rows_dropped: u64,
    /// Rows (counted in `rows`) that repeat the previous row's state because the loop fell
    /// behind the dataset clock.
    pub rows_repeated: u64,
    /// Dataset row periods without a fresh scheduled action (the goal held its last value), plus
    /// scheduled actions that arrived after their time (policy rollout, replay).
    pub late_actions: u64,
    pub target_hz: f64,
    pub achieved_hz: f64,
    /// From the first tick to the last.
    pub duration_ns: u64,
    /// How late each tick woke after its deadline.
    pub lateness_p50_ns: u64,
    pub lateness_p99_ns: u64,
    pub lateness_p999_ns: u64,
    pub lateness_max_ns: u64,
    /// Time from the tick's wake-up until its bus rounds were dispatched (with parts on
    /// worker threads: collecting the previous rounds plus the loop's own work).
    pub busy_p50_ns: u64,
    pub busy_p99_ns: u64,
    pub busy_max_ns: u64,
    /// Round-trip time of each part's bus, by part label (what bounds the sustainable rate:
    /// a round longer than the period makes the next tick wait).
    pub bus_round: BTreeMap<String, RoundSummary>,
    /// Bus errors by `<device>.<motor>` (only motors with errors).
    pub bus_errors: BTreeMap<String, u64>,
    pub bus_retries: BTreeMap<String, u64>,
    /// Scheduling the loop ran with, e.g. "SCHED_FIFO priority 80".
    pub realtime: String,
}

/// Distribution of one part's bus round times, ns.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RoundSummary {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl TelemetryReport {
    /// Bus errors of every motor together.
    pub fn total_bus_errors(&self) -> u64 {
        self.bus_errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_summarises_ticks_errors_and_rate() {
        let mut t = Telemetry::new(
            vec!["follower.a".into(), "follower.b".into()],
            vec!["follower".into()],
        );
        for i in 0..101u64 {
            t.record_tick(i * 2_000_000, 1_000 + i, 500_000);
        }
        t.record_error(1);
        t.record_error(1);
        t.record_retries(0, 3);
        t.record_error(99); // unknown slot: ignored, never panics
        t.record_round(0, 1_500_000);
        t.record_round(7, 1); // unknown part: ignored
        let r = t.report(2_000_000, "x");
        assert_eq!(r.ticks, 101);
        assert!((r.achieved_hz - 500.0).abs() < 1e-6);
        assert!((r.target_hz - 500.0).abs() < 1e-6);
        assert_eq!(r.bus_errors.get("follower.b"), Some(&2));
        assert_eq!(r.bus_retries.get("follower.a"), Some(&3));
        assert!(!r.bus_errors.contains_key("follower.a"));
        assert!(
            r.lateness_p50_ns >= 1_000 && r.lateness_max_ns <= 1_120,
            "{r:?}"
        );
        let round = &r.bus_round["follower"];
        assert!(round.max_ns.abs_diff(1_500_000) < 20_000, "{round:?}");
        assert_eq!(r.duration_ns, 200_000_000);
        assert_eq!(r.total_bus_errors(), 2);
        let mut total = Telemetry::new(
            vec!["follower.a".into(), "follower.b".into()],
            vec!["follower".into()],
        );
        total.merge(&t);
        total.merge(&t);
        assert_eq!(total.report(2_000_000, "x").bus_errors["follower.b"], 4);
        t.reset();
        assert_eq!(t.report(2_000_000, "x").ticks, 0);
    }
}
