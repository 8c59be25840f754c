//! Loop jitter on the simulators with real wire timing: sim leader (7 STS3215 @ 1 Mbaud) →
//! sim follower (5 DAMIAO behind the USB-CAN adapter + 2 STS3215), at 100/250/500 Hz and the
//! highest sustainable rate, with realtime scheduling off and auto; then the Python peer loop
//! (feetech-servo-sdk + pydamiao, built like the reference) on the same simulators, and the
//! ratio of free-running rates in this one run.
//!
//! Run: `cargo bench -p openk-core --bench loop_jitter`
//! Env: OPENK_BENCH_SECONDS (per rate, default 5), OPENK_BENCH_PYTHON (default: the project's
//! .venv, else python3 on PATH; needs scservo_sdk and pydamiao; relative to the workspace root), OPENK_BENCH_SKIP_PEER=1,
//! OPENK_BENCH_RATES (comma-separated rates, e.g. `500` with OPENK_BENCH_SECONDS=60 for the
//! 60 s overrun check; skips the rate search's stop rule and the free-running runs),
//! OPENK_BENCH_MODES (scheduling modes in order, default `off,auto`).

use std::time::Duration;

use openk_core::arm::config::DeviceConfig;
use openk_core::arm::device::{open_arms, start_sim_rig};
use openk_core::arm::spec::DeviceKind;
use openk_core::control::{LoopSpec, RealtimeMode, TelemetryReport, TeleopLoop};

const ROBOT: &str = "openk-1-alpha_follower2";
const TELEOP: &str = "openk-1-sts_leader";

fn configs(dir: &std::path::Path) -> (DeviceConfig, DeviceConfig) {
    let robot = DeviceConfig::from_json(
        &serde_json::json!({"type": ROBOT, "port": "sim", "sts_port": "sim", "id": "bench",
                            "calibration_dir": dir}),
        DeviceKind::Robot,
    )
    .unwrap();
    let teleop = DeviceConfig::from_json(
        &serde_json::json!({"type": TELEOP, "port": "sim", "id": "bench", "calibration_dir": dir}),
        DeviceKind::Teleoperator,
    )
    .unwrap();
    (robot, teleop)
}

/// (steal, total) jiffies of all CPUs from /proc/stat: time the hypervisor ran something
/// else while this VM wanted the CPU. A noisy host shows up here, not in our code.
fn cpu_steal_and_total() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    Some((*fields.get(7)?, fields.iter().take(8).sum()))
}

/// Share of CPU time stolen by the host since `before`, in percent.
fn steal_percent_since(before: Option<(u64, u64)>) -> f64 {
    match (before, cpu_steal_and_total()) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => (s1 - s0) as f64 * 100.0 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

fn run(hz: f64, realtime: RealtimeMode, seconds: f64) -> Option<(TelemetryReport, f64)> {
    let dir = std::env::temp_dir().join(format!("openk-bench-{}", std::process::id()));
    let (robot, teleop) = configs(&dir);
    let opened = match open_arms(&robot, Some(&teleop)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("  cannot open the simulated arms: {e}");
            return None;
        }
    };
    let spec = LoopSpec {
        control_hz: hz,
        record_fps: 30.0_f64.min(hz),
        realtime,
        max_consecutive_errors: 1_000_000,
        ..LoopSpec::default()
    };
    let lp = match TeleopLoop::start(opened.arms, spec) {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("  cannot start the loop at {hz} Hz ({realtime:?}): {e}");
            return None;
        }
    };
    // Warm up, then measure one episode (episode telemetry covers exactly the window).
    std::thread::sleep(Duration::from_millis(300));
    lp.start_episode(Duration::from_secs(5)).ok()?;
    let steal_before = cpu_steal_and_total();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let report = lp.end_episode(Duration::from_secs(10)).ok();
    let steal = steal_percent_since(steal_before);
    lp.stop();
    drop(opened.sims);
    report.map(|r| (r, steal))
}

/// Nanoseconds as microseconds, for display.
fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn print(label: &str, r: &TelemetryReport, steal: f64) {
    let errors = r.total_bus_errors();
    let duration_s = r.duration_ns as f64 / 1e9;
    println!(
        "  {label:<22} host steal {steal:.1}%  achieved {:>7.1} Hz  lateness p50 {:>7.1} µs  p99 {:>8.1} µs  p99.9 \
         {:>8.1} µs  max {:>8.1} µs  overruns {:>5}  tick busy p50 {:>7.1} µs p99 {:>7.1} µs  \
         bus errors {errors}  rows {} ({:.1}/s, {} repeated)",
        r.achieved_hz,
        us(r.lateness_p50_ns),
        us(r.lateness_p99_ns),
        us(r.lateness_p999_ns),
        us(r.lateness_max_ns),
        r.overruns,
        us(r.busy_p50_ns),
        us(r.busy_p99_ns),
        r.rows,
        if duration_s > 0.0 {
            r.rows as f64 / duration_s
        } else {
            0.0
        },
        r.rows_repeated,
    );
    for (part, round) in &r.bus_round {
        println!(
            "  {:<22}   bus round {part:<28} p50 {:>7.1} µs  p99 {:>7.1} µs  p99.9 {:>7.1} µs  \
             max {:>8.1} µs",
            "",
            us(round.p50_ns),
            us(round.p99_ns),
            us(round.p999_ns),
            us(round.max_ns),
        );
    }
}

/// Sustained = within 1 % of the target rate with overruns under 0.5 % of ticks.
fn sustained(r: &TelemetryReport, hz: f64) -> bool {
    r.achieved_hz >= 0.99 * hz && (r.overruns as f64) <= 0.005 * r.ticks as f64
}

fn python_peer(seconds: f64, damiao_driver: &str) -> Option<serde_json::Value> {
    // cargo runs benches from the crate's folder: a relative OPENK_BENCH_PYTHON (as the README
    // writes it) is taken from the workspace root, and the project's .venv is the default.
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let python = match std::env::var("OPENK_BENCH_PYTHON") {
        Ok(p) if std::path::Path::new(&p).is_relative() && p.contains('/') => {
            root.join(p).display().to_string()
        }
        Ok(p) => p,
        Err(_) if root.join(".venv/bin/python").exists() => {
            root.join(".venv/bin/python").display().to_string()
        }
        Err(_) => "python3".into(),
    };
    let sims = start_sim_rig(ROBOT, Some(TELEOP)).ok()?;
    let ports: std::collections::HashMap<String, String> = sims.ports().into_iter().collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/loop_peer.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(["--leader-port", ports.get("teleop.port")?])
        .args(["--damiao-port", ports.get("robot.port")?])
        .args(["--sts-port", ports.get("robot.sts_port")?])
        .args(["--seconds", &seconds.to_string()])
        .args(["--damiao-driver", damiao_driver])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "  python peer failed ({python}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last()?).ok()
}

fn main() {
    let seconds: f64 = std::env::var("OPENK_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let chosen: Option<Vec<f64>> = std::env::var("OPENK_BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect());
    let rates = chosen
        .clone()
        .unwrap_or_else(|| vec![100.0, 250.0, 400.0, 500.0, 600.0, 750.0, 1000.0]);
    println!("loop_jitter: {TELEOP} (sim) -> {ROBOT} (sim), {seconds} s per rate");
    // Free-running rate per scheduling mode. The peer ratio uses realtime=off: the peer's
    // simulators run with normal scheduling too, so that is the like-for-like comparison.
    let mut free_running_off = 0.0f64;
    let mut free_running_auto = 0.0f64;
    // Scheduling modes in the order given (e.g. `auto,off` to see whether the order matters on
    // a host whose steal time drifts).
    let modes: Vec<RealtimeMode> = std::env::var("OPENK_BENCH_MODES")
        .unwrap_or_else(|_| "off,auto".into())
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect();
    for realtime in modes {
        println!("realtime={realtime:?}");
        // Highest sustainable rate: every rate tried in turn; the search stops after two
        // rates in a row were not sustained.
        let mut highest = 0.0;
        let mut misses = 0;
        for hz in rates.iter().copied() {
            let Some((r, steal)) = run(hz, realtime, seconds) else {
                misses += 1;
                if misses == 2 {
                    break;
                }
                continue;
            };
            let ok = sustained(&r, hz);
            print(
                &format!(
                    "{hz:.0} Hz [{}]{}",
                    r.realtime,
                    if ok { "" } else { " (not sustained)" }
                ),
                &r,
                steal,
            );
            if ok {
                highest = f64::max(highest, hz);
                misses = 0;
            } else {
                misses += 1;
                if misses == 2 && chosen.is_none() {
                    break;
                }
            }
        }
        println!("  highest sustainable rate ({realtime:?}): {highest:.0} Hz");
        if chosen.is_some() {
            continue;
        }
        // Free-running: a target no bus can meet, so every tick starts as soon as the
        // previous one ended (to the next 200 µs boundary): the loop's raw throughput, the
        // same measure the Python peer gets.
        if let Some((r, steal)) = run(5000.0, realtime, seconds) {
            print("free-running", &r, steal);
            match realtime {
                RealtimeMode::Off => free_running_off = r.achieved_hz,
                _ => free_running_auto = r.achieved_hz,
            }
        }
    }
    if std::env::var("OPENK_BENCH_SKIP_PEER").is_ok() || chosen.is_some() {
        return;
    }
    // The peer the issue names (pydamiao), then the reference project's own DAMIAO I/O
    // pattern (fire-and-forget, DM_CAN.py): its rate only means something next to the share
    // of its commands the CAN bus answered.
    for (driver, what) in [
        ("pydamiao", "scservo_sdk + pydamiao"),
        ("reference", "scservo_sdk + DM_CAN-style fire-and-forget"),
    ] {
        let Some(peer) = python_peer(seconds, driver) else {
            println!("python peer ({what}): not run (see the error above)");
            continue;
        };
        let rate = peer["rate_hz"].as_f64().unwrap_or(0.0);
        let answered = peer["damiao_replies_per_command"]
            .as_f64()
            .map(|r| format!(", DAMIAO commands answered {:.0}%", r * 100.0))
            .unwrap_or_default();
        println!(
            "python peer ({what}, free-running): {rate:.1} Hz, tick p50 {:.2} ms, p99 {:.2} ms, \
             errors {}{answered}",
            peer["tick_ms_p50"].as_f64().unwrap_or(0.0),
            peer["tick_ms_p99"].as_f64().unwrap_or(0.0),
            peer["errors"]
        );
        if rate > 0.0 {
            println!(
                "  ratio openk / this peer (free-running rate, same simulators): {:.1}x with \
                 realtime off (like for like), {:.1}x with realtime auto",
                free_running_off / rate,
                free_running_auto / rate
            );
        }
    }
}
