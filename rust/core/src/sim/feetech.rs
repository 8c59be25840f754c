//! A bus of simulated Feetech STS3215 servos served on a pty.
//!
//! Speaks the exact wire protocol (every instruction of [`crate::protocol::feetech`]), keeps a
//! full 256-byte memory image per servo (EEPROM writes need Lock = 0, read-only registers
//! ignore writes), answers with the servo's Return_Delay_Time and the wire time of the
//! configured baud (through [`super::pty`]), and moves:
//! - [`SimMode::Follower`]: with torque on, the position tracks Goal_Position under bounded
//!   velocity (Goal_Velocity, or the servo's top speed) and acceleration (Acceleration ×
//!   100 step/s²); with torque off it stays where it is.
//! - [`SimMode::HumanHand`]: a passive leader arm moved by a scripted hand: every servo
//!   follows a sinusoid or a trajectory file, whatever its torque.
//!
//! Present_Velocity, Present_Load (from the tracking effort), Present_Current,
//! Present_Voltage, Present_Temperature (warming with load), Status and Moving are derived
//! from that motion. Device faults: error bits a servo reports in every status packet, and
//! servos that stop answering. Wire faults come from [`super::pty::WireFaults`].
//!
//! Physics is advanced lazily, in ≤ 1 ms steps, each time a packet arrives (or the state is
//! inspected), so an idle simulator costs nothing.
//!
//! Unverified behaviour of real servos, chosen here and documented: writing Goal_Position
//! switches torque on (as Feetech STS servos are reported to do; see
//! [`FeetechSimConfig::goal_write_enables_torque`]); Lock starts at 0; a write to a locked
//! EEPROM register is acknowledged but ignored; the baud-rate register is stored but the link
//! keeps the baud the simulator was started with.

use std::path::Path;
use std::time::{Duration, Instant};

use super::pty::{PtySim, Replies, SimDevice, WireFaults, WireTiming};
use super::SimError;
use crate::protocol::feetech::{
    self as ft, ByteOrder, Instruction, Packet, PacketParser, StatusFlags, BROADCAST_ID, MAX_ID,
};

const MEMORY_SIZE: usize = 256;
/// Memory addresses below this are EEPROM (need Lock = 0); 40..80 is SRAM; 80.. factory EEPROM.
const SRAM_START: usize = 40;
const FACTORY_START: usize = 80;
/// Top speed of an STS3215 at 12 V, about 0.2 s per 60°.
const TOP_SPEED_STEPS_PER_S: f64 = 3400.0;
/// Acceleration when the Acceleration register is 0 ("as fast as possible").
const MAX_ACCEL_STEPS_PER_S2: f64 = 60_000.0;
const PHYSICS_STEP: Duration = Duration::from_millis(1);
/// Longer gaps than this are not integrated step by step: the servo has long settled.
const PHYSICS_CATCH_UP: Duration = Duration::from_secs(5);
const RESOLUTION: f64 = 4096.0;

/// One servo on the simulated bus.
#[derive(Debug, Clone, PartialEq)]
pub struct ServoSpec {
    pub id: u8,
    /// Initial Present_Position (raw steps, 0–4095).
    pub position: u16,
    /// Initial Return_Delay_Time register (unit 2 µs). The factory value is 250 (500 µs);
    /// lerobot's and openk's configure step write 0.
    pub return_delay: u8,
}

impl ServoSpec {
    pub fn new(id: u8, position: u16) -> Self {
        ServoSpec {
            id,
            position,
            return_delay: 0,
        }
    }
}

/// A scripted hand moving a passive arm.
#[derive(Debug, Clone, PartialEq)]
pub enum HandScript {
    /// Servo `i` follows `home + aᵢ·(sin(2π t / pᵢ + φᵢ) − sin φᵢ)`, where home is its
    /// position when the script started, φᵢ = i·phase_step, and its amplitude aᵢ and period
    /// pᵢ are `amplitude` and `period` scaled by fixed per-servo factors (see
    /// [`HandScript::sinusoid_of`]): a hand moves each joint its own way, so the joints never
    /// pass their home together again and each stays within home ± 2·amplitude.
    Sinusoid {
        amplitude: f64,
        period: Duration,
        phase_step: f64,
    },
    /// Positions over time, linearly interpolated and looped: `times[k]` seconds and
    /// `positions[k][i]` raw steps of servo `i` (servo list order).
    Trajectory {
        times: Vec<f64>,
        positions: Vec<Vec<f64>>,
    },
}

impl HandScript {
    /// A gentle default: up to ±300 steps (≈ ±26°) over 4–7.2 s, each servo its own way.
    pub fn default_sinusoid() -> Self {
        HandScript::Sinusoid {
            amplitude: 300.0,
            period: Duration::from_secs(4),
            phase_step: 0.7,
        }
    }

    /// Reads a trajectory file: one line per sample, `t, pos_1, …, pos_n` (seconds, raw steps,
    /// comma or whitespace separated). Lines that do not start with a number (a header,
    /// comments) are skipped. Times must increase.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SimError::Config(format!("cannot read trajectory {}: {e}", path.display()))
        })?;
        Self::parse_trajectory(&text)
            .map_err(|e| SimError::Config(format!("trajectory {}: {e}", path.display())))
    }

    /// Parses the text of a trajectory file (see [`HandScript::from_file`]).
    pub fn parse_trajectory(text: &str) -> Result<Self, String> {
        let mut times = Vec::new();
        let mut positions = Vec::new();
        for (lineno, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|f| !f.is_empty())
                .collect();
            let Some(first) = fields.first() else {
                continue;
            };
            let Ok(t) = first.parse::<f64>() else {
                continue;
            };
            let row: Result<Vec<f64>, _> = fields.iter().skip(1).map(|f| f.parse()).collect();
            let row = row.map_err(|e| format!("line {}: {e}", lineno + 1))?;
            if times.last().is_some_and(|last| t <= *last) {
                return Err(format!("line {}: time {t} does not increase", lineno + 1));
            }
            times.push(t);
            positions.push(row);
        }
        if times.is_empty() {
            return Err("no samples".into());
        }
        Ok(HandScript::Trajectory { times, positions })
    }

    /// Amplitude (steps), period (s) and phase (rad) of servo `servo_index` under a
    /// [`HandScript::Sinusoid`]: the base amplitude scaled by 0.5–1 and the base period by
    /// 1–1.8, spread by the golden ratio so no two servos of an arm share them.
    pub fn sinusoid_of(
        amplitude: f64,
        period: Duration,
        phase_step: f64,
        servo_index: usize,
    ) -> (f64, f64, f64) {
        let i = servo_index as f64;
        let golden = 0.618_033_988_749_895;
        let amplitude_scale = 1.0 - 0.5 * (i * (1.0 - golden)).fract();
        let period_scale = 1.0 + 0.8 * (i * golden).fract();
        (
            amplitude * amplitude_scale,
            period.as_secs_f64().max(1e-3) * period_scale,
            i * phase_step,
        )
    }

    fn position(&self, servo_index: usize, center: f64, t: f64) -> f64 {
        match self {
            HandScript::Sinusoid {
                amplitude,
                period,
                phase_step,
            } => {
                let (amplitude, period, phase) =
                    Self::sinusoid_of(*amplitude, *period, *phase_step, servo_index);
                let w = std::f64::consts::TAU / period;
                // Offset so that t = 0 is the current position: the hand picks the arm up
                // where it lies instead of snapping it.
                center + amplitude * ((w * t + phase).sin() - phase.sin())
            }
            HandScript::Trajectory { times, positions } => {
                let value = |k: usize| {
                    positions
                        .get(k)
                        .and_then(|row| row.get(servo_index))
                        .copied()
                        .unwrap_or(center)
                };
                let (Some(&t0), Some(&t_end)) = (times.first(), times.last()) else {
                    return center;
                };
                let span = t_end - t0;
                let t = if span > 0.0 {
                    t0 + t.rem_euclid(span)
                } else {
                    t0
                };
                let k = times.partition_point(|x| *x <= t);
                if k == 0 {
                    return value(0);
                }
                if k >= times.len() {
                    return value(times.len() - 1);
                }
                let (ta, tb) = (times[k - 1], times[k]);
                let f = (t - ta) / (tb - ta);
                value(k - 1) + f * (value(k) - value(k - 1))
            }
        }
    }
}

/// How the servos move.
#[derive(Debug, Clone, PartialEq)]
pub enum SimMode {
    /// Position control under bounded velocity and acceleration when torque is on.
    Follower,
    /// Passive leader arm moved by a scripted hand.
    HumanHand(HandScript),
}

/// Configuration of a simulated STS3215 bus.
#[derive(Debug, Clone, PartialEq)]
pub struct FeetechSimConfig {
    pub servos: Vec<ServoSpec>,
    /// Line rate the wire time is computed at (the pty itself ignores baud settings).
    pub baud: u32,
    /// Latency of the USB-serial bridge added to every reply (≈1 ms on real adapters).
    pub usb_latency: Duration,
    pub mode: SimMode,
    /// STS (little-endian) or SCS (big-endian) servos.
    pub byte_order: ByteOrder,
    /// Writing Goal_Position switches torque on (unverified on hardware; see module docs).
    pub goal_write_enables_torque: bool,
}

impl FeetechSimConfig {
    /// Servos with ids `ids` at mid position (2048), 1 Mbaud, no USB hop, follower dynamics.
    pub fn new(ids: &[u8]) -> Self {
        FeetechSimConfig {
            servos: ids.iter().map(|id| ServoSpec::new(*id, 2048)).collect(),
            baud: 1_000_000,
            usb_latency: Duration::ZERO,
            mode: SimMode::Follower,
            byte_order: ByteOrder::Little,
            goal_write_enables_torque: true,
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        let mut seen = [false; 256];
        for s in &self.servos {
            if s.id > MAX_ID {
                return Err(SimError::Config(format!(
                    "servo id {} is invalid: ids are 0–253",
                    s.id
                )));
            }
            let slot = &mut seen[usize::from(s.id)];
            if *slot {
                return Err(SimError::Config(format!(
                    "servo id {} appears twice on one bus",
                    s.id
                )));
            }
            *slot = true;
        }
        if self.baud == 0 {
            return Err(SimError::Config("baud must be above 0".into()));
        }
        Ok(())
    }
}

/// State of one simulated servo.
#[derive(Debug, Clone)]
pub struct SimServo {
    mem: [u8; MEMORY_SIZE],
    /// Mechanical position in steps (Present_Position = actual − Homing_Offset).
    actual: f64,
    velocity: f64,
    /// Tracking effort, −1000..1000 (0.1 % units), drives load, current and temperature.
    effort: f64,
    temperature: f64,
    home: f64,
    /// Error bits injected by a test; reported in every status packet and in Status.
    pub injected_error: u8,
    /// A silent servo never answers (unplugged, wrong id, dead).
    pub silent: bool,
    pending_reg_write: Option<(u8, Vec<u8>)>,
}

fn addr(name: &str) -> usize {
    ft::register(name).map_or(0, |r| usize::from(r.address))
}

impl SimServo {
    fn new(spec: &ServoSpec, order: ByteOrder) -> Self {
        let mut s = SimServo {
            mem: [0; MEMORY_SIZE],
            actual: f64::from(spec.position.min(4095)),
            velocity: 0.0,
            effort: 0.0,
            temperature: 30.0,
            home: f64::from(spec.position.min(4095)),
            injected_error: 0,
            silent: false,
            pending_reg_write: None,
        };
        s.factory_defaults(spec.id, order);
        s.set_u8("Return_Delay_Time", spec.return_delay);
        s.sync_goal_to_present(order);
        s.update_feedback(order);
        s
    }

    fn factory_defaults(&mut self, id: u8, order: ByteOrder) {
        self.mem = [0; MEMORY_SIZE];
        let defaults: &[(&str, u32)] = &[
            ("Firmware_Major_Version", 3),
            ("Firmware_Minor_Version", 10),
            ("END", u32::from(order == ByteOrder::Big)),
            ("Model_Number", u32::from(ft::STS3215_MODEL_NUMBER)),
            ("Baud_Rate", 0),
            ("Return_Delay_Time", 250),
            ("Response_Status_Level", 1),
            ("Min_Position_Limit", 0),
            ("Max_Position_Limit", 4095),
            ("Max_Temperature_Limit", 70),
            ("Max_Voltage_Limit", 140),
            ("Min_Voltage_Limit", 40),
            ("Max_Torque_Limit", 1000),
            ("Phase", 0x0C),
            ("Unloading_Condition", 44),
            ("LED_Alarm_Condition", 47),
            ("P_Coefficient", 32),
            ("D_Coefficient", 32),
            ("I_Coefficient", 0),
            ("Minimum_Startup_Force", 16),
            ("CW_Dead_Zone", 1),
            ("CCW_Dead_Zone", 1),
            ("Protection_Current", 500),
            ("Angular_Resolution", 1),
            ("Protective_Torque", 20),
            ("Protection_Time", 200),
            ("Overload_Torque", 80),
            ("Velocity_closed_loop_P_proportional_coefficient", 10),
            ("Over_Current_Protection_Time", 200),
            ("Velocity_closed_loop_I_integral_coefficient", 200),
            ("Torque_Limit", 1000),
            ("Moving_Velocity_Threshold", 2),
            ("DTs", 5),
            ("Velocity_Unit_factor", 50),
            ("Maximum_Velocity_Limit", 254),
            ("Maximum_Acceleration", 254),
            ("Acceleration_Multiplier", 0),
        ];
        for (name, value) in defaults {
            if let Ok(r) = ft::register(name) {
                self.put(usize::from(r.address), *value, usize::from(r.size), order);
            }
        }
        self.mem[addr("ID")] = id;
    }

    fn put(&mut self, at: usize, raw: u32, size: usize, order: ByteOrder) {
        let mut bytes = Vec::with_capacity(2);
        order.put(&mut bytes, raw, size);
        for (i, b) in bytes.into_iter().enumerate() {
            if let Some(slot) = self.mem.get_mut(at + i) {
                *slot = b;
            }
        }
    }

    fn get(&self, at: usize, size: usize, order: ByteOrder) -> u32 {
        order.get(self.mem.get(at..at + size).unwrap_or(&[]))
    }

    fn set_u8(&mut self, name: &str, v: u8) {
        self.mem[addr(name)] = v;
    }

    fn u8_of(&self, name: &str) -> u8 {
        self.mem[addr(name)]
    }

    /// Decoded (signed) value of a named register.
    pub fn value(&self, name: &str, order: ByteOrder) -> Option<i64> {
        let r = ft::register(name).ok()?;
        Some(r.decode(self.get(usize::from(r.address), usize::from(r.size), order)))
    }

    fn id(&self) -> u8 {
        self.u8_of("ID")
    }

    fn torque_on(&self) -> bool {
        self.u8_of("Torque_Enable") != 0
    }

    fn homing_offset(&self, order: ByteOrder) -> f64 {
        self.value("Homing_Offset", order).unwrap_or(0) as f64
    }

    fn present_position(&self, order: ByteOrder) -> f64 {
        self.actual - self.homing_offset(order)
    }

    fn sync_goal_to_present(&mut self, order: ByteOrder) {
        let present = self.present_position(order).round() as i64;
        if let Ok(r) = ft::register("Goal_Position") {
            if let Ok(raw) = r.encode(present) {
                self.put(usize::from(r.address), raw, 2, order);
            }
        }
    }

    /// Target of the position loop in mechanical steps, within the position limits.
    fn target(&self, order: ByteOrder) -> f64 {
        let goal = self.value("Goal_Position", order).unwrap_or(0) as f64;
        let target = goal + self.homing_offset(order);
        let lo = self.value("Min_Position_Limit", order).unwrap_or(0) as f64;
        let hi = self.value("Max_Position_Limit", order).unwrap_or(4095) as f64;
        if lo < hi {
            target.clamp(lo, hi)
        } else {
            target.clamp(0.0, RESOLUTION - 1.0)
        }
    }

    fn step_follower(&mut self, dt: f64, order: ByteOrder) {
        if !self.torque_on() || self.value("Operating_Mode", order).unwrap_or(0) != 0 {
            self.velocity = 0.0;
            self.effort = 0.0;
            return;
        }
        let goal_speed = self
            .value("Goal_Velocity", order)
            .unwrap_or(0)
            .unsigned_abs() as f64;
        let v_max = if goal_speed > 0.0 {
            goal_speed.min(TOP_SPEED_STEPS_PER_S)
        } else {
            TOP_SPEED_STEPS_PER_S
        };
        let acc_reg = f64::from(self.u8_of("Acceleration"));
        let a_max = if acc_reg > 0.0 {
            acc_reg * 100.0
        } else {
            MAX_ACCEL_STEPS_PER_S2
        };
        let error = self.target(order) - self.actual;
        // Fastest speed from which the servo can still stop at the target.
        let v_stop = (2.0 * a_max * error.abs()).sqrt();
        let v_want = error.signum() * v_max.min(v_stop);
        let dv = (v_want - self.velocity).clamp(-a_max * dt, a_max * dt);
        self.velocity += dv;
        let step = self.velocity * dt;
        if step.abs() >= error.abs() && error.abs() < 1.0 {
            self.actual += error;
            self.velocity = 0.0;
        } else {
            self.actual += step;
        }
        self.actual = self.actual.clamp(0.0, RESOLUTION - 1.0);
        // Effort: a proportional term on the error plus the acceleration being applied.
        let p = f64::from(self.u8_of("P_Coefficient")).max(1.0);
        self.effort = (error * p * 0.05 + dv / dt.max(1e-6) * 0.01).clamp(-1000.0, 1000.0);
    }

    fn settle(&mut self, order: ByteOrder) {
        if self.torque_on() && self.value("Operating_Mode", order).unwrap_or(0) == 0 {
            self.actual = self.target(order);
        }
        self.velocity = 0.0;
        self.effort = 0.0;
    }

    fn update_feedback(&mut self, order: ByteOrder) {
        let set = |s: &mut Self, name: &str, v: i64| {
            if let Ok(r) = ft::register(name) {
                let raw = r.encode(v).unwrap_or(0);
                s.put(usize::from(r.address), raw, usize::from(r.size), order);
            }
        };
        set(
            self,
            "Present_Position",
            self.present_position(order).round() as i64,
        );
        set(self, "Present_Velocity", self.velocity.round() as i64);
        set(self, "Present_Load", self.effort.round() as i64);
        set(
            self,
            "Present_Current",
            (self.effort.abs() * 0.3).round() as i64,
        );
        // 12 V supply sagging a little under load.
        set(
            self,
            "Present_Voltage",
            (120.0 - self.effort.abs() / 200.0).round() as i64,
        );
        set(self, "Present_Temperature", self.temperature.round() as i64);
        set(self, "Status", i64::from(self.injected_error));
        let threshold = f64::from(self.u8_of("Moving_Velocity_Threshold")).max(1.0) * 10.0;
        set(self, "Moving", i64::from(self.velocity.abs() > threshold));
    }

    fn advance_temperature(&mut self, dt: f64) {
        // Warms towards 30 °C + |effort|/40 with a ~60 s time constant.
        let target = 30.0 + self.effort.abs() / 40.0;
        self.temperature += (target - self.temperature) * (dt / 60.0).min(1.0);
    }

    /// Applies a write as the servo would: read-only bytes and locked EEPROM are left alone.
    fn write(&mut self, at: u8, data: &[u8], order: ByteOrder, goal_enables_torque: bool) {
        let locked = self.u8_of("Lock") != 0;
        let old_id = self.id();
        for (i, b) in data.iter().enumerate() {
            let a = usize::from(at) + i;
            let Some(reg) = ft::STS3215_CONTROL_TABLE
                .iter()
                .find(|r| (usize::from(r.address)..usize::from(r.address + r.size)).contains(&a))
            else {
                continue;
            };
            let eeprom = !(SRAM_START..FACTORY_START).contains(&a);
            if !reg.writable() || (eeprom && locked) {
                continue;
            }
            if let Some(slot) = self.mem.get_mut(a) {
                *slot = *b;
            }
        }
        let end = usize::from(at) + data.len();
        let touches = |name: &str| {
            ft::register(name).is_ok_and(|r| {
                let a = usize::from(r.address);
                a < end && usize::from(at) < a + usize::from(r.size)
            })
        };
        // A servo cannot take the broadcast id (or beyond): such a write is refused.
        if self.id() > MAX_ID {
            self.set_u8("ID", old_id);
        }
        if touches("Torque_Enable") && !self.torque_on() {
            self.velocity = 0.0;
        }
        if touches("Goal_Position") && goal_enables_torque {
            self.set_u8("Torque_Enable", 1);
        }
        self.update_feedback(order);
    }
}

/// The simulated bus: a [`SimDevice`] holding every servo.
pub struct FeetechBusDevice {
    servos: Vec<SimServo>,
    parser: PacketParser,
    order: ByteOrder,
    mode: SimMode,
    goal_write_enables_torque: bool,
    started: Instant,
    last_update: Instant,
    out: Vec<u8>,
    /// Instruction packets received (valid checksum), for tests and stats.
    pub packets_received: u64,
    /// Instruction packets dropped for a bad checksum.
    pub packets_corrupt: u64,
}

impl FeetechBusDevice {
    pub fn new(config: &FeetechSimConfig) -> Result<Self, SimError> {
        config.validate()?;
        let now = Instant::now();
        Ok(FeetechBusDevice {
            servos: config
                .servos
                .iter()
                .map(|s| SimServo::new(s, config.byte_order))
                .collect(),
            parser: PacketParser::for_instructions(),
            order: config.byte_order,
            mode: config.mode.clone(),
            goal_write_enables_torque: config.goal_write_enables_torque,
            started: now,
            last_update: now,
            out: Vec::with_capacity(256),
            packets_received: 0,
            packets_corrupt: 0,
        })
    }

    fn index_of(&self, id: u8) -> Option<usize> {
        self.servos.iter().position(|s| s.id() == id)
    }

    /// The servo with bus id `id`.
    pub fn servo(&self, id: u8) -> Option<&SimServo> {
        self.index_of(id).and_then(|i| self.servos.get(i))
    }

    /// Mutable access to the servo with bus id `id` (inject errors, silence it).
    pub fn servo_mut(&mut self, id: u8) -> Option<&mut SimServo> {
        self.index_of(id).and_then(move |i| self.servos.get_mut(i))
    }

    /// Ids currently on the bus, in configuration order.
    pub fn ids(&self) -> Vec<u8> {
        self.servos.iter().map(|s| s.id()).collect()
    }

    /// Decoded value of register `name` of servo `id`, with physics advanced to `now`.
    pub fn read_register(&mut self, id: u8, name: &str, now: Instant) -> Option<i64> {
        self.advance(now);
        let order = self.order;
        self.servo(id)?.value(name, order)
    }

    /// Writes register `name` of servo `id` directly (bypasses Lock and access checks, like a
    /// test fixture reaching into the servo).
    pub fn set_register(&mut self, id: u8, name: &str, value: i64, now: Instant) -> bool {
        self.advance(now);
        let order = self.order;
        let Ok(r) = ft::register(name) else {
            return false;
        };
        let Ok(raw) = r.encode(value) else {
            return false;
        };
        let Some(s) = self.servo_mut(id) else {
            return false;
        };
        s.put(usize::from(r.address), raw, usize::from(r.size), order);
        s.update_feedback(order);
        true
    }

    /// Mechanical position of servo `id` in steps (not rounded), advanced to `now`.
    pub fn position(&mut self, id: u8, now: Instant) -> Option<f64> {
        self.advance(now);
        self.servo(id).map(|s| s.actual)
    }

    /// Switches between follower dynamics and a scripted hand at run time.
    pub fn set_mode(&mut self, mode: SimMode, now: Instant) {
        self.advance(now);
        self.mode = mode;
        self.started = now;
        for s in &mut self.servos {
            s.home = s.actual;
        }
    }

    /// Advances the physics of every servo to `now`.
    pub fn advance(&mut self, now: Instant) {
        let order = self.order;
        let elapsed = now.saturating_duration_since(self.last_update);
        if elapsed.is_zero() {
            return;
        }
        match &self.mode {
            SimMode::HumanHand(script) => {
                let t = now.saturating_duration_since(self.started).as_secs_f64();
                let dt = elapsed.as_secs_f64();
                for (i, s) in self.servos.iter_mut().enumerate() {
                    let p = script.position(i, s.home, t).clamp(0.0, RESOLUTION - 1.0);
                    s.velocity = (p - s.actual) / dt;
                    s.actual = p;
                    s.effort = 0.0;
                    s.advance_temperature(dt);
                    s.update_feedback(order);
                }
            }
            SimMode::Follower => {
                if elapsed > PHYSICS_CATCH_UP {
                    for s in &mut self.servos {
                        s.settle(order);
                        s.advance_temperature(elapsed.as_secs_f64());
                        s.update_feedback(order);
                    }
                } else {
                    let mut left = elapsed;
                    while !left.is_zero() {
                        let step = left.min(PHYSICS_STEP);
                        left -= step;
                        let dt = step.as_secs_f64();
                        for s in &mut self.servos {
                            s.step_follower(dt, order);
                            s.advance_temperature(dt);
                        }
                    }
                    for s in &mut self.servos {
                        s.update_feedback(order);
                    }
                }
            }
        }
        self.last_update = now;
    }

    fn reply_gap(servo: &SimServo) -> Duration {
        Duration::from_micros(u64::from(servo.u8_of("Return_Delay_Time")) * 2)
    }

    fn status(&mut self, index: usize, params: &[u8], replies: &mut Replies) {
        let Some(servo) = self.servos.get(index) else {
            return;
        };
        if servo.silent {
            return;
        }
        let flags = StatusFlags(servo.injected_error);
        let gap = Self::reply_gap(servo);
        if ft::encode_status(&mut self.out, servo.id(), flags, params).is_ok() {
            replies.send(gap, &self.out);
        }
    }

    /// Acknowledges a non-read instruction if the servo's Response_Status_Level asks for it.
    fn ack(&mut self, index: usize, broadcast: bool, replies: &mut Replies) {
        let level = self
            .servos
            .get(index)
            .map_or(0, |s| s.u8_of("Response_Status_Level"));
        if !broadcast && level >= 1 {
            self.status(index, &[], replies);
        }
    }

    fn targets(&self, id: u8) -> Vec<usize> {
        if id == BROADCAST_ID {
            (0..self.servos.len()).collect()
        } else {
            self.index_of(id).into_iter().collect()
        }
    }

    fn handle(&mut self, pkt: &Packet, replies: &mut Replies) {
        let order = self.order;
        let broadcast = pkt.id == BROADCAST_ID;
        let params = pkt.params();
        let Some(instruction) = pkt.instruction() else {
            return; // unknown instruction: real servos stay silent
        };
        match instruction {
            Instruction::Ping => {
                for i in self.targets(pkt.id) {
                    self.status(i, &[], replies);
                }
            }
            Instruction::Read => {
                let (Some(&at), Some(&len)) = (params.first(), params.get(1)) else {
                    return;
                };
                if broadcast {
                    return;
                }
                for i in self.targets(pkt.id) {
                    let data = self.memory_slice(i, at, len);
                    self.status(i, &data, replies);
                }
            }
            Instruction::Write | Instruction::RegWrite => {
                let Some((&at, data)) = params.split_first() else {
                    return;
                };
                let goal_torque = self.goal_write_enables_torque;
                for i in self.targets(pkt.id) {
                    if let Some(s) = self.servos.get_mut(i) {
                        if instruction == Instruction::Write {
                            s.write(at, data, order, goal_torque);
                        } else {
                            s.pending_reg_write = Some((at, data.to_vec()));
                        }
                    }
                    self.ack(i, broadcast, replies);
                }
            }
            Instruction::Action => {
                let goal_torque = self.goal_write_enables_torque;
                for i in self.targets(pkt.id) {
                    if let Some(s) = self.servos.get_mut(i) {
                        if let Some((at, data)) = s.pending_reg_write.take() {
                            s.write(at, &data, order, goal_torque);
                        }
                    }
                    self.ack(i, broadcast, replies);
                }
            }
            Instruction::Reset => {
                for i in self.targets(pkt.id) {
                    if let Some(s) = self.servos.get_mut(i) {
                        // Keeps its id (and the link keeps its baud) so the bus stays usable.
                        let id = s.id();
                        s.factory_defaults(id, order);
                        s.sync_goal_to_present(order);
                        s.update_feedback(order);
                    }
                    self.ack(i, broadcast, replies);
                }
            }
            Instruction::Ofscal => {
                let wanted = order.get(params) as f64;
                for i in self.targets(pkt.id) {
                    if let Some(s) = self.servos.get_mut(i) {
                        let offset = (s.actual - wanted).round() as i64;
                        if let Ok(r) = ft::register("Homing_Offset") {
                            if let Ok(raw) = r.encode(offset) {
                                s.put(usize::from(r.address), raw, 2, order);
                            }
                        }
                        s.sync_goal_to_present(order);
                        s.update_feedback(order);
                    }
                    self.ack(i, broadcast, replies);
                }
            }
            Instruction::SyncRead => {
                let (Some(&at), Some(&len)) = (params.first(), params.get(1)) else {
                    return;
                };
                // Replies come in list order, each after its own return delay.
                for &id in params.get(2..).unwrap_or(&[]) {
                    if let Some(i) = self.index_of(id) {
                        let data = self.memory_slice(i, at, len);
                        self.status(i, &data, replies);
                    }
                }
            }
            Instruction::SyncWrite => {
                let (Some(&at), Some(&len)) = (params.first(), params.get(1)) else {
                    return;
                };
                let stride = usize::from(len) + 1;
                let goal_torque = self.goal_write_enables_torque;
                for entry in params.get(2..).unwrap_or(&[]).chunks_exact(stride) {
                    let Some((&id, data)) = entry.split_first() else {
                        continue;
                    };
                    if let Some(s) = self.servo_mut(id) {
                        s.write(at, data, order, goal_torque);
                    }
                }
            }
        }
    }

    fn memory_slice(&self, index: usize, at: u8, len: u8) -> Vec<u8> {
        let start = usize::from(at);
        let end = (start + usize::from(len)).min(MEMORY_SIZE);
        self.servos
            .get(index)
            .and_then(|s| s.mem.get(start..end))
            .map(|b| {
                let mut v = b.to_vec();
                v.resize(usize::from(len), 0);
                v
            })
            .unwrap_or_default()
    }
}

impl SimDevice for FeetechBusDevice {
    fn on_receive(&mut self, bytes: &[u8], now: Instant, replies: &mut Replies) {
        self.advance(now);
        self.parser.push(bytes);
        while let Some(result) = self.parser.next() {
            match result {
                Ok(pkt) => {
                    self.packets_received += 1;
                    self.handle(&pkt, replies);
                }
                // A servo ignores an instruction with a bad checksum.
                Err(_) => self.packets_corrupt += 1,
            }
        }
    }

    fn on_client_gone(&mut self) {
        self.parser.clear();
    }
}

/// A running STS3215 bus simulator on a pty. Stops on drop.
pub struct FeetechSim {
    sim: PtySim<FeetechBusDevice>,
}

impl FeetechSim {
    /// Starts the simulator; clients open [`FeetechSim::port`].
    pub fn start(config: FeetechSimConfig) -> Result<Self, SimError> {
        let device = FeetechBusDevice::new(&config)?;
        let timing = WireTiming::uart(config.baud).with_usb_latency(config.usb_latency);
        Ok(FeetechSim {
            sim: PtySim::spawn(device, timing)?,
        })
    }

    /// The pty path to open (`/dev/pts/N`).
    pub fn port(&self) -> &str {
        self.sim.port()
    }

    /// Wire fault injection (drop / corrupt replies, garbage, latency, unplug).
    pub fn faults(&self) -> WireFaults {
        self.sim.faults()
    }

    /// Runs `f` on the bus device under its lock, physics advanced to now.
    pub fn with_bus<R>(&self, f: impl FnOnce(&mut FeetechBusDevice) -> R) -> R {
        self.sim.with_device(|d| {
            d.advance(Instant::now());
            f(d)
        })
    }

    /// Makes servo `id` report `bits` (see [`StatusFlags`]) in every status packet; 0 clears.
    pub fn set_error_bits(&self, id: u8, bits: u8) -> bool {
        self.with_bus(|b| {
            b.servo_mut(id).map(|s| {
                s.injected_error = bits;
            })
        })
        .is_some()
    }

    /// Makes servo `id` stop (or resume) answering.
    pub fn set_silent(&self, id: u8, silent: bool) -> bool {
        self.with_bus(|b| b.servo_mut(id).map(|s| s.silent = silent))
            .is_some()
    }

    /// Decoded value of a register of servo `id`, now.
    pub fn register(&self, id: u8, name: &str) -> Option<i64> {
        self.with_bus(|b| b.read_register(id, name, Instant::now()))
    }

    /// Sets a register of servo `id` directly (test fixture; no Lock check).
    pub fn set_register(&self, id: u8, name: &str, value: i64) -> bool {
        self.with_bus(|b| b.set_register(id, name, value, Instant::now()))
    }

    /// Mechanical position of servo `id` in steps, now.
    pub fn position(&self, id: u8) -> Option<f64> {
        self.with_bus(|b| b.position(id, Instant::now()))
    }

    /// Switches the motion model at run time.
    pub fn set_mode(&self, mode: SimMode) {
        self.with_bus(|b| b.set_mode(mode, Instant::now()));
    }

    /// Traffic counters of the pty link.
    pub fn stats(&self) -> super::pty::SimStats {
        self.sim.stats()
    }

    /// Stops the simulator and closes the pty.
    pub fn stop(self) {
        self.sim.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(ids: &[u8]) -> FeetechBusDevice {
        FeetechBusDevice::new(&FeetechSimConfig::new(ids)).unwrap()
    }

    fn exchange(d: &mut FeetechBusDevice, request: &[u8], now: Instant) -> Vec<Vec<u8>> {
        let mut replies = Replies::default();
        d.on_receive(request, now, &mut replies);
        replies.take().into_iter().map(|(_, b)| b).collect()
    }

    #[test]
    fn answers_ping_read_and_sync_read() {
        let mut d = device(&[1, 2, 3]);
        let now = Instant::now();
        let mut req = Vec::new();
        ft::encode_ping(&mut req, 2).unwrap();
        assert_eq!(
            exchange(&mut d, &req, now),
            [vec![0xff, 0xff, 2, 2, 0, 0xfb]]
        );

        ft::encode_read(&mut req, 1, 3, 2).unwrap();
        let r = exchange(&mut d, &req, now);
        let pkt = ft::decode_status(&r[0]).unwrap().unwrap();
        assert_eq!(ByteOrder::Little.get(pkt.params()), 777);

        ft::encode_sync_read(&mut req, 56, 2, &[3, 9, 1]).unwrap();
        let ids: Vec<u8> = exchange(&mut d, &req, now)
            .iter()
            .map(|r| ft::decode_status(r).unwrap().unwrap().id)
            .collect();
        assert_eq!(ids, [3, 1]); // 9 is absent; list order kept
    }

    #[test]
    fn follower_tracks_goal_with_bounded_speed() {
        let mut d = device(&[1]);
        let t0 = Instant::now();
        let mut req = Vec::new();
        ft::encode_write(&mut req, 1, 42, &3000u16.to_le_bytes()).unwrap();
        exchange(&mut d, &req, t0);
        assert_eq!(d.read_register(1, "Torque_Enable", t0), Some(1));
        let p_mid = d.position(1, t0 + Duration::from_millis(100)).unwrap();
        // 100 ms at ≤ 3400 step/s moves at most 340 steps.
        assert!(p_mid > 2048.0 && p_mid <= 2048.0 + 341.0, "{p_mid}");
        let p_end = d.position(1, t0 + Duration::from_secs(2)).unwrap();
        assert!((p_end - 3000.0).abs() < 1.0, "{p_end}");
        assert_eq!(
            d.read_register(1, "Present_Position", t0 + Duration::from_secs(2)),
            Some(3000)
        );
    }

    #[test]
    fn eeprom_needs_unlock_and_read_only_is_kept() {
        let mut d = device(&[1]);
        let now = Instant::now();
        let mut req = Vec::new();
        ft::encode_write(&mut req, 1, 55, &[1]).unwrap(); // Lock
        exchange(&mut d, &req, now);
        ft::encode_write(&mut req, 1, 7, &[0]).unwrap(); // Return_Delay_Time
        exchange(&mut d, &req, now);
        assert_eq!(d.read_register(1, "Return_Delay_Time", now), Some(0));
        d.set_register(1, "Return_Delay_Time", 10, now);
        exchange(&mut d, &req, now); // locked: ignored
        assert_eq!(d.read_register(1, "Return_Delay_Time", now), Some(10));
        ft::encode_write(&mut req, 1, 3, &[1, 1]).unwrap(); // Model_Number is read-only
        exchange(&mut d, &req, now);
        assert_eq!(d.read_register(1, "Model_Number", now), Some(777));
    }

    #[test]
    fn injected_errors_and_silence() {
        let mut d = device(&[1, 2]);
        let now = Instant::now();
        d.servo_mut(1).unwrap().injected_error = StatusFlags::OVERHEAT;
        d.servo_mut(2).unwrap().silent = true;
        let mut req = Vec::new();
        ft::encode_sync_read(&mut req, 56, 2, &[1, 2]).unwrap();
        let r = exchange(&mut d, &req, now);
        assert_eq!(r.len(), 1);
        let pkt = ft::decode_status(&r[0]).unwrap().unwrap();
        assert!(pkt.error().contains(StatusFlags::OVERHEAT));
    }

    #[test]
    fn hand_moves_each_joint_its_own_way() {
        // The leader arm's seven servos, sampled like dataset rows (30 Hz) for a minute.
        let script = HandScript::default_sinusoid();
        let home = 2048.0;
        let samples: Vec<Vec<f64>> = (1..=1800)
            .map(|k| {
                let t = f64::from(k) / 30.0;
                (0..7)
                    .map(|i| script.position(i, home, t).round())
                    .collect()
            })
            .collect();
        let at_home = samples
            .iter()
            .filter(|row| row.iter().all(|p| *p == home))
            .count();
        assert_eq!(at_home, 0, "rows with every joint at home");
        let close = samples
            .iter()
            .filter(|row| row.iter().all(|p| (p - home).abs() < 30.0))
            .count();
        assert!(
            close < 18,
            "{close} rows with every joint within 30 steps of home"
        );
        for i in 0..7 {
            let (lo, hi) = samples
                .iter()
                .map(|row| row[i])
                .fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p), hi.max(p)));
            // In the simulated arm's calibrated range (1024–3072), and really moving.
            assert!(
                lo >= home - 600.0 && hi <= home + 600.0,
                "servo {i}: {lo}..{hi}"
            );
            assert!(hi - lo > 250.0, "servo {i}: {lo}..{hi}");
        }
        let (a0, p0, _) = HandScript::sinusoid_of(300.0, Duration::from_secs(4), 0.7, 0);
        assert_eq!((a0, p0), (300.0, 4.0));
        let params: Vec<(f64, f64, f64)> = (0..7)
            .map(|i| HandScript::sinusoid_of(300.0, Duration::from_secs(4), 0.7, i))
            .collect();
        for (i, a) in params.iter().enumerate() {
            for b in params.iter().skip(i + 1) {
                assert!((a.1 - b.1).abs() > 0.05, "periods {a:?} {b:?}");
            }
        }
    }

    #[test]
    fn hand_mode_moves_a_passive_arm() {
        let mut cfg = FeetechSimConfig::new(&[1, 2]);
        cfg.mode = SimMode::HumanHand(HandScript::default_sinusoid());
        let mut d = FeetechBusDevice::new(&cfg).unwrap();
        let t0 = d.started;
        let a = d.position(1, t0 + Duration::from_millis(500)).unwrap();
        let b = d.position(1, t0 + Duration::from_millis(1000)).unwrap();
        assert_ne!(a, b);
        assert_eq!(d.read_register(1, "Torque_Enable", t0), Some(0));

        let traj = HandScript::parse_trajectory("t,a,b\n0,100,200\n1,300,400\n").unwrap();
        assert!((traj.position(1, 0.0, 0.5) - 300.0).abs() < 1e-9);
    }
}
