//! DamiaoBus and StsCanBus against the adapter simulator over a real pty.

use std::time::Duration;

use openk_core::bus::damiao::*;
use openk_core::protocol::damiao::{
    rid, ControlMode, Feedback, MitCommand, MotorModel, MotorState, RegisterValue,
};
use openk_core::sim::damiao::{DamiaoSim, DamiaoSimConfig, HandTrajectory};
use openk_core::sim::pty::Corruption;

mod common;

use common::{wait_until, PATIENCE};

fn arm_specs(cfg: &DamiaoSimConfig) -> Vec<DamiaoMotorSpec> {
    cfg.bus_specs()
}

/// Default options with a timeout that tolerates an overloaded test machine; tests of the
/// timeout behaviour set their own.
fn opts() -> DamiaoBusOptions {
    DamiaoBusOptions {
        timeout: Duration::from_millis(100),
        ..DamiaoBusOptions::default()
    }
}

fn start() -> (DamiaoSim, DamiaoBus) {
    let cfg = DamiaoSimConfig::openk_arm();
    let sim = DamiaoSim::start(cfg.clone()).unwrap();
    let mut bus = DamiaoBus::open(sim.port(), arm_specs(&cfg), opts()).unwrap();
    bus.connect().unwrap();
    (sim, bus)
}

fn zero_feedback(n: usize) -> Vec<Feedback> {
    vec![Feedback::default(); n]
}

#[test]
fn connect_reads_limits_and_mode_from_registers() {
    let (_sim, bus) = start();
    assert_eq!(bus.len(), 5);
    let pan = bus.index_of("shoulder_pan").unwrap();
    let roll = bus.index_of("wrist_roll").unwrap();
    assert_eq!(bus.limits(pan).unwrap().vmax, 45.0);
    assert_eq!(bus.limits(roll).unwrap().vmax, 30.0);
    assert_eq!(bus.control_mode(pan), Some(ControlMode::Mit));
    assert_eq!(bus.angle_offset(pan), Some(0.0));
}

#[test]
fn set_zero_moves_the_angle_offset_seen_at_connect() {
    let cfg = DamiaoSimConfig::openk_arm();
    let sim = DamiaoSim::start(cfg.clone()).unwrap();
    sim.with_adapter(|a| a.motor_mut("elbow_flex").unwrap().set_position(0.75));
    let mut bus = DamiaoBus::open(sim.port(), cfg.bus_specs(), opts()).unwrap();
    bus.connect().unwrap();
    let elbow = bus.index_of("elbow_flex").unwrap();
    assert_eq!(bus.angle_offset(elbow), Some(0.0));
    let fb = bus.set_zero(elbow).unwrap();
    assert!(fb.q.abs() < 1e-3, "{fb:?}");
    drop(bus);
    let mut bus = DamiaoBus::open(sim.port(), cfg.bus_specs(), opts()).unwrap();
    bus.connect().unwrap();
    assert!((bus.angle_offset(elbow).unwrap() - 0.75).abs() < 1e-6);
}

#[test]
fn limits_from_registers_override_the_model_table() {
    let cfg = DamiaoSimConfig::openk_arm();
    let sim = DamiaoSim::start(cfg.clone()).unwrap();
    // Someone re-mapped elbow_flex to PMAX 6.0 with the vendor tool.
    let mut setup = DamiaoBus::open(sim.port(), arm_specs(&cfg), opts()).unwrap();
    setup.connect().unwrap();
    let elbow = setup.index_of("elbow_flex").unwrap();
    setup.write_register(elbow, rid::PMAX, 6.0).unwrap();
    drop(setup);
    let mut bus = DamiaoBus::open(sim.port(), arm_specs(&cfg), opts()).unwrap();
    bus.connect().unwrap();
    assert_eq!(bus.limits(elbow).unwrap().pmax, 6.0);
    // A 5.0 rad target then reaches the motor as 5.0 rad, not 5.0 on a ±12.5 scale.
    bus.enable_all().unwrap();
    let mut cmds = [MitCommand::default(); 5];
    cmds[elbow] = MitCommand {
        q: 5.0,
        dq: 0.0,
        kp: 50.0,
        kd: 2.0,
        tau: 0.0,
    };
    let mut fb = zero_feedback(5);
    for _ in 0..400 {
        bus.mit_all(&cmds, &mut fb).unwrap();
    }
    let q = sim.with_adapter(|a| a.motor("elbow_flex").unwrap().position());
    assert!((q - 5.0).abs() < 0.1, "elbow at {q}");
    assert!((fb[elbow].q - q).abs() < 0.05);
}

#[test]
fn pos_vel_mode_switch_verified_and_motors_track() {
    let (sim, mut bus) = start();
    bus.set_control_mode_all(ControlMode::PosVel).unwrap();
    for i in 0..5 {
        assert_eq!(bus.control_mode(i), Some(ControlMode::PosVel));
    }
    assert_eq!(
        sim.with_adapter(|a| a.motor("shoulder_roll").unwrap().mode()),
        Some(ControlMode::PosVel)
    );
    bus.enable_all().unwrap();
    let targets = [(0.5, 2.0), (-0.5, 2.0), (0.2, 2.0), (1.0, 4.0), (-1.0, 4.0)];
    let mut fb = zero_feedback(5);
    for _ in 0..500 {
        bus.pos_vel_all(&targets, &mut fb).unwrap();
        if fb
            .iter()
            .zip(&targets)
            .all(|(f, t)| (f.q - t.0).abs() < 0.01)
        {
            break;
        }
    }
    for (f, t) in fb.iter().zip(&targets) {
        assert!((f.q - t.0).abs() < 0.01, "{f:?} vs {t:?}");
        assert_eq!(f.state, MotorState::Enabled);
        assert!(f.t_mos >= 29 && f.t_rotor >= 29);
    }
    // A command of another mode is refused before it reaches the wire.
    let err = bus
        .mit_all(&[MitCommand::default(); 5], &mut fb)
        .unwrap_err();
    assert!(matches!(err, DamiaoBusError::WrongMode { .. }), "{err}");
    assert!(err.to_string().contains("shoulder_pan"), "{err}");
}

#[test]
fn mit_torque_follows_gains_and_nan_is_refused() {
    let (sim, mut bus) = start();
    bus.enable_all().unwrap();
    let hold = MitCommand {
        q: 0.0,
        dq: 0.0,
        kp: 20.0,
        kd: 1.0,
        tau: 0.0,
    };
    let mut cmds = [hold; 5];
    cmds[2].q = 0.8;
    let mut fb = zero_feedback(5);
    bus.mit_all(&cmds, &mut fb).unwrap();
    // Right after the step the spring pushes toward +0.8: positive torque ≈ kp·0.8.
    assert!(fb[2].tau > 9.9, "{:?}", fb[2]);
    for _ in 0..300 {
        bus.mit_all(&cmds, &mut fb).unwrap();
    }
    assert!((fb[2].q - 0.8).abs() < 0.05, "{:?}", fb[2]);
    let sent_before = sim.with_adapter(|a| a.motor("shoulder_roll").unwrap().commands_received());
    cmds[2].q = f64::NAN;
    let err = bus.mit_all(&cmds, &mut fb).unwrap_err();
    assert!(matches!(err, DamiaoBusError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("shoulder_roll"));
    let sent_after = sim.with_adapter(|a| a.motor("shoulder_roll").unwrap().commands_received());
    assert_eq!(
        sent_before, sent_after,
        "nothing may be sent for a NaN command"
    );
}

#[test]
fn register_read_write_typed_and_verified() {
    let (sim, mut bus) = start();
    let m = bus.index_of("elbow_flex").unwrap();
    assert_eq!(
        bus.write_register(m, rid::KP_ASR, 0.02).unwrap(),
        RegisterValue::F32(0.02)
    );
    assert_eq!(
        bus.read_register(m, rid::KP_ASR).unwrap(),
        RegisterValue::F32(0.02)
    );
    assert_eq!(
        bus.write_register(m, rid::TIMEOUT, 2000.0).unwrap(),
        RegisterValue::U32(2000)
    );
    assert_eq!(
        bus.read_register(m, rid::ESC_ID).unwrap(),
        RegisterValue::U32(4)
    );
    assert_eq!(
        bus.read_register(m, rid::MST_ID).unwrap(),
        RegisterValue::U32(0x14)
    );
    // Read-only register: the motor keeps its value and the bus says so.
    let err = bus.write_register(m, 16, 3.0).unwrap_err();
    assert!(
        matches!(err, DamiaoBusError::VerifyFailed { rid: 16, .. }),
        "{err}"
    );
    // u32 register with a fraction: refused before sending.
    assert!(bus.write_register(m, rid::CTRL_MODE, 1.5).is_err());
    assert_eq!(
        sim.with_adapter(|a| a.motor("elbow_flex").unwrap().mode()),
        Some(ControlMode::Mit)
    );
}

#[test]
fn device_fault_names_motor_and_state_then_clears() {
    let (sim, mut bus) = start();
    bus.enable_all().unwrap();
    let mut fb = zero_feedback(5);
    let cmds = [MitCommand {
        kp: 10.0,
        kd: 1.0,
        ..Default::default()
    }; 5];
    bus.mit_all(&cmds, &mut fb).unwrap();
    assert!(sim.inject_fault("elbow_flex", MotorState::RotorOverTemperature));
    let err = bus.mit_all(&cmds, &mut fb).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DamiaoBusError::MotorFault {
                state: MotorState::RotorOverTemperature,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("elbow_flex")
            && msg.contains("rotor_over_temperature")
            && msg.contains("clear the error"),
        "{msg}"
    );
    // Every motor's feedback was still delivered.
    assert_eq!(fb[3].state, MotorState::RotorOverTemperature);
    assert_eq!(fb[0].state, MotorState::Enabled);
    let m = bus.index_of("elbow_flex").unwrap();
    assert!(bus.enable(m).is_err(), "a faulted motor must not enable");
    bus.clear_error(m).unwrap();
    assert_eq!(bus.enable(m).unwrap().state, MotorState::Enabled);
    bus.mit_all(&cmds, &mut fb).unwrap();
}

#[test]
fn watchdog_timeout_reports_lost_communication() {
    let (_sim, mut bus) = start();
    let m = bus.index_of("wrist_roll").unwrap();
    bus.write_register(m, rid::TIMEOUT, 100.0).unwrap(); // 100 × 50 µs = 5 ms
    bus.enable_all().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let mut fb = zero_feedback(5);
    let err = bus
        .mit_all(&[MitCommand::default(); 5], &mut fb)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DamiaoBusError::MotorFault {
                state: MotorState::LostCommunication,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("wrist_roll"));
}

#[test]
fn dropped_and_corrupted_replies_are_retried() {
    let (sim, mut bus) = start();
    bus.enable_all().unwrap();
    let mut fb = zero_feedback(5);
    let cmds = [MitCommand::default(); 5];
    sim.faults().drop_replies(1);
    bus.mit_all(&cmds, &mut fb).unwrap();
    assert!(bus.stats().retries >= 1);
    sim.faults().corrupt_replies(1, Corruption::LastByte);
    bus.mit_all(&cmds, &mut fb).unwrap();
    sim.faults().inject_garbage(&[0xAA, 0x11, 0x00, 0x55, 0x13]);
    bus.mit_all(&cmds, &mut fb).unwrap();
    assert!(bus.stats().bytes_skipped >= 5);
    assert!(fb.iter().all(|f| f.state == MotorState::Enabled));
}

#[test]
fn silent_motor_times_out_with_its_name() {
    let cfg = DamiaoSimConfig::openk_arm();
    let sim = DamiaoSim::start(cfg.clone()).unwrap();
    let mut specs = arm_specs(&cfg);
    specs.push(DamiaoMotorSpec {
        name: "ghost".into(),
        model: MotorModel::DM4310,
        esc_id: 0x06,
        mst_id: 0x16,
    });
    let opts = DamiaoBusOptions {
        read_registers_at_connect: false,
        timeout: Duration::from_millis(5),
        retries: 1,
        ..Default::default()
    };
    let mut bus = DamiaoBus::open(sim.port(), specs, opts).unwrap();
    let mut fb = zero_feedback(6);
    let err = bus
        .mit_all(&[MitCommand::default(); 6], &mut fb)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, DamiaoBusError::Timeout { attempts: 2, .. }),
        "{msg}"
    );
    assert!(msg.contains("ghost") && msg.contains("0x06"), "{msg}");
    // The five real motors still answered.
    assert!(bus.last_feedback(0).is_some() && bus.last_feedback(4).is_some());
}

#[test]
fn unplugged_adapter_is_a_transport_error() {
    let (sim, mut bus) = start();
    sim.faults().unplug();
    let mut fb = zero_feedback(5);
    let err = bus
        .mit_all(&[MitCommand::default(); 5], &mut fb)
        .unwrap_err();
    match err {
        DamiaoBusError::Transport(t) => assert!(t.is_disconnect(), "{t}"),
        other => panic!("expected a disconnect, got {other}"),
    }
}

#[test]
fn ambiguous_ids_are_refused_at_open() {
    let sim = DamiaoSim::start(DamiaoSimConfig::openk_arm()).unwrap();
    let specs = vec![
        DamiaoMotorSpec {
            name: "a".into(),
            model: MotorModel::DM4310,
            esc_id: 0x01,
            mst_id: 0x15,
        },
        DamiaoMotorSpec {
            name: "b".into(),
            model: MotorModel::DM4310,
            esc_id: 0x11,
            mst_id: 0x15,
        },
    ];
    let err = DamiaoBus::open(sim.port(), specs, opts()).err().unwrap();
    assert!(err.to_string().contains("cannot be told apart"), "{err}");
}

#[test]
fn shared_master_id_routes_each_reply_to_its_motor() {
    // OpenK's configs give all five motors MST_ID 0x15; routing by the ESC_ID nibble copes.
    let mut cfg = DamiaoSimConfig::openk_arm();
    for m in &mut cfg.motors {
        m.mst_id = 0x15;
    }
    let sim = DamiaoSim::start(cfg.clone()).unwrap();
    let mut bus = DamiaoBus::open(sim.port(), arm_specs(&cfg), opts()).unwrap();
    bus.connect().unwrap();
    for (i, q) in [0.1, 0.2, 0.3, 0.4, 0.5].iter().enumerate() {
        let name = bus.spec(i).unwrap().name.clone();
        sim.with_adapter(|a| a.motor_mut(&name).unwrap().set_position(*q));
    }
    let mut fb = zero_feedback(5);
    bus.refresh_all(&mut fb).unwrap();
    for (i, f) in fb.iter().enumerate() {
        assert!((f.q - 0.1 * (i as f64 + 1.0)).abs() < 1e-3, "{i}: {f:?}");
    }
    assert_eq!(
        bus.read_register(0, rid::ESC_ID).unwrap(),
        RegisterValue::U32(1)
    );
    assert_eq!(
        bus.read_register(4, rid::ESC_ID).unwrap(),
        RegisterValue::U32(5)
    );
}

#[test]
fn compliant_leader_follows_the_hand() {
    let (sim, mut bus) = start();
    let hand = HandTrajectory {
        offset: 0.3,
        amplitude: 0.5,
        frequency_hz: 1.0,
        phase: 0.0,
    };
    for name in ["shoulder_pan", "elbow_flex"] {
        sim.set_hand(name, Some(hand));
    }
    bus.enable_all().unwrap();
    let compliant = [MitCommand {
        kp: 0.0,
        kd: 0.1,
        ..Default::default()
    }; 5];
    let mut fb = zero_feedback(5);
    let mut seen = Vec::new();
    for _ in 0..100 {
        bus.mit_all(&compliant, &mut fb).unwrap();
        seen.push(fb[0].q);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (lo, hi) = seen
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &q| (l.min(q), h.max(q)));
    assert!(hi - lo > 0.2, "leader did not move: {lo}..{hi}");
    assert!(lo >= -0.21 && hi <= 0.81);
    let sim_q = sim.with_adapter(|a| a.motor("elbow_flex").unwrap().position());
    assert!((fb[3].q - sim_q).abs() < 0.2);
    // A motor without a hand stays put.
    assert!(fb[1].q.abs() < 0.01, "{:?}", fb[1]);
}

#[test]
fn sts_can_bridge_servos_move_and_read_back() {
    let sim = DamiaoSim::start(DamiaoSimConfig::sts_bridge_only()).unwrap();
    let mut bus = StsCanBus::open(
        sim.port(),
        DEFAULT_BAUD,
        0xFF00,
        Duration::from_millis(20),
        2,
    )
    .unwrap();
    assert_eq!(bus.read_position(1).unwrap(), 2048);
    bus.write_position(2, 3000).unwrap();
    wait_until("servo 2 reached 3000", PATIENCE, || {
        bus.read_position(2).unwrap() == 3000
    });
    bus.write_position(1, 99_999).unwrap(); // clamped to 4095
    wait_until("servo 1 reached 4095", PATIENCE, || {
        bus.read_position(1).unwrap() == 4095
    });
    let err = bus.read_position(7).unwrap_err();
    assert!(err.to_string().contains("STS servo 7"), "{err}");
}

#[test]
fn split_round_lets_the_caller_work_while_the_can_bus_is_busy() {
    let (sim, mut bus) = start();
    bus.enable_all().unwrap();
    let cmds = [MitCommand {
        q: 0.2,
        dq: 0.0,
        kp: 30.0,
        kd: 1.0,
        tau: 0.0,
    }; 5];
    let mut fb = zero_feedback(5);
    assert!(matches!(
        bus.finish_round(&mut fb),
        Err(DamiaoBusError::Config { .. })
    ));
    for _ in 0..200 {
        bus.start_mit_all(&cmds).unwrap();
        assert!(bus.round_in_flight());
        // Misuse is refused instead of corrupting the round in flight.
        assert!(bus.start_mit_all(&cmds).is_err());
        assert!(bus.read_register(0, rid::ESC_ID).is_err());
        std::thread::sleep(Duration::from_micros(300)); // e.g. an STS sync read meanwhile
        bus.finish_round(&mut fb).unwrap();
        assert!(!bus.round_in_flight());
    }
    for (i, f) in fb.iter().enumerate() {
        assert!((f.q - 0.2).abs() < 0.05, "{i}: {f:?}");
    }
    assert!((sim.with_adapter(|a| a.motor("wrist_roll").unwrap().position()) - 0.2).abs() < 0.05);
    assert_eq!(
        bus.read_register(0, rid::ESC_ID).unwrap(),
        RegisterValue::U32(1)
    );
}
