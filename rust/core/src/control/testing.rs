//! In-memory parts for tests and the no-I/O hot-path benchmark (they answer instantly, so
//! what is measured with them is the loop's own cost), and [`wait_until`], the one way tests
//! wait for another thread. Built for the crate's own tests and with the `testing` feature.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::arm::part::{part_names, FaultKind, Part, PartError, StopAction};
use crate::bus::feetech::{BusConfig, FeetechBus, Motor};
use crate::control::{LoopSpec, RealtimeMode, TeleopArms};
use crate::sim::feetech::{FeetechSim, FeetechSimConfig};

/// How long a test waits for something that normally takes milliseconds: long enough for a
/// machine busy with other work, short enough that a dead loop fails the test instead of
/// hanging the run.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `condition` every millisecond until it holds; panics naming `what` once `timeout`
/// has passed without it.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Motors named `m<id>` for `ids`.
pub fn numbered_motors(ids: &[u8]) -> Vec<Motor> {
    ids.iter()
        .map(|id| Motor {
            name: format!("m{id}"),
            id: *id,
        })
        .collect()
}

/// A simulator with one STS servo per motor (at the motor's id) and a Feetech bus open on it
/// at 1 Mbaud with `config`.
pub fn feetech_sim_bus(motors: Vec<Motor>, config: BusConfig) -> (FeetechSim, FeetechBus) {
    let ids: Vec<u8> = motors.iter().map(|m| m.id).collect();
    let sim = FeetechSim::start(FeetechSimConfig::new(&ids)).expect("the STS simulator starts");
    let bus = FeetechBus::open(sim.port(), 1_000_000, motors, config)
        .expect("the bus opens on the simulator");
    (sim, bus)
}

/// A loop spec at `control_hz` recording at `record_fps`, without realtime scheduling (tests
/// must not need privileges), everything else default.
pub fn fake_spec(control_hz: f64, record_fps: f64) -> LoopSpec {
    LoopSpec {
        control_hz,
        record_fps,
        realtime: RealtimeMode::Off,
        ..LoopSpec::default()
    }
}

/// The joints of [`two_joint_arms`].
pub const TWO_JOINTS: [&str; 2] = ["a", "b"];

/// A two-joint arm (joints [`TWO_JOINTS`]): `follower` one part, observations `a.pos b.pos
/// a.vel b.vel`, actions `a.pos b.pos`, no direction flip, no clamp.
pub fn two_joint_arms(leader: Vec<Box<dyn Part>>, follower: FakeFollower) -> TeleopArms {
    TeleopArms {
        leader,
        follower: vec![Box::new(follower)],
        observation_names: vec![
            "a.pos".into(),
            "b.pos".into(),
            "a.vel".into(),
            "b.vel".into(),
        ],
        action_names: vec!["a.pos".into(), "b.pos".into()],
        direction: vec![1.0, 1.0],
        max_relative_target: vec![None, None],
    }
}

/// The real arm's seven joints as in-memory parts: five on a DAMIAO-like follower part, two
/// on an STS-like one, and a leader over all seven following `leader` (None: no leader, goals
/// come from the schedule). Observations `<j>.pos` of the seven then `<j>.vel` of the five;
/// every joint's direction is `direction` and its max_relative_target 5. `keep_goals`: the
/// DAMIAO-like part logs every goal (which allocates).
pub fn seven_joint_arms(
    leader: Option<fn(u64, usize) -> f32>,
    direction: f32,
    keep_goals: bool,
) -> TeleopArms {
    let joints = [
        "shoulder_pan",
        "shoulder_lift",
        "shoulder_roll",
        "elbow_flex",
        "wrist_roll",
    ];
    let sts = ["wrist_flex", "grip"];
    let all: Vec<&str> = joints.iter().chain(&sts).copied().collect();
    let (dm, _) = FakeFollower::new("follower dm", &joints, &[0.0; 5], keep_goals);
    let (st, _) = FakeFollower::new("follower sts", &sts, &[0.0; 2], false);
    let mut observation_names: Vec<String> = all.iter().map(|j| format!("{j}.pos")).collect();
    observation_names.extend(joints.iter().map(|j| format!("{j}.vel")));
    let action_names: Vec<String> = all.iter().map(|j| format!("{j}.pos")).collect();
    let n = action_names.len();
    TeleopArms {
        leader: leader
            .map(|position| Box::new(FakeLeader::new(&all, position)) as Box<dyn Part>)
            .into_iter()
            .collect(),
        follower: vec![Box::new(dm), Box::new(st)],
        observation_names,
        action_names,
        direction: vec![direction; n],
        max_relative_target: vec![Some(5.0); n],
    }
}

/// What a fake part saw, readable from the test while the loop runs.
#[derive(Default)]
pub struct FakeLog {
    /// Every goal vector the follower received, in order.
    pub goals: Mutex<Vec<Vec<f32>>>,
    pub stops: Mutex<Vec<StopAction>>,
    pub exchanges: AtomicUsize,
}

/// A leader whose joints follow `position(tick, joint)`; fails from `fail_after` exchanges on.
pub struct FakeLeader {
    label: String,
    motors: Vec<String>,
    state_names: Vec<String>,
    tick: u64,
    pub position: fn(u64, usize) -> f32,
    /// Exchanges that succeed before every further one fails (u32::MAX: never fails).
    pub fail_after: Arc<AtomicU32>,
}

impl FakeLeader {
    pub fn new(joints: &[&str], position: fn(u64, usize) -> f32) -> Self {
        Self {
            label: "leader fake".into(),
            motors: joints.iter().map(|j| (*j).to_owned()).collect(),
            state_names: joints.iter().map(|j| format!("{j}.pos")).collect(),
            tick: 0,
            position,
            fail_after: Arc::new(AtomicU32::new(u32::MAX)),
        }
    }

    /// Renames the part (tests with several leader parts tell them apart by label).
    pub fn label_as(&mut self, label: &str) {
        label.clone_into(&mut self.label);
    }
}

impl Part for FakeLeader {
    fn label(&self) -> &str {
        &self.label
    }
    fn motor_names(&self) -> &[String] {
        &self.motors
    }
    fn goal_names(&self) -> &[String] {
        &[]
    }
    fn state_names(&self) -> &[String] {
        &self.state_names
    }
    fn exchange(&mut self, _: &[f32], state: &mut [f32], _: &mut [u32]) -> Result<(), PartError> {
        if self.tick >= u64::from(self.fail_after.load(Ordering::Relaxed)) {
            return Err(PartError::new(
                FaultKind::Timeout,
                Some(0),
                "no reply (fake leader unplugged)",
            ));
        }
        for (j, v) in state.iter_mut().enumerate() {
            *v = (self.position)(self.tick, j);
        }
        self.tick += 1;
        Ok(())
    }
    fn read_state(&mut self, state: &mut [f32]) -> Result<(), PartError> {
        for (j, v) in state.iter_mut().enumerate() {
            *v = (self.position)(self.tick, j);
        }
        Ok(())
    }
    fn stop(&mut self, _: StopAction) -> Result<(), PartError> {
        Ok(())
    }
}

/// A follower that reaches every goal at once; state = `<j>.pos` then `<j>.vel` (0).
pub struct FakeFollower {
    label: String,
    motors: Vec<String>,
    goal_names: Vec<String>,
    state_names: Vec<String>,
    position: Vec<f32>,
    log: Arc<FakeLog>,
    keep_goals: bool,
}

impl FakeFollower {
    /// `start` is the present position before the first command.
    pub fn new(
        label: &str,
        joints: &[&str],
        start: &[f32],
        keep_goals: bool,
    ) -> (Self, Arc<FakeLog>) {
        let log = Arc::new(FakeLog::default());
        let mut state_names: Vec<String> = joints.iter().map(|j| format!("{j}.pos")).collect();
        state_names.extend(joints.iter().map(|j| format!("{j}.vel")));
        (
            Self {
                label: label.into(),
                motors: joints.iter().map(|j| (*j).to_owned()).collect(),
                goal_names: joints.iter().map(|j| format!("{j}.pos")).collect(),
                state_names,
                position: start.to_vec(),
                log: log.clone(),
                keep_goals,
            },
            log,
        )
    }
}

impl Part for FakeFollower {
    part_names!(label, motors, goal_names, state_names);
    fn exchange(
        &mut self,
        goal: &[f32],
        state: &mut [f32],
        _: &mut [u32],
    ) -> Result<(), PartError> {
        if self.keep_goals {
            if let Ok(mut g) = self.log.goals.lock() {
                g.push(goal.to_vec());
            }
        }
        self.log.exchanges.fetch_add(1, Ordering::Relaxed);
        let n = self.position.len();
        for (p, g) in self.position.iter_mut().zip(goal) {
            *p = *g;
        }
        for (i, s) in state.iter_mut().enumerate() {
            *s = if i < n { self.position[i] } else { 0.0 };
        }
        Ok(())
    }
    fn read_state(&mut self, state: &mut [f32]) -> Result<(), PartError> {
        let n = self.position.len();
        for (i, s) in state.iter_mut().enumerate() {
            *s = if i < n { self.position[i] } else { 0.0 };
        }
        Ok(())
    }
    fn stop(&mut self, action: StopAction) -> Result<(), PartError> {
        if let Ok(mut s) = self.log.stops.lock() {
            s.push(action);
        }
        Ok(())
    }
}

/// Wraps a part so `hook` runs before each of its exchanges: a bus slower than the loop's
/// rate ([`HookedPart::slow`]), an exchange that waits for the test ([`HookedPart::gated`]),
/// or any other misbehaviour a test injects ([`HookedPart::new`]).
pub struct HookedPart {
    inner: Box<dyn Part>,
    hook: Box<dyn FnMut() + Send>,
}

impl HookedPart {
    pub fn new(inner: Box<dyn Part>, hook: impl FnMut() + Send + 'static) -> Self {
        Self {
            inner,
            hook: Box::new(hook),
        }
    }

    /// Every exchange takes at least `delay` (for proving the loop keeps dataset time when it
    /// falls behind).
    pub fn slow(inner: Box<dyn Part>, delay: Duration) -> Self {
        Self::new(inner, move || std::thread::sleep(delay))
    }

    /// Each exchange starts only after one `send(())` on the returned sender (or once the
    /// sender is dropped): for proving what a tick waits for.
    pub fn gated(inner: Box<dyn Part>) -> (Self, std::sync::mpsc::Sender<()>) {
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let part = Self::new(inner, move || {
            let _ = gate.recv();
        });
        (part, open)
    }
}

impl Part for HookedPart {
    fn label(&self) -> &str {
        self.inner.label()
    }
    fn motor_names(&self) -> &[String] {
        self.inner.motor_names()
    }
    fn goal_names(&self) -> &[String] {
        self.inner.goal_names()
    }
    fn state_names(&self) -> &[String] {
        self.inner.state_names()
    }
    fn exchange(
        &mut self,
        goal: &[f32],
        state: &mut [f32],
        retries: &mut [u32],
    ) -> Result<(), PartError> {
        (self.hook)();
        self.inner.exchange(goal, state, retries)
    }
    fn read_state(&mut self, state: &mut [f32]) -> Result<(), PartError> {
        self.inner.read_state(state)
    }
    fn stop(&mut self, action: StopAction) -> Result<(), PartError> {
        self.inner.stop(action)
    }
}
