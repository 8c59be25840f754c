//! The loop over in-memory parts: goals, rows, decimation, safety behaviour.

use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow_array::{Array, FixedSizeListArray, Float32Array, Int64Array};
use openk_core::arm::part::{Part, StopAction};
use openk_core::control::testing::{FakeFollower, FakeLeader};
use openk_core::control::{ControlError, LoopSpec, RealtimeMode, TeleopArms, TeleopLoop};

const JOINTS: [&str; 2] = ["a", "b"];

fn spec(hz: f64, fps: f64) -> LoopSpec {
    LoopSpec {
        control_hz: hz,
        record_fps: fps,
        realtime: RealtimeMode::Off,
        ..LoopSpec::default()
    }
}

fn arms(leader: Vec<Box<dyn Part>>, follower: FakeFollower) -> TeleopArms {
    TeleopArms {
        leader,
        follower: vec![Box::new(follower)],
        observation_names: vec![
            "a.pos".into(),
            "b.pos".into(),
            "a.vel".into(),
            "b.vel".into(),
        ],
        action_names: vec!["a.pos".into(), "b.pos".into()],
        direction: vec![1.0, 1.0],
        max_relative_target: vec![None, None],
    }
}

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
    let (follower, log) = FakeFollower::new("follower fake", &JOINTS, &[3.0, 4.0], true);
    let leader = FakeLeader::new(&JOINTS, constant_leader);
    let lp = TeleopLoop::start(arms(vec![Box::new(leader)], follower), spec(500.0, 50.0)).unwrap();
    while log.exchanges.load(Ordering::Relaxed) < 5 {
        std::thread::sleep(Duration::from_millis(2));
    }
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
    let (follower, log) = FakeFollower::new("follower fake", &JOINTS, &[0.0, 0.0], true);
    let leader = FakeLeader::new(&JOINTS, constant_leader);
    let mut a = arms(vec![Box::new(leader)], follower);
    a.direction = vec![-1.0, 1.0];
    a.max_relative_target = vec![Some(4.0), None];
    let lp = TeleopLoop::start(a, spec(500.0, 50.0)).unwrap();
    while log.exchanges.load(Ordering::Relaxed) < 6 {
        std::thread::sleep(Duration::from_millis(2));
    }
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
fn rows_are_decimated_ordered_and_carry_the_schema() {
    let (follower, _log) = FakeFollower::new("follower fake", &JOINTS, &[1.0, 2.0], false);
    let leader = FakeLeader::new(&JOINTS, |t, j| t as f32 + j as f32 * 0.5);
    let lp = TeleopLoop::start(arms(vec![Box::new(leader)], follower), spec(400.0, 100.0)).unwrap();
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
        let t = b
            .column_by_name("tick_index")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let c = b
            .column_by_name("capture_time_ns")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let action = b
            .column_by_name("action")
            .unwrap()
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .unwrap();
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
    // Every 4th tick (400 Hz control, 100 fps rows), in order, timestamps increasing.
    for w in ticks.windows(2) {
        assert_eq!(w[1] - w[0], 4);
    }
    assert!(times.windows(2).all(|w| w[1] > w[0]));
    assert!(report.ticks >= rows * 4 - 4);
}

#[test]
fn leader_loss_stops_the_loop_holds_the_follower_and_keeps_rows() {
    let (follower, log) = FakeFollower::new("follower fake", &JOINTS, &[0.0, 0.0], false);
    let leader = FakeLeader::new(&JOINTS, constant_leader);
    let fail_after = leader.fail_after.clone();
    let mut s = spec(500.0, 500.0);
    s.max_consecutive_errors = 5;
    let lp = TeleopLoop::start(arms(vec![Box::new(leader)], follower), s).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    fail_after.store(0, Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    while lp.is_running() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!lp.is_running());
    let failure = lp.failure().unwrap();
    assert_eq!(failure.device, "leader fake");
    assert_eq!(failure.motor.as_deref(), Some("a"));
    let events = lp.events();
    assert!(
        events.iter().any(|e| e.reason.contains("leader lost")),
        "{events:?}"
    );
    // Rows recorded before the loss all arrive, then the failure is raised.
    let mut rows = 0;
    let err = loop {
        match lp.next_batch(Duration::from_secs(2)) {
            Ok(Some(b)) => rows += b.num_rows(),
            Ok(None) => continue,
            Err(e) => break e,
        }
    };
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
    let (follower, log) = FakeFollower::new("follower fake", &JOINTS, &[1.0, 1.0], true);
    let mut s = spec(500.0, 50.0);
    s.stop_action = StopAction::Limp;
    let lp = TeleopLoop::start(arms(vec![], follower), s).unwrap();
    while log.exchanges.load(Ordering::Relaxed) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    lp.send_action(&[5.0, 6.0], Duration::from_secs(5)).unwrap();
    let err = lp.send_action(&[5.0], Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("2 values"), "{err}");
    std::thread::sleep(Duration::from_millis(20));
    lp.stop();
    let goals = log.goals.lock().unwrap();
    assert_eq!(goals[0], vec![1.0, 1.0]);
    assert_eq!(goals.last().unwrap(), &vec![5.0, 6.0]);
    assert_eq!(*log.stops.lock().unwrap(), vec![StopAction::Limp]);
}

#[test]
fn bad_rates_are_config_errors() {
    let (follower, _) = FakeFollower::new("f", &JOINTS, &[0.0, 0.0], false);
    let err = TeleopLoop::start(arms(vec![], follower), spec(100.0, 200.0))
        .err()
        .unwrap();
    assert!(err.to_string().contains("record_fps"), "{err}");
}

#[test]
fn decimation_keeps_the_average_fps_when_rates_do_not_divide() {
    use openk_core::clock::now_ns;
    use openk_core::control::LoopCore;
    use openk_core::record::builder::row_ring;
    let (follower, _) = FakeFollower::new("f", &JOINTS, &[0.0, 0.0], false);
    let leader = FakeLeader::new(&JOINTS, constant_leader);
    let (tx, mut rx) = row_ring(4096);
    let (mut core, _shared) = LoopCore::new(
        arms(vec![Box::new(leader)], follower),
        &spec(500.0, 30.0),
        tx,
    )
    .unwrap();
    core.start_episode(0);
    for _ in 0..5000 {
        core.tick(now_ns(), 0);
    }
    let mut ticks = vec![];
    while let Ok(row) = rx.pop() {
        ticks.push(row.tick_index);
    }
    // 10 s of control at 500 Hz -> 300 rows at 30 fps (first tick included), spaced 16 or 17
    // ticks apart.
    assert_eq!(ticks.len(), 300);
    assert!(
        ticks.windows(2).all(|w| matches!(w[1] - w[0], 16 | 17)),
        "{ticks:?}"
    );
}

#[test]
fn bus_errors_are_counted_against_the_motor_that_failed() {
    // Two leader parts, one joint each: the second part's failure must be booked to its own
    // motor, not shifted onto another part's.
    let (follower, _log) = FakeFollower::new("follower fake", &JOINTS, &[0.0, 0.0], false);
    let first = FakeLeader::new(&JOINTS[..1], constant_leader);
    let mut second = FakeLeader::new(&JOINTS[1..], constant_leader);
    second.label_as("second leader");
    let fail_after = second.fail_after.clone();
    let mut s = spec(500.0, 50.0);
    s.max_consecutive_errors = 3;
    let lp = TeleopLoop::start(arms(vec![Box::new(first), Box::new(second)], follower), s).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fail_after.store(0, Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    while lp.is_running() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = lp.telemetry();
    let errors: Vec<(&str, u64)> = report
        .bus_errors
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(errors, vec![("second leader.b", 3)], "{errors:?}");
}
