//! FeetechBus against the STS3215 simulator over a real pty.

use std::time::Duration;

use openk_core::arm::spec::{lookup, DeviceKind};
use openk_core::bus::feetech::{BusConfig, BusError, FailureKind, FeetechBus, Motor};
use openk_core::control::testing::feetech_sim_bus;
use openk_core::error::{Classified, FaultKind};
use openk_core::protocol::feetech::{self as ft, StatusFlags};
use openk_core::sim::feetech::{FeetechSim, FeetechSimConfig, HandScript, SimMode};
use openk_core::sim::pty::Corruption;

mod common;

use common::{wait_until, PATIENCE};

/// The first `n` servos of the STS leader (ids 1.., named as the device catalogue names them).
fn motors(n: u8) -> Vec<Motor> {
    let leader = lookup("openk-1-sts_leader", DeviceKind::Teleoperator).unwrap();
    leader
        .sts
        .iter()
        .take(usize::from(n))
        .map(|j| Motor {
            name: j.name.to_owned(),
            id: j.id,
        })
        .collect()
}

/// Generous margins: the machine is shared and noisy; timing is measured in benches.
fn config() -> BusConfig {
    BusConfig {
        timeout: Duration::from_millis(50),
        retries: 1,
        ..BusConfig::default()
    }
}

fn setup(n: u8) -> (FeetechSim, FeetechBus) {
    feetech_sim_bus(motors(n), config())
}

#[test]
fn ping_scan_and_model_number() {
    let (_sim, mut bus) = setup(3);
    assert!(bus.ping(2).unwrap().is_ok());
    assert_eq!(bus.scan(Duration::from_millis(20)).unwrap(), [1, 2, 3]);
    assert_eq!(bus.read("Model_Number", "shoulder_roll").unwrap(), 777);
}

#[test]
fn write_then_read_by_name_with_sign_and_units() {
    let (sim, mut bus) = setup(2);
    bus.write("Homing_Offset", "shoulder_pan", -300).unwrap();
    assert_eq!(bus.read("Homing_Offset", "shoulder_pan").unwrap(), -300);
    assert_eq!(sim.register(1, "Homing_Offset"), Some(-300));
    let volts = bus.read_unit("Present_Voltage", "shoulder_lift").unwrap();
    assert!((volts - 12.0).abs() < 0.5, "{volts}");
    let err = bus
        .write("Goal_Position", "shoulder_pan", 40_000)
        .unwrap_err();
    assert!(err.to_string().contains("Goal_Position"), "{err}");
    assert!(matches!(
        bus.read("Present_Position", "nobody"),
        Err(BusError::UnknownMotor { .. })
    ));
}

#[test]
fn sync_write_moves_the_servos_and_sync_read_sees_it() {
    let (sim, mut bus) = setup(7);
    let goals = [1000, 1500, 2000, 2500, 3000, 3500, 4000];
    bus.sync_write("Goal_Position", &goals).unwrap();
    let mut pos = [0i64; 7];
    wait_until("the servos reached their goals", PATIENCE, || {
        bus.sync_read("Present_Position", &mut pos).unwrap();
        pos == goals
    });
    assert_eq!(sim.register(7, "Torque_Enable"), Some(1));
}

#[test]
fn sync_read_survives_a_dropped_reply_by_retrying_only_the_missing_motor() {
    let (sim, mut bus) = setup(7);
    sim.faults().drop_replies(1);
    let mut pos = [0i64; 7];
    bus.sync_read("Present_Position", &mut pos).unwrap();
    assert_eq!(pos, [2048; 7]);
    // 7 replies + 1 retry reply; the dropped one never went out.
    let stats = sim.stats();
    assert_eq!(stats.replies_dropped, 1);
    assert_eq!(stats.replies_sent, 7);
    // Exactly one servo needed a second request, and the bus says which.
    let retried: Vec<u8> = (1..=7).filter(|id| bus.last_retries(*id) == 1).collect();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert!((1..=7).all(|id| bus.last_retries(id) <= 1));
    bus.sync_read("Present_Position", &mut pos).unwrap();
    assert!((1..=7).all(|id| bus.last_retries(id) == 0));
}

#[test]
fn silent_motor_is_named_and_others_still_read() {
    let (sim, mut bus) = setup(7);
    sim.set_silent(4, true);
    let mut pos = [-1i64; 7];
    let err = bus.sync_read("Present_Position", &mut pos).unwrap_err();
    assert_eq!(err.fault_kind(), FaultKind::Timeout);
    let failures = err.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].id, 4);
    assert_eq!(failures[0].kind, FailureKind::Timeout);
    assert!(err.to_string().contains("elbow_flex"), "{err}");
    assert_eq!(pos, [2048, 2048, 2048, -1, 2048, 2048, 2048]);
}

#[test]
fn status_error_bits_are_reported_with_names() {
    let (sim, mut bus) = setup(3);
    sim.set_error_bits(2, StatusFlags::OVERHEAT | StatusFlags::OVERLOAD);
    let mut pos = [0i64; 3];
    let err = bus.sync_read("Present_Position", &mut pos).unwrap_err();
    assert_eq!(err.fault_kind(), FaultKind::Motor);
    let msg = err.to_string();
    assert!(
        msg.contains("shoulder_lift") && msg.contains("overheat, overload"),
        "{msg}"
    );
    assert_eq!(pos, [2048; 3]); // values still delivered
    let err = bus.read("Present_Position", "shoulder_lift").unwrap_err();
    assert!(matches!(err, BusError::Motor { id: 2, .. }), "{err}");

    // Opting out keeps the data flowing and the flags visible.
    let mut cfg = *bus.config();
    cfg.fail_on_status_error = false;
    bus.set_config(cfg);
    bus.sync_read("Present_Position", &mut pos).unwrap();
    assert!(bus.last_status(2).contains(StatusFlags::OVERLOAD));
}

#[test]
fn corrupted_and_garbled_replies_are_recovered_or_reported() {
    let (sim, mut bus) = setup(3);
    sim.faults().corrupt_replies(1, Corruption::LastByte);
    assert_eq!(bus.read("Present_Position", "shoulder_pan").unwrap(), 2048);
    sim.faults()
        .inject_garbage(&[0xff, 0x00, 0xff, 0xff, 0xfe, 0x13]);
    let mut pos = [0i64; 3];
    bus.sync_read("Present_Position", &mut pos).unwrap();
    assert_eq!(pos, [2048; 3]);

    // Every try corrupted: reported as corruption, not as a silent motor.
    sim.faults().corrupt_replies(2, Corruption::LastByte);
    let err = bus.read("Present_Position", "shoulder_pan").unwrap_err();
    assert!(matches!(err, BusError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("bad checksum"), "{err}");
}

#[test]
fn unplug_is_a_disconnect_error_naming_the_port() {
    let (sim, mut bus) = setup(2);
    sim.faults().unplug();
    let mut pos = [0i64; 2];
    let err = bus.sync_read("Present_Position", &mut pos).unwrap_err();
    match &err {
        BusError::Transport(t) => assert!(t.is_disconnect(), "{t}"),
        other => panic!("expected a disconnect, got {other}"),
    }
    assert!(err.to_string().contains(sim.port()));
}

#[test]
fn human_hand_leader_moves_without_torque() {
    let mut cfg = FeetechSimConfig::new(&[1, 2, 3, 4, 5, 6, 7]);
    cfg.mode = SimMode::HumanHand(HandScript::default_sinusoid());
    let sim = FeetechSim::start(cfg).unwrap();
    let mut bus = FeetechBus::open(sim.port(), 1_000_000, motors(7), config()).unwrap();
    let mut a = [0i64; 7];
    let mut b = [0i64; 7];
    bus.sync_read("Present_Position", &mut a).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    bus.sync_read("Present_Position", &mut b).unwrap();
    assert_ne!(a, b);
    assert_eq!(bus.read("Torque_Enable", "grip").unwrap(), 0);
}

#[test]
fn broadcast_write_reaches_every_servo() {
    let (sim, mut bus) = setup(2);
    let goal = ft::register("Goal_Position").unwrap();
    bus.write_id(ft::register("Lock").unwrap(), ft::BROADCAST_ID, 0)
        .unwrap();
    bus.write_id(goal, ft::BROADCAST_ID, 2100).unwrap();
    wait_until("servo 2 took the broadcast goal", PATIENCE, || {
        sim.register(2, "Goal_Position") == Some(2100)
    });
    assert_eq!(sim.register(1, "Goal_Position"), Some(2100));
    assert_eq!(sim.register(2, "Goal_Position"), Some(2100));
}

#[test]
fn late_replies_time_out_and_do_not_poison_the_next_read() {
    let (sim, mut bus) = setup(2);
    sim.faults().set_extra_latency(Duration::from_millis(150));
    let sent = sim.faults().stats().replies_sent;
    let err = bus.read("Present_Position", "shoulder_pan").unwrap_err();
    assert_eq!(err.fault_kind(), FaultKind::Timeout, "{err}");
    assert!(matches!(err, BusError::Timeout { tries: 2, .. }), "{err}");
    sim.faults().set_extra_latency(Duration::ZERO);
    // Let both late replies land; the next transaction flushes them before sending.
    wait_until("the simulator sent both late replies", PATIENCE, || {
        sim.faults().stats().replies_sent >= sent + 2
    });
    bus.write("Goal_Position", "shoulder_pan", 1234).unwrap();
    assert_eq!(bus.read("Goal_Position", "shoulder_pan").unwrap(), 1234);
}
