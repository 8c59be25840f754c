//! Arms over simulated ports (ptys with real wire timing): opening, first command, teleop,
//! faults.

use std::time::{Duration, Instant};

use openk_core::arm::calibration::{
    calibration_path, DamiaoCalibration, DeviceCalibration, StsCalibration,
};
use openk_core::arm::config::DeviceConfig;
use openk_core::arm::device::{open_arms, Calibrator};
use openk_core::arm::part::FaultKind;
use openk_core::arm::spec::DeviceKind;
use openk_core::arm::ArmError;
use openk_core::control::{ControlError, LoopSpec, RealtimeMode, TeleopLoop};
use openk_core::sim::damiao::{DamiaoSim, DamiaoSimConfig};
use serde_json::{json, Value};

mod common;

use common::{rows_then_failure, wait_until, PATIENCE};

fn tmp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("openk-arm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cfg(v: Value, kind: DeviceKind) -> DeviceConfig {
    DeviceConfig::from_json(&v, kind).unwrap()
}

/// The one-motor test follower on `port`, calibrated (or not) under `dir` as `id`.
fn one_motor_follower(port: &str, id: &str, dir: &std::path::Path) -> DeviceConfig {
    cfg(
        json!({"type": "one-motor-test_follower", "port": port, "id": id, "calibration_dir": dir}),
        DeviceKind::Robot,
    )
}

/// A loop at `hz` that rides through about a second of failed exchanges: on a loaded machine
/// a simulator thread (which stands for a device with its own MCU) can go unscheduled for
/// longer than the product's 50 ms default budget. The fault tests set a tight budget
/// themselves.
fn spec(hz: f64) -> LoopSpec {
    LoopSpec {
        control_hz: hz,
        record_fps: 50.0,
        realtime: RealtimeMode::Off,
        max_consecutive_errors: hz.ceil() as u32,
        ..LoopSpec::default()
    }
}

#[test]
fn damiao_leader_drives_the_legacy_follower() {
    let dir = tmp_dir("legacy");
    let robot = cfg(
        json!({"type": "openk-1-alpha_follower", "port": "sim", "id": "f",
               "calibration_dir": dir, "motor_norm_mode": "centering"}),
        DeviceKind::Robot,
    );
    let teleop = cfg(
        json!({"type": "openk_leader", "port": "sim", "id": "l", "calibration_dir": dir}),
        DeviceKind::Teleoperator,
    );
    let opened = open_arms(&robot, Some(&teleop)).unwrap();
    assert_eq!(opened.arms.action_names[5], "grip.pos");
    let lp = TeleopLoop::start(opened.arms, spec(200.0)).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    // A second and a half of the hand's motion, and enough rows on a busy machine.
    let t0 = Instant::now();
    wait_until("1.5 s and 50 rows of the episode", PATIENCE, || {
        t0.elapsed() >= Duration::from_millis(1500) && lp.episode_telemetry().rows >= 50
    });
    let report = lp.end_episode(Duration::from_secs(5)).unwrap();
    assert!(report.rows >= 50, "{report:?}");
    // A loaded machine may delay a reply past its timeout now and then; the loop rides
    // through isolated errors.
    assert!(lp.failure().is_none(), "{report:?}");
    let mut first: Option<Vec<f32>> = None;
    let mut last: Vec<f32> = vec![];
    let mut state_last: Vec<f32> = vec![];
    while let Ok(Some(b)) = lp.next_batch(Duration::ZERO) {
        let actions = common::vector_rows(&b, "action");
        if first.is_none() {
            first = actions.first().cloned();
        }
        if let Some(a) = actions.last() {
            last = a.clone();
        }
        if let Some(s) = common::vector_rows(&b, "observation.state").last() {
            state_last = s.clone();
        }
    }
    // The hand moves the leader: goals change, the follower follows (centering = radians).
    let first = first.unwrap();
    assert!(
        (0..5).any(|j| (first[j] - last[j]).abs() > 0.05),
        "{first:?} {last:?}"
    );
    assert!(
        (0..5).all(|j| (last[j] - state_last[j]).abs() < 0.5),
        "{last:?} {state_last:?}"
    );
    lp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fault kind of a bus error; panics on any other error.
fn bus_fault(err: &ArmError) -> FaultKind {
    match err {
        ArmError::Bus { kind, .. } => *kind,
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_motor_that_does_not_answer_is_named() {
    let dir = tmp_dir("missing");
    let robot = one_motor_follower("sim://?missing=motor1", "f", &dir);
    let err = open_arms(&robot, None).err().unwrap();
    assert_eq!(bus_fault(&err), FaultKind::Timeout, "{err}");
    assert!(err.to_string().contains("motor1"), "{err}");
}

#[test]
fn missing_calibration_on_a_real_port_comes_before_the_port() {
    let dir = tmp_dir("nocal");
    let robot = one_motor_follower("/dev/ttyOPENK_NONE", "x", &dir);
    let err = open_arms(&robot, None).err().unwrap();
    assert!(matches!(err, ArmError::CalibrationMissing { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("openk calibrate --robot.type=one-motor-test_follower"));
}

#[test]
fn a_port_that_does_not_exist_is_a_port_error() {
    let dir = tmp_dir("noport");
    std::fs::write(
        dir.join("x.json"),
        r#"{"motor1": {"id": 1, "motor_offset": 0.0, "range_min": -1.0, "range_max": 1.0}}"#,
    )
    .unwrap();
    let robot = one_motor_follower("/dev/ttyOPENK_NONE", "x", &dir);
    let err = open_arms(&robot, None).err().unwrap();
    assert_eq!(bus_fault(&err), FaultKind::Port, "{err}");
    assert!(err.to_string().contains("/dev/ttyOPENK_NONE"), "{err}");
}

#[test]
fn scripted_calibration_then_rezero_detection() {
    let dir = tmp_dir("cal");
    let config = json!({"type": "openk_leader", "port": "sim", "id": "l", "calibration_dir": dir});
    let mut cal = Calibrator::connect(cfg(config.clone(), DeviceKind::Teleoperator)).unwrap();
    cal.set_homing(false).unwrap();
    let t0 = Instant::now();
    let mut misses = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        match cal.sample() {
            Ok(_) => misses = 0,
            // As in `openk calibrate`: one late answer (a busy machine delays the simulator)
            // does not spoil the sweep, a motor that stays silent does.
            Err(ArmError::Bus {
                kind: FaultKind::Timeout,
                ..
            }) if misses < 4 => misses += 1,
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let path = cal.save().unwrap();
    drop(cal);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("shoulder_pan") && text.contains("motor_offset"),
        "{text}"
    );
    // The file works for a session on a (fresh) simulator with the same m_off.
    let teleop = cfg(config.clone(), DeviceKind::Teleoperator);
    let robot = cfg(
        json!({"type": "openk-1-alpha_follower", "port": "sim", "id": "f", "calibration_dir": dir}),
        DeviceKind::Robot,
    );
    assert!(open_arms(&robot, Some(&teleop)).is_ok());
    // A calibration recorded with another m_off means the motor was re-zeroed since.
    let edited = text.replacen("\"motor_offset\": 0.0", "\"motor_offset\": 0.5", 1);
    assert_ne!(edited, text, "expected m_off 0.0 in {text}");
    std::fs::write(&path, edited).unwrap();
    let err = open_arms(&robot, Some(&teleop)).err().unwrap();
    assert!(matches!(err, ArmError::Rezeroed { .. }), "{err}");
    assert!(err.to_string().contains("re-zeroed"), "{err}");
}

#[test]
fn unplugged_follower_stops_the_loop_and_keeps_rows() {
    let dir = tmp_dir("unplug");
    let robot = one_motor_follower("sim", "f", &dir);
    let opened = open_arms(&robot, None).unwrap();
    let sims = opened.sims;
    let mut s = spec(200.0);
    s.max_consecutive_errors = 5;
    let lp = TeleopLoop::start(opened.arms, s).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    wait_until("the episode has 10 rows", PATIENCE, || {
        lp.episode_telemetry().rows >= 10
    });
    assert!(sims.unplug("robot", "damiao"));
    wait_until("the loop stopped", PATIENCE, || !lp.is_running());
    let failure = lp.failure().unwrap();
    assert!(failure.device.contains("follower"), "{failure}");
    let (rows, err) = rows_then_failure(&lp);
    assert!(rows >= 10, "{rows}");
    assert!(matches!(err, ControlError::Stopped { .. }), "{err}");
    assert!(lp
        .events()
        .iter()
        .any(|e| e.reason.contains("follower bus failing")));
}

fn batches_rows(lp: &TeleopLoop) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut actions = vec![];
    let mut states = vec![];
    while let Ok(Some(b)) = lp.next_batch(Duration::ZERO) {
        actions.extend(common::vector_rows(&b, "action"));
        states.extend(common::vector_rows(&b, "observation.state"));
    }
    (actions, states)
}

#[test]
fn sts_leader_drives_follower2_with_parallel_buses() {
    let dir = tmp_dir("f2");
    let robot = cfg(
        json!({"type": "openk-1-alpha_follower2", "port": "sim", "sts_port": "sim", "id": "f",
               "calibration_dir": dir}),
        DeviceKind::Robot,
    );
    let teleop = cfg(
        json!({"type": "openk-1-sts_leader", "port": "sim", "id": "l", "calibration_dir": dir}),
        DeviceKind::Teleoperator,
    );
    let opened = open_arms(&robot, Some(&teleop)).unwrap();
    assert_eq!(opened.arms.leader.len(), 1);
    assert_eq!(opened.arms.follower.len(), 2);
    let lp = TeleopLoop::start(opened.arms, spec(250.0)).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    // Two seconds of the hand's motion, and enough ticks to follow it on a busy machine.
    let t0 = Instant::now();
    wait_until("2 s and 100 ticks of the episode", PATIENCE, || {
        t0.elapsed() >= Duration::from_secs(2) && lp.episode_telemetry().ticks > 100
    });
    let report = match lp.end_episode(Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => panic!(
            "{e}\nevents: {:?}\ntelemetry: {:?}",
            lp.events(),
            lp.telemetry()
        ),
    };
    let (actions, states) = batches_rows(&lp);
    assert!(lp.failure().is_none(), "{report:?}");
    lp.stop();
    assert!(report.ticks > 100, "{report:?}");
    assert_eq!(actions.len() as u64, report.rows);
    // The hand moves every leader joint; the follower's 7 positions follow.
    for j in 0..7 {
        let lo = actions.iter().map(|a| a[j]).fold(f32::MAX, f32::min);
        let hi = actions.iter().map(|a| a[j]).fold(f32::MIN, f32::max);
        assert!(hi - lo > 2.0, "joint {j} did not move: {lo}..{hi}");
    }
    let tail = &actions.len() / 2;
    let err: f32 = actions[tail..]
        .iter()
        .zip(&states[tail..])
        .map(|(a, s)| (0..7).map(|j| (a[j] - s[j]).abs()).sum::<f32>() / 7.0)
        .sum::<f32>()
        / (actions.len() - tail) as f32;
    assert!(err < 10.0, "follower tracking error {err}");
}

#[test]
fn first_follower_command_is_its_present_position() {
    let dir = tmp_dir("first");
    let robot = cfg(
        json!({"type": "openk-1-alpha_follower2", "port": "sim", "sts_port": "sim", "id": "f",
               "calibration_dir": dir}),
        DeviceKind::Robot,
    );
    let opened = open_arms(&robot, None).unwrap();
    // Replay session with no action sent: it must hold where it is, i.e. the first and every
    // goal equal the present position read at start.
    let lp = TeleopLoop::start(opened.arms, spec(100.0)).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lp.end_episode(Duration::from_secs(5)).unwrap();
    let (actions, states) = batches_rows(&lp);
    lp.stop();
    for (a, s) in actions.iter().zip(&states) {
        for j in 0..7 {
            assert!((a[j] - s[j]).abs() < 0.5, "goal {a:?} vs state {s:?}");
        }
    }
}

#[test]
fn unplugged_sts_leader_is_reported_as_leader_lost() {
    let dir = tmp_dir("lunplug");
    let robot = cfg(
        json!({"type": "openk-1-alpha_follower2", "port": "sim", "sts_port": "sim", "id": "f",
               "calibration_dir": dir, "disable_torque_on_disconnect": true}),
        DeviceKind::Robot,
    );
    let teleop = cfg(
        json!({"type": "openk-1-sts_leader", "port": "sim", "id": "l", "calibration_dir": dir}),
        DeviceKind::Teleoperator,
    );
    let opened = open_arms(&robot, Some(&teleop)).unwrap();
    let sims = opened.sims;
    let mut s = spec(200.0);
    s.max_consecutive_errors = 5;
    s.stop_action = openk_core::arm::part::StopAction::Limp;
    let lp = TeleopLoop::start(opened.arms, s).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    wait_until("the episode has rows", PATIENCE, || {
        lp.episode_telemetry().rows > 0
    });
    assert!(sims.unplug("teleop", "sts"));
    wait_until("the loop stopped", PATIENCE, || !lp.is_running());
    let failure = lp.failure().expect("the loop stopped on the leader");
    assert!(failure.device.starts_with("leader"), "{failure}");
    assert!(
        matches!(failure.kind, FaultKind::Port | FaultKind::Timeout),
        "{failure:?}"
    );
    let events = lp.events();
    assert!(
        events.iter().any(|e| e.reason.contains("leader lost")),
        "{events:?}"
    );
}

#[test]
fn a_checksum_storm_stops_the_loop_with_a_protocol_error() {
    use openk_core::sim::pty::Corruption;
    let dir = tmp_dir("storm");
    let robot = cfg(
        json!({"type": "openk-1-alpha_follower2", "port": "sim", "sts_port": "sim", "id": "f",
               "calibration_dir": dir}),
        DeviceKind::Robot,
    );
    let opened = open_arms(&robot, None).unwrap();
    let sims = opened.sims;
    let mut s = spec(100.0);
    s.max_consecutive_errors = 5;
    let lp = TeleopLoop::start(opened.arms, s).unwrap();
    lp.start_episode(Duration::from_secs(5)).unwrap();
    wait_until("the episode has rows", PATIENCE, || {
        lp.episode_telemetry().rows > 0
    });
    sims.faults("robot", "sts")
        .unwrap()
        .corrupt_replies(1_000_000, Corruption::LastByte);
    wait_until("the loop stopped", PATIENCE, || !lp.is_running());
    let failure = lp.failure().expect("the storm stopped the loop");
    assert_eq!(failure.kind, FaultKind::Protocol, "{failure:?}");
    assert!(failure.device.contains("STS"), "{failure}");
    assert!(
        matches!(failure.motor.as_deref(), Some("wrist_flex" | "grip")),
        "{failure:?}"
    );
    let report = lp.telemetry();
    assert!(
        report.bus_errors.keys().any(|k| k.contains("STS")),
        "{report:?}"
    );
    // The rows recorded before the storm all arrive, then the failure is raised.
    let (rows, err) = rows_then_failure(&lp);
    assert!(rows > 0);
    assert!(matches!(err, ControlError::Stopped { .. }), "{err}");
}

#[test]
fn a_dropped_sts_reply_is_retried_and_booked_to_its_servo() {
    dropped_replies_are_retried_and_booked_to_their_motor(
        "openk-1-alpha_follower2",
        "sts",
        "STS bus",
        &["wrist_flex", "grip"],
    );
}

#[test]
fn a_dropped_damiao_reply_is_retried_and_booked_to_its_motor() {
    dropped_replies_are_retried_and_booked_to_their_motor(
        "openk-1-alpha_follower2",
        "damiao",
        "DAMIAO bus",
        &[
            "shoulder_pan",
            "shoulder_lift",
            "shoulder_roll",
            "elbow_flex",
            "wrist_roll",
        ],
    );
}

#[test]
fn a_dropped_sts_over_can_reply_is_retried_and_booked_to_its_servo() {
    dropped_replies_are_retried_and_booked_to_their_motor(
        "openk-1-alpha_follower",
        "sts",
        "STS-over-CAN bus",
        &["wrist_flex", "grip"],
    );
}

/// Drops one reply at a time on the `bus` simulator of `robot_type`; each drop must show up
/// as one more retry of one of `motors` (never of the bus as a whole) and the loop carries on.
fn dropped_replies_are_retried_and_booked_to_their_motor(
    robot_type: &str,
    bus: &str,
    part: &str,
    motors: &[&str],
) {
    let dir = tmp_dir(&format!("retry-{bus}-{robot_type}"));
    let robot = cfg(
        json!({"type": robot_type, "port": "sim", "sts_port": "sim", "id": "f",
               "calibration_dir": dir}),
        DeviceKind::Robot,
    );
    let opened = open_arms(&robot, None).unwrap();
    let sims = opened.sims;
    let lp = TeleopLoop::start(opened.arms, spec(100.0)).unwrap();
    wait_until("the loop ticked", PATIENCE, || lp.telemetry().ticks > 0);
    let retries = |lp: &TeleopLoop| -> (u64, u64) {
        let report = lp.telemetry();
        let of_part = || report.bus_retries.iter().filter(|(k, _)| k.contains(part));
        let by_motor = of_part()
            .filter(|(k, _)| motors.iter().any(|m| k.ends_with(&format!(".{m}"))))
            .map(|(_, v)| *v)
            .sum();
        let whole_bus = of_part()
            .filter(|(k, _)| k.ends_with(".bus"))
            .map(|(_, v)| *v)
            .sum();
        (by_motor, whole_bus)
    };
    // One reply dropped at a time, so each drop costs exactly one retry of one motor.
    for round in 1..=3u64 {
        sims.faults("robot", bus).unwrap().drop_replies(1);
        wait_until(&format!("{round} retries"), PATIENCE, || {
            retries(&lp).0 >= round
        });
    }
    assert_eq!(retries(&lp).1, 0, "{:?}", lp.telemetry());
    assert!(lp.failure().is_none());
    lp.stop();
}

/// The STS-over-CAN servos are probed at connect with the DAMIAO adapter's generous connect
/// timeouts: a reply later than a tick's timeouts (a loaded machine) still connects. The loop
/// then has the tight tick timeouts back: a reply that late is asked again.
#[test]
fn a_late_sts_over_can_reply_at_connect_still_connects() {
    let dir = tmp_dir("late-sts-can");
    let bridge = DamiaoSim::start(DamiaoSimConfig::sts_bridge_only()).unwrap();
    // Past a tick's whole wait (20 ms x 3 attempts), within one connect attempt (100 ms).
    let late = Duration::from_millis(80);
    bridge.faults().set_extra_latency(late);
    let robot = cfg(
        json!({"type": "openk-1-alpha_follower", "port": "sim", "sts_port": bridge.port(),
               "id": "f", "calibration_dir": dir}),
        DeviceKind::Robot,
    );
    // A port that is not `sim` needs a calibration file (m_off 0, as the simulator's motors).
    let mut cal = DeviceCalibration::default();
    for j in robot.spec.damiao {
        let c = DamiaoCalibration {
            id: j.id.into(),
            motor_offset: 0.0,
            range_min: -1.0,
            range_max: 1.0,
        };
        cal.damiao.insert(j.name.to_owned(), c);
    }
    for j in robot.spec.sts {
        let c = StsCalibration {
            id: j.id.into(),
            drive_mode: 0,
            homing_offset: 0.0,
            range_min: 0.0,
            range_max: 4095.0,
        };
        cal.sts.insert(j.name.to_owned(), c);
    }
    cal.save(robot.spec, &calibration_path(robot.spec, "f", Some(&dir)))
        .unwrap();
    let opened = match open_arms(&robot, None) {
        Ok(opened) => opened,
        Err(e) => panic!("a reply {late:?} late failed the connect: {e}"),
    };
    bridge.faults().set_extra_latency(Duration::ZERO);
    let lp = TeleopLoop::start(opened.arms, spec(100.0)).unwrap();
    wait_until("the loop ticked", PATIENCE, || lp.telemetry().ticks > 0);
    let retries = |lp: &TeleopLoop| -> u64 {
        let report = lp.telemetry();
        report
            .bus_retries
            .iter()
            .filter(|(k, _)| k.contains("STS-over-CAN bus"))
            .map(|(_, v)| *v)
            .sum()
    };
    let before = retries(&lp);
    bridge.faults().set_extra_latency(late);
    wait_until("a late reply asked again by the loop", PATIENCE, || {
        retries(&lp) > before
    });
    lp.stop();
    bridge.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
