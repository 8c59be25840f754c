//! DAMIAO bus round trip at real timing: one MIT command + one feedback frame for each of the
//! OpenK arm's five motors, through the adapter simulator on a pty.
//!
//! Wire-time floor (spec §E, CAN 1 Mbit/s): 10 CAN frames ≈ 1.11–1.35 ms, plus the simulated
//! adapter/USB latency (250 µs) ⇒ no round can be shorter than ≈ 1.4–1.6 ms (≈ 620–720 Hz).
//! Compare the measured time with that floor; the pydamiao comparison is
//! benches/damiao_bus_vs_pydamiao.py.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use openk_core::bus::damiao::{DamiaoBus, DamiaoBusOptions};
use openk_core::protocol::damiao::{Feedback, MitCommand};
use openk_core::sim::damiao::{DamiaoSim, DamiaoSimConfig};

fn round_trip(c: &mut Criterion) {
    let cfg = DamiaoSimConfig::openk_arm();
    let Ok(sim) = DamiaoSim::start(cfg.clone()) else {
        panic!("could not start the DAMIAO simulator");
    };
    // A generous timeout: on a shared, overloaded machine the simulator thread can be starved
    // for tens of ms, which would abort the measurement instead of showing up in it.
    let options = DamiaoBusOptions {
        timeout: Duration::from_millis(200),
        ..DamiaoBusOptions::default()
    };
    let mut bus = DamiaoBus::open(sim.port(), cfg.bus_specs(), options).expect("open bus");
    bus.connect().expect("connect");
    bus.enable_all().expect("enable");
    let cmds = [MitCommand {
        q: 0.0,
        dq: 0.0,
        kp: 20.0,
        kd: 1.0,
        tau: 0.0,
    }; 5];
    let mut fb = [Feedback::default(); 5];
    let mut group = c.benchmark_group("damiao_bus");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("mit_5_motors_command_and_feedback", |b| {
        b.iter(|| bus.mit_all(&cmds, &mut fb).expect("mit round"))
    });
    group.finish();
    // Retries mean a reply missed its timeout: the figure then includes the resend.
    eprintln!("damiao_bus stats: {:?}", bus.stats());
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
