//! The DAMIAO USB-CAN adapter simulator: several DAMIAO motors (and optionally OpenK's
//! STS-over-CAN bridge node) on one simulated CAN bus behind a pty.
//!
//! It speaks the exact adapter framing (spec §A) and motor payloads (§B): each motor has its
//! register table (ids, mode, PMAX/VMAX/TMAX, TIMEOUT, m_off, …), an enable state, the four
//! control modes with rigid-body dynamics, both temperatures and the state nibble with its
//! faults. Timing follows §E: the adapter is a USB CDC device (no UART pacing); each CAN
//! frame occupies the bus for its real bit count at the configured bitrate, bit stuffing
//! included (111–135 µs per 8-byte frame at 1 Mbit/s), and every reply then waits the
//! adapter/USB latency before the client can read it.
//!
//! A motor can be put in "human hand" mode for a compliant DAMIAO leader: while it is
//! disabled or commanded with kp = 0 its position follows a scripted trajectory.

use std::time::{Duration, Instant};

use crate::bus::damiao::DamiaoMotorSpec;
use crate::protocol::damiao::{
    decode_host_frame, decode_mit, decode_pos_force, decode_pos_vel, decode_register_frame,
    decode_vel, encode_feedback, encode_register_reply, register_is_u32, rid, AdapterCmd,
    AdapterFrame, ControlMode, Feedback, Limits, MitCommand, MotorModel, MotorState, RegisterOp,
    RegisterValue, SpecialCommand, HOST_FRAME_LEN, REGISTER_CAN_ID,
};
use crate::protocol::sts_can::{self, BridgeRequest};

use super::pty::{PtySim, Replies, SimDevice, WireFaults, WireTiming};
use super::SimError;

/// Number of register slots a simulated motor has (RIDs 0–81).
const REGISTER_SLOTS: usize = 82;
/// Physics integration step; small enough for kp = 500, kd = 5 on the lightest rotor.
const PHYSICS_STEP: f64 = 2.0e-4;
/// Idle time beyond this is not integrated: every mode has settled long before.
const PHYSICS_HORIZON: f64 = 0.5;
/// Ambient temperature of the simulated motors, °C.
const AMBIENT_C: f64 = 30.0;

/// One simulated motor's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMotorConfig {
    pub name: String,
    pub model: MotorModel,
    pub esc_id: u16,
    pub mst_id: u16,
}

/// OpenK's STS-over-CAN bridge node with its servos.
#[derive(Debug, Clone, PartialEq)]
pub struct StsBridgeConfig {
    /// CAN id the node listens and answers on (OpenK: 0xFF00).
    pub controller_id: u32,
    /// STS servo ids behind the bridge (legacy follower: grip 1, wrist_flex 2).
    pub servo_ids: Vec<u16>,
}

impl Default for StsBridgeConfig {
    fn default() -> Self {
        Self {
            controller_id: sts_can::DEFAULT_CONTROLLER_ID,
            servo_ids: vec![1, 2],
        }
    }
}

/// How the simulated adapter and bus behave.
#[derive(Debug, Clone, PartialEq)]
pub struct DamiaoSimConfig {
    pub motors: Vec<SimMotorConfig>,
    /// CAN bitrate, bit/s.
    pub can_bitrate: u32,
    /// Time from the end of a reply on the CAN bus to the host being able to read it
    /// (adapter firmware + USB full-speed bulk transfer). An estimate: no hardware measured.
    pub usb_latency: Duration,
    /// Motor firmware time from receiving a command to starting its reply (unverified).
    pub motor_turnaround: Duration,
    /// Time the bridge node spends on its own STS UART transaction before answering a read.
    pub bridge_turnaround: Duration,
    pub sts_bridge: Option<StsBridgeConfig>,
}

impl DamiaoSimConfig {
    /// The OpenK follower's five motors: shoulder_pan 0x01 and shoulder_lift 0x02 (DM6006),
    /// shoulder_roll 0x03, elbow_flex 0x04, wrist_roll 0x05 (DM4310), with unique master ids
    /// 0x11–0x15.
    pub fn openk_arm() -> Self {
        let motors = [
            ("shoulder_pan", MotorModel::DM6006),
            ("shoulder_lift", MotorModel::DM6006),
            ("shoulder_roll", MotorModel::DM4310),
            ("elbow_flex", MotorModel::DM4310),
            ("wrist_roll", MotorModel::DM4310),
        ]
        .iter()
        .zip(1u16..)
        .map(|((name, model), id)| SimMotorConfig {
            name: (*name).to_string(),
            model: *model,
            esc_id: id,
            mst_id: 0x10 + id,
        })
        .collect();
        Self {
            motors,
            ..Self::default()
        }
    }

    /// Bus-side descriptions of the simulated motors, for a [`DamiaoBus`] on this simulator.
    ///
    /// [`DamiaoBus`]: crate::bus::damiao::DamiaoBus
    pub fn bus_specs(&self) -> Vec<DamiaoMotorSpec> {
        self.motors
            .iter()
            .map(|m| DamiaoMotorSpec {
                name: m.name.clone(),
                model: m.model,
                esc_id: m.esc_id,
                mst_id: m.mst_id,
            })
            .collect()
    }

    /// The legacy follower's STS bridge alone (a second adapter carrying only the bridge).
    pub fn sts_bridge_only() -> Self {
        Self {
            motors: Vec::new(),
            sts_bridge: Some(StsBridgeConfig::default()),
            ..Self::default()
        }
    }
}

impl Default for DamiaoSimConfig {
    fn default() -> Self {
        Self {
            motors: Vec::new(),
            can_bitrate: 1_000_000,
            usb_latency: Duration::from_micros(250),
            motor_turnaround: Duration::from_micros(20),
            bridge_turnaround: Duration::from_micros(300),
            sts_bridge: None,
        }
    }
}

/// Bits a classic CAN data frame with an 11-bit id occupies on the bus, including bit
/// stuffing, the fixed trailer and the 3-bit interframe space.
pub fn can_frame_bits(can_id: u32, data: &[u8]) -> u32 {
    let dlc = data.len().min(8);
    let mut bits: Vec<bool> = Vec::with_capacity(1 + 11 + 3 + 4 + 64 + 15);
    bits.push(false); // SOF
    for i in (0..11).rev() {
        bits.push((can_id >> i) & 1 == 1);
    }
    bits.extend([false, false, false]); // RTR, IDE, r0
    for i in (0..4).rev() {
        bits.push((dlc >> i) & 1 == 1);
    }
    for byte in data.iter().take(dlc) {
        for i in (0..8).rev() {
            bits.push((byte >> i) & 1 == 1);
        }
    }
    let mut crc: u16 = 0;
    for &bit in &bits {
        let top = (crc >> 14) & 1 == 1;
        crc = (crc << 1) & 0x7FFF;
        if top ^ bit {
            crc ^= 0x4599;
        }
    }
    for i in (0..15).rev() {
        bits.push((crc >> i) & 1 == 1);
    }
    // A stuff bit follows every run of five equal bits (and itself counts toward the next run).
    let mut stuffed = 0u32;
    let mut run = 0u32;
    let mut last = None;
    for bit in bits.iter().copied() {
        if Some(bit) == last {
            run += 1;
        } else {
            run = 1;
            last = Some(bit);
        }
        if run == 5 {
            stuffed += 1;
            last = Some(!bit);
            run = 1;
        }
    }
    // CRC delimiter, ACK slot, ACK delimiter, 7-bit EOF, 3-bit interframe space.
    bits.len() as u32 + stuffed + 13
}

/// A scripted trajectory a human hand moves a compliant leader motor along:
/// q(t) = offset + amplitude · sin(2π · frequency · t + phase).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandTrajectory {
    pub offset: f64,
    pub amplitude: f64,
    pub frequency_hz: f64,
    pub phase: f64,
}

impl HandTrajectory {
    fn at(&self, t: f64) -> (f64, f64) {
        let w = 2.0 * std::f64::consts::PI * self.frequency_hz;
        let arg = w * t + self.phase;
        (
            self.offset + self.amplitude * arg.sin(),
            self.amplitude * w * arg.cos(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Setpoint {
    None,
    Mit(MitCommand),
    PosVel {
        position: f64,
        speed: f64,
    },
    Vel {
        velocity: f64,
    },
    PosForce {
        position: f64,
        speed: f64,
        torque_limit: f64,
    },
}

/// The mechanics a simulated motor drives: rotor plus the arm link it carries. Estimates for
/// a small arm, not datasheet values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mechanics {
    /// Inertia on the output side, kg·m².
    inertia: f64,
    /// Viscous friction, N·m·s/rad.
    viscous: f64,
    /// Coulomb friction (and stiction), N·m.
    coulomb: f64,
    /// Peak torque of the link's weight, N·m: the load is `gravity · sin q`, a pendulum that
    /// hangs at q = 0 (so the zero pose needs no torque and every other pose does).
    gravity: f64,
    /// Acceleration of the POS_VEL / POS_FORCE speed profile, rad/s².
    accel: f64,
}

fn mechanics(model: MotorModel) -> Mechanics {
    let (inertia, viscous, coulomb, gravity, accel) = match model {
        MotorModel::DM3507 | MotorModel::DMH3510 => (0.002, 0.01, 0.01, 0.05, 40.0),
        MotorModel::DM4310 | MotorModel::DM4310_48V => (0.005, 0.02, 0.03, 0.4, 30.0),
        _ => (0.02, 0.05, 0.06, 1.5, 20.0),
    };
    Mechanics {
        inertia,
        viscous,
        coulomb,
        gravity,
        accel,
    }
}

/// POS_VEL / POS_FORCE position loop: the speed asked for is this gain times the position
/// error (1/s), under the commanded speed and the deceleration profile.
const POSITION_GAIN: f64 = 40.0;
/// Time constant of the firmware's speed loop under those modes, s.
const SPEED_LOOP_TAU: f64 = 0.004;
/// Speed (rad/s) below which the friction feed-forward fades out, so a motor at its goal
/// rests instead of dithering around it.
const FRICTION_FADE: f64 = 0.01;

/// One simulated DAMIAO motor.
#[derive(Debug, Clone)]
pub struct SimMotor {
    pub name: String,
    pub model: MotorModel,
    registers: [Option<RegisterValue>; REGISTER_SLOTS],
    enabled: bool,
    fault: Option<MotorState>,
    setpoint: Setpoint,
    q: f64,
    dq: f64,
    tau: f64,
    /// Speed of the POS_VEL / POS_FORCE profile (the speed loop's reference), rad/s.
    profile_speed: f64,
    t_mos: f64,
    t_rotor: f64,
    mech: Mechanics,
    hand: Option<HandTrajectory>,
    started: Instant,
    updated: Instant,
    last_command: Instant,
    commands: u64,
}

impl SimMotor {
    fn new(cfg: &SimMotorConfig, now: Instant) -> Self {
        let lim = cfg.model.default_limits();
        let mut registers = [None; REGISTER_SLOTS];
        let mut set = |rid: u8, v: f64| {
            if let Some(slot) = registers.get_mut(usize::from(rid)) {
                *slot = Some(if register_is_u32(rid) {
                    RegisterValue::U32(v as u32)
                } else {
                    RegisterValue::F32(v as f32)
                });
            }
        };
        // Plausible factory values; only ids, mode, limits, TIMEOUT and m_off drive behaviour.
        let table: [(u8, f64); 40] = [
            (0, 10.0),
            (1, 0.094),
            (2, 80.0),
            (3, 0.98),
            (4, 10.0),
            (5, -10.0),
            (6, 30.0),
            (rid::MST_ID, f64::from(cfg.mst_id)),
            (rid::ESC_ID, f64::from(cfg.esc_id)),
            (rid::TIMEOUT, 0.0),
            (rid::CTRL_MODE, 1.0),
            (11, 0.0),
            (12, 0.0),
            (13, 0.0),
            (14, 5013.0),
            (15, 0.0),
            (16, 14.0),
            (17, 0.5),
            (18, 0.0001),
            (19, 0.005),
            (20, 10.0),
            (rid::PMAX, lim.pmax),
            (rid::VMAX, lim.vmax),
            (rid::TMAX, lim.tmax),
            (24, 1000.0),
            (rid::KP_ASR, 0.002),
            (26, 0.002),
            (27, 80.0),
            (28, 0.0),
            (29, 60.0),
            (30, 1.0),
            (31, 1.0),
            (32, 500.0),
            (33, 1.0),
            (34, 1.0),
            (rid::CAN_BR, 4.0),
            (36, 0.0),
            (rid::M_OFF, 0.0),
            (80, 0.0),
            (81, 0.0),
        ];
        for (r, v) in table {
            set(r, v);
        }
        for r in [50u8, 51, 52, 53, 55] {
            set(r, 0.0);
        }
        Self {
            name: cfg.name.clone(),
            model: cfg.model,
            registers,
            enabled: false,
            fault: None,
            setpoint: Setpoint::None,
            q: 0.0,
            dq: 0.0,
            tau: 0.0,
            profile_speed: 0.0,
            t_mos: AMBIENT_C,
            t_rotor: AMBIENT_C,
            mech: mechanics(cfg.model),
            hand: None,
            started: now,
            updated: now,
            last_command: now,
            commands: 0,
        }
    }

    fn reg_u32(&self, r: u8) -> u32 {
        match self.registers.get(usize::from(r)).copied().flatten() {
            Some(RegisterValue::U32(v)) => v,
            Some(RegisterValue::F32(v)) => v as u32,
            None => 0,
        }
    }

    fn reg_f64(&self, r: u8) -> f64 {
        self.registers
            .get(usize::from(r))
            .copied()
            .flatten()
            .map_or(0.0, RegisterValue::as_f64)
    }

    pub fn esc_id(&self) -> u16 {
        self.reg_u32(rid::ESC_ID) as u16
    }

    pub fn mst_id(&self) -> u16 {
        self.reg_u32(rid::MST_ID) as u16
    }

    /// Mapping limits from registers 21–23 (what the firmware encodes with).
    pub fn limits(&self) -> Limits {
        let d = self.model.default_limits();
        Limits::new(
            self.reg_f64(rid::PMAX),
            self.reg_f64(rid::VMAX),
            self.reg_f64(rid::TMAX),
        )
        .unwrap_or(d)
    }

    pub fn mode(&self) -> Option<ControlMode> {
        ControlMode::from_register(self.reg_u32(rid::CTRL_MODE)).ok()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn position(&self) -> f64 {
        self.q
    }

    pub fn velocity(&self) -> f64 {
        self.dq
    }

    pub fn torque(&self) -> f64 {
        self.tau
    }

    /// Commands received (control, special and register frames addressed to this motor).
    pub fn commands_received(&self) -> u64 {
        self.commands
    }

    /// The state nibble the motor would report now.
    pub fn state(&self) -> MotorState {
        match self.fault {
            Some(f) => f,
            None if self.enabled => MotorState::Enabled,
            None => MotorState::Disabled,
        }
    }

    /// Moves the motor's shaft instantly (test setup).
    pub fn set_position(&mut self, q: f64) {
        self.q = q;
        self.dq = 0.0;
    }

    /// Latches a device fault: the motor disables itself and reports `state` until a
    /// clear-error command. Passing a non-fault state clears the fault.
    pub fn inject_fault(&mut self, state: MotorState) {
        if state.is_fault() {
            self.fault = Some(state);
            self.enabled = false;
            self.setpoint = Setpoint::None;
        } else {
            self.fault = None;
        }
    }

    /// Human-hand mode for a compliant leader (None = off).
    pub fn set_hand(&mut self, hand: Option<HandTrajectory>) {
        self.hand = hand;
    }

    fn hand_active(&self) -> bool {
        self.hand.is_some()
            && match (self.enabled, self.setpoint) {
                (false, _) => true,
                (true, Setpoint::Mit(cmd)) => cmd.kp == 0.0,
                (true, Setpoint::None) => true,
                _ => false,
            }
    }

    /// Advances the physics to `now`.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now.max(self.updated);
        if elapsed <= 0.0 {
            return;
        }
        self.check_watchdog(now);
        if self.hand_active() {
            if let Some(hand) = self.hand {
                let (q, dq) = hand.at(now.saturating_duration_since(self.started).as_secs_f64());
                // Resistance the hand feels: the damping (and feed-forward) of a kp = 0 command.
                let resist = match self.setpoint {
                    Setpoint::Mit(c) if self.enabled => c.kd * (c.dq - dq) + c.tau,
                    _ => 0.0,
                };
                self.q = q;
                self.dq = dq;
                self.tau = resist.clamp(-self.limits().tmax, self.limits().tmax);
                self.heat(elapsed);
                return;
            }
        }
        let horizon = elapsed.min(PHYSICS_HORIZON);
        let steps = (horizon / PHYSICS_STEP).ceil().max(1.0) as u32;
        let dt = horizon / f64::from(steps);
        for _ in 0..steps {
            self.step(dt);
        }
        self.heat(elapsed);
    }

    /// Torque the arm's weight puts on the shaft at `q`. Only a driven motor carries it: an
    /// unpowered or idle one rests where it was put (test setups place motors by hand).
    fn load(&self, q: f64) -> f64 {
        if self.enabled && self.setpoint != Setpoint::None {
            self.mech.gravity * q.sin()
        } else {
            0.0
        }
    }

    /// Friction feed-forward for a speed reference: Coulomb, faded out near standstill, plus
    /// viscous.
    fn friction_feedforward(&self, speed: f64) -> f64 {
        self.mech.coulomb * (speed / FRICTION_FADE).tanh() + self.mech.viscous * speed
    }

    /// One integration step under motor torque `tau` against the load, with viscous and
    /// Coulomb friction (a gearmotor at rest stays at rest until the torque beats its
    /// stiction).
    fn integrate(&mut self, tau: f64, dt: f64, vmax: f64) {
        self.tau = tau;
        let drive = tau - self.load(self.q);
        let stiction = self.mech.coulomb;
        if self.dq == 0.0 && drive.abs() <= stiction {
            return;
        }
        let coulomb = if self.dq != 0.0 {
            stiction.copysign(self.dq)
        } else {
            stiction.copysign(drive)
        };
        let new_dq =
            self.dq + (drive - self.mech.viscous * self.dq - coulomb) / self.mech.inertia * dt;
        // Friction stops the rotor; it never reverses it.
        let new_dq =
            if self.dq != 0.0 && new_dq.signum() != self.dq.signum() && drive.abs() <= stiction {
                0.0
            } else {
                new_dq
            };
        self.dq = new_dq.clamp(-vmax, vmax);
        self.q += self.dq * dt;
    }

    fn step(&mut self, dt: f64) {
        let lim = self.limits();
        if !self.enabled {
            // Unpowered: the rotor coasts against friction.
            self.integrate(0.0, dt, lim.vmax);
            return;
        }
        match self.setpoint {
            Setpoint::None => self.integrate(0.0, dt, lim.vmax),
            Setpoint::Mit(c) => {
                let tau = Self::mit_torque(&c, self.q, self.dq, &lim);
                self.integrate(tau, dt, lim.vmax);
            }
            Setpoint::PosVel { position, speed } => {
                self.track_position(position, speed, lim.tmax, dt);
            }
            Setpoint::PosForce {
                position,
                speed,
                torque_limit,
            } => {
                self.track_position(position, speed, torque_limit, dt);
            }
            Setpoint::Vel { velocity } => {
                // The firmware's speed loop: first-order approach, 10 ms time constant,
                // bounded by the torque limit.
                let target = velocity.clamp(-lim.vmax, lim.vmax);
                let tau = (self.mech.inertia * (target - self.dq) / 0.01
                    + self.friction_feedforward(target)
                    + self.load(self.q))
                .clamp(-lim.tmax, lim.tmax);
                self.integrate(tau, dt, lim.vmax);
            }
        }
        self.q = self.q.clamp(-lim.pmax, lim.pmax);
    }

    /// The MIT law the firmware applies: kp·(q_des − q) + kd·(dq_des − dq) + τ_ff, within TMAX.
    fn mit_torque(c: &MitCommand, q: f64, dq: f64, lim: &Limits) -> f64 {
        (c.kp * (c.q - q) + c.kd * (c.dq - dq) + c.tau).clamp(-lim.tmax, lim.tmax)
    }

    /// POS_VEL / POS_FORCE, a cascade like the firmware's: the position loop asks for a speed
    /// proportional to the error, under the commanded speed and a profile that can still stop
    /// at the goal; the profile speed moves toward it with bounded acceleration; the speed
    /// loop turns the difference to the measured speed into torque (with feed-forward for the
    /// profile's acceleration, friction and the load), within `torque_limit`.
    fn track_position(&mut self, target: f64, speed: f64, torque_limit: f64, dt: f64) {
        let lim = self.limits();
        let speed = speed.abs().min(lim.vmax);
        let accel = self.mech.accel;
        let err = target - self.q;
        let wanted = (POSITION_GAIN * err.abs())
            .min(speed)
            .min((2.0 * accel * err.abs()).sqrt())
            .copysign(err);
        let step = accel * dt;
        let profile = self.profile_speed + (wanted - self.profile_speed).clamp(-step, step);
        let profile_accel = (profile - self.profile_speed) / dt.max(1e-9);
        let j = self.mech.inertia;
        let feedforward =
            j * profile_accel + self.friction_feedforward(profile) + self.load(self.q);
        let wanted_tau = j * (profile - self.dq) / SPEED_LOOP_TAU + feedforward;
        let tau = wanted_tau.clamp(-torque_limit, torque_limit);
        // Anti-windup: a saturated motor's profile is the speed its torque can actually give.
        self.profile_speed = if tau == wanted_tau {
            profile
        } else {
            self.dq + (tau - feedforward) * SPEED_LOOP_TAU / j
        };
        self.integrate(tau, dt, lim.vmax);
    }

    fn heat(&mut self, dt: f64) {
        let load = (self.tau / self.limits().tmax).abs();
        let target_mos = AMBIENT_C + 25.0 * load * load;
        let target_rotor = AMBIENT_C + 40.0 * load * load;
        let k = (dt / 60.0).min(1.0);
        self.t_mos += (target_mos - self.t_mos) * k;
        self.t_rotor += (target_rotor - self.t_rotor) * k;
    }

    /// TIMEOUT (RID 9, 50 µs units): an enabled motor not commanded in time disables itself
    /// and reports lost communication.
    fn check_watchdog(&mut self, now: Instant) {
        let units = self.reg_u32(rid::TIMEOUT);
        if units == 0 || !self.enabled {
            return;
        }
        let limit = Duration::from_micros(u64::from(units) * 50);
        if now.saturating_duration_since(self.last_command) > limit {
            self.inject_fault(MotorState::LostCommunication);
        }
    }

    fn feedback_payload(&self) -> [u8; 8] {
        let fb = Feedback {
            id_nibble: (self.esc_id() & 0xF) as u8,
            state: self.state(),
            q: self.q,
            dq: self.dq,
            tau: self.tau,
            t_mos: self.t_mos.round().clamp(0.0, 255.0) as u8,
            t_rotor: self.t_rotor.round().clamp(0.0, 255.0) as u8,
        };
        encode_feedback(&fb, &self.limits())
    }

    /// Handles a control-mode command; the motor ignores commands for another mode.
    fn on_control(&mut self, mode: ControlMode, data: &[u8; 8]) {
        if self.mode() != Some(mode) || !self.enabled {
            return;
        }
        let lim = self.limits();
        if !matches!(
            self.setpoint,
            Setpoint::PosVel { .. } | Setpoint::PosForce { .. }
        ) {
            // A new position profile starts from the speed the shaft has.
            self.profile_speed = self.dq;
        }
        self.setpoint = match mode {
            ControlMode::Mit => {
                let cmd = decode_mit(data, &lim);
                // The current loop applies the new torque within microseconds, before the reply.
                self.tau = Self::mit_torque(&cmd, self.q, self.dq, &lim);
                Setpoint::Mit(cmd)
            }
            ControlMode::PosVel => {
                let (p, v) = decode_pos_vel(data);
                Setpoint::PosVel {
                    position: f64::from(p),
                    speed: f64::from(v),
                }
            }
            ControlMode::Vel => Setpoint::Vel {
                velocity: f64::from(decode_vel(data)),
            },
            ControlMode::PosForce => {
                let (p, v, c) = decode_pos_force(data);
                Setpoint::PosForce {
                    position: f64::from(p),
                    speed: f64::from(v) / 100.0,
                    torque_limit: f64::from(c) / 10_000.0 * lim.tmax,
                }
            }
        };
    }

    fn on_special(&mut self, cmd: SpecialCommand) {
        match cmd {
            SpecialCommand::Enable if self.fault.is_none() => {
                self.enabled = true;
                self.setpoint = Setpoint::None;
            }
            SpecialCommand::Enable => {}
            SpecialCommand::Disable => {
                self.enabled = false;
                self.setpoint = Setpoint::None;
            }
            SpecialCommand::SetZero => {
                if !self.enabled {
                    let off = self.reg_f64(rid::M_OFF) + self.q;
                    self.registers[usize::from(rid::M_OFF)] = Some(RegisterValue::F32(off as f32));
                    self.q = 0.0;
                }
            }
            SpecialCommand::ClearError => {
                self.fault = None;
            }
        }
    }

    /// Register read/write. Returns the value to echo, or None if the register does not exist.
    fn on_register(
        &mut self,
        op: RegisterOp,
        r: u8,
        value: RegisterValue,
    ) -> Option<RegisterValue> {
        let slot = self.registers.get(usize::from(r)).copied().flatten()?;
        if op == RegisterOp::Write && is_writable(r) {
            let typed = RegisterValue::from_le_bytes(r, value.to_le_bytes());
            if let Some(s) = self.registers.get_mut(usize::from(r)) {
                *s = Some(typed);
            }
            if r == rid::CTRL_MODE {
                self.setpoint = Setpoint::None;
            }
            return Some(typed);
        }
        if r == 80 || r == 81 {
            return Some(RegisterValue::F32(self.q as f32));
        }
        Some(slot)
    }
}

fn is_writable(r: u8) -> bool {
    matches!(r, 0..=10 | 21..=35)
}

/// The simulated STS3215 behind the bridge: slews to its goal at a fixed speed.
#[derive(Debug, Clone)]
struct BridgeServo {
    id: u16,
    position: f64,
    goal: f64,
    updated: Instant,
}

/// STS3215 no-load speed, steps per second (≈ 0.2 s per 60° at 12 V).
const STS_SPEED_STEPS: f64 = 3400.0;

impl BridgeServo {
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now.max(self.updated);
        let err = self.goal - self.position;
        let step = (STS_SPEED_STEPS * dt).min(err.abs());
        self.position += step.copysign(err);
    }
}

/// Counters of adapter activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdapterStats {
    pub host_frames: u64,
    /// Bytes of host input that did not belong to a valid 30-byte frame.
    pub host_bytes_skipped: u64,
    pub can_frames_to_nobody: u64,
    pub feedback_frames: u64,
    pub register_replies: u64,
    pub bridge_replies: u64,
}

/// The simulated adapter with its CAN bus (a [`SimDevice`]).
pub struct DamiaoAdapter {
    config: DamiaoSimConfig,
    motors: Vec<SimMotor>,
    servos: Vec<BridgeServo>,
    input: Vec<u8>,
    /// When the simulated CAN bus is next free.
    bus_free: Instant,
    /// Delivery time of the last reply scheduled (gaps are relative to it).
    last_reply_at: Instant,
    /// Next housekeeping tick (watchdogs, physics), see [`SimDevice::next_wakeup`].
    next_tick: Instant,
    stats: AdapterStats,
}

/// Housekeeping period: motor watchdogs fire without host traffic, and the pty thread never
/// sleeps unboundedly (which also keeps its shutdown prompt).
const TICK: Duration = Duration::from_millis(20);

/// Host input kept while waiting for the rest of a frame; anything beyond is garbage.
const MAX_HOST_PENDING: usize = 4096;

impl DamiaoAdapter {
    pub fn new(config: DamiaoSimConfig) -> Result<Self, SimError> {
        if config.can_bitrate == 0 {
            return Err(SimError::Config("CAN bitrate must be > 0".into()));
        }
        for (i, a) in config.motors.iter().enumerate() {
            for b in config.motors.iter().skip(i + 1) {
                if a.esc_id == b.esc_id {
                    return Err(SimError::Config(format!(
                        "motors {} and {} share ESC_ID 0x{:x}",
                        a.name, b.name, a.esc_id
                    )));
                }
            }
        }
        let now = Instant::now();
        let motors = config
            .motors
            .iter()
            .map(|m| SimMotor::new(m, now))
            .collect();
        let servos = config
            .sts_bridge
            .iter()
            .flat_map(|b| b.servo_ids.iter())
            .map(|&id| BridgeServo {
                id,
                position: 2048.0,
                goal: 2048.0,
                updated: now,
            })
            .collect();
        Ok(Self {
            config,
            motors,
            servos,
            input: Vec::with_capacity(MAX_HOST_PENDING),
            bus_free: now,
            last_reply_at: now,
            next_tick: now + TICK,
            stats: AdapterStats::default(),
        })
    }

    pub fn motors(&self) -> &[SimMotor] {
        &self.motors
    }

    pub fn motor(&self, name: &str) -> Option<&SimMotor> {
        self.motors.iter().find(|m| m.name == name)
    }

    /// Mutable access to one motor (faults, hand mode, test setup), by name.
    pub fn motor_mut(&mut self, name: &str) -> Option<&mut SimMotor> {
        self.motors.iter_mut().find(|m| m.name == name)
    }

    pub fn stats(&self) -> AdapterStats {
        self.stats
    }

    /// Position (steps) of a servo behind the STS bridge.
    pub fn servo_position(&mut self, id: u16) -> Option<u16> {
        let now = Instant::now();
        self.servos.iter_mut().find(|s| s.id == id).map(|s| {
            s.advance(now);
            s.position.round() as u16
        })
    }

    /// Moves a bridge servo instantly (a human moved it, or test setup).
    pub fn set_servo_position(&mut self, id: u16, position: u16) -> bool {
        let now = Instant::now();
        match self.servos.iter_mut().find(|s| s.id == id) {
            Some(s) => {
                s.position = f64::from(position);
                s.goal = f64::from(position);
                s.updated = now;
                true
            }
            None => false,
        }
    }

    fn can_time(&self, can_id: u32, data: &[u8; 8]) -> Duration {
        let bits = u64::from(can_frame_bits(can_id & 0x7FF, data));
        Duration::from_nanos(bits * 1_000_000_000 / u64::from(self.config.can_bitrate))
    }

    /// Puts a frame on the CAN bus (after whatever occupies it) and returns when it ends.
    fn occupy_bus(&mut self, from: Instant, duration: Duration) -> Instant {
        let start = from.max(self.bus_free);
        self.bus_free = start + duration;
        self.bus_free
    }

    fn reply(&mut self, replies: &mut Replies, now: Instant, at: Instant, frame: AdapterFrame) {
        let base = now.max(self.last_reply_at);
        let gap = at.saturating_duration_since(base);
        replies.send(gap, &frame.encode());
        self.last_reply_at = base + gap;
    }

    fn handle_frame(&mut self, bytes: &[u8], now: Instant, replies: &mut Replies) {
        let Ok(host) = decode_host_frame(bytes) else {
            return;
        };
        self.stats.host_frames += 1;
        if host.extended || host.remote {
            return;
        }
        // The command frame crosses the CAN bus first.
        let sent_at = self.occupy_bus(now, self.can_time(host.can_id, &host.data));
        if host.command == 0x01 {
            let ack = AdapterFrame {
                cmd: AdapterCmd::SendOk,
                info: host.dlc & 0x3F,
                can_id: host.can_id,
                data: host.data,
            };
            self.reply(replies, now, sent_at + self.config.usb_latency, ack);
        }
        if let Some(bridge) = &self.config.sts_bridge {
            if host.can_id == bridge.controller_id {
                let controller_id = bridge.controller_id;
                self.handle_bridge(&host.data, controller_id, now, sent_at, replies);
                return;
            }
        }
        if host.can_id == REGISTER_CAN_ID {
            self.handle_register(&host.data, now, sent_at, replies);
            return;
        }
        // A motor listens on ESC_ID (MIT and special commands) and on 0x100/0x200/0x300 + ESC_ID.
        let target = self.motors.iter().position(|m| {
            let esc = u32::from(m.esc_id());
            [0u32, 0x100, 0x200, 0x300]
                .iter()
                .any(|base| host.can_id == base + esc)
        });
        let Some(i) = target else {
            self.stats.can_frames_to_nobody += 1;
            return;
        };
        let Some(motor) = self.motors.get_mut(i) else {
            return;
        };
        motor.advance(sent_at);
        motor.commands += 1;
        motor.last_command = sent_at;
        if let Some(cmd) = SpecialCommand::from_payload(&host.data) {
            motor.on_special(cmd);
        } else if let Some((mode, _)) = ControlMode::from_command_can_id(host.can_id) {
            motor.on_control(mode, &host.data);
        }
        let (mst, payload) = (u32::from(motor.mst_id()), motor.feedback_payload());
        self.send_feedback(mst, payload, now, sent_at, replies);
    }

    fn send_feedback(
        &mut self,
        mst: u32,
        payload: [u8; 8],
        now: Instant,
        sent_at: Instant,
        replies: &mut Replies,
    ) {
        self.stats.feedback_frames += 1;
        self.send_can_reply(mst, payload, now, sent_at, replies);
    }

    /// A motor's answer: it waits its turnaround, takes its turn on the CAN bus, then crosses
    /// the adapter's USB hop.
    fn send_can_reply(
        &mut self,
        mst: u32,
        payload: [u8; 8],
        now: Instant,
        sent_at: Instant,
        replies: &mut Replies,
    ) {
        let done = self.occupy_bus(
            sent_at + self.config.motor_turnaround,
            self.can_time(mst, &payload),
        );
        self.reply(
            replies,
            now,
            done + self.config.usb_latency,
            AdapterFrame::received(mst, payload),
        );
    }

    fn handle_register(
        &mut self,
        data: &[u8; 8],
        now: Instant,
        sent_at: Instant,
        replies: &mut Replies,
    ) {
        let Ok(req) = decode_register_frame(data) else {
            return;
        };
        let Some(i) = self.motors.iter().position(|m| m.esc_id() == req.esc_id) else {
            self.stats.can_frames_to_nobody += 1;
            return;
        };
        let Some(motor) = self.motors.get_mut(i) else {
            return;
        };
        motor.advance(sent_at);
        motor.commands += 1;
        motor.last_command = sent_at;
        let mst = u32::from(motor.mst_id());
        let esc = motor.esc_id();
        match req.op {
            RegisterOp::Refresh => {
                let payload = motor.feedback_payload();
                self.send_feedback(mst, payload, now, sent_at, replies);
            }
            // Saving writes flash (~30 ms) and sends nothing back.
            RegisterOp::Save => {}
            RegisterOp::Read | RegisterOp::Write => {
                let Some(value) = motor.on_register(req.op, req.rid, req.value) else {
                    return;
                };
                // A write to MST_ID takes effect at once: the echo already uses the new id.
                let mst = u32::from(motor.mst_id());
                let payload = encode_register_reply(esc, req.op, req.rid, value);
                self.stats.register_replies += 1;
                self.send_can_reply(mst, payload, now, sent_at, replies);
            }
        }
    }

    fn handle_bridge(
        &mut self,
        data: &[u8; 8],
        controller_id: u32,
        now: Instant,
        sent_at: Instant,
        replies: &mut Replies,
    ) {
        let Some(req) = sts_can::decode_request(data) else {
            return;
        };
        match req {
            BridgeRequest::WritePosition { motor_id, position } => {
                if let Some(s) = self.servos.iter_mut().find(|s| s.id == motor_id) {
                    s.advance(sent_at);
                    s.goal = f64::from(position.min(sts_can::MAX_POSITION));
                }
            }
            BridgeRequest::ReadPosition { motor_id } => {
                let Some(s) = self.servos.iter_mut().find(|s| s.id == motor_id) else {
                    return;
                };
                let ready = sent_at + self.config.bridge_turnaround;
                s.advance(ready);
                let payload = sts_can::encode_reply(motor_id, s.position.round() as u16);
                let done = self.occupy_bus(ready, self.can_time(controller_id, &payload));
                self.stats.bridge_replies += 1;
                self.reply(
                    replies,
                    now,
                    done + self.config.usb_latency,
                    AdapterFrame::received(controller_id, payload),
                );
            }
        }
    }
}

impl SimDevice for DamiaoAdapter {
    fn on_receive(&mut self, bytes: &[u8], now: Instant, replies: &mut Replies) {
        self.input.extend_from_slice(bytes);
        let mut pos = 0;
        while let Some(rest) = self.input.get(pos..) {
            if rest.len() < HOST_FRAME_LEN {
                break;
            }
            if rest.starts_with(&[0x55, 0xAA, HOST_FRAME_LEN as u8]) {
                let mut frame = [0u8; HOST_FRAME_LEN];
                frame.copy_from_slice(&rest[..HOST_FRAME_LEN]);
                self.handle_frame(&frame, now, replies);
                pos += HOST_FRAME_LEN;
            } else {
                self.stats.host_bytes_skipped += 1;
                pos += 1;
            }
        }
        self.input.drain(..pos.min(self.input.len()));
        if self.input.len() > MAX_HOST_PENDING {
            let excess = self.input.len() - MAX_HOST_PENDING;
            self.stats.host_bytes_skipped += excess as u64;
            self.input.drain(..excess);
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    fn on_wakeup(&mut self, now: Instant, _replies: &mut Replies) {
        for m in &mut self.motors {
            m.advance(now);
        }
        self.next_tick = now + TICK;
    }

    fn on_client_gone(&mut self) {
        self.input.clear();
    }
}

/// A running adapter simulator on a pty.
pub struct DamiaoSim {
    pty: PtySim<DamiaoAdapter>,
}

impl DamiaoSim {
    /// Starts the simulator; clients open [`DamiaoSim::port`] at any baud (CDC device).
    pub fn start(config: DamiaoSimConfig) -> Result<Self, SimError> {
        let adapter = DamiaoAdapter::new(config)?;
        // CDC-ACM: no UART pacing; the device times its replies itself (CAN bus + USB).
        let pty = PtySim::spawn(adapter, WireTiming::instant())?;
        Ok(Self { pty })
    }

    pub fn port(&self) -> &str {
        self.pty.port()
    }

    /// Wire faults: drop/corrupt replies, garbage, extra latency, unplug.
    pub fn faults(&self) -> WireFaults {
        self.pty.faults()
    }

    /// Runs `f` on the adapter (motors, servos, stats) under its lock.
    pub fn with_adapter<R>(&self, f: impl FnOnce(&mut DamiaoAdapter) -> R) -> R {
        self.pty.with_device(f)
    }

    /// Latches a device fault on a motor (by name). False if there is no such motor.
    pub fn inject_fault(&self, motor: &str, state: MotorState) -> bool {
        self.with_adapter(|a| a.motor_mut(motor).map(|m| m.inject_fault(state)).is_some())
    }

    /// Sets or clears the human-hand trajectory of a motor.
    pub fn set_hand(&self, motor: &str, hand: Option<HandTrajectory>) -> bool {
        self.with_adapter(|a| a.motor_mut(motor).map(|m| m.set_hand(hand)).is_some())
    }

    pub fn stop(self) {
        self.pty.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::damiao::{
        decode_feedback, encode_host_frame, encode_mit, encode_pos_vel, encode_register_read,
        encode_register_write, AdapterStreamDecoder,
    };

    fn frames(replies_bytes: &[u8]) -> Vec<AdapterFrame> {
        let mut dec = AdapterStreamDecoder::new();
        dec.push(replies_bytes);
        std::iter::from_fn(|| dec.next_frame()).collect()
    }

    #[test]
    fn can_frame_bits_within_classic_bounds() {
        // No stuffing possible with alternating bits in the data: at least 111 bits.
        for (id, data) in [
            (0x001u32, [0u8; 8]),
            (0x7FF, [0xFF; 8]),
            (0x015, [0x55; 8]),
            (0x7FF, [0x7f, 0xff, 0x7f, 0xf0, 0xa3, 0x33, 0x37, 0xff]),
        ] {
            let bits = can_frame_bits(id, &data);
            assert!((111..=135).contains(&bits), "{id:x} {data:?}: {bits}");
        }
        assert!(can_frame_bits(0, &[0; 8]) > can_frame_bits(0x2AA, &[0x55; 8]));
    }

    #[test]
    fn mit_command_moves_motor_and_replies_with_state() {
        let cfg = DamiaoSimConfig::openk_arm();
        let mut a = DamiaoAdapter::new(cfg).unwrap();
        let t0 = Instant::now();
        let mut replies = Replies::default();
        a.on_receive(
            &encode_host_frame(3, &SpecialCommand::Enable.payload()),
            t0,
            &mut replies,
        );
        assert_eq!(replies.len(), 1);
        let lim = MotorModel::DM4310.default_limits();
        let cmd = MitCommand {
            q: 1.0,
            dq: 0.0,
            kp: 20.0,
            kd: 1.0,
            tau: 0.0,
        };
        for k in 1..=200u32 {
            let mut r = Replies::default();
            a.on_receive(
                &encode_host_frame(3, &encode_mit(&cmd, &lim).unwrap()),
                t0 + Duration::from_millis(u64::from(k) * 2),
                &mut r,
            );
        }
        let m = a.motor("shoulder_roll").unwrap();
        assert!((m.position() - 1.0).abs() < 0.05, "q = {}", m.position());
        assert_eq!(m.state(), MotorState::Enabled);
    }

    /// Pearson correlation of two equally long series.
    fn correlation(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len().min(b.len()) as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            ab += (x - ma) * (y - mb);
            aa += (x - ma) * (x - ma);
            bb += (y - mb) * (y - mb);
        }
        ab / (aa * bb).sqrt()
    }

    /// Enables motor `esc` in `mode`, then commands it every 5 ms (a 200 Hz loop) for
    /// `seconds` with `command(t)` and returns the feedback it answers each command with.
    fn drive(
        esc: u16,
        mode: ControlMode,
        seconds: f64,
        command: impl Fn(f64) -> [u8; 8],
    ) -> (Vec<Feedback>, Limits) {
        let mut a = DamiaoAdapter::new(DamiaoSimConfig::openk_arm()).unwrap();
        let t0 = Instant::now();
        let mut r = Replies::default();
        let mode_reg = RegisterValue::U32(mode.register_value());
        a.on_receive(
            &encode_host_frame(
                REGISTER_CAN_ID,
                &encode_register_write(esc, rid::CTRL_MODE, mode_reg),
            ),
            t0,
            &mut r,
        );
        a.on_receive(
            &encode_host_frame(u32::from(esc), &SpecialCommand::Enable.payload()),
            t0,
            &mut r,
        );
        let motor = a.motors().iter().find(|m| m.esc_id() == esc).unwrap();
        let (lim, mst) = (motor.limits(), u32::from(motor.mst_id()));
        let mut feedback = Vec::new();
        let ticks = (seconds / 0.005) as u32;
        for k in 1..=ticks {
            let t = f64::from(k) * 0.005;
            let mut r = Replies::default();
            a.on_receive(
                &encode_host_frame(mode.command_can_id(esc), &command(t)),
                t0 + Duration::from_secs_f64(t),
                &mut r,
            );
            let bytes: Vec<u8> = r.take().into_iter().flat_map(|(_, b)| b).collect();
            feedback.extend(
                frames(&bytes)
                    .into_iter()
                    .filter(|f| f.cmd == AdapterCmd::Received && f.can_id == mst)
                    .map(|f| decode_feedback(&f.data, &lim)),
            );
        }
        assert_eq!(feedback.len(), ticks as usize);
        (feedback, lim)
    }

    /// A smooth goal like a hand's: two sines, ±0.55 rad, at most ≈ 0.8 rad/s.
    fn smooth_goal(t: f64) -> f64 {
        use std::f64::consts::TAU;
        0.4 * (TAU * 0.25 * t).sin() + 0.15 * (TAU * 0.6 * t + 1.0).sin() - 0.15 * 1f64.sin()
    }

    /// What a checker sees in the feedback of a motor following a smooth goal: the velocity
    /// takes many values and follows the position's change; the torque stays far from TMAX.
    fn assert_looks_real(feedback: &[Feedback], lim: &Limits, what: &str) {
        let q: Vec<f64> = feedback.iter().map(|f| f.q).collect();
        let dq: Vec<f64> = feedback.iter().map(|f| f.dq).collect();
        let slope: Vec<f64> = q.windows(3).map(|w| (w[2] - w[0]) / 0.01).collect();
        let corr = correlation(&dq[1..dq.len() - 1], &slope);
        let mut distinct = dq.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        let tau_max = feedback.iter().map(|f| f.tau.abs()).fold(0.0, f64::max);
        let tau_distinct = {
            let mut t: Vec<f64> = feedback.iter().map(|f| f.tau).collect();
            t.sort_by(f64::total_cmp);
            t.dedup();
            t.len()
        };
        assert!(distinct.len() > 60, "{what}: {} velocities", distinct.len());
        assert!(corr > 0.95, "{what}: velocity vs position slope r = {corr}");
        assert!(tau_max < 0.2 * lim.tmax, "{what}: |tau| up to {tau_max}");
        assert!(tau_distinct > 20, "{what}: {tau_distinct} torques");
        let lag = feedback
            .iter()
            .enumerate()
            .map(|(k, f)| (f.q - smooth_goal(k as f64 * 0.005)).abs())
            .fold(0.0, f64::max);
        assert!(lag < 0.1, "{what}: tracking error up to {lag}");
    }

    #[test]
    fn pos_vel_motion_looks_real() {
        for (esc, model) in [(1, "DM6006"), (3, "DM4310")] {
            let (fb, lim) = drive(esc, ControlMode::PosVel, 4.0, |t| {
                encode_pos_vel(smooth_goal(t), 2.0).unwrap()
            });
            assert_looks_real(&fb, &lim, &format!("POS_VEL {model}"));
        }
    }

    #[test]
    fn mit_motion_looks_real() {
        for (esc, model) in [(1, MotorModel::DM6006), (3, MotorModel::DM4310)] {
            let (fb, lim) = drive(esc, ControlMode::Mit, 4.0, |t| {
                let cmd = MitCommand {
                    q: smooth_goal(t),
                    dq: 0.0,
                    kp: 20.0,
                    kd: 1.0,
                    tau: 0.0,
                };
                encode_mit(&cmd, &model.default_limits()).unwrap()
            });
            assert_looks_real(&fb, &lim, &format!("MIT {model:?}"));
        }
    }

    #[test]
    fn pos_vel_step_accelerates_within_bounds_and_settles() {
        let (fb, lim) = drive(3, ControlMode::PosVel, 1.5, |_| {
            encode_pos_vel(1.0, 4.0).unwrap()
        });
        let accel = mechanics(MotorModel::DM4310).accel;
        // One feedback quantum of speed (12 bits over ±VMAX) per sample, on top of the bound.
        let quantum = 2.0 * lim.vmax / 4095.0;
        for w in fb.windows(2) {
            let a = (w[1].dq - w[0].dq).abs() / 0.005;
            assert!(a <= accel * 1.05 + quantum / 0.005, "{a} rad/s² at {w:?}");
            assert!(w[1].dq <= 4.0 + quantum, "{w:?}");
        }
        let peak_tau = fb.iter().map(|f| f.tau.abs()).fold(0.0, f64::max);
        assert!(
            peak_tau < 0.1 * lim.tmax,
            "a step must not slam TMAX: {peak_tau}"
        );
        let last = fb.last().unwrap();
        assert!((last.q - 1.0).abs() < 0.005, "{last:?}");
        assert!(last.dq.abs() <= quantum, "{last:?}");
        // At rest the motor holds the link's weight: torque ≈ gravity · sin(1 rad).
        let holding = mechanics(MotorModel::DM4310).gravity * 1f64.sin();
        assert!((last.tau - holding).abs() < 0.05, "{last:?} vs {holding}");
    }

    #[test]
    fn register_read_write_and_mode_gate() {
        let mut a = DamiaoAdapter::new(DamiaoSimConfig::openk_arm()).unwrap();
        let t0 = Instant::now();
        let mut r = Replies::default();
        a.on_receive(
            &encode_host_frame(
                REGISTER_CAN_ID,
                &encode_register_write(2, rid::CTRL_MODE, RegisterValue::U32(2)),
            ),
            t0,
            &mut r,
        );
        a.on_receive(
            &encode_host_frame(REGISTER_CAN_ID, &encode_register_read(2, rid::VMAX)),
            t0,
            &mut r,
        );
        assert_eq!(r.len(), 2);
        assert_eq!(
            a.motor("shoulder_lift").unwrap().mode(),
            Some(ControlMode::PosVel)
        );
        let _ = decode_feedback;
    }

    #[test]
    fn split_host_frames_are_reassembled() {
        let mut a = DamiaoAdapter::new(DamiaoSimConfig::openk_arm()).unwrap();
        let t0 = Instant::now();
        let frame = encode_host_frame(1, &SpecialCommand::Enable.payload());
        let mut r = Replies::default();
        a.on_receive(&[0x00, 0x13], t0, &mut r);
        a.on_receive(&frame[..11], t0, &mut r);
        assert!(r.is_empty());
        a.on_receive(&frame[11..], t0, &mut r);
        assert_eq!(r.len(), 1);
        assert_eq!(a.stats().host_bytes_skipped, 2);
        assert!(a.motor("shoulder_pan").unwrap().is_enabled());
        let _ = frames;
    }
}
