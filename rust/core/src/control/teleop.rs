//! The teleop/record loop: [`LoopCore`] is one tick's work (no threads, no allocation) and
//! [`TeleopLoop`] runs it on a dedicated thread and talks to it through lock-free commands.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use super::rt::{self, ActiveRealtime, RealtimeError, RealtimeMode};
use super::telemetry::{Telemetry, TelemetryReport};
use super::workers::{PartSlot, Worker};
use crate::arm::part::{FaultKind, Part, StopAction};
use crate::clock::now_ns;
use crate::error::Classified;
use crate::record::builder::row_ring;
use crate::record::{
    BatchBuilder, BatchQueue, BuilderConfig, FrameLayout, RecordError, Row, RowKind, MAX_ACTION,
};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopSpec {
    /// Control rate (ticks per second).
    pub control_hz: f64,
    /// Dataset rows per second (≤ control_hz). Rows follow the dataset clock, not the tick
    /// count: row i of an episode belongs to the episode's first tick + i / record_fps.
    pub record_fps: f64,
    pub realtime: RealtimeMode,
    /// Pin the control thread to this CPU.
    pub cpu: Option<usize>,
    /// Busy-wait window before each deadline, ns.
    pub spin_ns: u64,
    /// Consecutive failed exchanges of one part before the loop stops.
    pub max_consecutive_errors: u32,
    /// What the follower does when the loop stops.
    pub stop_action: StopAction,
    /// Serve each bus from its own thread (a tick costs the slowest bus, not the sum).
    pub parallel: bool,
    /// Rows the ring to the batch builder holds.
    pub ring_capacity: usize,
    pub builder: BuilderConfig,
}

impl Default for LoopSpec {
    fn default() -> Self {
        Self {
            control_hz: 200.0,
            record_fps: 30.0,
            realtime: RealtimeMode::Auto,
            cpu: None,
            spin_ns: 200_000,
            max_consecutive_errors: 10,
            stop_action: StopAction::Hold,
            parallel: true,
            ring_capacity: 8192,
            builder: BuilderConfig::default(),
        }
    }
}

/// The arms the loop drives and how leader values become follower goals.
pub struct TeleopArms {
    /// Leader parts; empty for replay (goals come from [`TeleopLoop::send_action`]).
    pub leader: Vec<Box<dyn Part>>,
    pub follower: Vec<Box<dyn Part>>,
    /// Follower observation feature names, in dataset order.
    pub observation_names: Vec<String>,
    /// Follower action feature names, in dataset order.
    pub action_names: Vec<String>,
    /// Sign applied to each action (direction_map), indexed like `action_names`.
    pub direction: Vec<f32>,
    /// Largest step from the present position per tick, per action (None: unlimited).
    pub max_relative_target: Vec<Option<f32>>,
}

/// Why the loop stopped on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopFailure {
    pub kind: FaultKind,
    pub device: String,
    pub motor: Option<String>,
    pub message: String,
}

impl std::fmt::Display for LoopFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.device)?;
        if let Some(m) = &self.motor {
            write!(f, ", motor {m}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A safety-relevant event (leader lost, bus errors, stop), with motor and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetyEvent {
    pub time_ns: u64,
    pub device: String,
    pub motor: Option<String>,
    pub reason: String,
    /// What the loop did about it, e.g. "follower holds position".
    pub response: String,
}

/// Errors of the control layer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Realtime(#[from] RealtimeError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0}")]
    Config(String),
    #[error("{failure}")]
    Device { failure: LoopFailure },
    #[error("the control loop stopped: {failure}")]
    Stopped { failure: LoopFailure },
    #[error("the control loop is not running (it was stopped)")]
    NotRunning,
    #[error("the control loop did not {what} within {timeout:?}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("could not start a loop thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl Classified for LoopFailure {
    fn fault_kind(&self) -> FaultKind {
        self.kind
    }
}

impl Classified for ControlError {
    fn fault_kind(&self) -> FaultKind {
        match self {
            ControlError::Realtime(e) => e.fault_kind(),
            ControlError::Record(e) => e.fault_kind(),
            ControlError::Config(_) => FaultKind::Config,
            ControlError::Device { failure } | ControlError::Stopped { failure } => failure.kind,
            ControlError::NotRunning | ControlError::Timeout { .. } | ControlError::Thread(_) => {
                FaultKind::Other
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Command {
    StartEpisode { seq: u64, episode: i64 },
    EndEpisode { seq: u64, episode: i64 },
    Action { seq: u64, values: [f32; MAX_ACTION] },
    Stop { seq: u64 },
}

struct TelemetryPair {
    run: Telemetry,
    episode: Telemetry,
}

/// State shared between the loop thread and its owner.
pub struct LoopShared {
    commands: Mutex<rtrb::Producer<Command>>,
    next_seq: AtomicU64,
    acked: AtomicU64,
    running: AtomicBool,
    telemetry: Mutex<TelemetryPair>,
    events: Mutex<Vec<SafetyEvent>>,
    failure: Mutex<Option<LoopFailure>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Exec {
    Inline(PartSlot),
    Thread(Worker),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Follower,
}

struct Unit {
    role: Role,
    exec: Exec,
    label: String,
    motor_names: Vec<String>,
    /// goal element -> action index.
    goal_map: Vec<usize>,
    /// state element -> observation index (follower) or action index (leader).
    state_map: Vec<Option<usize>>,
    /// First telemetry slot of this part's motors.
    motor_slot_base: usize,
    consecutive_errors: u32,
}

/// How often the loop publishes its telemetry to the owner (never waiting for the lock).
const PUBLISH_EVERY_NS: u64 = 20_000_000;

/// What one tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    Continue,
    /// The loop must stop (a part failed too often or a stop was requested).
    Stop,
}

/// One tick's work, runnable without a thread (benchmarks and the no-allocation test drive it
/// directly).
pub struct LoopCore {
    units: Vec<Unit>,
    observation: Vec<f32>,
    /// Goals sent this tick.
    action: Vec<f32>,
    /// Goals for the next tick (from the leader or a replay command).
    next_action: Vec<f32>,
    direction: Vec<f32>,
    max_relative: Vec<Option<f32>>,
    /// action index -> observation index of the same `.pos` feature (for the clamp).
    present_index: Vec<Option<usize>>,
    has_leader: bool,
    rows: rtrb::Producer<Row>,
    shared: Arc<LoopShared>,
    commands: rtrb::Consumer<Command>,
    /// The loop's own telemetry: recorded without any lock, published to `shared` (see
    /// [`LoopCore::publish`]) so an owner holding the lock never delays a tick.
    tel: TelemetryPair,
    published_ns: u64,
    recording: bool,
    episode: i64,
    /// Wake time of the episode's first tick: row i is due at this + i / record_fps.
    episode_start_ns: Option<u64>,
    /// Rows of the episode emitted so far (pushed, repeated or dropped): the next row's index.
    episode_rows: u64,
    tick_index: u64,
    /// Dataset row period, ns (1e9 / record_fps).
    row_period_ns: f64,
    max_consecutive_errors: u32,
    stop_requested: bool,
    /// Threaded parts are running the round this tick dispatched.
    in_flight: bool,
    /// No leader part failed since the goals were last settled.
    leader_ok: bool,
}

/// Labels of every motor counter slot: `<part label>.<motor>`.
/// One telemetry slot per motor plus one per unit for failures no single motor owns (a port
/// error, a whole-bus timeout): the same layout as `Unit::motor_slot_base`.
fn motor_labels(units: &[Unit]) -> Vec<String> {
    units
        .iter()
        .flat_map(|u| {
            u.motor_names
                .iter()
                .map(move |m| format!("{}.{m}", u.label))
                .chain(std::iter::once(format!("{}.bus", u.label)))
        })
        .collect()
}

/// A part's goals, taken from the action vector through its goal → action index map.
fn fill_goals(goal: &mut [f32], goal_map: &[usize], action: &[f32]) {
    for (g, a) in goal.iter_mut().zip(goal_map) {
        if let Some(v) = action.get(*a) {
            *g = *v;
        }
    }
}

fn failure_of(
    label: &str,
    motor_names: &[String],
    kind: FaultKind,
    motor: Option<usize>,
    message: &str,
) -> LoopFailure {
    LoopFailure {
        kind,
        device: label.to_owned(),
        motor: motor.and_then(|m| motor_names.get(m).cloned()),
        message: message.to_owned(),
    }
}

impl LoopCore {
    /// Wires the parts to the feature vectors and reads the follower's present state, which
    /// becomes the first goal (no jump on connect). Fails if a part does not answer.
    pub fn new(
        arms: TeleopArms,
        spec: &LoopSpec,
        rows: rtrb::Producer<Row>,
    ) -> Result<(Self, Arc<LoopShared>), ControlError> {
        let TeleopArms {
            leader,
            follower,
            observation_names,
            action_names,
            direction,
            max_relative_target,
        } = arms;
        if !(spec.control_hz > 0.0 && spec.control_hz.is_finite()) {
            return Err(ControlError::Config(format!(
                "control_hz must be a positive number (got {})",
                spec.control_hz
            )));
        }
        if !(spec.record_fps > 0.0 && spec.record_fps <= spec.control_hz) {
            return Err(ControlError::Config(format!(
                "record_fps must be > 0 and at most control_hz ({}); got {}",
                spec.control_hz, spec.record_fps
            )));
        }
        if follower.is_empty() {
            return Err(ControlError::Config("the follower has no motor bus".into()));
        }
        let layout = FrameLayout::new(observation_names.clone(), action_names.clone())?;
        let n_act = layout.action_len();
        let find = |names: &[String], name: &str| names.iter().position(|n| n == name);
        let has_leader = !leader.is_empty();
        let mut units = Vec::new();
        let mut slot_base = 0;
        for (role, parts) in [(Role::Leader, leader), (Role::Follower, follower)] {
            for part in parts {
                let label = part.label().to_owned();
                let motor_names = part.motor_names().to_vec();
                let goal_map = part
                    .goal_names()
                    .iter()
                    .map(|g| {
                        find(&action_names, g).ok_or_else(|| {
                            ControlError::Config(format!(
                                "{label} takes goal {g:?}, which is not an action feature"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let state_map = part
                    .state_names()
                    .iter()
                    .map(|s| match role {
                        Role::Follower => find(&observation_names, s),
                        Role::Leader => find(&action_names, s),
                    })
                    .collect();
                let n_motors = motor_names.len();
                units.push(Unit {
                    role,
                    exec: Exec::Inline(PartSlot::new(part)),
                    label,
                    motor_names,
                    goal_map,
                    state_map,
                    motor_slot_base: slot_base,
                    consecutive_errors: 0,
                });
                slot_base += n_motors + 1;
            }
        }
        if has_leader
            && !units
                .iter()
                .filter(|u| u.role == Role::Leader)
                .any(|u| u.state_map.iter().any(Option::is_some))
        {
            return Err(ControlError::Config(format!(
                "the leader reports none of the follower's action features {action_names:?}"
            )));
        }
        let present_index: Vec<Option<usize>> = action_names
            .iter()
            .map(|a| find(&observation_names, a))
            .collect();
        let labels = motor_labels(&units);
        let part_labels: Vec<String> = units.iter().map(|u| u.label.clone()).collect();
        let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(64);
        let shared = Arc::new(LoopShared {
            commands: Mutex::new(cmd_tx),
            next_seq: AtomicU64::new(1),
            acked: AtomicU64::new(0),
            running: AtomicBool::new(true),
            telemetry: Mutex::new(TelemetryPair {
                run: Telemetry::new(labels.clone(), part_labels.clone()),
                episode: Telemetry::new(labels.clone(), part_labels.clone()),
            }),
            events: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
        });
        let mut core = Self {
            units,
            observation: vec![0.0; layout.state_len()],
            action: vec![0.0; n_act],
            next_action: vec![0.0; n_act],
            direction: (0..n_act)
                .map(|i| direction.get(i).copied().unwrap_or(1.0))
                .collect(),
            max_relative: (0..n_act)
                .map(|i| max_relative_target.get(i).copied().flatten())
                .collect(),
            present_index,
            has_leader,
            rows,
            shared: shared.clone(),
            commands: cmd_rx,
            tel: TelemetryPair {
                run: Telemetry::new(labels.clone(), part_labels.clone()),
                episode: Telemetry::new(labels, part_labels),
            },
            published_ns: 0,
            recording: false,
            episode: -1,
            episode_start_ns: None,
            episode_rows: 0,
            tick_index: 0,
            row_period_ns: 1e9 / spec.record_fps,
            max_consecutive_errors: spec.max_consecutive_errors.max(1),
            stop_requested: false,
            in_flight: false,
            leader_ok: true,
        };
        core.read_initial_state()?;
        Ok((core, shared))
    }

    /// Present follower state → observation and first goals; leader answers too.
    fn read_initial_state(&mut self) -> Result<(), ControlError> {
        for unit in &mut self.units {
            let Exec::Inline(slot) = &mut unit.exec else {
                continue;
            };
            if let Err(e) = slot.part.read_state(&mut slot.state) {
                return Err(ControlError::Device {
                    failure: failure_of(
                        &unit.label,
                        &unit.motor_names,
                        e.kind,
                        e.motor,
                        &e.message,
                    ),
                });
            }
            if unit.role == Role::Follower {
                for (i, obs) in unit.state_map.iter().enumerate() {
                    if let (Some(o), Some(v)) = (obs, slot.state.get(i)) {
                        if let Some(dst) = self.observation.get_mut(*o) {
                            *dst = *v;
                        }
                    }
                }
            }
        }
        for (a, present) in self.present_index.iter().enumerate() {
            let v = present
                .and_then(|o| self.observation.get(o).copied())
                .unwrap_or(0.0);
            self.action[a] = v;
            self.next_action[a] = v;
        }
        Ok(())
    }

    /// Moves every part onto its own thread, so that no tick waits on a bus round trip (see
    /// [`LoopCore::tick`]). Call on the control thread; `setup` runs first on each worker
    /// (realtime policy).
    pub fn parallelize(
        &mut self,
        setup: impl Fn() + Send + Clone + 'static,
    ) -> Result<(), ControlError> {
        let controller = std::thread::current();
        for unit in self.units.iter_mut() {
            let exec = std::mem::replace(
                &mut unit.exec,
                Exec::Inline(PartSlot::new(Box::new(NoPart))),
            );
            unit.exec = match exec {
                Exec::Inline(slot) => Exec::Thread(
                    Worker::spawn(slot, controller.clone(), setup.clone())
                        .map_err(ControlError::Thread)?,
                ),
                other => other,
            };
        }
        Ok(())
    }

    /// Goals sent on the latest tick, in action order.
    pub fn action(&self) -> &[f32] {
        &self.action
    }

    /// Follower state from the latest tick, in observation order.
    pub fn observation(&self) -> &[f32] {
        &self.observation
    }

    /// The loop's telemetry of the whole run, as recorded (the owner sees it published).
    pub fn run_telemetry(&self) -> &Telemetry {
        &self.tel.run
    }

    /// The loop's telemetry of the current (or last) episode.
    pub fn episode_telemetry(&self) -> &Telemetry {
        &self.tel.episode
    }

    pub fn shared(&self) -> &Arc<LoopShared> {
        &self.shared
    }

    fn handle_commands(&mut self, wake_ns: u64) {
        while let Ok(cmd) = self.commands.pop() {
            let seq = match cmd {
                Command::StartEpisode { seq, episode } => {
                    self.start_episode(episode);
                    seq
                }
                Command::EndEpisode { seq, episode } => {
                    if self.recording && self.episode == episode {
                        self.close_episode();
                    }
                    // The owner reads the episode's report once this is acknowledged.
                    self.publish(true);
                    seq
                }
                Command::Action { seq, values } => {
                    if !self.has_leader {
                        for (dst, v) in self.next_action.iter_mut().zip(values.iter()) {
                            *dst = *v;
                        }
                        self.clamp_next_action();
                    }
                    seq
                }
                Command::Stop { seq } => {
                    self.stop_requested = true;
                    self.push_event(wake_ns, "control loop", None, "stop requested".into());
                    seq
                }
            };
            self.shared.acked.store(seq, Ordering::Release);
        }
    }

    /// Opens episode `episode` directly (the thread-driven loop does this through
    /// [`TeleopLoop::start_episode`]); for driving the core by hand.
    pub fn start_episode(&mut self, episode: i64) {
        if self.recording {
            self.close_episode();
        }
        self.recording = true;
        self.episode = episode;
        self.episode_start_ns = None;
        self.episode_rows = 0;
        self.tel.episode.reset();
        self.publish(true);
    }

    fn close_episode(&mut self) {
        self.recording = false;
        // The marker is what lets the owner know all rows of the episode are queued; if the
        // ring is full we retry briefly (the builder drains it every few ms).
        let marker = Row::episode_end(self.episode);
        let mut tries = 0;
        while self.rows.push(marker).is_err() && tries < 1000 {
            tries += 1;
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn push_event(&self, time_ns: u64, device: &str, motor: Option<String>, reason: String) {
        let response = if self.stop_requested {
            "loop stops; follower brought to its stop state".to_owned()
        } else {
            "follower keeps its last goal".to_owned()
        };
        log::warn!("{device}: {reason} ({response})");
        lock(&self.shared.events).push(SafetyEvent {
            time_ns,
            device: device.to_owned(),
            motor,
            reason,
            response,
        });
    }

    fn clamp_next_action(&mut self) {
        for a in 0..self.next_action.len() {
            let (Some(limit), Some(Some(o))) = (self.max_relative[a], self.present_index.get(a))
            else {
                continue;
            };
            let Some(present) = self.observation.get(*o).copied() else {
                continue;
            };
            let v = self.next_action[a];
            self.next_action[a] = v.clamp(present - limit, present + limit);
        }
    }

    /// This tick's goals: the leader's values collected since the last tick, clamped to the
    /// follower's present position (or, if the leader failed, the goals already sent).
    fn settle_goals(&mut self) {
        if self.has_leader {
            if self.leader_ok {
                self.clamp_next_action();
            } else {
                self.next_action.copy_from_slice(&self.action);
            }
        }
        self.leader_ok = true;
        std::mem::swap(&mut self.action, &mut self.next_action);
        self.next_action.copy_from_slice(&self.action);
    }

    /// Takes the results of the finished rounds of threaded (`threaded`) or inline parts:
    /// follower state into the observation, leader state into the next goals, retries, errors
    /// and round times into telemetry. Returns whether a part failed too often (the loop must
    /// stop; the failure and its event are recorded).
    fn collect(&mut self, wake_ns: u64, threaded: bool) -> bool {
        let mut fatal: Option<(LoopFailure, String)> = None;
        for (part_index, unit) in self.units.iter_mut().enumerate() {
            let mut guard;
            let slot: &mut PartSlot = match &mut unit.exec {
                Exec::Inline(slot) if !threaded => slot,
                Exec::Thread(w) if threaded => {
                    guard = w.slot();
                    &mut guard
                }
                _ => continue,
            };
            self.tel.run.record_round(part_index, slot.round_ns);
            if self.recording {
                self.tel.episode.record_round(part_index, slot.round_ns);
            }
            for (m, r) in slot.retries.iter().enumerate() {
                if *r > 0 {
                    let motor_slot = unit.motor_slot_base + m;
                    self.tel.run.record_retries(motor_slot, u64::from(*r));
                    self.tel.episode.record_retries(motor_slot, u64::from(*r));
                }
            }
            match &slot.result {
                Ok(()) => {
                    unit.consecutive_errors = 0;
                    match unit.role {
                        Role::Follower => {
                            for (v, o) in slot.state.iter().zip(&unit.state_map) {
                                if let Some(dst) = o.and_then(|o| self.observation.get_mut(o)) {
                                    *dst = *v;
                                }
                            }
                        }
                        Role::Leader => {
                            for (v, a) in slot.state.iter().zip(&unit.state_map) {
                                if let Some(a) = *a {
                                    let dir = self.direction.get(a).copied().unwrap_or(1.0);
                                    if let Some(dst) = self.next_action.get_mut(a) {
                                        *dst = *v * dir;
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    unit.consecutive_errors += 1;
                    if unit.role == Role::Leader {
                        self.leader_ok = false;
                    }
                    let motor_slot =
                        unit.motor_slot_base + e.motor.unwrap_or(unit.motor_names.len());
                    self.tel.run.record_error(motor_slot);
                    self.tel.episode.record_error(motor_slot);
                    if unit.consecutive_errors >= self.max_consecutive_errors && fatal.is_none() {
                        let failure =
                            failure_of(&unit.label, &unit.motor_names, e.kind, e.motor, &e.message);
                        let what = if unit.role == Role::Leader {
                            "leader lost"
                        } else {
                            "follower bus failing"
                        };
                        let reason = format!(
                            "{what}: {} consecutive failed exchanges, last: {}",
                            unit.consecutive_errors, e
                        );
                        fatal = Some((failure, reason));
                    }
                }
            }
        }
        let Some((failure, reason)) = fatal else {
            return false;
        };
        self.stop_requested = true;
        self.push_event(wake_ns, &failure.device, failure.motor.clone(), reason);
        let mut f = lock(&self.shared.failure);
        if f.is_none() {
            *f = Some(failure);
        }
        true
    }

    /// One tick. Parts on worker threads are never waited for on the tick that started their
    /// round: the tick first collects the rounds dispatched on the previous tick (they crossed
    /// the wire while the loop slept), derives this tick's goals from them, dispatches the next
    /// rounds and returns. Each bus so has a whole period for its round trip instead of what
    /// is left of the period after the wake-up, and the goals keep the latency they had (a
    /// leader value read on one tick is sent on the next). The observation of a row is the
    /// follower's state measured before the row's action was sent (lerobot's order). Inline
    /// parts (not parallelized) run and are collected within the tick.
    pub fn tick(&mut self, wake_ns: u64, lateness_ns: u64) -> TickOutcome {
        self.handle_commands(wake_ns);
        if self.stop_requested {
            return TickOutcome::Stop;
        }
        let mut stop = false;
        if self.in_flight {
            for unit in &self.units {
                if let Exec::Thread(w) = &unit.exec {
                    w.wait();
                }
            }
            self.in_flight = false;
            stop = self.collect(wake_ns, true);
        }
        if !stop {
            self.settle_goals();
            for unit in &mut self.units {
                if let Exec::Thread(w) = &unit.exec {
                    fill_goals(&mut w.slot().goal, &unit.goal_map, &self.action);
                    w.dispatch();
                    self.in_flight = true;
                }
            }
            for unit in &mut self.units {
                if let Exec::Inline(slot) = &mut unit.exec {
                    fill_goals(&mut slot.goal, &unit.goal_map, &self.action);
                    slot.run();
                }
            }
            stop = self.collect(wake_ns, false);
        }
        let busy_ns = now_ns().saturating_sub(wake_ns);

        // Rows follow the dataset clock: every row whose time has come by this tick's wake-up
        // is emitted now. A late tick that crossed several row times emits the missed rows with
        // this (latest) state and counts them as repeats, so the episode's time is never
        // compressed when the loop runs behind its rate.
        let mut rows_pushed = 0u64;
        let mut rows_dropped = 0u64;
        let mut rows_repeated = 0u64;
        if self.recording {
            let t0 = *self.episode_start_ns.get_or_insert(wake_ns);
            let mut emitted_now = 0u64;
            while t0 + (self.episode_rows as f64 * self.row_period_ns).round() as u64 <= wake_ns {
                let mut row = Row::EMPTY;
                row.kind = RowKind::Data;
                row.capture_time_ns = wake_ns as i64;
                row.tick_index = self.tick_index;
                row.lateness_ns = lateness_ns as i64;
                row.tick_busy_ns = busy_ns as i64;
                row.episode_index = self.episode;
                for (d, s) in row.state.iter_mut().zip(&self.observation) {
                    *d = *s;
                }
                for (d, s) in row.action.iter_mut().zip(&self.action) {
                    *d = *s;
                }
                if self.rows.push(row).is_ok() {
                    rows_pushed += 1;
                    rows_repeated += u64::from(emitted_now > 0);
                } else {
                    rows_dropped += 1;
                }
                emitted_now += 1;
                self.episode_rows += 1;
            }
        }
        self.tick_index += 1;

        self.tel.run.record_tick(wake_ns, lateness_ns, busy_ns);
        self.tel
            .run
            .add_rows(rows_pushed, rows_dropped, rows_repeated);
        if self.recording {
            self.tel.episode.record_tick(wake_ns, lateness_ns, busy_ns);
            self.tel
                .episode
                .add_rows(rows_pushed, rows_dropped, rows_repeated);
        }
        if stop || wake_ns.saturating_sub(self.published_ns) >= PUBLISH_EVERY_NS {
            self.publish(stop);
            self.published_ns = wake_ns;
        }
        if stop {
            TickOutcome::Stop
        } else {
            TickOutcome::Continue
        }
    }

    /// Counts deadlines missed entirely.
    fn record_overruns(&mut self, missed: u64) {
        self.tel.run.overruns += missed;
        if self.recording {
            self.tel.episode.overruns += missed;
        }
    }

    /// Copies the loop's telemetry to the owner's side. Periodic publications (`wait` false)
    /// skip a turn when the owner holds the lock rather than wait: a tick never waits for a
    /// thread that may not be scheduled. Episode boundaries and the end wait, so the reports
    /// the owner reads there are exact. Copying reuses the owner's buffers (no allocation).
    fn publish(&mut self, wait: bool) {
        let guard = if wait {
            Some(lock(&self.shared.telemetry))
        } else {
            self.shared.telemetry.try_lock().ok()
        };
        if let Some(mut shared) = guard {
            shared.run.copy_from(&self.tel.run);
            shared.episode.copy_from(&self.tel.episode);
        }
    }

    /// Ends the loop: closes an open episode, takes the parts back from their threads and
    /// brings each to its stop state. Returns the parts (their ports close when dropped).
    pub fn finish(mut self, stop_action: StopAction) -> Vec<Box<dyn Part>> {
        if self.recording {
            self.close_episode();
        }
        if self.in_flight {
            // A part is handed back only between rounds.
            for unit in &self.units {
                if let Exec::Thread(w) = &unit.exec {
                    w.wait();
                }
            }
            self.in_flight = false;
        }
        let mut parts = Vec::new();
        for unit in self.units.drain(..) {
            let slot = match unit.exec {
                Exec::Inline(slot) => Some(slot),
                Exec::Thread(w) => w.into_slot(),
            };
            let Some(mut slot) = slot else { continue };
            let action = match unit.role {
                Role::Leader => StopAction::Limp,
                Role::Follower => stop_action,
            };
            if let Err(e) = slot.part.stop(action) {
                log::warn!("{}: could not reach its stop state: {e}", unit.label);
                lock(&self.shared.events).push(SafetyEvent {
                    time_ns: now_ns(),
                    device: unit.label.clone(),
                    motor: e.motor.and_then(|m| unit.motor_names.get(m).cloned()),
                    reason: format!("stop failed: {e}"),
                    response: "check the arm; power it down if it is not safe".into(),
                });
            }
            parts.push(slot.part);
        }
        self.publish(true);
        self.shared.running.store(false, Ordering::Release);
        parts
    }
}

/// Stand-in used while a part moves onto its worker thread.
struct NoPart;

impl Part for NoPart {
    fn label(&self) -> &str {
        "no part"
    }
    fn motor_names(&self) -> &[String] {
        &[]
    }
    fn goal_names(&self) -> &[String] {
        &[]
    }
    fn state_names(&self) -> &[String] {
        &[]
    }
    fn exchange(
        &mut self,
        _: &[f32],
        _: &mut [f32],
        _: &mut [u32],
    ) -> Result<(), crate::arm::part::PartError> {
        Ok(())
    }
    fn read_state(&mut self, _: &mut [f32]) -> Result<(), crate::arm::part::PartError> {
        Ok(())
    }
    fn stop(&mut self, _: StopAction) -> Result<(), crate::arm::part::PartError> {
        Ok(())
    }
}

/// The control thread; it hands the parts back when it ends.
type ControlThread = JoinHandle<Vec<Box<dyn Part>>>;

/// The loop running on its own thread, with the batch builder behind it.
pub struct TeleopLoop {
    shared: Arc<LoopShared>,
    thread: Mutex<Option<ControlThread>>,
    builder: Mutex<Option<BatchBuilder>>,
    queue: Arc<BatchQueue>,
    layout: FrameLayout,
    period_ns: u64,
    realtime: ActiveRealtime,
    /// This loop switched the process's simulators to SCHED_FIFO (undone on stop).
    sims_realtime: bool,
    next_episode: Mutex<i64>,
    open_episode: Mutex<Option<i64>>,
}

impl TeleopLoop {
    /// Reads the follower's present state (first goal = where it is), starts the batch
    /// builder and the control thread with the requested scheduling.
    pub fn start(arms: TeleopArms, spec: LoopSpec) -> Result<Self, ControlError> {
        let layout = FrameLayout::new(arms.observation_names.clone(), arms.action_names.clone())?;
        let (row_tx, row_rx) = row_ring(spec.ring_capacity.max(16));
        let (mut core, shared) = LoopCore::new(arms, &spec, row_tx)?;
        let builder = BatchBuilder::spawn(&layout, spec.builder, row_rx)?;
        let queue = builder.queue();
        let period_ns = (1e9 / spec.control_hz).round() as u64;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_spec = spec.clone();
        let thread = std::thread::Builder::new()
            .name("openk-control".into())
            .spawn(move || {
                let active =
                    match rt::apply_to_current_thread(thread_spec.realtime, thread_spec.cpu) {
                        Ok(active) => active,
                        Err(e) => {
                            let _ = ready_tx.send(Err(ControlError::Realtime(e)));
                            return core.finish(thread_spec.stop_action);
                        }
                    };
                if thread_spec.parallel {
                    let fifo = active.policy == "fifo";
                    let setup = move || {
                        // Bus threads get the loop's policy so they are not starved by it.
                        if fifo {
                            let _ = rt::apply_to_current_thread(RealtimeMode::Auto, None);
                        }
                    };
                    if let Err(e) = core.parallelize(setup) {
                        let _ = ready_tx.send(Err(e));
                        return core.finish(thread_spec.stop_action);
                    }
                }
                let _ = ready_tx.send(Ok(active));
                run_ticks(&mut core, period_ns, thread_spec.spin_ns);
                core.finish(thread_spec.stop_action)
            })
            .map_err(ControlError::Thread)?;
        let realtime = match ready_rx.recv() {
            Ok(Ok(active)) => active,
            Ok(Err(e)) => {
                let _ = thread.join();
                builder.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(ControlError::NotRunning);
            }
        };
        // Simulated devices in this process stand for hardware with its own MCU: when the loop
        // runs realtime, so do they (a loop waiting on a descheduled simulator thread would
        // measure the host, not the loop).
        let sims_realtime = realtime.policy == "fifo" && !crate::sim::pty::realtime();
        if sims_realtime {
            crate::sim::pty::set_realtime(true);
        }
        if let Some(reason) = &realtime.fallback_reason {
            log::info!("control loop runs without SCHED_FIFO ({reason}); realtime=auto carries on");
        }
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
            builder: Mutex::new(Some(builder)),
            queue,
            layout,
            period_ns,
            realtime,
            sims_realtime,
            next_episode: Mutex::new(0),
            open_episode: Mutex::new(None),
        })
    }

    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }

    pub fn schema(&self) -> arrow_schema::SchemaRef {
        crate::record::frame_schema(&self.layout)
    }

    pub fn realtime(&self) -> &ActiveRealtime {
        &self.realtime
    }

    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Why the loop stopped on its own, if it did.
    pub fn failure(&self) -> Option<LoopFailure> {
        lock(&self.shared.failure).clone()
    }

    pub fn events(&self) -> Vec<SafetyEvent> {
        lock(&self.shared.events).clone()
    }

    fn check_running(&self) -> Result<(), ControlError> {
        if let Some(failure) = self.failure() {
            return Err(ControlError::Stopped { failure });
        }
        if !self.is_running() {
            return Err(ControlError::NotRunning);
        }
        Ok(())
    }

    fn send(
        &self,
        make: impl FnOnce(u64) -> Command,
        timeout: Duration,
    ) -> Result<(), ControlError> {
        self.check_running()?;
        let seq = self.shared.next_seq.fetch_add(1, Ordering::AcqRel);
        let deadline = Instant::now() + timeout;
        let mut cmd = make(seq);
        loop {
            match lock(&self.shared.commands).push(cmd) {
                Ok(()) => break,
                Err(rtrb::PushError::Full(c)) => cmd = c,
            }
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout {
                    what: "accept the command",
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        while self.shared.acked.load(Ordering::Acquire) < seq {
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout {
                    what: "acknowledge the command",
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// Starts recording rows into a new episode; returns its index (0, 1, ...).
    pub fn start_episode(&self, timeout: Duration) -> Result<i64, ControlError> {
        let mut next = lock(&self.next_episode);
        let episode = *next;
        self.send(|seq| Command::StartEpisode { seq, episode }, timeout)?;
        *next += 1;
        *lock(&self.open_episode) = Some(episode);
        Ok(episode)
    }

    /// Stops recording; once this returns, every row of the episode is in the batch queue.
    /// Returns the episode's telemetry.
    pub fn end_episode(&self, timeout: Duration) -> Result<TelemetryReport, ControlError> {
        let Some(episode) = *lock(&self.open_episode) else {
            return Err(ControlError::Config(
                "no episode is being recorded; call start_episode first".into(),
            ));
        };
        self.send(|seq| Command::EndEpisode { seq, episode }, timeout)?;
        if !self.queue.wait_episode_flushed(episode, timeout) {
            return Err(ControlError::Timeout {
                what: "flush the episode's rows",
                timeout,
            });
        }
        *lock(&self.open_episode) = None;
        Ok(self.episode_telemetry())
    }

    /// Telemetry of the whole run so far.
    pub fn telemetry(&self) -> TelemetryReport {
        let t = lock(&self.shared.telemetry);
        t.run.report(self.period_ns, &self.realtime.to_string())
    }

    /// Telemetry of the current (or last) episode.
    pub fn episode_telemetry(&self) -> TelemetryReport {
        let t = lock(&self.shared.telemetry);
        t.episode.report(self.period_ns, &self.realtime.to_string())
    }

    /// Next batch of rows, waiting up to `timeout`. After the loop stopped on a failure, the
    /// remaining batches are still returned, then the failure is raised.
    pub fn next_batch(&self, timeout: Duration) -> Result<Option<RecordBatch>, ControlError> {
        if let Some(batch) = self.queue.pop(timeout) {
            return Ok(Some(batch));
        }
        if self.queue.is_empty() {
            if let Some(failure) = self.failure() {
                if self.queue.is_closed() {
                    return Err(ControlError::Stopped { failure });
                }
            }
        }
        Ok(None)
    }

    /// Replay: the follower's next goals (action order). Only when the loop has no leader.
    pub fn send_action(&self, values: &[f32], timeout: Duration) -> Result<(), ControlError> {
        if values.len() != self.layout.action_len() {
            return Err(ControlError::Config(format!(
                "an action has {} values ({:?}); got {}",
                self.layout.action_len(),
                self.layout.action_names,
                values.len()
            )));
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(ControlError::Config(format!(
                "action value for {} is not a finite number",
                self.layout
                    .action_names
                    .get(bad)
                    .map_or("?", String::as_str)
            )));
        }
        let mut buf = [0.0f32; MAX_ACTION];
        for (d, s) in buf.iter_mut().zip(values) {
            *d = *s;
        }
        self.send(|seq| Command::Action { seq, values: buf }, timeout)
    }

    /// Stops the loop safely (follower holds or goes limp), waits for the builder to flush.
    /// Safe to call more than once.
    pub fn stop(&self) {
        let Some(thread) = lock(&self.thread).take() else {
            return;
        };
        if self.is_running() {
            let _ = self.send(|seq| Command::Stop { seq }, Duration::from_secs(2));
        }
        // Dropping the parts closes their ports.
        drop(thread.join());
        if let Some(builder) = lock(&self.builder).take() {
            builder.join();
        }
        if self.sims_realtime {
            crate::sim::pty::set_realtime(false);
        }
    }
}

impl Drop for TeleopLoop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The timed part: absolute deadlines, sleep-then-spin, overrun accounting.
fn run_ticks(core: &mut LoopCore, period_ns: u64, spin_ns: u64) {
    let mut deadline = now_ns() + period_ns;
    loop {
        let wake = rt::sleep_until(deadline, spin_ns);
        let lateness = wake.saturating_sub(deadline);
        if core.tick(wake, lateness) == TickOutcome::Stop {
            return;
        }
        deadline += period_ns;
        let now = now_ns();
        if now > deadline {
            // Missed whole periods: skip them instead of bursting to catch up.
            let missed = (now - deadline) / period_ns + 1;
            deadline += missed * period_ns;
            core.record_overruns(missed);
        }
    }
}
