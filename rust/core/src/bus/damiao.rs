//! `DamiaoBus`: DAMIAO motors behind a DAMIAO USB-CAN adapter, and `StsCanBus`: the two STS
//! servos behind OpenK's STS-over-CAN bridge (legacy follower).
//!
//! The per-tick command path (`mit_all`, `pos_vel_all`, `vel_all`) writes one 30-byte frame
//! per motor in a single write, then collects one feedback frame per motor: the command
//! replies are the telemetry, so no separate refresh is sent (spec §E). Motors that did not
//! answer in time get their command again, up to `retries` times. That path allocates
//! nothing: frames are built in a preallocated buffer and bookkeeping uses fixed arrays.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::error::{Classified, FaultKind};
use crate::protocol::damiao::{
    decode_feedback, decode_register_frame, encode_host_frame, encode_mit, encode_pos_force,
    encode_pos_vel, encode_refresh, encode_register_read, encode_register_save,
    encode_register_write, encode_vel, rid, unpack_feedback, AdapterCmd, AdapterFrame,
    AdapterStreamDecoder, ControlMode, DamiaoProtocolError, Feedback, Limits, MitCommand, MotorIds,
    MotorModel, MotorRouter, MotorState, RegisterOp, RegisterValue, SpecialCommand, HOST_FRAME_LEN,
    REGISTER_CAN_ID,
};
use crate::protocol::sts_can;
use crate::transport::{SerialTransport, TransportError};

/// The adapter's nominal baud rate (it is a USB CDC device; the rate is not a real limit).
pub const DEFAULT_BAUD: u32 = 921_600;
/// Most motors one bus handles: state frames carry only the low nibble of ESC_ID.
pub const MAX_MOTORS: usize = 16;

/// Errors of the DAMIAO bus layer. Messages name the port, the motor and what to do next.
#[derive(Debug, Error)]
pub enum DamiaoBusError {
    #[error(transparent)]
    Transport(#[from] TransportError),

    #[error("{port}: motor {motor}: {source}")]
    Protocol {
        port: String,
        motor: String,
        #[source]
        source: DamiaoProtocolError,
    },

    #[error(
        "{port}: motor {motor} (ESC_ID 0x{esc_id:02x}) did not answer {what} within {waited:?} \
         ({attempts} attempts); check its power, the CAN wiring and termination, and that its \
         ESC_ID/MST_ID registers match the configuration (`openk scan {port} --damiao` lists the \
         motors that answer)"
    )]
    Timeout {
        port: String,
        motor: String,
        esc_id: u16,
        what: &'static str,
        waited: Duration,
        attempts: u32,
    },

    #[error(
        "{port}: motor {motor} reports {state} (state 0x{nibble:x}) and has disabled itself; \
         remove the cause, then clear the error and enable it again"
    )]
    MotorFault {
        port: String,
        motor: String,
        state: MotorState,
        nibble: u8,
    },

    #[error(
        "{port}: motor {motor} still reports {got} after {attempts} {what} commands; check that \
         its ESC_ID/MST_ID match the configuration and that no other program drives the bus"
    )]
    UnexpectedState {
        port: String,
        motor: String,
        what: &'static str,
        got: MotorState,
        attempts: u32,
    },

    #[error(
        "{port}: motor {motor}: register {rid} holds {got} after writing {wanted}; the motor \
         refused the value (read-only register, or out of range)"
    )]
    VerifyFailed {
        port: String,
        motor: String,
        rid: u8,
        wanted: f64,
        got: f64,
    },

    #[error(
        "{port}: motor {motor} is in {actual} mode but a {wanted} command was sent; call \
         set_control_mode first (the motor ignores commands of another mode)"
    )]
    WrongMode {
        port: String,
        motor: String,
        actual: &'static str,
        wanted: &'static str,
    },

    #[error("{port}: configuration: {message}")]
    Config { port: String, message: String },
}

impl Classified for DamiaoBusError {
    fn fault_kind(&self) -> FaultKind {
        match self {
            DamiaoBusError::Transport(e) => e.fault_kind(),
            DamiaoBusError::Protocol { source, .. } => source.fault_kind(),
            DamiaoBusError::Timeout { .. } => FaultKind::Timeout,
            DamiaoBusError::MotorFault { .. }
            | DamiaoBusError::UnexpectedState { .. }
            | DamiaoBusError::VerifyFailed { .. } => FaultKind::Motor,
            // A command of the wrong mode is the caller's setup, not the motor's fault.
            DamiaoBusError::WrongMode { .. } | DamiaoBusError::Config { .. } => FaultKind::Config,
        }
    }
}

impl DamiaoBusError {
    /// The motor the error is about, when it is about one.
    pub fn motor(&self) -> Option<&str> {
        match self {
            DamiaoBusError::Transport(_) | DamiaoBusError::Config { .. } => None,
            DamiaoBusError::Protocol { motor, .. }
            | DamiaoBusError::Timeout { motor, .. }
            | DamiaoBusError::MotorFault { motor, .. }
            | DamiaoBusError::UnexpectedState { motor, .. }
            | DamiaoBusError::VerifyFailed { motor, .. }
            | DamiaoBusError::WrongMode { motor, .. } => Some(motor),
        }
    }
}

pub type Result<T> = std::result::Result<T, DamiaoBusError>;

/// One motor as the configuration names it.
#[derive(Debug, Clone, PartialEq)]
pub struct DamiaoMotorSpec {
    pub name: String,
    pub model: MotorModel,
    /// Id the motor listens on (RID 8).
    pub esc_id: u16,
    /// Id the motor answers with (RID 7).
    pub mst_id: u16,
}

/// Bus behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct DamiaoBusOptions {
    pub baud: u32,
    /// Wait for the replies of one attempt of a command round.
    pub timeout: Duration,
    /// Extra attempts after the first, for commands and register access.
    pub retries: u32,
    /// Wait for one register reply.
    pub register_timeout: Duration,
    /// Read PMAX/VMAX/TMAX (RIDs 21–23) and CTRL_MODE at connect and use them.
    pub read_registers_at_connect: bool,
}

impl Default for DamiaoBusOptions {
    fn default() -> Self {
        Self {
            baud: DEFAULT_BAUD,
            // Replies take ~1.5 ms for five motors; the margin absorbs scheduler hiccups.
            timeout: Duration::from_millis(20),
            retries: 2,
            register_timeout: Duration::from_millis(50),
            read_registers_at_connect: true,
        }
    }
}

impl Default for DamiaoBusStats {
    fn default() -> Self {
        Self {
            frames_sent: 0,
            frames_received: 0,
            retries: 0,
            retries_by_motor: [0; MAX_MOTORS],
            late_frames: 0,
            bytes_skipped: 0,
        }
    }
}

/// Traffic counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamiaoBusStats {
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Command retries (a motor's reply was missing).
    pub retries: u64,
    /// The same, by motor index (register reads/writes included).
    pub retries_by_motor: [u64; MAX_MOTORS],
    /// Replies that arrived after their round had ended.
    pub late_frames: u64,
    /// Bytes the stream decoder skipped as garbage.
    pub bytes_skipped: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    spec: DamiaoMotorSpec,
    limits: Limits,
    mode: Option<ControlMode>,
    angle_offset: Option<f64>,
    last: Option<Feedback>,
}

/// What the collector is waiting for.
#[derive(Clone, Copy)]
enum Expect {
    /// A state frame from each motor whose bit is set.
    States(u32),
    /// One register reply from motor `index` with op and rid.
    Register {
        index: usize,
        op: RegisterOp,
        rid: u8,
    },
}

/// DAMIAO motors on one USB-CAN adapter.
pub struct DamiaoBus {
    port: String,
    transport: SerialTransport,
    options: DamiaoBusOptions,
    motors: Vec<Slot>,
    router: MotorRouter,
    decoder: AdapterStreamDecoder,
    tx: Vec<u8>,
    rx: [u8; 512],
    register_reply: Option<RegisterValue>,
    flight: Option<Flight>,
    stats: DamiaoBusStats,
}

/// A command round sent and not yet collected.
#[derive(Clone, Copy)]
struct Flight {
    frames: [(u32, [u8; 8]); MAX_MOTORS],
    pending: u32,
    attempts: u32,
    deadline: Instant,
    what: &'static str,
}

impl DamiaoBus {
    /// Opens the port. No traffic is sent; call [`DamiaoBus::connect`] next.
    pub fn open(
        port: &str,
        motors: Vec<DamiaoMotorSpec>,
        options: DamiaoBusOptions,
    ) -> Result<Self> {
        let config = |message: String| DamiaoBusError::Config {
            port: port.to_string(),
            message,
        };
        if motors.is_empty() || motors.len() > MAX_MOTORS {
            return Err(config(format!(
                "{} motors given; a bus needs 1 to {MAX_MOTORS}",
                motors.len()
            )));
        }
        let ids: Vec<MotorIds> = motors
            .iter()
            .map(|m| MotorIds {
                esc_id: m.esc_id,
                mst_id: m.mst_id,
            })
            .collect();
        let router = MotorRouter::new(&ids).map_err(|amb| {
            let name = |i: usize| motors.get(i).map_or("?", |m| m.name.as_str()).to_string();
            config(format!(
                "motors {} and {} cannot be told apart on the wire (same ESC_ID, or same MST_ID \
                 with the same low nibble of ESC_ID); give them distinct ids",
                name(amb.first),
                name(amb.second)
            ))
        })?;
        for (i, m) in motors.iter().enumerate() {
            if motors.iter().skip(i + 1).any(|o| o.name == m.name) {
                return Err(config(format!("motor name {:?} is used twice", m.name)));
            }
        }
        let transport = SerialTransport::open(port, options.baud)?;
        let slots = motors
            .into_iter()
            .map(|spec| Slot {
                limits: spec.model.default_limits(),
                spec,
                mode: None,
                angle_offset: None,
                last: None,
            })
            .collect::<Vec<_>>();
        Ok(Self {
            port: port.to_string(),
            transport,
            options,
            tx: Vec::with_capacity(HOST_FRAME_LEN * slots.len()),
            motors: slots,
            router,
            decoder: AdapterStreamDecoder::new(),
            rx: [0; 512],
            register_reply: None,
            flight: None,
            stats: DamiaoBusStats::default(),
        })
    }

    /// Reads each motor's mapping limits (RIDs 21–23), control mode (RID 10) and angle offset
    /// (RID 54, m_off), if the options ask for it. Limits read from a motor replace the
    /// model's table values; a changed m_off tells that someone re-zeroed the motor.
    pub fn connect(&mut self) -> Result<()> {
        if !self.options.read_registers_at_connect {
            return Ok(());
        }
        for i in 0..self.motors.len() {
            let pmax = self.read_register(i, rid::PMAX)?.as_f64();
            let vmax = self.read_register(i, rid::VMAX)?.as_f64();
            let tmax = self.read_register(i, rid::TMAX)?.as_f64();
            let limits = Limits::new(pmax, vmax, tmax).map_err(|e| self.protocol_error(i, e))?;
            let mode_raw = self.read_register(i, rid::CTRL_MODE)?;
            let mode = match mode_raw {
                RegisterValue::U32(v) => ControlMode::from_register(v).ok(),
                RegisterValue::F32(_) => None,
            };
            let angle_offset = self.read_register(i, rid::M_OFF)?.as_f64();
            if let Some(slot) = self.motors.get_mut(i) {
                slot.angle_offset = Some(angle_offset);
                if slot.limits != limits {
                    log::info!(
                        "{}: motor {} maps with PMAX/VMAX/TMAX {}/{}/{} from its registers (table: {}/{}/{})",
                        self.port, slot.spec.name, limits.pmax, limits.vmax, limits.tmax,
                        slot.limits.pmax, slot.limits.vmax, slot.limits.tmax
                    );
                }
                slot.limits = limits;
                slot.mode = mode;
            }
        }
        Ok(())
    }

    pub fn port(&self) -> &str {
        &self.port
    }

    pub fn len(&self) -> usize {
        self.motors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.motors.is_empty()
    }

    pub fn motor_names(&self) -> impl Iterator<Item = &str> {
        self.motors.iter().map(|m| m.spec.name.as_str())
    }

    /// Index of a motor by name.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        self.motors
            .iter()
            .position(|m| m.spec.name == name)
            .ok_or_else(|| DamiaoBusError::Config {
                port: self.port.clone(),
                message: format!(
                    "no motor named {name:?}; motors: {}",
                    self.motors
                        .iter()
                        .map(|m| m.spec.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    pub fn spec(&self, index: usize) -> Option<&DamiaoMotorSpec> {
        self.motors.get(index).map(|m| &m.spec)
    }

    /// Mapping limits in use for a motor.
    pub fn limits(&self, index: usize) -> Option<Limits> {
        self.motors.get(index).map(|m| m.limits)
    }

    /// Control mode last read or set, if known.
    pub fn control_mode(&self, index: usize) -> Option<ControlMode> {
        self.motors.get(index).and_then(|m| m.mode)
    }

    /// The motor's m_off register (RID 54) as read at connect.
    pub fn angle_offset(&self, index: usize) -> Option<f64> {
        self.motors.get(index).and_then(|m| m.angle_offset)
    }

    /// Last feedback received from a motor.
    pub fn last_feedback(&self, index: usize) -> Option<Feedback> {
        self.motors.get(index).and_then(|m| m.last)
    }

    pub fn stats(&self) -> DamiaoBusStats {
        DamiaoBusStats {
            bytes_skipped: self.decoder.skipped_bytes(),
            ..self.stats
        }
    }

    pub fn options(&self) -> &DamiaoBusOptions {
        &self.options
    }

    /// Changes the timeouts and retries of later rounds (e.g. generous while configuring,
    /// tighter once the control loop runs). `read_registers_at_connect` and `baud` only act
    /// at open and connect.
    pub fn set_options(&mut self, options: DamiaoBusOptions) {
        self.options = options;
    }

    // -----------------------------------------------------------------------------------------
    // Per-tick commands
    // -----------------------------------------------------------------------------------------

    /// One MIT command per motor (in bus order); fills `feedback` with each motor's reply.
    pub fn mit_all(&mut self, commands: &[MitCommand], feedback: &mut [Feedback]) -> Result<()> {
        self.check_lengths(commands.len(), feedback.len())?;
        self.start_mit_all(commands)?;
        self.finish_round(feedback)
    }

    /// One POS_VEL command (position rad, speed limit rad/s) per motor.
    pub fn pos_vel_all(&mut self, targets: &[(f64, f64)], feedback: &mut [Feedback]) -> Result<()> {
        self.check_lengths(targets.len(), feedback.len())?;
        self.start_pos_vel_all(targets)?;
        self.finish_round(feedback)
    }

    /// One VEL command (rad/s) per motor.
    pub fn vel_all(&mut self, velocities: &[f64], feedback: &mut [Feedback]) -> Result<()> {
        self.check_lengths(velocities.len(), feedback.len())?;
        self.start_vel_all(velocities)?;
        self.finish_round(feedback)
    }

    /// One POS_FORCE command (position rad, speed ×100, current per-unit ×10000) per motor.
    pub fn pos_force_all(
        &mut self,
        targets: &[(f64, i64, i64)],
        feedback: &mut [Feedback],
    ) -> Result<()> {
        self.check_lengths(targets.len(), feedback.len())?;
        self.start_pos_force_all(targets)?;
        self.finish_round(feedback)
    }

    /// Asks every motor for its state (0x7FF refresh). Only needed when no command is sent.
    pub fn refresh_all(&mut self, feedback: &mut [Feedback]) -> Result<()> {
        self.check_lengths(self.motors.len(), feedback.len())?;
        let mut frames = [(0u32, [0u8; 8]); MAX_MOTORS];
        for (f, slot) in frames.iter_mut().zip(&self.motors) {
            *f = (REGISTER_CAN_ID, encode_refresh(slot.spec.esc_id));
        }
        self.start_round(frames, self.all_motors(), "a refresh request")?;
        self.finish_round(feedback)
    }

    // Split rounds: send now, collect later, so a loop can serve other buses while the CAN
    // bus carries this one (the three buses of the arm then run in parallel).

    /// Sends one MIT command per motor without waiting; collect with [`Self::finish_round`].
    pub fn start_mit_all(&mut self, commands: &[MitCommand]) -> Result<()> {
        self.check_lengths(commands.len(), self.motors.len())?;
        let mut frames = [(0u32, [0u8; 8]); MAX_MOTORS];
        for (i, (cmd, slot)) in commands.iter().zip(&self.motors).enumerate() {
            self.check_mode(i, ControlMode::Mit)?;
            let payload = encode_mit(cmd, &slot.limits).map_err(|e| self.protocol_error(i, e))?;
            if let Some(f) = frames.get_mut(i) {
                *f = (ControlMode::Mit.command_can_id(slot.spec.esc_id), payload);
            }
        }
        self.start_round(frames, self.all_motors(), "an MIT command")
    }

    /// Sends one POS_VEL command per motor without waiting.
    pub fn start_pos_vel_all(&mut self, targets: &[(f64, f64)]) -> Result<()> {
        self.check_lengths(targets.len(), self.motors.len())?;
        let mut frames = [(0u32, [0u8; 8]); MAX_MOTORS];
        for (i, (&(p, v), slot)) in targets.iter().zip(&self.motors).enumerate() {
            self.check_mode(i, ControlMode::PosVel)?;
            let payload = encode_pos_vel(p, v).map_err(|e| self.protocol_error(i, e))?;
            if let Some(f) = frames.get_mut(i) {
                *f = (
                    ControlMode::PosVel.command_can_id(slot.spec.esc_id),
                    payload,
                );
            }
        }
        self.start_round(frames, self.all_motors(), "a POS_VEL command")
    }

    /// Sends one VEL command per motor without waiting.
    pub fn start_vel_all(&mut self, velocities: &[f64]) -> Result<()> {
        self.check_lengths(velocities.len(), self.motors.len())?;
        let mut frames = [(0u32, [0u8; 8]); MAX_MOTORS];
        for (i, (&v, slot)) in velocities.iter().zip(&self.motors).enumerate() {
            self.check_mode(i, ControlMode::Vel)?;
            let payload = encode_vel(v).map_err(|e| self.protocol_error(i, e))?;
            if let Some(f) = frames.get_mut(i) {
                *f = (ControlMode::Vel.command_can_id(slot.spec.esc_id), payload);
            }
        }
        self.start_round(frames, self.all_motors(), "a VEL command")
    }

    /// Sends one POS_FORCE command per motor without waiting.
    pub fn start_pos_force_all(&mut self, targets: &[(f64, i64, i64)]) -> Result<()> {
        self.check_lengths(targets.len(), self.motors.len())?;
        let mut frames = [(0u32, [0u8; 8]); MAX_MOTORS];
        for (i, (&(p, v, c), slot)) in targets.iter().zip(&self.motors).enumerate() {
            self.check_mode(i, ControlMode::PosForce)?;
            let payload = encode_pos_force(p, v, c).map_err(|e| self.protocol_error(i, e))?;
            if let Some(f) = frames.get_mut(i) {
                *f = (
                    ControlMode::PosForce.command_can_id(slot.spec.esc_id),
                    payload,
                );
            }
        }
        self.start_round(frames, self.all_motors(), "a POS_FORCE command")
    }

    /// Collects the replies of the round started last (resending to silent motors up to
    /// `retries` times) and fills `feedback`. A motor in a fault state makes it an error
    /// after every motor's feedback has been stored.
    pub fn finish_round(&mut self, feedback: &mut [Feedback]) -> Result<()> {
        self.check_lengths(self.motors.len(), feedback.len())?;
        self.finish_flight()?;
        let mut first_fault = None;
        for (i, (out, slot)) in feedback.iter_mut().zip(&self.motors).enumerate() {
            if let Some(fb) = slot.last {
                *out = fb;
                if fb.state.is_fault() && first_fault.is_none() {
                    first_fault = Some((i, fb.state));
                }
            }
        }
        match first_fault {
            Some((i, state)) => Err(self.fault_error(i, state)),
            None => Ok(()),
        }
    }

    /// True between a `start_*` call and its [`Self::finish_round`].
    pub fn round_in_flight(&self) -> bool {
        self.flight.is_some()
    }

    // -----------------------------------------------------------------------------------------
    // Enable / disable / zero / clear error
    // -----------------------------------------------------------------------------------------

    /// Enables one motor and checks that it reports "enabled".
    pub fn enable(&mut self, index: usize) -> Result<Feedback> {
        self.special_until(index, SpecialCommand::Enable, "enable", MotorState::Enabled)
    }

    /// Disables one motor (it goes limp) and checks that it reports "disabled".
    pub fn disable(&mut self, index: usize) -> Result<Feedback> {
        self.special_until(
            index,
            SpecialCommand::Disable,
            "disable",
            MotorState::Disabled,
        )
    }

    /// Sends an idempotent special command until the motor reports `wanted`. A reply with
    /// the other plain state can be a late answer to an earlier request (the protocol has no
    /// sequence numbers), so it earns a resend; a fault state ends it.
    fn special_until(
        &mut self,
        index: usize,
        cmd: SpecialCommand,
        what: &'static str,
        wanted: MotorState,
    ) -> Result<Feedback> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let fb = self.special(index, cmd, what)?;
            if fb.state == wanted {
                return Ok(fb);
            }
            if fb.state.is_fault() {
                return Err(self.fault_error(index, fb.state));
            }
            if attempts > self.options.retries {
                return Err(DamiaoBusError::UnexpectedState {
                    port: self.port.clone(),
                    motor: self.name(index),
                    what,
                    got: fb.state,
                    attempts,
                });
            }
        }
    }

    pub fn enable_all(&mut self) -> Result<()> {
        (0..self.motors.len()).try_for_each(|i| self.enable(i).map(|_| ()))
    }

    pub fn disable_all(&mut self) -> Result<()> {
        (0..self.motors.len()).try_for_each(|i| self.disable(i).map(|_| ()))
    }

    /// Makes the current position the motor's zero. The motor must be disabled.
    pub fn set_zero(&mut self, index: usize) -> Result<Feedback> {
        self.special(index, SpecialCommand::SetZero, "set-zero")
    }

    /// Clears a latched fault (over-temperature, lost communication, …).
    pub fn clear_error(&mut self, index: usize) -> Result<Feedback> {
        self.special(index, SpecialCommand::ClearError, "clear-error")
    }

    fn special(
        &mut self,
        index: usize,
        cmd: SpecialCommand,
        what: &'static str,
    ) -> Result<Feedback> {
        let esc = self.slot(index)?.spec.esc_id;
        let mut frames = [(0u32, [0u8; 8]); MAX_MOTORS];
        if let Some(f) = frames.get_mut(index) {
            *f = (u32::from(esc), cmd.payload());
        }
        let mask = 1u32 << index;
        self.round(frames, mask, what)?;
        self.slot(index)?
            .last
            .ok_or_else(|| self.timeout_error(index, what, 1))
    }

    // -----------------------------------------------------------------------------------------
    // Registers
    // -----------------------------------------------------------------------------------------

    /// Reads a register (typed u32 or f32 by its id).
    pub fn read_register(&mut self, index: usize, register: u8) -> Result<RegisterValue> {
        let esc = self.slot(index)?.spec.esc_id;
        let payload = encode_register_read(esc, register);
        self.register_round(
            index,
            payload,
            RegisterOp::Read,
            register,
            "a register read",
        )
    }

    /// Writes a register (RAM only; see [`DamiaoBus::save_registers`]) and checks the echo.
    pub fn write_register(
        &mut self,
        index: usize,
        register: u8,
        value: f64,
    ) -> Result<RegisterValue> {
        let esc = self.slot(index)?.spec.esc_id;
        let typed = RegisterValue::for_register(register, value)
            .map_err(|e| self.protocol_error(index, e))?;
        let payload = encode_register_write(esc, register, typed);
        let echo = self.register_round(
            index,
            payload,
            RegisterOp::Write,
            register,
            "a register write",
        )?;
        let close = match (typed, echo) {
            (RegisterValue::U32(a), RegisterValue::U32(b)) => a == b,
            (a, b) => (a.as_f64() - b.as_f64()).abs() <= 1e-6 * a.as_f64().abs().max(1.0),
        };
        if !close {
            return Err(DamiaoBusError::VerifyFailed {
                port: self.port.clone(),
                motor: self.name(index),
                rid: register,
                wanted: value,
                got: echo.as_f64(),
            });
        }
        if register == rid::PMAX || register == rid::VMAX || register == rid::TMAX {
            self.reread_limits(index)?;
        }
        Ok(echo)
    }

    /// Disables the motor, then stores all registers to flash (the motor sends no reply).
    pub fn save_registers(&mut self, index: usize) -> Result<()> {
        self.disable(index)?;
        let esc = self.slot(index)?.spec.esc_id;
        self.send_frame(REGISTER_CAN_ID, &encode_register_save(esc))
    }

    /// Switches the control mode (RID 10), then reads it back to verify.
    pub fn set_control_mode(&mut self, index: usize, mode: ControlMode) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.write_register(index, rid::CTRL_MODE, f64::from(mode.register_value()))?;
            let back = self.read_register(index, rid::CTRL_MODE)?;
            if back == RegisterValue::U32(mode.register_value()) {
                if let Some(slot) = self.motors.get_mut(index) {
                    slot.mode = Some(mode);
                }
                return Ok(());
            }
            if attempts > self.options.retries {
                return Err(DamiaoBusError::VerifyFailed {
                    port: self.port.clone(),
                    motor: self.name(index),
                    rid: rid::CTRL_MODE,
                    wanted: f64::from(mode.register_value()),
                    got: back.as_f64(),
                });
            }
        }
    }

    pub fn set_control_mode_all(&mut self, mode: ControlMode) -> Result<()> {
        (0..self.motors.len()).try_for_each(|i| self.set_control_mode(i, mode))
    }

    fn reread_limits(&mut self, index: usize) -> Result<()> {
        let pmax = self.read_register(index, rid::PMAX)?.as_f64();
        let vmax = self.read_register(index, rid::VMAX)?.as_f64();
        let tmax = self.read_register(index, rid::TMAX)?.as_f64();
        let limits = Limits::new(pmax, vmax, tmax).map_err(|e| self.protocol_error(index, e))?;
        if let Some(slot) = self.motors.get_mut(index) {
            slot.limits = limits;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Transactions
    // -----------------------------------------------------------------------------------------

    fn all_motors(&self) -> u32 {
        let n = self.motors.len();
        if n >= 32 {
            u32::MAX
        } else {
            (1u32 << n) - 1
        }
    }

    /// Sends the frames of the motors in `mask` and waits for one state frame from each.
    fn round(
        &mut self,
        frames: [(u32, [u8; 8]); MAX_MOTORS],
        mask: u32,
        what: &'static str,
    ) -> Result<()> {
        self.start_round(frames, mask, what)?;
        self.finish_flight()
    }

    fn start_round(
        &mut self,
        frames: [(u32, [u8; 8]); MAX_MOTORS],
        mask: u32,
        what: &'static str,
    ) -> Result<()> {
        if self.flight.is_some() {
            return Err(DamiaoBusError::Config {
                port: self.port.clone(),
                message: "a command round is still in flight; call finish_round first".into(),
            });
        }
        self.drain_stale()?;
        self.send_pending(&frames, mask)?;
        self.flight = Some(Flight {
            frames,
            pending: mask,
            attempts: 1,
            deadline: Instant::now() + self.options.timeout,
            what,
        });
        Ok(())
    }

    /// Waits for the round in flight, resending to silent motors up to `retries` times.
    fn finish_flight(&mut self) -> Result<()> {
        let Some(mut flight) = self.flight.take() else {
            return Err(DamiaoBusError::Config {
                port: self.port.clone(),
                message: "no command round in flight; start one first".into(),
            });
        };
        loop {
            flight.pending = self.collect(Expect::States(flight.pending), flight.deadline)?;
            if flight.pending == 0 {
                return Ok(());
            }
            if flight.attempts > self.options.retries {
                let missing = flight.pending.trailing_zeros() as usize;
                return Err(self.timeout_error(missing, flight.what, flight.attempts));
            }
            self.stats.retries += u64::from(flight.pending.count_ones());
            for (i, count) in self.stats.retries_by_motor.iter_mut().enumerate() {
                *count += u64::from(flight.pending >> i & 1);
            }
            flight.attempts += 1;
            self.send_pending(&flight.frames, flight.pending)?;
            flight.deadline = Instant::now() + self.options.timeout;
        }
    }

    fn send_pending(&mut self, frames: &[(u32, [u8; 8]); MAX_MOTORS], pending: u32) -> Result<()> {
        self.tx.clear();
        for (i, (can_id, payload)) in frames.iter().enumerate().take(self.motors.len()) {
            if pending & (1 << i) != 0 {
                self.tx
                    .extend_from_slice(&encode_host_frame(*can_id, payload));
            }
        }
        self.transport.write_all(&self.tx)?;
        self.stats.frames_sent += u64::from(pending.count_ones());
        Ok(())
    }

    fn register_round(
        &mut self,
        index: usize,
        payload: [u8; 8],
        op: RegisterOp,
        register: u8,
        what: &'static str,
    ) -> Result<RegisterValue> {
        if self.flight.is_some() {
            // Its state frames would be consumed here and the round would then time out.
            return Err(DamiaoBusError::Config {
                port: self.port.clone(),
                message:
                    "a command round is still in flight; call finish_round before register access"
                        .into(),
            });
        }
        self.drain_stale()?;
        let mut attempts = 0;
        loop {
            if attempts > self.options.retries {
                return Err(self.timeout_error_after(
                    index,
                    what,
                    attempts,
                    self.options.register_timeout,
                ));
            }
            attempts += 1;
            self.register_reply = None;
            self.send_frame(REGISTER_CAN_ID, &payload)?;
            let deadline = Instant::now() + self.options.register_timeout;
            self.collect(
                Expect::Register {
                    index,
                    op,
                    rid: register,
                },
                deadline,
            )?;
            if let Some(v) = self.register_reply.take() {
                return Ok(v);
            }
            self.stats.retries += 1;
            if let Some(count) = self.stats.retries_by_motor.get_mut(index) {
                *count += 1;
            }
        }
    }

    fn send_frame(&mut self, can_id: u32, payload: &[u8; 8]) -> Result<()> {
        self.transport
            .write_all(&encode_host_frame(can_id, payload))?;
        self.stats.frames_sent += 1;
        Ok(())
    }

    /// Reads until what `expect` waits for has arrived or `deadline` passes. Returns the mask
    /// of motors still missing (States) or 0.
    fn collect(&mut self, expect: Expect, deadline: Instant) -> Result<u32> {
        let mut pending = match expect {
            Expect::States(mask) => mask,
            Expect::Register { index, .. } => 1 << index,
        };
        while pending != 0 {
            let n = self.transport.read_some(&mut self.rx, deadline)?;
            if n == 0 {
                break;
            }
            self.decoder.push(self.rx.get(..n).unwrap_or(&[]));
            while let Some(frame) = self.decoder.next_frame() {
                self.stats.frames_received += 1;
                pending = self.dispatch(&frame, expect, pending);
            }
        }
        Ok(pending)
    }

    /// Files one frame: a state frame updates its motor's last feedback; a register reply
    /// completes the register wait. Returns the new pending mask.
    fn dispatch(&mut self, frame: &AdapterFrame, expect: Expect, pending: u32) -> u32 {
        if frame.cmd != AdapterCmd::Received {
            return pending;
        }
        if let Expect::Register { index, op, rid } = expect {
            if let Ok(reg) = decode_register_frame(&frame.data) {
                if reg.op == op
                    && reg.rid == rid
                    && self.router.route_register(frame.can_id, &frame.data) == Some(index)
                {
                    self.register_reply = Some(reg.value);
                    return pending & !(1 << index);
                }
                if matches!(reg.op, RegisterOp::Read | RegisterOp::Write)
                    && self
                        .router
                        .route_register(frame.can_id, &frame.data)
                        .is_some()
                {
                    // A register reply for an earlier, abandoned request.
                    self.stats.late_frames += 1;
                    return pending;
                }
            }
        }
        let Some(i) = self.router.route_state(frame.can_id, &frame.data) else {
            return pending;
        };
        if let Some(slot) = self.motors.get_mut(i) {
            slot.last = Some(decode_feedback(&frame.data, &slot.limits));
        }
        match expect {
            Expect::States(_) => pending & !(1 << i),
            Expect::Register { .. } => pending,
        }
    }

    /// Files replies that arrived after their round ended, so they cannot be mistaken for
    /// answers to the next one.
    fn drain_stale(&mut self) -> Result<()> {
        loop {
            let n = self.transport.read_some(&mut self.rx, Instant::now())?;
            if n == 0 {
                return Ok(());
            }
            self.decoder.push(self.rx.get(..n).unwrap_or(&[]));
            while let Some(frame) = self.decoder.next_frame() {
                self.stats.late_frames += 1;
                self.dispatch(&frame, Expect::States(0), 0);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Helpers
    // -----------------------------------------------------------------------------------------

    fn slot(&self, index: usize) -> Result<&Slot> {
        self.motors
            .get(index)
            .ok_or_else(|| DamiaoBusError::Config {
                port: self.port.clone(),
                message: format!(
                    "motor index {index} out of range (bus has {} motors)",
                    self.motors.len()
                ),
            })
    }

    fn name(&self, index: usize) -> String {
        self.motors
            .get(index)
            .map_or_else(|| format!("#{index}"), |m| m.spec.name.clone())
    }

    fn check_lengths(&self, given: usize, out: usize) -> Result<()> {
        let n = self.motors.len();
        if given != n || out != n {
            return Err(DamiaoBusError::Config {
                port: self.port.clone(),
                message: format!("{given} commands and {out} feedback slots given for {n} motors; pass one per motor"),
            });
        }
        Ok(())
    }

    fn check_mode(&self, index: usize, wanted: ControlMode) -> Result<()> {
        match self.motors.get(index).and_then(|m| m.mode) {
            Some(actual) if actual != wanted => Err(DamiaoBusError::WrongMode {
                port: self.port.clone(),
                motor: self.name(index),
                actual: actual.name(),
                wanted: wanted.name(),
            }),
            _ => Ok(()),
        }
    }

    fn protocol_error(&self, index: usize, source: DamiaoProtocolError) -> DamiaoBusError {
        DamiaoBusError::Protocol {
            port: self.port.clone(),
            motor: self.name(index),
            source,
        }
    }

    fn fault_error(&self, index: usize, state: MotorState) -> DamiaoBusError {
        DamiaoBusError::MotorFault {
            port: self.port.clone(),
            motor: self.name(index),
            state,
            nibble: state.nibble(),
        }
    }

    fn timeout_error(&self, index: usize, what: &'static str, attempts: u32) -> DamiaoBusError {
        self.timeout_error_after(index, what, attempts, self.options.timeout)
    }

    fn timeout_error_after(
        &self,
        index: usize,
        what: &'static str,
        attempts: u32,
        per_try: Duration,
    ) -> DamiaoBusError {
        DamiaoBusError::Timeout {
            port: self.port.clone(),
            motor: self.name(index),
            esc_id: self.motors.get(index).map_or(0, |m| m.spec.esc_id),
            what,
            waited: per_try * attempts.max(1),
            attempts,
        }
    }
}

/// A DAMIAO motor that answered [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundMotor {
    /// The ESC_ID the refresh request was sent to.
    pub esc_id: u16,
    /// The CAN id its feedback came from: the motor's MST_ID register.
    pub mst_id: u32,
    pub state: MotorState,
}

/// Asks every ESC_ID in `esc_ids`, one at a time, for its state (a refresh request, which
/// moves nothing) and lists those that answered within `window`, with the MST_ID their
/// feedback came from: what a configuration's (esc_id, mst_id) pairs must match.
pub fn scan(
    port: &str,
    esc_ids: std::ops::RangeInclusive<u16>,
    window: Duration,
) -> Result<Vec<FoundMotor>> {
    let mut transport = SerialTransport::open(port, DEFAULT_BAUD)?;
    let mut decoder = AdapterStreamDecoder::new();
    let mut rx = [0u8; 256];
    let mut found = Vec::new();
    for esc_id in esc_ids {
        // Late answers to the previous request must not be booked to this one.
        while transport.read_some(&mut rx, Instant::now())? > 0 {}
        decoder.clear();
        transport.write_all(&encode_host_frame(REGISTER_CAN_ID, &encode_refresh(esc_id)))?;
        let deadline = Instant::now() + window;
        'wait: loop {
            let n = transport.read_some(&mut rx, deadline)?;
            if n == 0 {
                break;
            }
            decoder.push(rx.get(..n).unwrap_or(&[]));
            while let Some(frame) = decoder.next_frame() {
                let feedback = unpack_feedback(&frame.data);
                // Feedback carries the low 4 bits of the ESC_ID; anything else is not ours.
                if frame.cmd == AdapterCmd::Received
                    && u16::from(feedback.id_nibble) == esc_id & 0xF
                {
                    found.push(FoundMotor {
                        esc_id,
                        mst_id: frame.can_id,
                        state: MotorState::from_nibble(feedback.state),
                    });
                    break 'wait;
                }
            }
        }
    }
    Ok(found)
}

/// The STS servos behind OpenK's STS-over-CAN bridge (legacy `openk-1-alpha_follower`).
pub struct StsCanBus {
    port: String,
    transport: SerialTransport,
    controller_id: u32,
    timeout: Duration,
    retries: u32,
    /// Read requests sent again because the bridge's reply was missing.
    resent: u64,
    decoder: AdapterStreamDecoder,
    rx: [u8; 256],
}

impl StsCanBus {
    pub fn open(
        port: &str,
        baud: u32,
        controller_id: u32,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self> {
        Ok(Self {
            port: port.to_string(),
            transport: SerialTransport::open(port, baud)?,
            controller_id,
            timeout,
            retries,
            resent: 0,
            decoder: AdapterStreamDecoder::new(),
            rx: [0; 256],
        })
    }

    pub fn port(&self) -> &str {
        &self.port
    }

    /// Read requests sent again so far (a reply was missing).
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Changes the reply timeout and retries of later reads (generous while connecting, tight
    /// once the control loop runs), as [`DamiaoBus::set_options`] does for the motors.
    pub fn set_timeouts(&mut self, timeout: Duration, retries: u32) {
        self.timeout = timeout;
        self.retries = retries;
    }

    /// Sets a servo's goal position (0–4095; clamped). The bridge does not acknowledge.
    pub fn write_position(&mut self, servo_id: u16, position: i64) -> Result<()> {
        let frame = encode_host_frame(
            self.controller_id,
            &sts_can::encode_write_position(servo_id, position),
        );
        self.transport.write_all(&frame)?;
        Ok(())
    }

    /// Reads a servo's present position (steps).
    pub fn read_position(&mut self, servo_id: u16) -> Result<u16> {
        let request =
            encode_host_frame(self.controller_id, &sts_can::encode_read_request(servo_id));
        // Stale replies must not answer this request.
        while self.transport.read_some(&mut self.rx, Instant::now())? > 0 {}
        self.decoder.clear();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                self.resent += 1;
            }
            self.transport.write_all(&request)?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let n = self.transport.read_some(&mut self.rx, deadline)?;
                if n == 0 {
                    break;
                }
                self.decoder.push(self.rx.get(..n).unwrap_or(&[]));
                while let Some(frame) = self.decoder.next_frame() {
                    if let Some(reply) = sts_can::decode_reply(&frame, self.controller_id) {
                        if reply.motor_id == servo_id {
                            return Ok(reply.position);
                        }
                    }
                }
            }
        }
        Err(DamiaoBusError::Timeout {
            port: self.port.clone(),
            motor: format!("STS servo {servo_id} (bridge 0x{:x})", self.controller_id),
            esc_id: servo_id,
            what: "a position read",
            waited: self.timeout * (self.retries + 1),
            attempts: self.retries + 1,
        })
    }
}
