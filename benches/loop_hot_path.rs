//! Hot-path cost of one control tick without I/O: `LoopCore::tick` over in-memory parts
//! (7-joint leader, 5 + 2 joint follower, direction map, clamp, a row every tick), measured
//! per tick with an hdrhistogram. Target: < 5 µs. Then the goal path of replay and policy
//! rollout (no leader): a 30 fps schedule interpolated at 500 Hz against the same loop holding
//! its last goal (a step-hold), on synthetic wake times 2 ms apart.
//!
//! Run: `cargo bench -p openk-core --bench loop_hot_path`

use hdrhistogram::Histogram;
use openk_core::clock::now_ns;
use openk_core::control::testing::seven_joint_arms;
use openk_core::control::{LoopCore, LoopSpec, RealtimeMode};
use openk_core::record::builder::row_ring;
use openk_core::record::{BatchBuilder, BuilderConfig, FrameLayout};

fn main() {
    let ticks: u64 = std::env::var("OPENK_BENCH_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let arms = seven_joint_arms(
        Some(|t, j| ((t as f32) * 0.001 + j as f32).sin() * 80.0),
        -1.0,
        false,
    );
    let layout =
        FrameLayout::new(arms.observation_names.clone(), arms.action_names.clone()).unwrap();
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
    scheduled_goals(ticks);
}

/// Per-tick cost of a loop without a leader whose goals come from the schedule: interpolating
/// between 30 fps actions at 500 Hz, then holding the last one once the schedule is spent.
fn scheduled_goals(ticks: u64) {
    let arms = seven_joint_arms(None, 1.0, false);
    let n = arms.action_names.len();
    let spec = LoopSpec {
        control_hz: 500.0,
        record_fps: 30.0,
        realtime: RealtimeMode::Off,
        max_goal_speed: vec![Some(500.0); n],
        ..LoopSpec::default()
    };
    let (tx, _rx) = row_ring(1 << 10);
    let (mut core, shared) = LoopCore::new(arms, &spec, tx).unwrap();
    // Enough 30 fps rows for every interpolated tick (500 / 30 ticks per row), sent up front.
    let rows = (ticks * 30 / 500 + 2) as usize;
    let actions: Vec<f32> = (0..rows * n)
        .map(|k| ((k / n) as f32 * 0.05 + (k % n) as f32).sin() * 80.0)
        .collect();
    let t0 = now_ns();
    shared.send_actions(&actions, Some(t0 + 2_000_000)).unwrap();
    let mut wake = t0;
    let measure = |core: &mut LoopCore, wake: &mut u64| {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        let mut total = 0;
        for i in 0..ticks {
            if i % 1024 == 0 {
                shared.feed(); // the owner's side, outside the tick
            }
            let a = now_ns();
            core.tick(*wake, 0);
            let d = now_ns() - a;
            hist.saturating_record(d);
            total += d;
            *wake += 2_000_000;
        }
        (total as f64 / ticks as f64 / 1000.0, hist)
    };
    let (interp_mean, interp) = measure(&mut core, &mut wake);
    assert!(shared.pending_actions() <= 2, "the schedule ran dry early");
    // Past the last row: every tick holds the last goal (and counts late actions).
    wake += 10_000_000_000;
    let (hold_mean, hold) = measure(&mut core, &mut wake);
    println!(
        "loop_hot_path scheduled goals: {ticks} ticks at 500 Hz of 30 fps actions, no leader, \
         5+2 follower, speed limit and clamp; no I/O"
    );
    for (what, mean, h) in [
        ("interpolated", interp_mean, &interp),
        ("step-hold   ", hold_mean, &hold),
    ] {
        println!(
            "  {what}: mean {mean:.2} µs  p50 {:.2} µs  p99 {:.2} µs  max {:.1} µs",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    println!(
        "  interpolation costs {:.2}x the hold per tick (p50)",
        interp.value_at_quantile(0.5) as f64 / hold.value_at_quantile(0.5).max(1) as f64
    );
}
