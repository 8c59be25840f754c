//! The loop over in-memory parts: goals, rows on the dataset clock, safety behaviour.

use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow_array::{Array, FixedSizeListArray, Float32Array, Int64Array};
use openk_core::arm::part::StopAction;
use openk_core::control::testing::{
    fake_spec, two_joint_arms, FakeFollower, FakeLeader, HookedPart, TWO_JOINTS,
};
use openk_core::control::{ControlError, TeleopLoop};

mod common;

use common::{column, rows_then_failure, wait_until, PATIENCE};

fn constant_leader(_: u64, j: usize) -> f32 {
    [10.0, -20.0][j]
}

fn rows_of(lp: &TeleopLoop) -> Vec<arrow_array::RecordBatch> {
    let mut out = vec![];
    while let Ok(Some(b)) = lp.next_batch(Duration::ZERO) {
        out.push(b);
    }
    out
}

#[test]
fn first_command_is_the_present_position_then_follows_the_leader() {
    let (follower, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[3.0, 4.0], true);
    let leader = FakeLeader::new(&TWO_JOINTS, constant_leader);
    let lp = TeleopLoop::start(
        two_joint_arms(vec![Box::new(leader)], follower),
        fake_spec(500.0, 50.0),
    )
    .unwrap();
    wait_until("the follower saw 5 exchanges", PATIENCE, || {
        log.exchanges.load(Ordering::Relaxed) >= 5
    });
    lp.stop();
    let goals = log.goals.lock().unwrap();
    assert_eq!(
        goals[0],
        vec![3.0, 4.0],
        "no jump: first goal is where the arm is"
    );
    assert_eq!(goals[1], vec![10.0, -20.0]);
    assert_eq!(*log.stops.lock().unwrap(), vec![StopAction::Hold]);
}

#[test]
fn direction_map_and_relative_clamp_shape_the_goals() {
    let (follower, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[0.0, 0.0], true);
    let leader = FakeLeader::new(&TWO_JOINTS, constant_leader);
    let mut a = two_joint_arms(vec![Box::new(leader)], follower);
    a.direction = vec![-1.0, 1.0];
    a.max_relative_target = vec![Some(4.0), None];
    let lp = TeleopLoop::start(a, fake_spec(500.0, 50.0)).unwrap();
    wait_until("the follower saw 6 exchanges", PATIENCE, || {
        log.exchanges.load(Ordering::Relaxed) >= 6
    });
    lp.stop();
    let goals = log.goals.lock().unwrap();
    // Joint a: leader 10 flipped to -10, approached in steps of at most 4 from the present.
    assert_eq!(goals[1][0], -4.0);
    assert_eq!(goals[2][0], -8.0);
    assert_eq!(goals[3][0], -10.0);
    // Joint b: unclamped, not flipped.
    assert_eq!(goals[1][1], -20.0);
}

#[test]
fn rows_are_ordered_timed_and_carry_the_schema() {
    let (follower, _log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[1.0, 2.0], false);
    let leader = FakeLeader::new(&TWO_JOINTS, |t, j| t as f32 + j as f32 * 0.5);
    let lp = TeleopLoop::start(
        two_joint_arms(vec![Box::new(leader)], follower),
        fake_spec(400.0, 100.0),
    )
    .unwrap();
    let ep = lp.start_episode(Duration::from_secs(5)).unwrap();
    assert_eq!(ep, 0);
    std::thread::sleep(Duration::from_millis(300));
    let report = lp.end_episode(Duration::from_secs(5)).unwrap();
    let batches = rows_of(&lp);
    let schema = batches[0].schema();
    let state_field = schema.field_with_name("observation.state").unwrap();
    assert_eq!(
        state_field.metadata()["names"],
        r#"["a.pos","b.pos","a.vel","b.vel"]"#
    );
    let mut ticks = vec![];
    let mut times = vec![];
    for b in &batches {
        let t = column::<Int64Array>(b, "tick_index");
        let c = column::<Int64Array>(b, "capture_time_ns");
        let action = column::<FixedSizeListArray>(b, "action");
        assert_eq!(action.value_length(), 2);
        let values = action
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap();
        assert_eq!(values.len(), 2 * b.num_rows());
        ticks.extend(t.values().iter().copied());
        times.extend(c.values().iter().copied());
    }
    let rows = ticks.len() as u64;
    assert_eq!(
        rows, report.rows,
        "every row the loop counted reached Python"
    );
    assert!(rows > 5);
    // Rows come in order, each no earlier than its time on the dataset clock (100 fps).
    assert!(ticks.windows(2).all(|w| w[1] >= w[0]));
    assert!(times.windows(2).all(|w| w[1] >= w[0]));
    for (i, t) in times.iter().enumerate() {
        assert!(*t >= times[0] + i as i64 * 10_000_000, "row {i} came early");
    }
}

#[test]
fn leader_loss_stops_the_loop_holds_the_follower_and_keeps_rows() {
    let (follower, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[0.0, 0.0], false);
    let leader = FakeLeader::new(&TWO_JOINTS, constant_leader);
    let fail_after = leader.fail_after.clone();
    let mut s = fake_spec(500.0, 500.0);
    s.max_consecutive_errors = 5;
    let lp = TeleopLoop::start(two_joint_arms(vec![Box::new(leader)], follower), s).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    wait_until("the episode has rows", PATIENCE, || {
        lp.episode_telemetry().rows > 0
    });
    fail_after.store(0, Ordering::Relaxed);
    wait_until("the loop stopped", PATIENCE, || !lp.is_running());
    let failure = lp.failure().unwrap();
    assert_eq!(failure.device, "leader fake");
    assert_eq!(failure.motor.as_deref(), Some("a"));
    let events = lp.events();
    assert!(
        events.iter().any(|e| e.reason.contains("leader lost")),
        "{events:?}"
    );
    // Rows recorded before the loss all arrive, then the failure is raised.
    let (rows, err) = rows_then_failure(&lp);
    assert!(rows > 0);
    assert!(matches!(err, ControlError::Stopped { .. }), "{err}");
    assert!(matches!(
        lp.end_episode(Duration::from_secs(1)),
        Err(ControlError::Stopped { .. })
    ));
    assert_eq!(*log.stops.lock().unwrap(), vec![StopAction::Hold]);
}

#[test]
fn replay_takes_actions_from_send_action() {
    let (follower, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[1.0, 1.0], true);
    let mut s = fake_spec(500.0, 50.0);
    s.stop_action = StopAction::Limp;
    let lp = TeleopLoop::start(two_joint_arms(vec![], follower), s).unwrap();
    wait_until("the follower saw 2 exchanges", PATIENCE, || {
        log.exchanges.load(Ordering::Relaxed) >= 2
    });
    lp.send_action(&[5.0, 6.0]).unwrap();
    let err = lp.send_action(&[5.0]).unwrap_err();
    assert!(err.to_string().contains("2 values"), "{err}");
    assert!(lp.wait_idle(PATIENCE).unwrap());
    lp.stop();
    let goals = log.goals.lock().unwrap();
    assert_eq!(goals[0], vec![1.0, 1.0]);
    assert_eq!(goals.last().unwrap(), &vec![5.0, 6.0]);
    assert_eq!(*log.stops.lock().unwrap(), vec![StopAction::Limp]);
}

#[test]
fn bad_rates_are_config_errors() {
    let (follower, _) = FakeFollower::new("f", &TWO_JOINTS, &[0.0, 0.0], false);
    let err = TeleopLoop::start(two_joint_arms(vec![], follower), fake_spec(100.0, 200.0))
        .err()
        .unwrap();
    assert!(err.to_string().contains("record_fps"), "{err}");
}

/// Drives the loop core by hand over `seconds` of synthetic time with ticks `tick_ns` apart
/// (no threads, no wall clock). Returns the rows' (tick_index, capture_time_ns), the time of
/// the last tick after the first, and the episode telemetry's repeated-row count.
fn rows_at_tick_rate(tick_ns: &[u64], fps: f64, seconds: u64) -> (Vec<(u64, i64)>, u64, u64) {
    use openk_core::control::LoopCore;
    use openk_core::record::builder::row_ring;
    let (follower, _) = FakeFollower::new("f", &TWO_JOINTS, &[0.0, 0.0], false);
    let leader = FakeLeader::new(&TWO_JOINTS, constant_leader);
    let (tx, mut rx) = row_ring(16384);
    let (mut core, _shared) = LoopCore::new(
        two_joint_arms(vec![Box::new(leader)], follower),
        &fake_spec(1000.0, fps),
        tx,
    )
    .unwrap();
    core.start_episode(0);
    let t0 = 1_000_000_000u64;
    let mut t = t0;
    let mut last = t0;
    let mut k = 0;
    // Ticks strictly before t0 + seconds: the episode covers [t0, t0 + seconds).
    while t < t0 + seconds * 1_000_000_000 {
        core.tick(t, 0);
        last = t;
        t += tick_ns[k % tick_ns.len()];
        k += 1;
    }
    let mut rows = vec![];
    while let Ok(row) = rx.pop() {
        rows.push((row.tick_index, row.capture_time_ns));
    }
    (rows, last - t0, core.episode_telemetry().rows_repeated)
}

#[test]
fn rows_follow_the_dataset_clock_whatever_the_tick_rate() {
    // Over 10 s at 30 fps the episode gets one row per 1/30 s of its span (300) whether the
    // loop ticks at 500 Hz, falls behind to 140 Hz, runs irregularly, stalls, or is slower
    // than the dataset fps itself; rows a late tick crossed are repeats of its state.
    let cases: [(&[u64], Option<u64>); 5] = [
        (&[2_000_000], Some(0)),                       // 500 Hz
        (&[7_142_857], Some(0)),                       // 140 Hz (a loaded machine)
        (&[1_000_000, 3_000_000, 9_000_000], Some(0)), // irregular, gaps < 1/30 s
        (&[50_000_000], Some(99)),                     // 20 Hz: 3 rows per 2 ticks
        (&[2_000_000, 2_000_000, 200_000_000], None),  // stalls of 0.2 s
    ];
    for (ticks, expect_repeats) in cases {
        let (rows, span_ns, repeated) = rows_at_tick_rate(ticks, 30.0, 10);
        let expected = (span_ns as f64 * 30.0 / 1e9).floor() as usize + 1;
        assert_eq!(rows.len(), expected, "tick pattern {ticks:?}");
        assert!(matches!(rows.len(), 299 | 300), "{ticks:?}: {}", rows.len());
        let t0 = rows[0].1;
        let longest_gap = *ticks.iter().max().unwrap() as i64;
        for (i, (_, capture)) in rows.iter().enumerate() {
            let due = t0 + (i as f64 * 1e9 / 30.0).round() as i64;
            assert!(
                *capture >= due && *capture < due + longest_gap,
                "row {i} captured at {capture}, due at {due} ({ticks:?})"
            );
        }
        // A repeated row carries the same tick (state) as the row before it.
        let same_as_before = rows.windows(2).filter(|w| w[1] == w[0]).count() as u64;
        assert_eq!(repeated, same_as_before, "{ticks:?}");
        match expect_repeats {
            Some(n) => assert_eq!(repeated, n, "{ticks:?}"),
            None => assert!(repeated > 0, "{ticks:?}"),
        }
    }
}

#[test]
fn a_slow_bus_still_gives_fps_rows_per_second() {
    // The follower's bus takes 45 ms per exchange: the 500 Hz loop really ticks at ~22 Hz,
    // slower than the 30 fps dataset, so some rows must repeat the previous state.
    let (follower, _log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[1.0, 2.0], false);
    let leader = FakeLeader::new(&TWO_JOINTS, constant_leader);
    let mut a = two_joint_arms(vec![Box::new(leader)], follower);
    let inner = a.follower.pop().unwrap();
    a.follower
        .push(Box::new(HookedPart::slow(inner, Duration::from_millis(45))));
    let lp = TeleopLoop::start(a, fake_spec(500.0, 30.0)).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let report = lp.end_episode(Duration::from_secs(5)).unwrap();
    lp.stop();
    let mut times = vec![];
    for b in rows_of(&lp) {
        let c = column::<Int64Array>(&b, "capture_time_ns");
        times.extend(c.values().iter().copied());
    }
    assert_eq!(times.len() as u64, report.rows);
    let t0 = times[0];
    let last_tick = t0 + report.duration_ns as i64;
    // Rows up to the last tick of the episode: one per 1/30 s of its span, never early.
    let expected = ((last_tick - t0) as f64 * 30.0 / 1e9).floor() as i64 + 1;
    assert!(
        (times.len() as i64 - expected).abs() <= 1,
        "{} rows over {} ns at 30 fps (expected {expected})",
        times.len(),
        report.duration_ns
    );
    for (i, t) in times.iter().enumerate() {
        assert!(
            *t >= t0 + (i as f64 * 1e9 / 30.0) as i64,
            "row {i} came early"
        );
    }
    let same_as_before = times.windows(2).filter(|w| w[1] == w[0]).count() as u64;
    assert!(report.rows_repeated > 0, "{report:?}");
    assert_eq!(report.rows_repeated, same_as_before, "{report:?}");
}

#[test]
fn bus_errors_are_counted_against_the_motor_that_failed() {
    // Two leader parts, one joint each: the second part's failure must be booked to its own
    // motor, not shifted onto another part's.
    let (follower, _log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[0.0, 0.0], false);
    let first = FakeLeader::new(&TWO_JOINTS[..1], constant_leader);
    let mut second = FakeLeader::new(&TWO_JOINTS[1..], constant_leader);
    second.label_as("second leader");
    let fail_after = second.fail_after.clone();
    let mut s = fake_spec(500.0, 50.0);
    s.max_consecutive_errors = 3;
    let lp = TeleopLoop::start(
        two_joint_arms(vec![Box::new(first), Box::new(second)], follower),
        s,
    )
    .unwrap();
    wait_until("the loop ticked", PATIENCE, || lp.telemetry().ticks > 0);
    fail_after.store(0, Ordering::Relaxed);
    wait_until("the loop stopped", PATIENCE, || !lp.is_running());
    let report = lp.telemetry();
    let errors: Vec<(&str, u64)> = report
        .bus_errors
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(errors, vec![("second leader.b", 3)], "{errors:?}");
}

#[test]
fn a_tick_collects_the_previous_round_and_never_waits_for_its_own() {
    use openk_core::clock::now_ns;
    use openk_core::control::{LoopCore, TickOutcome};
    use openk_core::record::builder::row_ring;

    let (follower, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[3.0, 4.0], true);
    let (gated, open) = HookedPart::gated(Box::new(follower));
    let leader = FakeLeader::new(&TWO_JOINTS, |t, j| (t * 10 + j as u64) as f32);
    let mut a = two_joint_arms(
        vec![Box::new(leader)],
        FakeFollower::new("x", &TWO_JOINTS, &[0.0; 2], false).0,
    );
    a.follower = vec![Box::new(gated)];
    let (rows, _rows_out) = row_ring(64);
    let (mut core, _shared) = LoopCore::new(a, &fake_spec(500.0, 50.0), rows).unwrap();
    core.parallelize(|| {}).unwrap();

    // Tick 1 sends the present position and returns while the follower's round is blocked.
    assert_eq!(core.tick(now_ns(), 0), TickOutcome::Continue);
    assert_eq!(core.action(), &[3.0, 4.0]);
    assert_eq!(
        log.exchanges.load(Ordering::Relaxed),
        0,
        "round 1 still running"
    );

    // Tick 2 waits for round 1 only: the leader's first reading (tick 0) becomes the goal.
    open.send(()).unwrap();
    assert_eq!(core.tick(now_ns(), 0), TickOutcome::Continue);
    assert_eq!(log.exchanges.load(Ordering::Relaxed), 1);
    assert_eq!(core.action(), &[0.0, 1.0]);
    // The observation is the follower's answer to round 1 (measured before tick 2's goal).
    assert_eq!(&core.observation()[..2], &[3.0, 4.0]);

    open.send(()).unwrap();
    assert_eq!(core.tick(now_ns(), 0), TickOutcome::Continue);
    assert_eq!(core.action(), &[10.0, 11.0]);
    assert_eq!(&core.observation()[..2], &[0.0, 1.0]);

    // Finishing waits for the round in flight before the follower is stopped.
    open.send(()).unwrap();
    let parts = core.finish(StopAction::Hold);
    assert_eq!(parts.len(), 2);
    assert_eq!(log.exchanges.load(Ordering::Relaxed), 3);
    assert_eq!(*log.stops.lock().unwrap(), vec![StopAction::Hold]);
    assert_eq!(
        *log.goals.lock().unwrap(),
        vec![vec![3.0, 4.0], vec![0.0, 1.0], vec![10.0, 11.0]]
    );
}

#[test]
fn a_panicking_part_stops_the_loop_safely_and_keeps_rows() {
    let (inner, log) = FakeFollower::new("follower fake", &TWO_JOINTS, &[0.0, 0.0], false);
    let leader = FakeLeader::new(&TWO_JOINTS, constant_leader);
    let mut a = two_joint_arms(vec![Box::new(leader)], inner);
    let inner = a.follower.pop().unwrap();
    // A follower whose own code panics once the test says so (a bug in a part, not a bus
    // fault).
    let panic_now = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = panic_now.clone();
    a.follower = vec![Box::new(HookedPart::new(inner, move || {
        assert!(
            !flag.load(Ordering::Relaxed),
            "index out of range in a part"
        );
    }))];
    let lp = TeleopLoop::start(a, fake_spec(500.0, 500.0)).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    wait_until("the episode has rows", PATIENCE, || {
        lp.episode_telemetry().rows > 0
    });
    panic_now.store(true, Ordering::Relaxed);
    wait_until("the loop stopped after a part panicked", PATIENCE, || {
        !lp.is_running()
    });
    let failure = lp.failure().unwrap();
    assert_eq!(failure.device, "follower fake");
    assert!(failure.message.contains("panicked"), "{failure}");
    assert!(failure.message.contains("index out of range"), "{failure}");
    let (rows, err) = rows_then_failure(&lp);
    assert!(rows > 0, "rows recorded before the panic were lost");
    assert!(matches!(err, ControlError::Stopped { .. }), "{err}");
    // The follower was still brought to its stop state.
    assert_eq!(*log.stops.lock().unwrap(), vec![StopAction::Hold]);
}
