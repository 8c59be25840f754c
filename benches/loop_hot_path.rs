//! Hot-path cost of one control tick without I/O: `LoopCore::tick` over in-memory parts
//! (7-joint leader, 5 + 2 joint follower, direction map, clamp, a row every tick), measured
//! per tick with an hdrhistogram. Target: < 5 µs.
//!
//! Run: `cargo bench -p openk-core --bench loop_hot_path`

use hdrhistogram::Histogram;
use openk_core::arm::part::Part;
use openk_core::clock::now_ns;
use openk_core::control::testing::{FakeFollower, FakeLeader};
use openk_core::control::{LoopCore, LoopSpec, RealtimeMode, TeleopArms};
use openk_core::record::builder::row_ring;
use openk_core::record::{BatchBuilder, BuilderConfig, FrameLayout};

fn main() {
    let ticks: u64 = std::env::var("OPENK_BENCH_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let joints = [
        "shoulder_pan",
        "shoulder_lift",
        "shoulder_roll",
        "elbow_flex",
        "wrist_roll",
    ];
    let sts = ["wrist_flex", "grip"];
    let all: Vec<&str> = joints.iter().chain(&sts).copied().collect();
    let leader = FakeLeader::new(&all, |t, j| ((t as f32) * 0.001 + j as f32).sin() * 80.0);
    let (dm, _) = FakeFollower::new("follower dm", &joints, &[0.0; 5], false);
    let (st, _) = FakeFollower::new("follower sts", &sts, &[0.0; 2], false);
    let mut observation_names: Vec<String> = all.iter().map(|j| format!("{j}.pos")).collect();
    observation_names.extend(joints.iter().map(|j| format!("{j}.vel")));
    let action_names: Vec<String> = all.iter().map(|j| format!("{j}.pos")).collect();
    let n = action_names.len();
    let layout = FrameLayout::new(observation_names.clone(), action_names.clone()).unwrap();
    let arms = TeleopArms {
        leader: vec![Box::new(leader) as Box<dyn Part>],
        follower: vec![Box::new(dm), Box::new(st)],
        observation_names,
        action_names,
        direction: vec![-1.0; n],
        max_relative_target: vec![Some(5.0); n],
    };
    // A row every tick: the worst case for the ring.
    let spec = LoopSpec {
        control_hz: 1000.0,
        record_fps: 1000.0,
        realtime: RealtimeMode::Off,
        ..LoopSpec::default()
    };
    let (tx, rx) = row_ring(1 << 16);
    let (mut core, shared) = LoopCore::new(arms, &spec, tx).unwrap();
    let builder = BatchBuilder::spawn(&layout, BuilderConfig::default(), rx).unwrap();
    let _ = shared;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
    for _ in 0..1000 {
        core.tick(now_ns(), 0);
    }
    let t0 = now_ns();
    for i in 0..ticks {
        let a = now_ns();
        core.tick(a, i % 13);
        hist.saturating_record(now_ns() - a);
    }
    let total = now_ns() - t0;
    println!(
        "loop_hot_path: {ticks} ticks (7-joint leader -> 5+2 follower, clamp, direction map, row \
         per tick; no I/O)"
    );
    println!(
        "  per tick: mean {:.2} µs  p50 {:.2} µs  p99 {:.2} µs  p99.9 {:.2} µs  max {:.1} µs  \
         (target < 5 µs)",
        total as f64 / ticks as f64 / 1000.0,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.value_at_quantile(0.999) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    drop(core);
    builder.join();
}
