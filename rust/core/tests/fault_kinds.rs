//! One fault, one kind: a bus error and the part error the control loop makes of it carry the
//! same [`FaultKind`], so the bindings raise the same Python class on every call path.

use std::time::Duration;

use openk_core::arm::{damiao_part, sts_part};
use openk_core::bus::damiao::{DamiaoBus, DamiaoBusError, DamiaoBusOptions};
use openk_core::bus::feetech::{BusConfig, FailureKind};
use openk_core::control::testing::{feetech_sim_bus, numbered_motors};
use openk_core::error::{Classified, FaultKind};
use openk_core::protocol::damiao::{ControlMode, Feedback, MotorModel, MotorState};
use openk_core::protocol::feetech::StatusFlags;
use openk_core::sim::damiao::{DamiaoSim, DamiaoSimConfig};
use openk_core::sim::pty::Corruption;

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn feetech_corrupt_and_silent_servos_are_a_protocol_fault_on_the_bus_and_in_the_loop() {
    // Generous: a corrupted reply that comes too late on a loaded machine would be a timeout.
    let config = BusConfig {
        timeout: Duration::from_millis(200),
        retries: 2,
        ..BusConfig::default()
    };
    let (sim, mut bus) = feetech_sim_bus(numbered_motors(&[1, 2]), config);
    sim.set_silent(2, true);
    sim.faults()
        .corrupt_replies(1_000_000, Corruption::LastByte);
    let mut pos = [0i64; 2];
    let err = bus.sync_read("Present_Position", &mut pos).unwrap_err();
    let kinds: Vec<FailureKind> = err.failures().iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&FailureKind::Corrupt), "{err}");
    assert!(kinds.contains(&FailureKind::Timeout), "{err}");
    assert_eq!(err.fault_kind(), FaultKind::Protocol, "{err}");
    let part = sts_part::part_error(&names(&["a", "b"]), &err);
    assert_eq!(part.kind, err.fault_kind(), "{part}");
}

#[test]
fn feetech_silent_and_flagged_servos_are_a_timeout_everywhere() {
    let config = BusConfig {
        timeout: Duration::from_millis(20),
        ..BusConfig::default()
    };
    let (sim, mut bus) = feetech_sim_bus(numbered_motors(&[1, 2]), config);
    sim.set_error_bits(1, StatusFlags::OVERLOAD);
    sim.set_silent(2, true);
    let mut pos = [0i64; 2];
    let err = bus.sync_read("Present_Position", &mut pos).unwrap_err();
    assert_eq!(err.fault_kind(), FaultKind::Timeout, "{err}");
    let part = sts_part::part_error(&names(&["a", "b"]), &err);
    assert_eq!(part.kind, FaultKind::Timeout, "{part}");
    assert!(err.to_string().contains("overload"), "{err}");
}

#[test]
fn damiao_wrong_mode_is_a_config_fault_on_the_bus_and_in_the_loop() {
    let cfg = DamiaoSimConfig::openk_arm();
    let sim = DamiaoSim::start(cfg.clone()).unwrap();
    let options = DamiaoBusOptions {
        timeout: Duration::from_millis(100),
        ..DamiaoBusOptions::default()
    };
    let mut bus = DamiaoBus::open(sim.port(), cfg.bus_specs(), options).unwrap();
    bus.connect().unwrap();
    bus.set_control_mode_all(ControlMode::Mit).unwrap();
    let targets = vec![(0.0, 1.0); bus.len()];
    let mut feedback = vec![Feedback::default(); bus.len()];
    let err = bus.pos_vel_all(&targets, &mut feedback).unwrap_err();
    assert!(matches!(err, DamiaoBusError::WrongMode { .. }), "{err}");
    assert_eq!(err.fault_kind(), FaultKind::Config);
    let motor_names: Vec<String> = bus.motor_names().map(str::to_owned).collect();
    let part = damiao_part::part_error(&motor_names, &err);
    assert_eq!(part.kind, FaultKind::Config, "{part}");
    assert!(part.motor.is_some(), "{part:?}");
}

#[test]
fn every_damiao_bus_error_keeps_its_kind_in_the_loop() {
    let errors = [
        DamiaoBusError::Timeout {
            port: "p".into(),
            motor: "m".into(),
            esc_id: 1,
            what: "a command",
            waited: Duration::from_millis(1),
            attempts: 3,
        },
        DamiaoBusError::MotorFault {
            port: "p".into(),
            motor: "m".into(),
            state: MotorState::OverVoltage,
            nibble: 8,
        },
        DamiaoBusError::WrongMode {
            port: "p".into(),
            motor: "m".into(),
            actual: "MIT",
            wanted: "POS_VEL",
        },
        DamiaoBusError::Config {
            port: "p".into(),
            message: "x".into(),
        },
        DamiaoBusError::Protocol {
            port: "p".into(),
            motor: "m".into(),
            source: MotorModel::from_name("DM9999").unwrap_err(),
        },
    ];
    let want = [
        FaultKind::Timeout,
        FaultKind::Motor,
        FaultKind::Config,
        FaultKind::Config,
        FaultKind::Config,
    ];
    for (e, want) in errors.iter().zip(want) {
        assert_eq!(e.fault_kind(), want, "{e}");
        let part = damiao_part::part_error(&names(&["m"]), e);
        assert_eq!(part.kind, want, "{e}");
    }
}

#[test]
fn motor_states_have_one_snake_case_name() {
    for s in MotorState::NAMED {
        let name = s.name();
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{name}"
        );
        assert_eq!(MotorState::from_name(name), Some(s));
        assert_eq!(s.to_string(), name);
    }
    assert_eq!(MotorState::from_nibble(0x8).to_string(), "over_voltage");
    assert_eq!(MotorState::from_nibble(0x3).to_string(), "unknown_0x3");
    assert_eq!(MotorState::from_name("over-voltage"), None);
    assert_eq!(
        StatusFlags(StatusFlags::VOLTAGE | StatusFlags::OVER_CURRENT).to_string(),
        "input_voltage, over_current"
    );
}
