//! STS3215 servos on a Feetech TTL bus as a loop part: one SYNC_WRITE of goals and one
//! SYNC_READ of positions per tick. Configuration at connect follows the reference (lerobot's
//! `configure_motors` plus OpenK's PID values); the calibration's homing offsets are written
//! to the servos like lerobot's `write_calibration`.

use std::time::Duration;

use crate::bus::feetech::{BusConfig, BusError, FeetechBus, Motor};
use crate::error::Classified;
use crate::protocol::feetech::{self as ft, Register};
use crate::sim::feetech::{FeetechSim, FeetechSimConfig, HandScript, SimMode};

use super::calibration::{DeviceCalibration, JointNorm};
use super::config::DeviceConfig;
use super::device::{sts_norm, SimSet};
use super::part::{part_names, Part, PartError, StopAction};
use super::spec::{names_of, DeviceKind};
use super::ArmError;

/// STS TTL line rate on OpenK arms.
pub const STS_BAUD: u32 = 1_000_000;
/// Reply margin of a tick's sync read: a few ms at 1 Mbaud (spec F.16: never lerobot's
/// 4 × 50 ms stall on a silent servo).
const TICK_TIMEOUT: Duration = Duration::from_millis(5);
/// lerobot's half-turn homing: the middle pose reads this after homing.
const HALF_TURN: i64 = 2047;

/// Starts a simulated STS bus with servos `ids`; a leader's servos follow a scripted hand.
pub fn start_sim(
    device: &'static str,
    ids: &[u16],
    leader: bool,
    sims: &mut SimSet,
) -> Result<String, ArmError> {
    let ids: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
    let mut config = FeetechSimConfig::new(&ids);
    if leader {
        config.mode = SimMode::HumanHand(HandScript::default_sinusoid());
    }
    let sim = FeetechSim::start(config).map_err(|e| ArmError::Bus {
        kind: e.fault_kind(),
        device: format!("{device} STS simulator"),
        motor: None,
        message: format!("could not start the simulator: {e}"),
    })?;
    let port = sim.port().to_owned();
    sims.add(device, "sts", port.clone(), sim.faults(), Box::new(sim));
    Ok(port)
}

/// Maps a Feetech bus error onto a part error naming the (first) failing motor.
pub fn part_error(names: &[String], e: &BusError) -> PartError {
    let first = e.failures().into_iter().next();
    let motor_name = match e {
        BusError::Timeout { motor, .. }
        | BusError::Corrupt { motor, .. }
        | BusError::Motor { motor, .. } => Some(motor.clone()),
        _ => first.as_ref().map(|f| f.motor.clone()),
    };
    let kind = e.fault_kind();
    // The bus describes motors as `'name' (id N)` or by name; match on the joint name.
    let motor = motor_name.and_then(|m| {
        names
            .iter()
            .position(|n| m == *n || m.starts_with(&format!("'{n}'")))
    });
    PartError::new(kind, motor, e.to_string())
}

fn reg(name: &'static str) -> Result<&'static Register, ArmError> {
    ft::register(name).map_err(|e| ArmError::Config(format!("STS register {name}: {e}")))
}

fn open_bus(cfg: &DeviceConfig, port: &str, label: &str) -> Result<FeetechBus, ArmError> {
    let names: Vec<String> = names_of(cfg.spec.sts);
    let motors = cfg
        .spec
        .sts
        .iter()
        .map(|j| Motor {
            name: j.name.to_owned(),
            id: j.id,
        })
        .collect();
    // Generous while configuring (a loaded machine delays replies, and a simulator shares the
    // host's CPUs); the loop's per-tick timeout is set tighter once the part is built.
    let config = BusConfig {
        timeout: Duration::from_millis(200),
        retries: 2,
        ..BusConfig::default()
    };
    FeetechBus::open(port, STS_BAUD, motors, config).map_err(|e| err(label, &names, &e))
}

fn err(label: &str, names: &[String], e: &BusError) -> ArmError {
    super::device::part_arm_err(label, names, part_error(names, e))
}

/// Opens, configures and wraps the STS servos of a device.
pub fn open_part(
    cfg: &DeviceConfig,
    cal: &DeviceCalibration,
    from_file: bool,
    port: &str,
    label: String,
) -> Result<Box<dyn Part>, ArmError> {
    let names: Vec<String> = names_of(cfg.spec.sts);
    let mut bus = open_bus(cfg, port, &label)?;
    let e = |e: BusError| err(&label, &names, &e);
    let leader = cfg.spec.kind == DeviceKind::Teleoperator;
    for j in cfg.spec.sts {
        let w = |bus: &mut FeetechBus, r: &str, v: i64| bus.write(r, j.name, v);
        w(&mut bus, "Torque_Enable", 0).map_err(e)?;
        w(&mut bus, "Lock", 0).map_err(e)?;
        if from_file {
            let offset = cal.sts.get(j.name).map_or(0.0, |c| c.homing_offset);
            w(&mut bus, "Homing_Offset", offset.round() as i64).map_err(e)?;
        }
        w(&mut bus, "Return_Delay_Time", 0).map_err(e)?;
        w(&mut bus, "Operating_Mode", 0).map_err(e)?;
        w(&mut bus, "P_Coefficient", 16).map_err(e)?;
        w(&mut bus, "I_Coefficient", 0).map_err(e)?;
        w(&mut bus, "D_Coefficient", 32).map_err(e)?;
        w(&mut bus, "Acceleration", 254).map_err(e)?;
        if !leader {
            // Goal = where it is before torque comes on: no jump.
            let present = bus.read("Present_Position", j.name).map_err(e)?;
            w(&mut bus, "Goal_Position", present).map_err(e)?;
            w(&mut bus, "Lock", 1).map_err(e)?;
            w(&mut bus, "Torque_Enable", 1).map_err(e)?;
        }
    }
    let norms = cfg.spec.sts.iter().map(|j| sts_norm(cfg, cal, j)).collect();
    Ok(Box::new(StsPart::new(label, bus, leader, norms)?))
}

pub struct StsPart {
    label: String,
    bus: FeetechBus,
    leader: bool,
    ids: Vec<u8>,
    norms: Vec<JointNorm>,
    motor_names: Vec<String>,
    goal_names: Vec<String>,
    state_names: Vec<String>,
    goal_reg: &'static Register,
    present_reg: &'static Register,
    torque_reg: &'static Register,
    raw_goal: Vec<i64>,
    raw_state: Vec<i64>,
}

impl StsPart {
    pub fn new(
        label: String,
        bus: FeetechBus,
        leader: bool,
        norms: Vec<JointNorm>,
    ) -> Result<Self, ArmError> {
        let mut bus = bus;
        bus.set_config(BusConfig {
            timeout: TICK_TIMEOUT,
            retries: 1,
            ..*bus.config()
        });
        let motor_names: Vec<String> = bus.motors().iter().map(|m| m.name.clone()).collect();
        let ids = bus.ids().to_vec();
        let n = ids.len();
        Ok(Self {
            label,
            leader,
            ids,
            norms,
            goal_names: if leader {
                Vec::new()
            } else {
                motor_names.iter().map(|m| format!("{m}.pos")).collect()
            },
            state_names: motor_names.iter().map(|m| format!("{m}.pos")).collect(),
            motor_names,
            goal_reg: reg("Goal_Position")?,
            present_reg: reg("Present_Position")?,
            torque_reg: reg("Torque_Enable")?,
            raw_goal: vec![0; n],
            raw_state: vec![0; n],
            bus,
        })
    }

    fn err(&self, e: &BusError) -> PartError {
        part_error(&self.motor_names, e)
    }
}

impl Part for StsPart {
    part_names!(label, motor_names, goal_names, state_names);

    fn exchange(
        &mut self,
        goal: &[f32],
        state: &mut [f32],
        retries: &mut [u32],
    ) -> Result<(), PartError> {
        if !self.leader {
            for ((raw, g), norm) in self.raw_goal.iter_mut().zip(goal).zip(&self.norms) {
                *raw = norm.unnormalize(*g).round() as i64;
            }
            self.bus
                .sync_write_ids(self.goal_reg, &self.ids, &self.raw_goal)
                .map_err(|e| self.err(&e))?;
        }
        let result = self.read_state(state);
        for (r, id) in retries.iter_mut().zip(&self.ids) {
            *r = u32::from(self.bus.last_retries(*id));
        }
        result
    }

    fn read_state(&mut self, state: &mut [f32]) -> Result<(), PartError> {
        self.bus
            .sync_read_ids(self.present_reg, &self.ids, &mut self.raw_state)
            .map_err(|e| self.err(&e))?;
        for ((s, raw), norm) in state.iter_mut().zip(&self.raw_state).zip(&self.norms) {
            *s = norm.normalize(*raw as f64);
        }
        Ok(())
    }

    fn stop(&mut self, action: StopAction) -> Result<(), PartError> {
        if self.leader || action == StopAction::Hold {
            return Ok(());
        }
        for i in 0..self.ids.len() {
            let id = self.ids[i];
            self.bus
                .write_id(self.torque_reg, id, 0)
                .map_err(|e| self.err(&e))?;
        }
        Ok(())
    }
}

/// The STS side of scripted calibration: torque off, raw positions, half-turn homing.
pub struct StsCalibrationBus {
    bus: FeetechBus,
    label: String,
    names: Vec<String>,
}

impl StsCalibrationBus {
    pub fn open(cfg: &DeviceConfig, port: &str, label: String) -> Result<Self, ArmError> {
        let names: Vec<String> = names_of(cfg.spec.sts);
        let mut bus = open_bus(cfg, port, &label)?;
        for j in cfg.spec.sts {
            bus.write("Torque_Enable", j.name, 0)
                .map_err(|e| err(&label, &names, &e))?;
            bus.write("Lock", j.name, 0)
                .map_err(|e| err(&label, &names, &e))?;
        }
        Ok(Self { bus, label, names })
    }

    /// Present positions (after the servos' homing offsets), by joint.
    pub fn read_positions(&mut self) -> Result<Vec<(String, f64)>, ArmError> {
        let mut raw = vec![0i64; self.names.len()];
        self.bus
            .sync_read("Present_Position", &mut raw)
            .map_err(|e| err(&self.label, &self.names, &e))?;
        Ok(self
            .names
            .iter()
            .cloned()
            .zip(raw.into_iter().map(|v| v as f64))
            .collect())
    }

    /// lerobot's half-turn homing: the present pose becomes 2047 on every servo. Returns the
    /// offsets written.
    pub fn set_half_turn_homing(&mut self) -> Result<Vec<(String, f64)>, ArmError> {
        let mut out = Vec::new();
        for name in self.names.clone() {
            let e = |e: BusError| err(&self.label, &self.names, &e);
            self.bus.write("Homing_Offset", &name, 0).map_err(e)?;
            let actual = self.bus.read("Present_Position", &name).map_err(e)?;
            let offset = actual - HALF_TURN;
            self.bus.write("Homing_Offset", &name, offset).map_err(e)?;
            out.push((name, offset as f64));
        }
        Ok(out)
    }
}
