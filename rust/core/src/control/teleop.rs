//! The teleop/record loop: [`LoopCore`] is one tick's work (no threads, no allocation) and
//! [`TeleopLoop`] runs it on a dedicated thread and talks to it through lock-free commands.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use super::rt::{self, ActiveRealtime, RealtimeError, RealtimeMode};
use super::schedule::{GoalSchedule, Pushed, SchedItem};
use super::telemetry::{Telemetry, TelemetryReport};
use super::workers::{PartSlot, Vacant, Worker};
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
    /// Start ramp: once the first leader value or scheduled action exists, the goal blends from
    /// the follower's pose at that moment to the live target over this time (0: no ramp).
    pub start_ramp_ns: u64,
    /// The start ramp advances in steps this far apart (0: every tick, the smoothest).
    pub start_ramp_step_ns: u64,
    /// End ramp: when the loop stops (request, leader lost, invalid actions), the goal moves from
    /// the goal in force to home (0 for every `.pos` action, as the reference's
    /// `build_home_action`) over this time, holds there `end_settle_ns`, and only then does the
    /// follower take its [`StopAction`]. 0: no return home, the follower stops where it is. A
    /// failing follower bus always stops at once.
    pub end_ramp_ns: u64,
    /// The end ramp advances in steps this far apart (0: every tick).
    pub end_ramp_step_ns: u64,
    /// How long home is held after the end ramp before the stop action.
    pub end_settle_ns: u64,
    /// Largest goal speed per action (units per second; by action index, None or missing:
    /// unlimited), applied to the scheduled goals of a loop without a leader.
    pub max_goal_speed: Vec<Option<f32>>,
    /// Smallest and largest valid value per action (by action index; None or missing: only
    /// finiteness is checked). A scheduled action outside is refused like a NaN.
    pub action_limits: Vec<Option<(f32, f32)>>,
    /// Invalid scheduled actions (NaN, infinite, out of range) in a row before the loop stops.
    pub max_invalid_actions: u32,
    /// Scheduled actions the loop holds ahead (rows beyond wait on the owner's side).
    pub schedule_capacity: usize,
    /// What drives the goals at the start (None: the leader when there is one, else the
    /// schedule). A loop with a leader that starts on the schedule takes actions like a loop
    /// without one, and [`TeleopLoop::set_source`] hands control between the two (DAgger).
    pub initial_source: Option<GoalSource>,
    /// A change of goal source blends from the goal in force to the new source's goal over this
    /// time (0: at once, a jump when the two differ).
    pub handover_ns: u64,
}

/// What the follower's goals follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalSource {
    /// The leader arm's positions (teleoperation, a human intervention).
    Leader,
    /// The timed actions of [`TeleopLoop::send_actions`] (a policy, a replay).
    Schedule,
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
            start_ramp_ns: 0,
            start_ramp_step_ns: 0,
            end_ramp_ns: 0,
            end_ramp_step_ns: 0,
            end_settle_ns: 0,
            max_goal_speed: Vec::new(),
            action_limits: Vec::new(),
            max_invalid_actions: 5,
            schedule_capacity: 4096,
            initial_source: None,
            handover_ns: 500_000_000,
        }
    }
}

/// The arms the loop drives and how leader values become follower goals.
pub struct TeleopArms {
    /// Leader parts; empty for replay and rollout (goals come from
    /// [`TeleopLoop::send_actions`]).
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
    StartEpisode {
        seq: u64,
        episode: i64,
    },
    EndEpisode {
        seq: u64,
        episode: i64,
    },
    /// The first stop request ramps home (when configured); a second one skips the rest of it.
    Stop {
        seq: u64,
    },
    SetSource {
        seq: u64,
        source: GoalSource,
    },
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
    /// Scheduled actions to the loop (see [`TeleopLoop::send_actions`]).
    schedule: Mutex<rtrb::Producer<SchedItem>>,
    /// Scheduled rows the loop has finished with (reached, replaced, stale or refused).
    schedule_done: AtomicU64,
    /// Scheduled items waiting for room in the ring (a replay longer than the schedule's
    /// capacity), handed over by [`LoopShared::feed`].
    backlog: Mutex<std::collections::VecDeque<SchedItem>>,
    /// Scheduled rows handed over so far (ring or backlog).
    schedule_sent: AtomicU64,
    action_len: usize,
}

impl LoopShared {
    /// A timed sequence of actions for a loop without a leader (a policy's action chunk, a
    /// whole episode to replay): `rows` holds whole actions back to back in action order. Row i
    /// is due at `start_ns + i / record_fps` (CLOCK_MONOTONIC ns, see [`crate::clock`]); `None`:
    /// the first row is due one row period after the loop receives it. The sequence replaces
    /// what was scheduled from its start on; the goal moves linearly from the goal in force to
    /// each row, reaching it at its time. Rows already due when the loop receives them are
    /// dropped and counted late; NaN, infinite or out-of-range values are refused by the loop
    /// (a [`SafetyEvent`]; too many in a row stop it). Never waits for the loop: rows beyond the
    /// ring's room wait here and are handed over by [`LoopShared::feed`] (called by
    /// [`TeleopLoop::wait_idle`] and [`TeleopLoop::next_batch`]).
    pub fn send_actions(&self, rows: &[f32], start_ns: Option<u64>) -> Result<(), ControlError> {
        let n = self.action_len;
        if n == 0 || rows.is_empty() || rows.len() % n != 0 {
            return Err(ControlError::Config(format!(
                "an action has {n} values; got {} values, not a whole number of actions",
                rows.len()
            )));
        }
        let mut backlog = lock(&self.backlog);
        backlog.push_back(SchedItem::Begin { start_ns });
        for row in rows.chunks_exact(n) {
            let mut values = [0.0f32; MAX_ACTION];
            values[..n].copy_from_slice(row);
            backlog.push_back(SchedItem::Row { values });
        }
        self.schedule_sent
            .fetch_add((rows.len() / n) as u64, Ordering::AcqRel);
        self.feed_locked(&mut backlog);
        Ok(())
    }

    /// Hands waiting scheduled rows to the loop as far as its ring has room.
    pub fn feed(&self) {
        let mut backlog = lock(&self.backlog);
        self.feed_locked(&mut backlog);
    }

    fn feed_locked(&self, backlog: &mut std::collections::VecDeque<SchedItem>) {
        if backlog.is_empty() {
            return;
        }
        let mut ring = lock(&self.schedule);
        while let Some(item) = backlog.front() {
            if ring.push(*item).is_err() {
                break;
            }
            backlog.pop_front();
        }
    }

    /// Scheduled actions not yet reached (nor replaced, dropped as stale or refused).
    pub fn pending_actions(&self) -> u64 {
        self.schedule_sent
            .load(Ordering::Acquire)
            .saturating_sub(self.schedule_done.load(Ordering::Acquire))
    }

    /// Safety events so far.
    pub fn events(&self) -> Vec<SafetyEvent> {
        lock(&self.events).clone()
    }

    /// Why the loop stopped on its own, if it did.
    pub fn failure(&self) -> Option<LoopFailure> {
        lock(&self.failure).clone()
    }

    /// Hands the goals to `source` without waiting for the loop to take it (for loops driven by
    /// hand; [`TeleopLoop::set_source`] waits for the acknowledgement). False if the command
    /// ring is full.
    pub fn set_source(&self, source: GoalSource) -> bool {
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        lock(&self.commands)
            .push(Command::SetSource { seq, source })
            .is_ok()
    }

    /// Asks the loop to stop, without waiting for it to take the request (for loops driven by
    /// hand; [`TeleopLoop::request_stop`] waits for the acknowledgement).
    pub fn request_stop(&self) -> bool {
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        lock(&self.commands).push(Command::Stop { seq }).is_ok()
    }
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
    /// Goals for the next tick, being settled.
    next_action: Vec<f32>,
    /// What the goals follow: the leader's latest values (direction applied) or the schedule.
    target: Vec<f32>,
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
    action_names: Vec<String>,
    /// Timed goals of a loop without a leader, and the ring they arrive by.
    schedule: GoalSchedule,
    schedule_rx: rtrb::Consumer<SchedItem>,
    max_goal_speed: Vec<Option<f32>>,
    action_limits: Vec<Option<(f32, f32)>>,
    /// Scheduled goals after the speed limit, and when they were last settled.
    limited: Vec<f32>,
    limited_ns: u64,
    invalid_in_a_row: u32,
    max_invalid_actions: u32,
    /// A target exists (a leader value was read, or an action was scheduled).
    has_target: bool,
    start_ramp: Ramp,
    /// When the start ramp began (the first target), and whether it is over.
    start_ramp_t0: Option<u64>,
    start_ramp_done: bool,
    /// Goals in force when a ramp began.
    ramp_from: Vec<f32>,
    end_ramp: Ramp,
    end_settle_ns: u64,
    /// Home value per action (None: hold the goal in force).
    home: Vec<Option<f32>>,
    /// What the goals follow now; a change blends over `handover` from `handover_from`.
    source: GoalSource,
    /// The schedule's goal at this tick (the leader's lives in `target`).
    sched_target: Vec<f32>,
    handover: Ramp,
    handover_t0: Option<u64>,
    handover_from: Vec<f32>,
    /// The handover's α at the last tick, and the most it may grow in one tick (one control
    /// period's share of the handover time): after a stall the handover resumes where it
    /// was instead of jumping the goal ahead by the time the loop lost.
    handover_alpha: f32,
    handover_max_step: f32,
    /// When the return home began (the loop is stopping).
    ending_t0: Option<u64>,
    /// The end ramp's last step (home) was sent.
    home_sent: bool,
}

/// A linear move over `ns`, advancing every tick (`step_ns` 0) or in steps `step_ns` apart.
#[derive(Debug, Clone, Copy)]
struct Ramp {
    ns: u64,
    step_ns: u64,
}

impl Ramp {
    /// Fraction of the way, 0..=1, `elapsed_ns` after the ramp began. The stepped form is the
    /// reference's `ramp_action`: step i (from 1) of max(1, ⌊T/dt⌋) is sent at (i-1)·dt.
    fn alpha(&self, elapsed_ns: u64) -> f32 {
        if self.ns == 0 {
            return 1.0;
        }
        let a = match (
            self.ns.checked_div(self.step_ns),
            elapsed_ns.checked_div(self.step_ns),
        ) {
            (Some(steps), Some(step)) => (step + 1) as f64 / steps.max(1) as f64,
            _ => elapsed_ns as f64 / self.ns as f64,
        };
        a.min(1.0) as f32
    }
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
        spec.validate()?;
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
        if let Some((i, v)) = spec
            .max_goal_speed
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.filter(|v| !(v.is_finite() && *v > 0.0)).map(|v| (i, v)))
        {
            return Err(ControlError::Config(format!(
                "the goal speed limit of {} must be a positive number of units per second \
                 (got {v})",
                action_names.get(i).map_or("?", String::as_str)
            )));
        }
        let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(64);
        let capacity = spec.schedule_capacity.max(1);
        let (sched_tx, sched_rx) = rtrb::RingBuffer::new(capacity);
        let row_period_ns = 1e9 / spec.record_fps;
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
            schedule: Mutex::new(sched_tx),
            schedule_done: AtomicU64::new(0),
            backlog: Mutex::new(std::collections::VecDeque::new()),
            schedule_sent: AtomicU64::new(0),
            action_len: n_act,
        });
        let mut core = Self {
            units,
            observation: vec![0.0; layout.state_len()],
            action: vec![0.0; n_act],
            next_action: vec![0.0; n_act],
            target: vec![0.0; n_act],
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
            row_period_ns,
            max_consecutive_errors: spec.max_consecutive_errors.max(1),
            stop_requested: false,
            in_flight: false,
            leader_ok: true,
            schedule: GoalSchedule::new(n_act, capacity, row_period_ns, &[]),
            schedule_rx: sched_rx,
            max_goal_speed: (0..n_act)
                .map(|i| spec.max_goal_speed.get(i).copied().flatten())
                .collect(),
            action_limits: (0..n_act)
                .map(|i| spec.action_limits.get(i).copied().flatten())
                .collect(),
            limited: vec![0.0; n_act],
            limited_ns: 0,
            invalid_in_a_row: 0,
            max_invalid_actions: spec.max_invalid_actions.max(1),
            has_target: false,
            start_ramp: Ramp {
                ns: spec.start_ramp_ns,
                step_ns: spec.start_ramp_step_ns,
            },
            start_ramp_t0: None,
            start_ramp_done: spec.start_ramp_ns == 0,
            ramp_from: vec![0.0; n_act],
            end_ramp: Ramp {
                ns: spec.end_ramp_ns,
                step_ns: spec.end_ramp_step_ns,
            },
            end_settle_ns: spec.end_settle_ns,
            home: action_names
                .iter()
                .map(|a| a.ends_with(".pos").then_some(0.0))
                .collect(),
            ending_t0: None,
            home_sent: false,
            action_names,
            source: spec.initial_source.unwrap_or(if has_leader {
                GoalSource::Leader
            } else {
                GoalSource::Schedule
            }),
            sched_target: vec![0.0; n_act],
            handover: Ramp {
                ns: spec.handover_ns,
                step_ns: 0,
            },
            handover_t0: None,
            handover_from: vec![0.0; n_act],
            handover_alpha: 0.0,
            handover_max_step: if spec.handover_ns == 0 {
                1.0
            } else {
                (1e9 / spec.control_hz / spec.handover_ns as f64).min(1.0) as f32
            },
        };
        if core.source == GoalSource::Leader && !core.has_leader {
            return Err(ControlError::Config(
                "the goals cannot follow a leader: the loop has no leader arm".into(),
            ));
        }
        core.read_initial_state()?;
        Ok((core, shared))
    }

    /// Present follower state → observation and first goals; leader answers too.
    /// A late or garbled reply (a busy machine) is asked again, as the ticks would: up to the
    /// error budget of failed exchanges in a row.
    fn read_initial_state(&mut self) -> Result<(), ControlError> {
        let budget = self.max_consecutive_errors;
        for unit in &mut self.units {
            let Exec::Inline(slot) = &mut unit.exec else {
                continue;
            };
            let mut failed = 0;
            let read = loop {
                match slot.part.read_state(&mut slot.state) {
                    Err(e)
                        if matches!(e.kind, FaultKind::Timeout | FaultKind::Protocol)
                            && failed + 1 < budget =>
                    {
                        failed += 1
                    }
                    read => break read,
                }
            };
            if let Err(e) = read {
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
            self.target[a] = v;
            self.sched_target[a] = v;
            self.limited[a] = v;
        }
        self.schedule.set_goal(&self.action);
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
                Exec::Inline(PartSlot::new(Box::new(Vacant("no part")))),
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
                Command::SetSource { seq, source } => {
                    self.switch_source(wake_ns, source);
                    seq
                }
                Command::Stop { seq } => {
                    if self.ending_t0.is_some() {
                        self.stop_requested = true;
                        self.push_event(
                            wake_ns,
                            "control loop",
                            None,
                            "stop requested again: the return home is cut short".into(),
                        );
                    } else {
                        self.begin_stop(wake_ns);
                        self.push_event(wake_ns, "control loop", None, "stop requested".into());
                    }
                    seq
                }
            };
            self.shared.acked.store(seq, Ordering::Release);
        }
    }

    /// What drives the goals now.
    pub fn source(&self) -> GoalSource {
        self.source
    }

    /// Hands the goals to `source`: they blend from the goal in force to the new source's goal
    /// over the handover time. Handing them to the schedule starts it from the goal in force
    /// with nothing scheduled (the goal holds until an action arrives); while the leader drives,
    /// scheduled actions are dropped. Refused (an event) without a leader arm.
    pub fn switch_source(&mut self, wake_ns: u64, source: GoalSource) {
        if source == self.source {
            return;
        }
        if source == GoalSource::Leader && !self.has_leader {
            self.push_event(
                wake_ns,
                "control loop",
                None,
                "the goals cannot follow a leader: the loop has no leader arm".into(),
            );
            return;
        }
        self.source = source;
        self.handover_from.copy_from_slice(&self.action);
        self.handover_t0 = Some(wake_ns);
        self.handover_alpha = 0.0;
        if source == GoalSource::Schedule {
            self.schedule.hold(wake_ns, &self.action);
            self.limited.copy_from_slice(&self.action);
            self.limited_ns = 0;
            self.sched_target.copy_from_slice(&self.action);
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

    /// The loop is to stop: it returns home first when an end ramp is configured (and the
    /// follower works), else it stops on this tick.
    fn begin_stop(&mut self, wake_ns: u64) {
        if self.ending_t0.is_some() || self.stop_requested {
            return;
        }
        if self.end_ramp.ns == 0 {
            self.stop_requested = true;
            return;
        }
        self.ending_t0 = Some(wake_ns);
        self.ramp_from.copy_from_slice(&self.action);
    }

    fn push_event(&self, time_ns: u64, device: &str, motor: Option<String>, reason: String) {
        let response = if self.stop_requested {
            "loop stops; follower brought to its stop state".to_owned()
        } else if self.ending_t0.is_some() {
            format!(
                "follower returns home over {:.1} s, holds {:.1} s, then takes its stop state",
                self.end_ramp.ns as f64 / 1e9,
                self.end_settle_ns as f64 / 1e9
            )
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

    /// Moves scheduled actions from the owner's ring into the schedule, refusing invalid ones
    /// (NaN, infinite, out of the joint's range): each is an event, and too many in a row stop
    /// the loop. Stops taking rows while the schedule is full.
    fn take_scheduled(&mut self, wake_ns: u64) {
        let mut late = 0u64;
        while let Ok(item) = self.schedule_rx.peek() {
            let item = *item;
            if self.ending_t0.is_some() || self.stop_requested || self.source == GoalSource::Leader
            {
                // Stopping, or the leader drives: what arrives now is never sent.
                if let SchedItem::Row { .. } = item {
                    self.schedule.count_done(1);
                }
                let _ = self.schedule_rx.pop();
                continue;
            }
            match item {
                SchedItem::Begin { start_ns } => self.schedule.begin(wake_ns, start_ns),
                SchedItem::Row { values } => {
                    if self.schedule.is_full() {
                        break;
                    }
                    if let Some((joint, value)) = self.invalid_action(&values) {
                        self.schedule.count_done(1);
                        self.refuse_action(wake_ns, joint, value);
                    } else {
                        self.invalid_in_a_row = 0;
                        if self.schedule.push(wake_ns, &values) == Pushed::Stale {
                            late += 1;
                        }
                    }
                }
            }
            let _ = self.schedule_rx.pop();
        }
        self.add_late(late);
        self.shared
            .schedule_done
            .store(self.schedule.done(), Ordering::Release);
    }

    /// The first action value that may not be sent: (action index, value).
    fn invalid_action(&self, values: &[f32; MAX_ACTION]) -> Option<(usize, f32)> {
        values
            .iter()
            .take(self.action.len())
            .enumerate()
            .find(|(i, v)| {
                !v.is_finite()
                    || self.action_limits[*i].is_some_and(|(lo, hi)| **v < lo || **v > hi)
            })
            .map(|(i, v)| (i, *v))
    }

    fn refuse_action(&mut self, wake_ns: u64, joint: usize, value: f32) {
        self.invalid_in_a_row += 1;
        let name = self
            .action_names
            .get(joint)
            .map_or_else(|| "?".to_owned(), String::clone);
        let what = match self.action_limits[joint] {
            Some((lo, hi)) if value.is_finite() => {
                format!("action {name} = {value} is outside its range [{lo}, {hi}]")
            }
            _ => format!("action {name} = {value} is not a finite number"),
        };
        let fatal = self.invalid_in_a_row >= self.max_invalid_actions;
        if fatal {
            let failure = LoopFailure {
                kind: FaultKind::Other,
                device: "actions".into(),
                motor: Some(name.clone()),
                message: format!(
                    "{} invalid actions in a row; last: {what}",
                    self.invalid_in_a_row
                ),
            };
            let mut f = lock(&self.shared.failure);
            if f.is_none() {
                *f = Some(failure);
            }
            drop(f);
            self.begin_stop(wake_ns);
        }
        let reason = format!(
            "{what}; refused ({} in a row, the loop stops at {})",
            self.invalid_in_a_row, self.max_invalid_actions
        );
        self.push_event(wake_ns, "actions", Some(name), reason);
    }

    fn add_late(&mut self, late: u64) {
        if late > 0 {
            self.tel.run.late_actions += late;
            if self.recording {
                self.tel.episode.late_actions += late;
            }
        }
    }

    /// The scheduled goal at `wake_ns` into `target`, speed-limited per action.
    fn scheduled_target(&mut self, wake_ns: u64) {
        let late = self.schedule.goal(wake_ns, &mut self.sched_target);
        self.add_late(late);
        self.shared
            .schedule_done
            .store(self.schedule.done(), Ordering::Release);
        let dt_s = if self.limited_ns == 0 {
            0.0
        } else {
            wake_ns.saturating_sub(self.limited_ns) as f32 / 1e9
        };
        self.limited_ns = wake_ns;
        for ((t, l), limit) in self
            .sched_target
            .iter_mut()
            .zip(self.limited.iter_mut())
            .zip(&self.max_goal_speed)
        {
            if let Some(v) = limit {
                let step = v * dt_s;
                *t = *l + (*t - *l).clamp(-step, step);
            }
            *l = *t;
        }
    }

    /// This tick's goals. Without a stop under way: the target (leader values collected since
    /// the last tick, or the schedule at this time), blended from the follower's pose during the
    /// start ramp, clamped to the follower's present position; if the leader failed, the goals
    /// already sent. While stopping: the end ramp towards home.
    fn settle_goals(&mut self, wake_ns: u64) {
        if let Some(t0) = self.ending_t0 {
            let a = self.end_ramp.alpha(wake_ns.saturating_sub(t0));
            for ((n, from), home) in self
                .next_action
                .iter_mut()
                .zip(&self.ramp_from)
                .zip(&self.home)
            {
                *n = match home {
                    Some(h) => from + (h - from) * a,
                    None => *from,
                };
            }
            self.home_sent |= a >= 1.0;
        } else {
            let fresh = match self.source {
                GoalSource::Leader => self.leader_ok,
                GoalSource::Schedule => {
                    self.scheduled_target(wake_ns);
                    self.has_target |= self.schedule.started();
                    true
                }
            };
            if fresh {
                match self.source {
                    GoalSource::Leader => self.next_action.copy_from_slice(&self.target),
                    GoalSource::Schedule => self.next_action.copy_from_slice(&self.sched_target),
                }
                self.blend_handover(wake_ns);
                self.blend_start_ramp(wake_ns);
                self.clamp_next_action();
            } else {
                self.next_action.copy_from_slice(&self.action);
            }
        }
        self.leader_ok = true;
        std::mem::swap(&mut self.action, &mut self.next_action);
    }

    /// During a handover the goal is `from + α (target - from)`, α going 0 → 1 over the
    /// handover time from the switch on, by at most one control period's share per tick (a
    /// loop delayed by a busy machine stretches the handover rather than jump the goal).
    fn blend_handover(&mut self, wake_ns: u64) {
        let Some(t0) = self.handover_t0 else {
            return;
        };
        let a = self
            .handover
            .alpha(wake_ns.saturating_sub(t0))
            .min(self.handover_alpha + self.handover_max_step);
        self.handover_alpha = a;
        for (n, from) in self.next_action.iter_mut().zip(&self.handover_from) {
            *n = from + (*n - from) * a;
        }
        if a >= 1.0 {
            self.handover_t0 = None;
        }
    }

    /// During the start ramp the goal is `from + α (target - from)`, α going 0 → 1 over the
    /// ramp from the first target on.
    fn blend_start_ramp(&mut self, wake_ns: u64) {
        if self.start_ramp_done || !self.has_target {
            return;
        }
        let t0 = match self.start_ramp_t0 {
            Some(t0) => t0,
            None => {
                self.ramp_from.copy_from_slice(&self.action);
                self.start_ramp_t0 = Some(wake_ns);
                wake_ns
            }
        };
        let a = self.start_ramp.alpha(wake_ns.saturating_sub(t0));
        for (n, from) in self.next_action.iter_mut().zip(&self.ramp_from) {
            *n = from + (*n - from) * a;
        }
        self.start_ramp_done = a >= 1.0;
    }

    /// Takes the results of the finished rounds of threaded (`threaded`) or inline parts:
    /// follower state into the observation, leader state into the target, retries, errors
    /// and round times into telemetry. Returns whether the loop must stop now: a follower part
    /// failed too often. A leader failing too often starts the return home (if configured);
    /// the failure and its event are recorded either way. Once the loop is returning home the
    /// leader is no longer listened to.
    fn collect(&mut self, wake_ns: u64, threaded: bool) -> bool {
        let mut fatal: Option<(LoopFailure, String, Role)> = None;
        let ending = self.ending_t0.is_some();
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
            if ending && unit.role == Role::Leader {
                continue;
            }
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
                                    if let Some(dst) = self.target.get_mut(a) {
                                        *dst = *v * dir;
                                    }
                                }
                            }
                            self.has_target |= self.source == GoalSource::Leader;
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
                        fatal = Some((failure, reason, unit.role));
                    }
                }
            }
        }
        let Some((failure, reason, role)) = fatal else {
            return false;
        };
        match role {
            Role::Leader => self.begin_stop(wake_ns),
            Role::Follower => self.stop_requested = true,
        }
        self.push_event(wake_ns, &failure.device, failure.motor.clone(), reason);
        let mut f = lock(&self.shared.failure);
        if f.is_none() {
            *f = Some(failure);
        }
        self.stop_requested
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
        self.take_scheduled(wake_ns);
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
        if let (false, Some(t0)) = (stop, self.ending_t0) {
            // Home reached and held: the follower takes its stop state.
            if self.home_sent && wake_ns >= t0 + self.end_ramp.ns + self.end_settle_ns {
                self.stop_requested = true;
                stop = true;
            }
        }
        if !stop {
            self.settle_goals(wake_ns);
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
                row.intervention = self.source == GoalSource::Leader;
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
    next_episode: Mutex<i64>,
    open_episode: Mutex<Option<i64>>,
    /// A stop was requested (stop() then only waits for it).
    stop_requested: AtomicBool,
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
            next_episode: Mutex::new(0),
            open_episode: Mutex::new(None),
            stop_requested: AtomicBool::new(false),
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
        self.shared.failure()
    }

    pub fn events(&self) -> Vec<SafetyEvent> {
        self.shared.events()
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

    /// Hands the goals to `source` (see [`LoopCore::switch_source`]) and waits for the loop to
    /// take it.
    pub fn set_source(&self, source: GoalSource, timeout: Duration) -> Result<(), ControlError> {
        self.send(|seq| Command::SetSource { seq, source }, timeout)
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
        self.feed();
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

    /// One action (action order) for a loop without a leader: the goal reaches it one dataset
    /// row period (1 / record_fps) after the loop receives it, moving linearly from the goal in
    /// force at the control rate. Same as [`TeleopLoop::send_actions`] with one row and no start.
    pub fn send_action(&self, values: &[f32]) -> Result<(), ControlError> {
        self.send_actions(values, None)
    }

    /// See [`LoopShared::send_actions`].
    pub fn send_actions(&self, rows: &[f32], start_ns: Option<u64>) -> Result<(), ControlError> {
        if let Err(e) = self.shared.send_actions(rows, start_ns) {
            return Err(match e {
                ControlError::Config(msg) => {
                    ControlError::Config(format!("{msg} (actions: {:?})", self.layout.action_names))
                }
                e => e,
            });
        }
        self.check_running()
    }

    /// See [`LoopShared::feed`].
    pub fn feed(&self) {
        self.shared.feed();
    }

    /// See [`LoopShared::pending_actions`].
    pub fn pending_actions(&self) -> u64 {
        self.shared.pending_actions()
    }

    /// Waits until every scheduled action has been reached (the goal holds the last one), up to
    /// `timeout`, feeding waiting rows meanwhile. Ok(false) on timeout; an error if the loop
    /// stopped.
    pub fn wait_idle(&self, timeout: Duration) -> Result<bool, ControlError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.feed();
            self.check_running()?;
            if self.pending_actions() == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the loop safely (after the return home, when configured, the follower holds or
    /// goes limp) and waits for it and for the builder to flush. Safe to call more than once.
    /// Asks the loop to stop without waiting for it: the first request returns the follower
    /// home (when an end ramp is configured), a further one cuts the return short.
    pub fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::Release);
        if self.is_running() {
            let _ = self.send(|seq| Command::Stop { seq }, Duration::from_secs(2));
        }
    }

    /// Waits up to `timeout` for the loop to have stopped (the follower in its stop state).
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    pub fn stop(&self) {
        let Some(thread) = lock(&self.thread).take() else {
            return;
        };
        if self.is_running() && !self.stop_requested.swap(true, Ordering::AcqRel) {
            let _ = self.send(|seq| Command::Stop { seq }, Duration::from_secs(2));
        }
        // Dropping the parts closes their ports.
        drop(thread.join());
        if let Some(builder) = lock(&self.builder).take() {
            builder.join();
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
