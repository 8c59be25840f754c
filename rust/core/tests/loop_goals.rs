//! The goal path of the loop: scheduled actions interpolated at the control rate (policy
//! rollout, replay), late and invalid actions, and the start and end ramps. Most tests drive
//! `LoopCore` by hand on synthetic time (no threads, no wall clock), so every goal is exact.

use std::sync::Arc;
use std::time::Duration;

use openk_core::arm::part::{Part, StopAction};
use openk_core::control::testing::{
    fake_spec, two_joint_arms, FakeFollower, FakeLeader, FakeLog, TWO_JOINTS,
};
use openk_core::control::{GoalSource, LoopCore, LoopShared, LoopSpec, TeleopLoop, TickOutcome};
use openk_core::record::builder::row_ring;
use openk_core::record::Row;

const MS: u64 = 1_000_000;
/// 500 Hz.
const TICK: u64 = 2 * MS;
const T0: u64 = 1_000_000 * MS;

struct Rig {
    core: LoopCore,
    shared: Arc<LoopShared>,
    log: Arc<FakeLog>,
    rows: rtrb::Consumer<Row>,
    /// Wake time of the next tick.
    t: u64,
}

impl Rig {
    fn new(spec: &LoopSpec, start: [f32; 2], leader: Option<FakeLeader>) -> Self {
        let (follower, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &start, true);
        let leader: Vec<Box<dyn Part>> = match leader {
            Some(l) => vec![Box::new(l)],
            None => vec![],
        };
        let (tx, rows) = row_ring(1 << 14);
        let (core, shared) = LoopCore::new(two_joint_arms(leader, follower), spec, tx).unwrap();
        Self {
            core,
            shared,
            log,
            rows,
            t: T0,
        }
    }

    /// One tick at the next wake time; returns the goals it sent.
    fn tick(&mut self) -> (TickOutcome, [f32; 2]) {
        let out = self.core.tick(self.t, 0);
        self.t += TICK;
        let a = self.core.action();
        (out, [a[0], a[1]])
    }

    fn ticks(&mut self, n: usize) -> Vec<[f32; 2]> {
        (0..n)
            .map(|_| {
                let (out, g) = self.tick();
                assert_eq!(out, TickOutcome::Continue);
                g
            })
            .collect()
    }
}

fn largest_step(goals: &[[f32; 2]], joint: usize) -> f32 {
    goals
        .windows(2)
        .map(|w| (w[1][joint] - w[0][joint]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn actions_at_30_fps_become_even_steps_at_500_hz_never_a_jump() {
    let mut rig = Rig::new(&fake_spec(500.0, 30.0), [0.0, 0.0], None);
    rig.ticks(3);
    // A sequence whose rows differ by up to 30 units; row i is due at start + i / 30 s.
    let rows: Vec<[f32; 2]> = (0..12)
        .map(|i| [(i as f32 * 0.9).sin() * 15.0, i as f32 * 3.0])
        .collect();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let start = rig.t + 100 * MS;
    rig.shared.send_actions(&flat, Some(start)).unwrap();
    assert_eq!(rig.shared.pending_actions(), 12);
    let mut goals = vec![];
    let mut at_due = vec![];
    let period = 1e9 / 30.0;
    while rig.t <= start + 12 * 34 * MS {
        let due: Vec<u64> = (0..12)
            .map(|i| start + (i as f64 * period).round() as u64)
            .collect();
        let now = rig.t;
        let (_, g) = rig.tick();
        if let Some(i) = due.iter().position(|d| *d <= now && now < d + TICK) {
            at_due.push((i, g));
        }
        goals.push(g);
    }
    // Each row is reached at its time: the tick at (or just after) its due time sends it.
    assert_eq!(at_due.len(), 12, "{at_due:?}");
    for (i, g) in &at_due {
        for j in 0..2 {
            let slope = if *i + 1 < 12 {
                (rows[i + 1][j] - rows[*i][j]).abs()
            } else {
                0.0
            };
            assert!(
                (g[j] - rows[*i][j]).abs() <= slope * (TICK as f32 / period as f32) + 1e-3,
                "row {i} joint {j}: sent {} expected {}",
                g[j],
                rows[*i][j]
            );
        }
    }
    // Between rows, consecutive goals step by (row delta) / (ticks per row), never more.
    let ticks_per_row = period / TICK as f64;
    for j in 0..2 {
        let mut largest_delta = rows
            .windows(2)
            .map(|w| (w[1][j] - w[0][j]).abs())
            .fold(0.0, f32::max);
        // The first row is approached from the present pose (0) over the 100 ms lead.
        largest_delta = largest_delta.max(rows[0][j].abs() / 3.0);
        let bound = largest_delta / ticks_per_row as f32 + 1e-3;
        let step = largest_step(&goals, j);
        assert!(step <= bound, "joint {j}: step {step} > {bound}");
        assert!(step > 0.0);
    }
    assert_eq!(rig.shared.pending_actions(), 0);
    assert_eq!(goals.last().unwrap(), rows.last().unwrap());
    // The follower received exactly the goals the loop reports.
    let sent = rig.log.goals.lock().unwrap();
    assert_eq!(sent.last().unwrap(), &rows.last().unwrap().to_vec());
}

#[test]
fn a_single_action_is_reached_one_row_period_later() {
    let mut rig = Rig::new(&fake_spec(500.0, 50.0), [0.0, 10.0], None);
    rig.ticks(2);
    rig.shared.send_actions(&[20.0, 0.0], None).unwrap();
    // 50 fps: 20 ms = 10 ticks of 2 ms; steps of 2 and -1 per tick.
    let goals = rig.ticks(12);
    for (k, g) in goals.iter().enumerate().take(11) {
        let f = (k as f32 * 0.1).min(1.0);
        assert!((g[0] - 20.0 * f).abs() < 1e-3, "tick {k}: {g:?}");
        assert!((g[1] - (10.0 - 10.0 * f)).abs() < 1e-3, "tick {k}: {g:?}");
    }
    assert_eq!(goals[11], [20.0, 0.0]);
}

#[test]
fn an_exhausted_schedule_holds_the_last_goal_and_counts_late_actions() {
    let mut rig = Rig::new(&fake_spec(500.0, 50.0), [0.0, 0.0], None);
    rig.core.start_episode(0);
    rig.ticks(5);
    assert_eq!(
        rig.core.run_telemetry().late_actions,
        0,
        "no action was scheduled yet: nothing is late"
    );
    rig.shared
        .send_actions(&[1.0, 2.0, 3.0, 4.0], None)
        .unwrap();
    // Rows due 20 and 40 ms after they arrive; then 10 row periods (200 ms) with nothing.
    let goals = rig.ticks(20 + 101);
    assert_eq!(goals[20], [3.0, 4.0]);
    assert!(goals[20..].iter().all(|g| *g == [3.0, 4.0]), "holds");
    assert_eq!(rig.core.run_telemetry().late_actions, 10);
    assert_eq!(rig.core.episode_telemetry().late_actions, 10);
    // A fresh action ends the hold; the count restarts from it.
    rig.shared.send_actions(&[5.0, 5.0], None).unwrap();
    let goals = rig.ticks(11);
    assert_eq!(goals[10], [5.0, 5.0]);
    assert_eq!(rig.core.run_telemetry().late_actions, 10);
}

#[test]
fn actions_that_arrive_after_their_time_are_dropped_and_counted_late() {
    let mut rig = Rig::new(&fake_spec(500.0, 50.0), [0.0, 0.0], None);
    rig.ticks(2);
    // Rows due 60, 40, 20 ms ago, now + ~0, and later: the stale ones are never sent.
    let start = rig.t - 60 * MS;
    let flat = [9.0, 9.0, 8.0, 8.0, 7.0, 7.0, 1.0, 1.0, 2.0, 2.0];
    rig.shared.send_actions(&flat, Some(start)).unwrap();
    let goals = rig.ticks(30);
    assert!(goals.iter().all(|g| g[0] <= 2.0), "{goals:?}");
    assert!(rig.core.run_telemetry().late_actions >= 3);
    assert_eq!(*goals.last().unwrap(), [2.0, 2.0]);
}

#[test]
fn a_nan_action_is_held_over_with_an_event_and_repeated_ones_stop_the_loop() {
    let mut s = fake_spec(500.0, 50.0);
    s.max_invalid_actions = 3;
    s.end_ramp_ns = 100 * MS;
    s.end_settle_ns = 20 * MS;
    let mut rig = Rig::new(&s, [4.0, 4.0], None);
    rig.shared.send_actions(&[6.0, 6.0], None).unwrap();
    rig.ticks(12);
    rig.shared.send_actions(&[7.0, f32::NAN], None).unwrap();
    let goals = rig.ticks(20);
    assert!(goals.iter().all(|g| *g == [6.0, 6.0]), "holds: {goals:?}");
    let events = rig.shared.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].motor.as_deref(), Some("b.pos"));
    assert!(
        events[0].reason.contains("not a finite number"),
        "{events:?}"
    );
    // A valid action resets the count; then three invalid ones in a row stop the loop, which
    // first returns home (0, 0) over the end ramp.
    rig.shared.send_actions(&[8.0, 8.0], None).unwrap();
    rig.ticks(12);
    let bad = [f32::INFINITY, 0.0, 1.0, f32::NAN, f32::NAN, 0.0];
    rig.shared.send_actions(&bad, None).unwrap();
    let mut goals = vec![];
    let mut ticks = 0;
    loop {
        let (out, g) = rig.tick();
        ticks += 1;
        if out == TickOutcome::Stop {
            break;
        }
        goals.push(g);
        assert!(ticks < 1000, "the loop did not stop");
    }
    assert_eq!(goals[0], [8.0, 8.0]);
    assert_eq!(*goals.last().unwrap(), [0.0, 0.0]);
    assert!(largest_step(&goals, 0) <= 8.0 * 2.0 / 100.0 + 1e-4);
    // ramp (50 ticks) + settle (10 ticks), give or take the tick that stops.
    assert!((59..=62).contains(&goals.len()), "{}", goals.len());
    let failure = rig.shared.failure().unwrap();
    assert_eq!(failure.device, "actions");
    assert_eq!(failure.motor.as_deref(), Some("a.pos"));
    let parts = rig.core.finish(StopAction::Limp);
    assert_eq!(parts.len(), 1);
    assert_eq!(*rig.log.stops.lock().unwrap(), vec![StopAction::Limp]);
}

#[test]
fn out_of_range_actions_are_refused_when_limits_are_known() {
    let mut s = fake_spec(500.0, 50.0);
    s.action_limits = vec![Some((-10.0, 10.0)), None];
    let mut rig = Rig::new(&s, [0.0, 0.0], None);
    rig.shared.send_actions(&[11.0, 50.0], None).unwrap();
    let goals = rig.ticks(15);
    assert!(goals.iter().all(|g| *g == [0.0, 0.0]));
    let events = rig.shared.events();
    assert!(events[0].reason.contains("outside its range"), "{events:?}");
    assert_eq!(
        rig.shared.pending_actions(),
        0,
        "a refused row is finished with"
    );
}

#[test]
fn the_goal_speed_limit_bounds_every_step() {
    let mut s = fake_spec(500.0, 50.0);
    s.max_goal_speed = vec![Some(100.0), None];
    let mut rig = Rig::new(&s, [0.0, 0.0], None);
    rig.ticks(2);
    rig.shared.send_actions(&[50.0, 50.0], None).unwrap();
    let goals = rig.ticks(300);
    // 100 units/s at 2 ms: 0.2 per tick; the unlimited joint gets there in one row period.
    assert!(largest_step(&goals, 0) <= 0.2 + 1e-4);
    assert_eq!(goals[10][1], 50.0);
    assert!((goals[260][0] - 50.0).abs() < 1e-3, "{:?}", goals[260]);
}

#[test]
fn the_start_ramp_blends_from_the_present_pose_to_the_leader() {
    let mut s = fake_spec(500.0, 50.0);
    s.start_ramp_ns = 1_000 * MS;
    let leader = FakeLeader::new(&TWO_JOINTS, |_, j| [10.0, -20.0][j]);
    let mut rig = Rig::new(&s, [2.0, 2.0], Some(leader));
    let goals = rig.ticks(600);
    assert_eq!(goals[0], [2.0, 2.0], "first goal: where the arm is");
    // The leader's first value is read on tick 0 and followed from tick 1: the ramp starts
    // there and lasts 1 s (500 ticks).
    let half = goals[1 + 250];
    assert!(
        (half[0] - 6.0).abs() < 1e-3 && (half[1] + 9.0).abs() < 1e-3,
        "{half:?}"
    );
    assert!(largest_step(&goals, 0) <= 8.0 / 500.0 + 1e-4);
    assert!(largest_step(&goals, 1) <= 22.0 / 500.0 + 1e-4);
    assert_eq!(goals[501], [10.0, -20.0]);
    assert_eq!(goals[599], [10.0, -20.0]);
}

#[test]
fn a_stepped_start_ramp_moves_every_step_period() {
    let mut s = fake_spec(500.0, 50.0);
    s.start_ramp_ns = 100 * MS;
    s.start_ramp_step_ns = 20 * MS;
    let leader = FakeLeader::new(&TWO_JOINTS, |_, _| 10.0);
    let mut rig = Rig::new(&s, [0.0, 0.0], Some(leader));
    let goals = rig.ticks(80);
    // 5 steps of 2.0, each held 10 ticks (the reference's ramp_action with dt = 20 ms).
    assert_eq!(goals[1][0], 2.0);
    assert_eq!(goals[10][0], 2.0);
    assert_eq!(goals[11][0], 4.0);
    assert_eq!(goals[41][0], 10.0);
    assert_eq!(goals[79][0], 10.0);
}

#[test]
fn the_start_ramp_of_a_rollout_begins_with_the_first_action() {
    let mut s = fake_spec(500.0, 50.0);
    s.start_ramp_ns = 200 * MS;
    let mut rig = Rig::new(&s, [0.0, 0.0], None);
    // The policy takes its time: the follower holds where it is meanwhile.
    assert!(rig.ticks(100).iter().all(|g| *g == [0.0, 0.0]));
    assert_eq!(rig.core.run_telemetry().late_actions, 0);
    rig.shared.send_actions(&[10.0, 10.0], None).unwrap();
    let goals = rig.ticks(150);
    assert!(goals[50][0] > 2.0 && goals[50][0] < 8.0, "{:?}", goals[50]);
    assert!(largest_step(&goals, 0) <= 10.0 / 100.0 * 2.0);
    assert_eq!(goals[101], [10.0, 10.0]);
}

#[test]
fn stopping_returns_home_settles_then_takes_the_stop_action() {
    let mut s = fake_spec(500.0, 50.0);
    s.end_ramp_ns = 200 * MS;
    s.end_settle_ns = 40 * MS;
    let leader = FakeLeader::new(&TWO_JOINTS, |_, j| [10.0, -20.0][j]);
    let mut rig = Rig::new(&s, [10.0, -20.0], Some(leader));
    rig.ticks(10);
    assert!(rig.shared.request_stop());
    let mut goals = vec![];
    loop {
        let (out, g) = rig.tick();
        if out == TickOutcome::Stop {
            break;
        }
        goals.push(g);
        assert!(goals.len() < 1000, "the loop did not stop");
    }
    // 100 ticks of ramp from (10, -20) to home (0, 0), then 20 ticks holding home.
    assert!((goals[50][0] - 5.0).abs() < 0.2, "{:?}", goals[50]);
    assert!(largest_step(&goals, 1) <= 20.0 / 100.0 + 1e-4);
    let home_from = goals.iter().position(|g| *g == [0.0, 0.0]).unwrap();
    assert!((99..=101).contains(&home_from), "{home_from}");
    assert!(
        (goals.len() - home_from) >= 20,
        "{}",
        goals.len() - home_from
    );
    assert!(
        rig.log.stops.lock().unwrap().is_empty(),
        "torque still on while settling"
    );
    rig.core.finish(StopAction::Limp);
    assert_eq!(*rig.log.stops.lock().unwrap(), vec![StopAction::Limp]);
    // The rows were not recorded (no episode) but the follower got every ramp goal.
    assert!(rig.rows.pop().is_err());
}

#[test]
fn a_second_stop_request_cuts_the_return_home_short() {
    let mut s = fake_spec(500.0, 50.0);
    s.end_ramp_ns = 2_000 * MS;
    let mut rig = Rig::new(&s, [10.0, 10.0], None);
    rig.ticks(5);
    rig.shared.request_stop();
    rig.ticks(10);
    rig.shared.request_stop();
    assert_eq!(rig.tick().0, TickOutcome::Stop);
}

#[test]
fn rows_recorded_during_a_ramp_carry_the_goals_sent() {
    let mut s = fake_spec(500.0, 100.0);
    s.start_ramp_ns = 100 * MS;
    let leader = FakeLeader::new(&TWO_JOINTS, |_, _| 10.0);
    let mut rig = Rig::new(&s, [0.0, 0.0], Some(leader));
    rig.core.start_episode(0);
    let goals = rig.ticks(100);
    let mut actions = vec![];
    while let Ok(row) = rig.rows.pop() {
        actions.push([row.action[0], row.action[1]]);
    }
    // A row every 5 ticks, each with the goal its tick sent.
    assert_eq!(actions.len(), 20);
    for (i, a) in actions.iter().enumerate() {
        assert_eq!(*a, goals[i * 5], "row {i}");
    }
}

#[test]
fn replay_is_paced_by_the_loop_and_waits_until_the_last_action() {
    // The real thread: a whole episode handed over at once (more rows than the schedule
    // holds), reached row by row on the loop's clock.
    let (follower, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[0.0, 0.0], true);
    let mut s = fake_spec(500.0, 100.0);
    s.schedule_capacity = 16;
    let lp = TeleopLoop::start(two_joint_arms(vec![], follower), s).unwrap();
    let rows: Vec<f32> = (0..60).flat_map(|i| [i as f32, -(i as f32)]).collect();
    let t0 = std::time::Instant::now();
    lp.send_actions(&rows, None).unwrap();
    assert!(lp.pending_actions() > 0);
    assert!(lp.wait_idle(Duration::from_secs(30)).unwrap());
    let took = t0.elapsed();
    assert_eq!(lp.pending_actions(), 0);
    lp.stop();
    // 60 rows at 100 fps: the last is due 0.6 s after the first, which is due 10 ms in.
    assert!(took >= Duration::from_millis(600), "{took:?}");
    let goals = log.goals.lock().unwrap();
    // The last action is held until the stop (no end ramp configured).
    assert_eq!(goals.last().unwrap(), &vec![59.0, -59.0]);
    // Every row value was passed through in order: goals rise monotonically to 59.
    assert!(goals.windows(2).all(|w| w[1][0] >= w[0][0]));
    // No count of late actions is asserted: on a loaded machine the caller's refills of the
    // 16-row schedule can arrive after their rows are due, which the loop rightly counts.
}

#[test]
fn dagger_hands_the_goals_from_the_schedule_to_the_leader_and_back_without_a_jump() {
    // The leader sits at (40, -40); the policy holds (0, 0). Handover over 100 ms (50 ticks).
    let mut s = fake_spec(500.0, 50.0);
    s.initial_source = Some(GoalSource::Schedule);
    s.handover_ns = 100 * MS;
    let leader = FakeLeader::new(&TWO_JOINTS, |_, j| [40.0, -40.0][j]);
    let mut rig = Rig::new(&s, [0.0, 0.0], Some(leader));
    rig.core.start_episode(0);
    let policy_rows = |rig: &mut Rig, n: usize| {
        let flat: Vec<f32> = (0..n).flat_map(|_| [0.0, 0.0]).collect();
        rig.shared.send_actions(&flat, None).unwrap();
    };
    policy_rows(&mut rig, 20);
    let mut goals = rig.ticks(100);
    // The schedule drives: the leader's positions never reach the goals.
    assert!(goals.iter().all(|g| g[0].abs() < 1e-3), "{goals:?}");
    assert_eq!(rig.core.source(), GoalSource::Schedule);

    assert!(rig.shared.set_source(GoalSource::Leader));
    let handover = rig.ticks(80);
    assert_eq!(rig.core.source(), GoalSource::Leader);
    // Reaches the leader after the handover time, one even step of 40 / 50 per tick on the way.
    assert_eq!(handover.last().unwrap(), &[40.0, -40.0]);
    assert!(largest_step(&handover, 0) <= 40.0 / 50.0 + 1e-3);
    // Actions sent while the leader drives are dropped, never sent.
    policy_rows(&mut rig, 5);
    let held = rig.ticks(50);
    assert!(held.iter().all(|g| *g == [40.0, -40.0]), "{held:?}");

    assert!(rig.shared.set_source(GoalSource::Schedule));
    policy_rows(&mut rig, 20);
    let back = rig.ticks(100);
    assert!(back.last().unwrap()[0].abs() < 1e-3, "{back:?}");
    // The policy's first action is due one row period (10 ticks) after the switch; the blend
    // with it stays within twice the handover's even step (the schedule alone: 4 per tick).
    let bound = 2.0 * 40.0 / 50.0 + 1e-3;
    assert!(largest_step(&back, 0) <= bound, "{back:?}");
    goals.extend(handover);
    goals.extend(held);
    goals.extend(back);
    assert!(largest_step(&goals, 1) <= bound);

    // Rows: tagged intervention exactly while the leader drove, their actions the goals sent.
    let mut rows = vec![];
    while let Ok(r) = rig.rows.pop() {
        rows.push(r);
    }
    let tagged: Vec<bool> = rows.iter().map(|r| r.intervention).collect();
    let first = tagged.iter().position(|t| *t).unwrap();
    let last = tagged.iter().rposition(|t| *t).unwrap();
    assert!(tagged[first..=last].iter().all(|t| *t), "{tagged:?}");
    assert!(first > 0 && last + 1 < rows.len(), "{tagged:?}");
    // 200 ms of policy before the switch = 10 rows at 50 fps; 260 ms with the leader = 13 rows.
    assert!((10..=11).contains(&first), "{first}");
    assert!((12..=14).contains(&(last + 1 - first)), "{tagged:?}");
    for r in &rows[first + 6..=last] {
        assert_eq!(&r.action[..2], &[40.0, -40.0]);
    }
    for r in &rows[last + 7..] {
        assert!(r.action[0].abs() < 1e-3);
    }
}

#[test]
fn a_loop_without_a_leader_cannot_start_on_the_leader() {
    let mut s = fake_spec(500.0, 30.0);
    s.initial_source = Some(GoalSource::Leader);
    let (follower, _log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[0.0, 0.0], true);
    let (tx, _rows) = row_ring(64);
    let err = LoopCore::new(two_joint_arms(vec![], follower), &s, tx)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no leader arm"), "{err}");
}
