//! The goal schedule of a loop without a leader: timed actions (a policy's action chunk, a
//! replayed episode, single actions) that the loop interpolates at its control rate, so the
//! follower never sees a dataset-rate staircase and the loop never waits for the producer.
//!
//! Row `i` of a sequence is due at `start + i / record_fps`; the goal moves linearly from the
//! goal in force to each row so that it reaches the row at its due time. When the schedule runs
//! out the goal holds and every dataset row period without a fresh action counts as late.
//! Everything is preallocated: [`GoalSchedule::goal`] and [`GoalSchedule::push`] never allocate.

use std::collections::VecDeque;

use crate::record::MAX_ACTION;

/// What the owner hands the loop through the schedule ring (wait-free, bounded).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SchedItem {
    /// A new sequence starts: its rows replace the schedule from `start_ns` on. `None`: its
    /// first row is due one dataset row period after the loop receives it.
    Begin { start_ns: Option<u64> },
    /// The next row of the current sequence, in action order.
    Row { values: [f32; MAX_ACTION] },
}

#[derive(Debug, Clone, Copy)]
struct Point {
    due_ns: u64,
    values: [f32; MAX_ACTION],
}

/// What became of a pushed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Accepted,
    /// Its due time had already passed when the loop received it: dropped, counted late.
    Stale,
    /// The schedule is full: not taken (the caller keeps it and retries next tick).
    Full,
}

/// Timed goals and the interpolation between them.
pub struct GoalSchedule {
    points: VecDeque<Point>,
    capacity: usize,
    n: usize,
    period_ns: f64,
    /// The goal the interpolation starts from and when it was in force.
    anchor_ns: u64,
    anchor: [f32; MAX_ACTION],
    /// Start of the sequence being received and the index of its next row.
    seq_start_ns: u64,
    seq_row: u64,
    started: bool,
    /// Row periods already counted late since the schedule ran out.
    late_counted: u64,
    /// Rows finished with: reached, replaced, stale, or refused by the caller (see
    /// [`GoalSchedule::count_done`]). The owner compares it with the rows it sent.
    done: u64,
}

impl GoalSchedule {
    /// `n` action values, at most `capacity` rows ahead, rows `period_ns` apart; the goal in
    /// force at the start is `initial`.
    pub fn new(n: usize, capacity: usize, period_ns: f64, initial: &[f32]) -> Self {
        let mut s = Self {
            points: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            n: n.min(MAX_ACTION),
            period_ns,
            anchor_ns: 0,
            anchor: [0.0; MAX_ACTION],
            seq_start_ns: 0,
            seq_row: 0,
            started: false,
            late_counted: 0,
            done: 0,
        };
        s.set_goal(initial);
        s
    }

    /// Makes `values` the goal in force (before any action arrived: the present pose).
    pub fn set_goal(&mut self, values: &[f32]) {
        for (d, s) in self.anchor.iter_mut().zip(values) {
            *d = *s;
        }
    }

    /// An action has been received (the loop is following the schedule).
    pub fn started(&self) -> bool {
        self.started
    }

    pub fn is_full(&self) -> bool {
        self.points.len() >= self.capacity
    }

    /// Rows the schedule has finished with (see the field).
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Counts rows the caller refused (invalid values) as finished with.
    pub fn count_done(&mut self, rows: u64) {
        self.done += rows;
    }

    /// Rows still ahead.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// A new sequence, received at `now_ns`: its rows replace the schedule's rows due at or
    /// after its start. The interpolation restarts from the goal in force now, so nothing jumps.
    pub fn begin(&mut self, now_ns: u64, start_ns: Option<u64>) {
        let mut current = [0.0f32; MAX_ACTION];
        let _ = self.goal(now_ns, &mut current[..self.n]);
        let start = start_ns.unwrap_or(now_ns + self.period_ns.round() as u64);
        while self.points.back().is_some_and(|p| p.due_ns >= start) {
            self.points.pop_back();
            self.done += 1;
        }
        self.anchor = current;
        self.anchor_ns = now_ns;
        self.late_counted = 0;
        self.seq_start_ns = start;
        self.seq_row = 0;
        self.started = true;
    }

    /// Drops every row ahead (counted done) and holds `values` from `now_ns` on: the goal in
    /// force when the schedule takes over from another source.
    pub fn hold(&mut self, now_ns: u64, values: &[f32]) {
        self.done += self.points.len() as u64;
        self.points.clear();
        self.set_goal(values);
        self.anchor_ns = now_ns;
        self.late_counted = 0;
        self.seq_start_ns = now_ns;
        self.seq_row = 0;
    }

    /// The next row of the current sequence, received at `now_ns`.
    pub fn push(&mut self, now_ns: u64, values: &[f32; MAX_ACTION]) -> Pushed {
        if self.is_full() {
            return Pushed::Full;
        }
        let due_ns = self.seq_start_ns + (self.seq_row as f64 * self.period_ns).round() as u64;
        self.seq_row += 1;
        self.started = true;
        if due_ns <= now_ns {
            self.done += 1;
            return Pushed::Stale;
        }
        self.points.push_back(Point {
            due_ns,
            values: *values,
        });
        Pushed::Accepted
    }

    /// The goal at `now_ns` into `out` (first `n` values). Returns the dataset row periods that
    /// newly went by without a fresh action (the schedule ran out and holds its last goal).
    pub fn goal(&mut self, now_ns: u64, out: &mut [f32]) -> u64 {
        while let Some(p) = self.points.front().copied() {
            if p.due_ns > now_ns {
                break;
            }
            self.points.pop_front();
            self.anchor = p.values;
            self.anchor_ns = p.due_ns;
            self.late_counted = 0;
            self.done += 1;
        }
        let n = self.n.min(out.len());
        match self.points.front() {
            Some(next) => {
                let span = next.due_ns.saturating_sub(self.anchor_ns).max(1) as f64;
                let t =
                    (now_ns.saturating_sub(self.anchor_ns) as f64 / span).clamp(0.0, 1.0) as f32;
                for ((o, a), b) in out[..n].iter_mut().zip(&self.anchor).zip(&next.values) {
                    *o = a + (b - a) * t;
                }
                0
            }
            None => {
                out[..n].copy_from_slice(&self.anchor[..n]);
                if !self.started || self.period_ns <= 0.0 {
                    return 0;
                }
                let late = (now_ns.saturating_sub(self.anchor_ns) as f64 / self.period_ns) as u64;
                let new = late.saturating_sub(self.late_counted);
                self.late_counted = self.late_counted.max(late);
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[f32]) -> [f32; MAX_ACTION] {
        let mut r = [0.0; MAX_ACTION];
        r[..v.len()].copy_from_slice(v);
        r
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn a_single_action_is_reached_after_one_row_period_in_even_steps() {
        // 500 Hz ticks, 30 fps rows (33.3 ms): 0 -> 10 in steps of 10 / 16.7 per 2 ms tick.
        let period = 1e9 / 30.0;
        let mut s = GoalSchedule::new(1, 16, period, &[0.0]);
        let t0 = 1_000 * MS;
        s.begin(t0, None);
        assert_eq!(s.push(t0, &row(&[10.0])), Pushed::Accepted);
        let mut out = [0.0f32];
        let mut prev = 0.0;
        let mut t = t0;
        let step = 10.0 * 2e6 / period;
        while t <= t0 + 34 * MS {
            assert_eq!(s.goal(t, &mut out), 0, "not late before the row is due");
            let d = out[0] - prev;
            assert!(d >= -1e-4 && d <= step as f32 + 1e-3, "step {d} at {t}");
            prev = out[0];
            t += 2 * MS;
        }
        assert_eq!(out[0], 10.0);
        // Holding: one row period later it counts one late action, then one per period.
        assert_eq!(s.goal(t0 + 34 * MS + 33 * MS, &mut out), 1);
        assert_eq!(s.goal(t0 + 34 * MS + 34 * MS, &mut out), 0);
        assert_eq!(s.goal(t0 + 34 * MS + 100 * MS, &mut out), 2);
        assert_eq!(out[0], 10.0);
        assert_eq!(s.done(), 1);
    }

    #[test]
    fn a_new_sequence_replaces_the_rest_and_starts_from_the_goal_in_force() {
        let mut s = GoalSchedule::new(1, 16, 10.0 * MS as f64, &[0.0]);
        s.begin(0, Some(10 * MS));
        for v in [10.0, 20.0, 30.0, 40.0] {
            s.push(0, &row(&[v]));
        }
        let mut out = [0.0f32];
        s.goal(15 * MS, &mut out);
        assert_eq!(out[0], 15.0);
        // A chunk starting at 30 ms replaces rows 30 and 40 (due 30, 40 ms).
        s.begin(15 * MS, Some(30 * MS));
        s.push(15 * MS, &row(&[100.0]));
        assert_eq!(s.len(), 2);
        s.goal(20 * MS, &mut out);
        assert_eq!(out[0], 20.0);
        s.goal(25 * MS, &mut out);
        assert_eq!(out[0], 60.0);
        s.goal(30 * MS, &mut out);
        assert_eq!(out[0], 100.0);
        // Reached 10, 20 and 100; replaced 30 and 40.
        assert_eq!(s.done(), 5);
    }

    #[test]
    fn stale_rows_and_a_full_schedule() {
        let mut s = GoalSchedule::new(1, 2, 10.0 * MS as f64, &[0.0]);
        s.begin(100 * MS, Some(80 * MS));
        assert_eq!(s.push(100 * MS, &row(&[1.0])), Pushed::Stale);
        assert_eq!(s.push(100 * MS, &row(&[2.0])), Pushed::Stale);
        // Due exactly now: too late to be approached.
        assert_eq!(s.push(100 * MS, &row(&[3.0])), Pushed::Stale);
        assert_eq!(s.push(100 * MS, &row(&[4.0])), Pushed::Accepted);
        assert_eq!(s.push(100 * MS, &row(&[5.0])), Pushed::Accepted);
        assert_eq!(s.push(100 * MS, &row(&[6.0])), Pushed::Full);
        assert_eq!(s.done(), 3);
    }
}
