//! The control loop calls `mit_all` / `pos_vel_all` at 500 Hz+: after connect they must not
//! allocate. A counting allocator tallies allocations of this test's thread only (the
//! simulator thread allocates freely).

use openk_core::bus::damiao::{DamiaoBus, DamiaoBusOptions};
use openk_core::protocol::damiao::{ControlMode, Feedback, MitCommand, MotorState};
use openk_core::sim::damiao::{DamiaoSim, DamiaoSimConfig};

mod common;

use common::counting_alloc::{allocations_on_this_thread as allocs, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn command_rounds_do_not_allocate() {
    let cfg = DamiaoSimConfig::openk_arm();
    let sim = DamiaoSim::start(cfg.clone()).unwrap();
    let mut bus = DamiaoBus::open(
        sim.port(),
        cfg.bus_specs(),
        DamiaoBusOptions {
            timeout: std::time::Duration::from_millis(100),
            ..DamiaoBusOptions::default()
        },
    )
    .unwrap();
    bus.connect().unwrap();
    bus.enable_all().unwrap();
    let mut fb = [Feedback::default(); 5];
    let cmds = [MitCommand {
        q: 0.1,
        dq: 0.0,
        kp: 20.0,
        kd: 1.0,
        tau: 0.0,
    }; 5];
    bus.mit_all(&cmds, &mut fb).unwrap();
    let before = allocs();
    for _ in 0..200 {
        bus.mit_all(&cmds, &mut fb).unwrap();
    }
    assert_eq!(allocs() - before, 0, "mit_all allocated");

    bus.set_control_mode_all(ControlMode::PosVel).unwrap();
    let targets = [(0.2, 2.0); 5];
    bus.pos_vel_all(&targets, &mut fb).unwrap();
    let before = allocs();
    for _ in 0..200 {
        bus.pos_vel_all(&targets, &mut fb).unwrap();
    }
    assert_eq!(allocs() - before, 0, "pos_vel_all allocated");
    assert!(fb.iter().all(|f| f.state == MotorState::Enabled));
}
