//! The tick path allocates nothing: a counting global allocator watches the control thread
//! and, with parts on their own threads (the default, `LoopSpec::parallel`), every bus worker,
//! while `LoopCore::tick` runs hundreds of ticks, recording rows, with leader and follower
//! parts.

use openk_core::clock::now_ns;
use openk_core::control::testing::{seven_joint_arms, FakeFollower};
use openk_core::control::{LoopCore, LoopSpec, RealtimeMode, TeleopArms, TickOutcome};
use openk_core::record::builder::row_ring;
use openk_core::record::Row;

mod common;

use common::counting_alloc::{allocations_on_this_thread, CountingAlloc, ThreadWatch};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Where the parts' exchanges run.
#[derive(Clone, Copy, Debug)]
enum Parts {
    /// On the control thread, within the tick.
    Inline,
    /// Each on its own worker thread (what `TeleopLoop` does by default).
    OnWorkers,
}

/// Builds the core; the calling thread and, for [`Parts::OnWorkers`], every worker are
/// enlisted in `watch` before any tick.
/// Returns the core and the consumer end of its row ring.
fn core_on(
    arms: TeleopArms,
    parts: Parts,
    watch: &'static ThreadWatch,
) -> (LoopCore, rtrb::Consumer<Row>) {
    let spec = LoopSpec {
        control_hz: 500.0,
        record_fps: 100.0,
        realtime: RealtimeMode::Off,
        ..LoopSpec::default()
    };
    let (tx, rx) = row_ring(4096);
    let (mut core, _shared) = LoopCore::new(arms, &spec, tx).unwrap();
    watch.enlist_this_thread();
    if let Parts::OnWorkers = parts {
        core.parallelize(move || watch.enlist_this_thread())
            .unwrap();
    }
    (core, rx)
}

/// The arm's seven joints: five on a DAMIAO-like follower part, two on an STS-like one.
fn fake_arms(keep_goals: bool) -> TeleopArms {
    seven_joint_arms(
        Some(|t, j| (t as f32 * 0.01 + j as f32).sin() * 50.0),
        -1.0,
        keep_goals,
    )
}

/// Ticks 2000 times (4 s of 500 Hz wake times, recording) and returns the allocations the
/// watched threads made meanwhile.
fn allocations_over_ticks(core: &mut LoopCore, watch: &ThreadWatch) -> u64 {
    // Warm-up outside the watch (first-use lazy initialisation in std is not the loop's).
    for _ in 0..10 {
        assert_eq!(core.tick(now_ns(), 0), TickOutcome::Continue);
    }
    core.start_episode(0);
    let before = watch.allocations();
    // Wake times 2 ms apart (500 Hz), so the periodic telemetry publication runs too.
    let t0 = now_ns();
    for i in 0..2000u64 {
        let wake = t0 + i * 2_000_000;
        assert_eq!(core.tick(wake, i % 7), TickOutcome::Continue);
    }
    watch.allocations() - before
}

fn ticks_do_not_allocate(parts: Parts, watch: &'static ThreadWatch) {
    let (mut core, mut rx) = core_on(fake_arms(false), parts, watch);
    let allocations = allocations_over_ticks(&mut core, watch);
    assert_eq!(allocations, 0, "allocations on the tick path ({parts:?})");
    // Sanity: the ticks did real work (goals followed the leader, clamped).
    assert!(core.action().iter().any(|v| *v != 0.0));
    // Rows were recorded on the dataset clock: 100 fps over 4 s of wake times.
    let mut rows = 0;
    while rx.pop().is_ok() {
        rows += 1;
    }
    assert!((399..=401).contains(&rows), "{rows} rows");
}

#[test]
fn ticks_with_inline_parts_do_not_allocate() {
    static WATCH: ThreadWatch = ThreadWatch::new();
    ticks_do_not_allocate(Parts::Inline, &WATCH);
}

#[test]
fn ticks_with_parts_on_worker_threads_do_not_allocate() {
    static WATCH: ThreadWatch = ThreadWatch::new();
    ticks_do_not_allocate(Parts::OnWorkers, &WATCH);
}

#[test]
fn the_watch_sees_what_a_worker_thread_allocates() {
    // A follower that keeps a copy of every goal allocates in its exchange, which runs on its
    // worker thread: the count must show it, or the test above could not fail.
    static WATCH: ThreadWatch = ThreadWatch::new();
    let (mut core, _rx) = core_on(fake_arms(true), Parts::OnWorkers, &WATCH);
    let control_thread = common::counting_alloc::allocations_on_this_thread();
    let allocations = allocations_over_ticks(&mut core, &WATCH);
    assert!(allocations >= 2000, "{allocations} allocations seen");
    assert_eq!(
        common::counting_alloc::allocations_on_this_thread(),
        control_thread,
        "the allocations were the worker's, not the control thread's"
    );
}

fn ticks_over_the_simulated_buses_do_not_allocate(parts: Parts, watch: &'static ThreadWatch) {
    use openk_core::arm::config::DeviceConfig;
    use openk_core::arm::device::open_arms;
    use openk_core::arm::spec::DeviceKind;
    let dir = std::env::temp_dir().join(format!("openk-noalloc-{parts:?}-{}", std::process::id()));
    let robot = DeviceConfig::from_json(
        &serde_json::json!({"type": "openk-1-alpha_follower2", "port": "sim", "sts_port": "sim",
                            "id": "f", "calibration_dir": dir}),
        DeviceKind::Robot,
    )
    .unwrap();
    let teleop = DeviceConfig::from_json(
        &serde_json::json!({"type": "openk-1-sts_leader", "port": "sim", "id": "l",
                            "calibration_dir": dir}),
        DeviceKind::Teleoperator,
    )
    .unwrap();
    let opened = open_arms(&robot, Some(&teleop)).unwrap();
    let (mut core, _rx) = core_on(opened.arms, parts, watch);
    for _ in 0..50 {
        core.tick(now_ns(), 0);
    }
    // A bus error (a reply late on a loaded machine) builds an error message, which may
    // allocate; only windows without errors count.
    let errors = |core: &LoopCore| core.run_telemetry().total_errors();
    // On a loaded machine many windows see a late reply; keep going until three are clean.
    let mut clean_windows = 0;
    for _ in 0..40 {
        if clean_windows == 3 {
            break;
        }
        let errors_before = errors(&core);
        let allocations_before = watch.allocations();
        for _ in 0..200 {
            core.tick(now_ns(), 0);
        }
        let allocations = watch.allocations() - allocations_before;
        // A failed exchange can be counted a tick later (pipelined parts report on the next
        // tick), so let a few more ticks settle the count before judging the window clean.
        for _ in 0..5 {
            core.tick(now_ns(), 0);
        }
        if errors(&core) == errors_before {
            assert_eq!(
                allocations, 0,
                "allocations on the tick path over real buses ({parts:?})"
            );
            clean_windows += 1;
        }
    }
    assert!(clean_windows > 0, "every window had bus errors");
    drop(core);
    drop(opened.sims);
}

#[test]
fn ticks_over_the_simulated_buses_with_inline_parts_do_not_allocate() {
    static WATCH: ThreadWatch = ThreadWatch::new();
    ticks_over_the_simulated_buses_do_not_allocate(Parts::Inline, &WATCH);
}

#[test]
fn ticks_over_the_simulated_buses_on_worker_threads_do_not_allocate() {
    static WATCH: ThreadWatch = ThreadWatch::new();
    ticks_over_the_simulated_buses_do_not_allocate(Parts::OnWorkers, &WATCH);
}

#[test]
fn scheduled_goals_and_ramps_do_not_allocate() {
    // A rollout's path: actions interpolated from the schedule, a speed limit, the start ramp,
    // the schedule running out (late actions), then the return home.
    let joints = ["a", "b", "c"];
    let (follower, _) = FakeFollower::new("follower", &joints, &[1.0; 3], false);
    let action_names: Vec<String> = joints.iter().map(|j| format!("{j}.pos")).collect();
    let mut observation_names = action_names.clone();
    observation_names.extend(joints.iter().map(|j| format!("{j}.vel")));
    let arms = TeleopArms {
        leader: vec![],
        follower: vec![Box::new(follower)],
        observation_names,
        action_names,
        direction: vec![1.0; 3],
        max_relative_target: vec![Some(5.0); 3],
    };
    let spec = LoopSpec {
        control_hz: 500.0,
        record_fps: 30.0,
        realtime: RealtimeMode::Off,
        start_ramp_ns: 500_000_000,
        end_ramp_ns: 500_000_000,
        end_settle_ns: 100_000_000,
        max_goal_speed: vec![Some(200.0), None, None],
        schedule_capacity: 64,
        ..LoopSpec::default()
    };
    let (tx, mut rx) = row_ring(4096);
    let (mut core, shared) = LoopCore::new(arms, &spec, tx).unwrap();
    let t0 = now_ns();
    let mut t = t0;
    let mut tick = |core: &mut LoopCore| {
        let out = core.tick(t, 0);
        t += 2_000_000;
        out
    };
    for _ in 0..10 {
        tick(&mut core);
    }
    // 100 rows (3.3 s at 30 fps), more than the schedule holds: the rest is fed on the way.
    let rows: Vec<f32> = (0..300).map(|i| (i as f32 * 0.05).sin() * 40.0).collect();
    shared.send_actions(&rows, None).unwrap();
    core.start_episode(0);
    let before = allocations_on_this_thread();
    let mut fed = 0;
    for i in 0..2500 {
        assert_eq!(tick(&mut core), TickOutcome::Continue);
        if i % 100 == 0 {
            // The owner's side (another thread in a real loop) tops up the ring; it does not
            // allocate either once the backlog exists.
            shared.feed();
            fed += 1;
        }
    }
    let allocations = allocations_on_this_thread() - before;
    assert_eq!(allocations, 0, "allocations on the scheduled tick path");
    assert!(fed > 0);
    assert_eq!(shared.pending_actions(), 0);
    assert!(core.run_telemetry().late_actions > 0);
    // The stop request's event allocates (once); the return home after it does not.
    shared.request_stop();
    tick(&mut core);
    let before = allocations_on_this_thread();
    let mut ticks = 0;
    while tick(&mut core) == TickOutcome::Continue {
        ticks += 1;
        assert!(ticks < 1000);
    }
    assert_eq!(
        allocations_on_this_thread() - before,
        0,
        "end ramp allocations"
    );
    assert!(core.action().iter().all(|v| *v == 0.0), "home reached");
    while rx.pop().is_ok() {}
}
