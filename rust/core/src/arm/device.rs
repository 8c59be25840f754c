//! Opening a configured robot / teleoperator: simulators for `sim` ports, calibration
//! (from file, or a built-in default for simulators), buses, and the loop parts.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bus::damiao::{DamiaoBus, DamiaoBusError, DamiaoBusOptions, DamiaoMotorSpec, StsCanBus};
use crate::control::TeleopArms;
use crate::protocol::damiao::{rid, MitCommand, MotorModel as DmModel, RegisterValue};
use crate::protocol::sts_can::DEFAULT_CONTROLLER_ID;
use crate::sim::damiao::{
    DamiaoSim, DamiaoSimConfig, HandTrajectory, SimMotorConfig, StsBridgeConfig,
};
use crate::sim::pty::WireFaults;

use super::calibration::{
    calibrate_command, calibration_path, DamiaoCalibration, DeviceCalibration, JointNorm, RawUnit,
    StsCalibration,
};
use super::config::{is_sim_port, DeviceConfig, DEFAULT_KD, DEFAULT_KP, DEFAULT_VELOCITY_LIMIT};
use super::damiao_part::{control_mode, part_error, DamiaoDrive, DamiaoPart};
use super::part::{Part, PartError, StopAction};
use super::spec::{names_of, ControlType, DeviceKind, JointSpec, MotorModel, StsLink};
use super::sts_can_part::StsCanPart;
use super::sts_part;
use super::ArmError;
use crate::error::Classified;

/// Host-side id each DAMIAO motor answers with: unique per motor (0x10 + ESC id) so replies
/// route unambiguously (spec B.9; the reference's shared 0x15 misroutes).
pub fn damiao_master_id(esc_id: u8) -> u16 {
    0x10 + u16::from(esc_id)
}

/// Default ranges of the built-in simulator calibration.
const SIM_DAMIAO_RANGE: (f64, f64) = (-1.5, 1.5);
pub const SIM_STS_RANGE: (f64, f64) = (1024.0, 3072.0);

/// Simulators started for `sim` ports; they stop when this is dropped.
#[derive(Default)]
pub struct SimSet {
    entries: Vec<SimEntry>,
}

struct SimEntry {
    device: &'static str,
    bus: &'static str,
    port: String,
    faults: WireFaults,
    _sim: Box<dyn Any + Send>,
}

impl SimSet {
    pub(crate) fn add(
        &mut self,
        device: &'static str,
        bus: &'static str,
        port: String,
        faults: WireFaults,
        sim: Box<dyn Any + Send>,
    ) {
        self.entries.push(SimEntry {
            device,
            bus,
            port,
            faults,
            _sim: sim,
        });
    }

    /// Closes the pty of the simulator behind `device` ("robot"/"teleop") and `bus`
    /// ("damiao"/"sts"), like a pulled cable. False if there is none.
    pub fn unplug(&self, device: &str, bus: &str) -> bool {
        let mut found = false;
        for e in self
            .entries
            .iter()
            .filter(|e| e.device == device && e.bus == bus)
        {
            e.faults.unplug();
            found = true;
        }
        found
    }

    /// Fault injection handle of the simulator behind `device` and `bus`.
    pub fn faults(&self, device: &str, bus: &str) -> Option<WireFaults> {
        self.entries
            .iter()
            .find(|e| e.device == device && e.bus == bus)
            .map(|e| e.faults.clone())
    }

    /// ("robot.port", "/dev/pts/N") pairs of the running simulators.
    pub fn ports(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|e| {
                let key = match e.bus {
                    "sts" if e.device == "robot" => "sts_port",
                    _ => "port",
                };
                (format!("{}.{key}", e.device), e.port.clone())
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Options of a `sim://?missing=<joint>,...` port: joints whose motor the simulator omits
/// (to test a motor that does not answer).
fn sim_missing(port: &str) -> Vec<String> {
    port.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("missing="))
                .flat_map(|v| v.split(','))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The DAMIAO codec's model (its mapping limits) of a catalogue joint. A model the codec does
/// not know is an error, never another motor's limits.
fn dm_model(joint: &str, model: MotorModel) -> Result<DmModel, ArmError> {
    DmModel::from_name(model.name())
        .map_err(|e| ArmError::Config(format!("DAMIAO joint {joint}: {e}")))
}

fn bus_err(label: &str, names: &[String], e: &DamiaoBusError) -> ArmError {
    let pe = part_error(names, e);
    ArmError::Bus {
        kind: pe.kind,
        device: label.to_owned(),
        motor: pe.motor.and_then(|m| names.get(m).cloned()),
        message: pe.message,
    }
}

pub(crate) fn part_arm_err(label: &str, names: &[String], e: PartError) -> ArmError {
    ArmError::Bus {
        kind: e.kind,
        device: label.to_owned(),
        motor: e.motor.and_then(|m| names.get(m).cloned()),
        message: e.message,
    }
}

fn role_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Robot => "robot",
        DeviceKind::Teleoperator => "teleop",
    }
}

fn label(cfg: &DeviceConfig, bus: &str, port: &str) -> String {
    let role = match cfg.spec.kind {
        DeviceKind::Robot => "follower",
        DeviceKind::Teleoperator => "leader",
    };
    format!(
        "{role} {} ({}) {bus} bus on {port}",
        cfg.id, cfg.spec.type_name
    )
}

/// Ports a device's buses use after simulators are started.
struct Ports {
    damiao: Option<String>,
    sts: Option<String>,
    /// Calibration may fall back to the simulator default.
    simulated: bool,
}

fn start_sims(cfg: &DeviceConfig, sims: &mut SimSet) -> Result<Ports, ArmError> {
    let spec = cfg.spec;
    let device = role_name(spec.kind);
    let leader = spec.kind == DeviceKind::Teleoperator;
    let sim_err = |e: crate::sim::SimError| ArmError::Bus {
        kind: e.fault_kind(),
        device: format!("{device} simulator"),
        motor: None,
        message: format!("could not start the simulator: {e}"),
    };
    let mut ports = Ports {
        damiao: None,
        sts: None,
        simulated: false,
    };
    if !spec.damiao.is_empty() {
        if is_sim_port(&cfg.port) {
            let missing = sim_missing(&cfg.port);
            let motors = spec
                .damiao
                .iter()
                .filter(|j| !missing.iter().any(|m| m == j.name))
                .map(|j| {
                    Ok(SimMotorConfig {
                        name: j.name.to_owned(),
                        model: dm_model(j.name, j.model)?,
                        esc_id: u16::from(j.id),
                        mst_id: damiao_master_id(j.id),
                    })
                })
                .collect::<Result<_, ArmError>>()?;
            let sim = DamiaoSim::start(DamiaoSimConfig {
                motors,
                ..DamiaoSimConfig::default()
            })
            .map_err(sim_err)?;
            if leader {
                // A simulated hand moves the compliant leader.
                for (i, j) in spec.damiao.iter().enumerate() {
                    sim.set_hand(
                        j.name,
                        Some(HandTrajectory {
                            offset: 0.0,
                            amplitude: 0.5,
                            frequency_hz: 0.3 + 0.07 * i as f64,
                            phase: 0.9 * i as f64,
                        }),
                    );
                }
            }
            let port = sim.port().to_owned();
            sims.add(device, "damiao", port.clone(), sim.faults(), Box::new(sim));
            ports.damiao = Some(port);
            ports.simulated = true;
        } else {
            ports.damiao = Some(cfg.port.clone());
        }
    }
    if !spec.sts.is_empty() {
        let port = if spec.sts_on_second_port() {
            cfg.sts_port.clone().unwrap_or_else(|| cfg.port.clone())
        } else {
            cfg.port.clone()
        };
        if is_sim_port(&port) {
            let missing = sim_missing(&port);
            let ids: Vec<u16> = spec
                .sts
                .iter()
                .filter(|j| !missing.iter().any(|m| m == j.name))
                .map(|j| u16::from(j.id))
                .collect();
            let sim_port = match spec.sts_link {
                StsLink::OverCan => {
                    let sim = DamiaoSim::start(DamiaoSimConfig {
                        sts_bridge: Some(StsBridgeConfig {
                            controller_id: DEFAULT_CONTROLLER_ID,
                            servo_ids: ids,
                        }),
                        ..DamiaoSimConfig::default()
                    })
                    .map_err(sim_err)?;
                    let p = sim.port().to_owned();
                    sims.add(device, "sts", p.clone(), sim.faults(), Box::new(sim));
                    p
                }
                StsLink::Ttl => sts_part::start_sim(device, &ids, leader, sims)?,
            };
            ports.sts = Some(sim_port);
            ports.simulated = true;
        } else {
            ports.sts = Some(port);
        }
    }
    Ok(ports)
}

/// The built-in calibration of the simulators (used only when a `sim` device has no file).
fn sim_calibration(cfg: &DeviceConfig) -> DeviceCalibration {
    let mut cal = DeviceCalibration::default();
    for j in cfg.spec.damiao {
        cal.damiao.insert(
            j.name.to_owned(),
            DamiaoCalibration {
                id: u32::from(j.id),
                motor_offset: 0.0,
                range_min: SIM_DAMIAO_RANGE.0,
                range_max: SIM_DAMIAO_RANGE.1,
            },
        );
    }
    for j in cfg.spec.sts {
        cal.sts.insert(
            j.name.to_owned(),
            StsCalibration {
                id: u32::from(j.id),
                drive_mode: 0,
                homing_offset: 0.0,
                range_min: SIM_STS_RANGE.0,
                range_max: SIM_STS_RANGE.1,
            },
        );
    }
    cal
}

/// Calibration from the device's file; for simulators without one, the built-in default
/// (said in a log line). `None` marks the default (no m_off check against it).
fn load_calibration(
    cfg: &DeviceConfig,
    simulated: bool,
) -> Result<(DeviceCalibration, bool), ArmError> {
    let path = calibration_path(cfg.spec, &cfg.id, cfg.calibration_dir.as_deref());
    if !path.exists() && simulated {
        log::info!(
            "{} {:?}: no calibration at {}; using the built-in simulator calibration",
            cfg.spec.type_name,
            cfg.id,
            path.display()
        );
        return Ok((sim_calibration(cfg), false));
    }
    Ok((DeviceCalibration::load(cfg.spec, &cfg.id, &path)?, true))
}

fn damiao_norm(cfg: &DeviceConfig, cal: &DeviceCalibration, joint: &JointSpec) -> JointNorm {
    let c = cal.damiao.get(joint.name);
    JointNorm {
        mode: cfg.norm_mode,
        unit: RawUnit::Radians,
        min: c.map_or(SIM_DAMIAO_RANGE.0, |c| c.range_min),
        max: c.map_or(SIM_DAMIAO_RANGE.1, |c| c.range_max),
        invert: false,
    }
}

pub(crate) fn sts_norm(
    cfg: &DeviceConfig,
    cal: &DeviceCalibration,
    joint: &JointSpec,
) -> JointNorm {
    let c = cal.sts.get(joint.name);
    JointNorm {
        mode: cfg.sts_norm_mode,
        unit: RawUnit::Ticks,
        min: c.map_or(SIM_STS_RANGE.0, |c| c.range_min),
        max: c.map_or(SIM_STS_RANGE.1, |c| c.range_max),
        invert: c.is_some_and(|c| c.drive_mode != 0),
    }
}

/// Opens the STS-over-CAN bus of a device (its STS joints behind the CAN adapter on `port`),
/// with the generous timeouts of the DAMIAO adapter it rides on while connecting
/// ([`CONFIGURE_DAMIAO`]); the loop's part gets the tight ones back (see `open_device`).
fn open_sts_can_bus(cfg: &DeviceConfig, port: &str, label: &str) -> Result<StsCanBus, ArmError> {
    StsCanBus::open(
        port,
        CONFIGURE_DAMIAO.baud,
        DEFAULT_CONTROLLER_ID,
        CONFIGURE_DAMIAO.timeout,
        CONFIGURE_DAMIAO.retries,
    )
    .map_err(|e| bus_err(label, &names_of(cfg.spec.sts), &e))
}

/// DAMIAO adapter timeouts while connecting and configuring (see [`open_damiao_bus`]).
const CONFIGURE_DAMIAO: DamiaoBusOptions = DamiaoBusOptions {
    baud: crate::bus::damiao::DEFAULT_BAUD,
    timeout: Duration::from_millis(100),
    retries: 2,
    register_timeout: Duration::from_millis(200),
    read_registers_at_connect: true,
};

/// Opens the DAMIAO bus of a device and connects its motors (control mode and enable follow).
fn open_damiao_bus(cfg: &DeviceConfig, port: &str, label: &str) -> Result<DamiaoBus, ArmError> {
    let names: Vec<String> = names_of(cfg.spec.damiao);
    let motors = cfg
        .spec
        .damiao
        .iter()
        .map(|j| {
            Ok(DamiaoMotorSpec {
                name: j.name.to_owned(),
                model: dm_model(j.name, j.model)?,
                esc_id: u16::from(j.id),
                mst_id: damiao_master_id(j.id),
            })
        })
        .collect::<Result<_, ArmError>>()?;
    // Generous while configuring: a loaded machine may delay a reply (a simulator shares the
    // host's CPUs) and nothing waits on these rounds. The loop's part restores the default,
    // tighter timeouts (see `open_device`).
    let mut bus =
        DamiaoBus::open(port, motors, CONFIGURE_DAMIAO).map_err(|e| bus_err(label, &names, &e))?;
    bus.connect().map_err(|e| bus_err(label, &names, &e))?;
    Ok(bus)
}

/// Compares each motor's m_off with the calibration: a change means someone re-zeroed it.
fn check_rezero(
    cfg: &DeviceConfig,
    bus: &mut DamiaoBus,
    cal: &DeviceCalibration,
    label: &str,
) -> Result<(), ArmError> {
    let names: Vec<String> = names_of(cfg.spec.damiao);
    for (i, j) in cfg.spec.damiao.iter().enumerate() {
        let Some(c) = cal.damiao.get(j.name) else {
            continue;
        };
        let current = match bus
            .read_register(i, rid::M_OFF)
            .map_err(|e| bus_err(label, &names, &e))?
        {
            RegisterValue::F32(v) => f64::from(v),
            RegisterValue::U32(v) => f64::from(v),
        };
        if (current - c.motor_offset).abs() > 1e-4 {
            return Err(ArmError::Rezeroed {
                device: label.to_owned(),
                motor: j.name.to_owned(),
                cached: c.motor_offset,
                current,
                command: calibrate_command(cfg.spec, &cfg.id),
            });
        }
    }
    Ok(())
}

fn per_joint(
    cfg: &DeviceConfig,
    which: &Option<super::config::PerJoint>,
    default: f64,
) -> Vec<f64> {
    cfg.spec
        .damiao
        .iter()
        .map(|j| cfg.gain(which, j.name, default))
        .collect()
}

/// Opens every bus of one device and returns its parts.
fn open_device(cfg: &DeviceConfig, sims: &mut SimSet) -> Result<Vec<Box<dyn Part>>, ArmError> {
    let ports = start_sims(cfg, sims)?;
    let (cal, from_file) = load_calibration(cfg, ports.simulated)?;
    let mut parts: Vec<Box<dyn Part>> = Vec::new();
    let leader = cfg.spec.kind == DeviceKind::Teleoperator;
    if let Some(port) = &ports.damiao {
        let label = label(cfg, "DAMIAO", port);
        let names: Vec<String> = names_of(cfg.spec.damiao);
        let mut bus = open_damiao_bus(cfg, port, &label)?;
        if from_file {
            check_rezero(cfg, &mut bus, &cal, &label)?;
        }
        let drive = if leader || cfg.spec.compliant {
            DamiaoDrive::Compliant
        } else {
            match cfg.control_type {
                ControlType::Mit => DamiaoDrive::Mit {
                    kp: per_joint(cfg, &cfg.damiao_kp, DEFAULT_KP),
                    kd: per_joint(cfg, &cfg.damiao_kd, DEFAULT_KD),
                },
                ControlType::PosVel => DamiaoDrive::PosVel {
                    velocity_limit: per_joint(
                        cfg,
                        &cfg.damiao_velocity_limit,
                        DEFAULT_VELOCITY_LIMIT,
                    ),
                },
            }
        };
        bus.set_control_mode_all(control_mode(&drive))
            .map_err(|e| bus_err(&label, &names, &e))?;
        bus.enable_all().map_err(|e| bus_err(&label, &names, &e))?;
        let norms = cfg
            .spec
            .damiao
            .iter()
            .map(|j| damiao_norm(cfg, &cal, j))
            .collect();
        bus.set_options(DamiaoBusOptions::default());
        parts.push(Box::new(DamiaoPart::new(label, bus, drive, norms)));
    }
    if let Some(port) = &ports.sts {
        match cfg.spec.sts_link {
            StsLink::OverCan => {
                let label = label(cfg, "STS-over-CAN", port);
                let names: Vec<String> = names_of(cfg.spec.sts);
                let bus = open_sts_can_bus(cfg, port, &label)?;
                let joints = cfg
                    .spec
                    .sts
                    .iter()
                    .map(|j| {
                        let off = cal.sts.get(j.name).map_or(0.0, |c| c.homing_offset);
                        (
                            j.name.to_owned(),
                            u16::from(j.id),
                            off,
                            sts_norm(cfg, &cal, j),
                        )
                    })
                    .collect();
                let mut part = StsCanPart::new(label.clone(), bus, joints);
                // A servo that does not answer is found now (with the connect timeouts), not
                // on the first tick; the loop then gets the tight tick timeouts.
                let mut probe = vec![0.0; names.len()];
                part.read_state(&mut probe)
                    .map_err(|e| part_arm_err(&label, &names, e))?;
                let tick = DamiaoBusOptions::default();
                part.set_timeouts(tick.timeout, tick.retries);
                parts.push(Box::new(part));
            }
            StsLink::Ttl => {
                let label = label(cfg, "STS", port);
                parts.push(sts_part::open_part(cfg, &cal, from_file, port, label)?);
            }
        }
    }
    Ok(parts)
}

/// What [`open_arms`] hands the loop: the parts wired to the dataset features, and the
/// simulators that must outlive them.
pub struct OpenedArms {
    pub arms: TeleopArms,
    pub sims: SimSet,
    /// Valid values of each follower action (action order; see [`action_limits`]), for
    /// refusing scheduled actions far outside the joint's range (`LoopSpec::action_limits`).
    pub action_limits: Vec<Option<(f32, f32)>>,
}

/// How far beyond its calibrated (normalised) range a scheduled action may go before the loop
/// refuses it, as a fraction of the range. Goals are clamped to the range anyway; this only
/// catches actions in the wrong units or a policy gone wrong, not one overshooting an end stop
/// or a replayed leader value from a leader calibrated wider than the follower.
pub const ACTION_RANGE_SLACK: f32 = 0.5;

/// The normalised range of every joint of `robot` (from its calibration, or the simulator's
/// built-in one), widened by [`ACTION_RANGE_SLACK`], by action (`<joint>.pos`).
pub fn action_limits(robot: &DeviceConfig) -> Result<Vec<Option<(f32, f32)>>, ArmError> {
    let simulated = is_sim_port(&robot.port) && robot.sts_port.as_deref().is_none_or(is_sim_port);
    let (cal, _) = load_calibration(robot, simulated)?;
    let ranges: Vec<(String, (f32, f32))> = robot
        .spec
        .damiao
        .iter()
        .map(|j| (j.name, damiao_norm(robot, &cal, j).normalized_range()))
        .chain(
            robot
                .spec
                .sts
                .iter()
                .map(|j| (j.name, sts_norm(robot, &cal, j).normalized_range())),
        )
        .map(|(name, (lo, hi))| {
            let slack = (hi - lo) * ACTION_RANGE_SLACK;
            (format!("{name}.pos"), (lo - slack, hi + slack))
        })
        .collect();
    Ok(robot
        .spec
        .action_names()
        .iter()
        .map(|a| ranges.iter().find(|(n, _)| n == a).map(|(_, r)| *r))
        .collect())
}

/// Opens a follower (and its leader, if any). Calibration problems surface before any port
/// is opened; `sim` ports start the matching simulators.
pub fn open_arms(
    robot: &DeviceConfig,
    teleop: Option<&DeviceConfig>,
) -> Result<OpenedArms, ArmError> {
    // Fail on calibration before touching hardware.
    for cfg in std::iter::once(robot).chain(teleop) {
        let path = calibration_path(cfg.spec, &cfg.id, cfg.calibration_dir.as_deref());
        let simulated = is_sim_port(&cfg.port) && cfg.sts_port.as_deref().is_none_or(is_sim_port);
        if !simulated || path.exists() {
            DeviceCalibration::load(cfg.spec, &cfg.id, &path)?;
        }
    }
    let action_limits = action_limits(robot)?;
    let mut sims = SimSet::default();
    let follower = open_device(robot, &mut sims)?;
    let leader = match teleop {
        Some(t) => open_device(t, &mut sims)?,
        None => Vec::new(),
    };
    let action_names = robot.spec.action_names();
    let joint_of = |name: &str| name.strip_suffix(".pos").unwrap_or(name).to_owned();
    let direction = action_names
        .iter()
        .map(|a| {
            let j = joint_of(a);
            let r = robot.direction_map.get(&j).copied().unwrap_or(1.0);
            let t = teleop
                .and_then(|t| t.direction_map.get(&j).copied())
                .unwrap_or(1.0);
            r * t
        })
        .collect();
    let max_relative_target = action_names
        .iter()
        .map(|a| {
            robot
                .max_relative_target
                .as_ref()
                .and_then(|m| m.get(&joint_of(a)))
                .map(|v| v as f32)
        })
        .collect();
    Ok(OpenedArms {
        arms: TeleopArms {
            leader,
            follower,
            observation_names: robot.observation_names(),
            action_names,
            direction,
            max_relative_target,
        },
        sims,
        action_limits,
    })
}

/// Starts the simulators of a robot type (and teleop type) without opening them, so peers
/// (the Python SDKs, a second openk process) can connect to the same ptys.
pub fn start_sim_rig(robot_type: &str, teleop_type: Option<&str>) -> Result<SimSet, ArmError> {
    let mut sims = SimSet::default();
    let robot = DeviceConfig::from_json(
        &serde_json::json!({"type": robot_type, "port": "sim", "sts_port": "sim"}),
        DeviceKind::Robot,
    )?;
    start_sims(&robot, &mut sims)?;
    if let Some(t) = teleop_type {
        let teleop = DeviceConfig::from_json(
            &serde_json::json!({"type": t, "port": "sim"}),
            DeviceKind::Teleoperator,
        )?;
        start_sims(&teleop, &mut sims)?;
    }
    Ok(sims)
}

/// Scripted calibration of one device: read raw positions, set homing, record ranges, save.
pub struct Calibrator {
    cfg: DeviceConfig,
    path: PathBuf,
    damiao: Option<(DamiaoBus, String)>,
    sts: Option<sts_part::StsCalibrationBus>,
    sts_can: Option<(StsCanBus, String)>,
    offsets: BTreeMap<String, f64>,
    homing: BTreeMap<String, f64>,
    ranges: BTreeMap<String, (f64, f64)>,
    _sims: SimSet,
}

impl Calibrator {
    /// Opens the device's buses (starting simulators for `sim` ports) with the DAMIAO motors
    /// compliant and the STS torque off, so the arm can be moved by hand.
    pub fn connect(cfg: DeviceConfig) -> Result<Self, ArmError> {
        let mut sims = SimSet::default();
        let ports = start_sims(&cfg, &mut sims)?;
        let path = calibration_path(cfg.spec, &cfg.id, cfg.calibration_dir.as_deref());
        let damiao = match &ports.damiao {
            Some(port) => {
                let label = label(&cfg, "DAMIAO", port);
                let names: Vec<String> = names_of(cfg.spec.damiao);
                let mut bus = open_damiao_bus(&cfg, port, &label)?;
                bus.set_control_mode_all(crate::protocol::damiao::ControlMode::Mit)
                    .map_err(|e| bus_err(&label, &names, &e))?;
                bus.enable_all().map_err(|e| bus_err(&label, &names, &e))?;
                Some((bus, label))
            }
            None => None,
        };
        let mut sts = None;
        let mut sts_can = None;
        if let Some(port) = &ports.sts {
            match cfg.spec.sts_link {
                StsLink::Ttl => {
                    sts = Some(sts_part::StsCalibrationBus::open(
                        &cfg,
                        port,
                        label(&cfg, "STS", port),
                    )?)
                }
                StsLink::OverCan => {
                    let label = label(&cfg, "STS-over-CAN", port);
                    let bus = open_sts_can_bus(&cfg, port, &label)?;
                    sts_can = Some((bus, label));
                }
            }
        }
        Ok(Self {
            cfg,
            path,
            damiao,
            sts,
            sts_can,
            offsets: BTreeMap::new(),
            homing: BTreeMap::new(),
            ranges: BTreeMap::new(),
            _sims: sims,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raw positions: radians (DAMIAO), ticks after homing (STS).
    pub fn read_raw(&mut self) -> Result<Vec<(String, f64)>, ArmError> {
        let mut out = Vec::new();
        if let Some((bus, label)) = &mut self.damiao {
            let n = self.cfg.spec.damiao.len();
            let names: Vec<String> = names_of(self.cfg.spec.damiao);
            let cmds = vec![
                MitCommand {
                    q: 0.0,
                    dq: 0.0,
                    kp: 0.0,
                    kd: 0.1,
                    tau: 0.0,
                };
                n
            ];
            let mut fb = vec![crate::protocol::damiao::Feedback::default(); n];
            bus.mit_all(&cmds, &mut fb)
                .map_err(|e| bus_err(label, &names, &e))?;
            for (j, f) in self.cfg.spec.damiao.iter().zip(&fb) {
                out.push((j.name.to_owned(), f.q));
            }
        }
        if let Some(bus) = &mut self.sts {
            out.extend(bus.read_positions()?);
        }
        if let Some((bus, label)) = &mut self.sts_can {
            let names: Vec<String> = names_of(self.cfg.spec.sts);
            for j in self.cfg.spec.sts {
                let raw = bus
                    .read_position(u16::from(j.id))
                    .map_err(|e| bus_err(label, &names, &e))?;
                let off = self.homing.get(j.name).copied().unwrap_or(0.0);
                out.push((j.name.to_owned(), f64::from(raw) - off));
            }
        }
        Ok(out)
    }

    /// Makes the present pose the middle of every joint: STS half-turn homing (the servo
    /// reads 2047 here); DAMIAO set-zero when `zero_damiao` (else m_off is only recorded).
    pub fn set_homing(&mut self, zero_damiao: bool) -> Result<(), ArmError> {
        if let Some((bus, label)) = &mut self.damiao {
            let names: Vec<String> = names_of(self.cfg.spec.damiao);
            for i in 0..names.len() {
                if zero_damiao {
                    bus.disable(i).map_err(|e| bus_err(label, &names, &e))?;
                    bus.set_zero(i).map_err(|e| bus_err(label, &names, &e))?;
                    bus.enable(i).map_err(|e| bus_err(label, &names, &e))?;
                }
                let v = match bus
                    .read_register(i, rid::M_OFF)
                    .map_err(|e| bus_err(label, &names, &e))?
                {
                    RegisterValue::F32(v) => f64::from(v),
                    RegisterValue::U32(v) => f64::from(v),
                };
                if let Some(n) = names.get(i) {
                    self.offsets.insert(n.clone(), v);
                }
            }
        }
        if let Some(bus) = &mut self.sts {
            self.homing.extend(bus.set_half_turn_homing()?);
        }
        if let Some((bus, label)) = &mut self.sts_can {
            // The bridge cannot write Homing_Offset: keep it on the host side.
            let names: Vec<String> = names_of(self.cfg.spec.sts);
            for j in self.cfg.spec.sts {
                let raw = bus
                    .read_position(u16::from(j.id))
                    .map_err(|e| bus_err(label, &names, &e))?;
                self.homing
                    .insert(j.name.to_owned(), f64::from(raw) - 2047.0);
            }
        }
        self.ranges.clear();
        Ok(())
    }

    /// Reads once and widens the recorded ranges: [(joint, min, position, max)].
    pub fn sample(&mut self) -> Result<Vec<(String, f64, f64, f64)>, ArmError> {
        let raw = self.read_raw()?;
        Ok(raw
            .into_iter()
            .map(|(name, v)| {
                let r = self.ranges.entry(name.clone()).or_insert((v, v));
                r.0 = r.0.min(v);
                r.1 = r.1.max(v);
                (name, r.0, v, r.1)
            })
            .collect())
    }

    /// Writes the calibration file (every joint must have been swept).
    pub fn save(&mut self) -> Result<PathBuf, ArmError> {
        let spec = self.cfg.spec;
        let mut cal = DeviceCalibration::default();
        for j in spec.damiao {
            let (min, max) = self.range_of(j.name)?;
            let motor_offset = match self.offsets.get(j.name) {
                Some(v) => *v,
                None => self.read_m_off(j)?,
            };
            cal.damiao.insert(
                j.name.to_owned(),
                DamiaoCalibration {
                    id: u32::from(j.id),
                    motor_offset,
                    range_min: min,
                    range_max: max,
                },
            );
        }
        for j in spec.sts {
            let (min, max) = self.range_of(j.name)?;
            cal.sts.insert(
                j.name.to_owned(),
                StsCalibration {
                    id: u32::from(j.id),
                    drive_mode: 0,
                    homing_offset: self.homing.get(j.name).copied().unwrap_or(0.0),
                    range_min: min,
                    range_max: max,
                },
            );
        }
        cal.save(spec, &self.path)?;
        Ok(self.path.clone())
    }

    fn range_of(&self, joint: &str) -> Result<(f64, f64), ArmError> {
        match self.ranges.get(joint) {
            Some((min, max)) if max > min => Ok((*min, *max)),
            _ => Err(ArmError::Config(format!(
                "joint {joint:?} did not move while recording; sweep every joint through its \
                 whole range, then save again"
            ))),
        }
    }

    fn read_m_off(&mut self, joint: &JointSpec) -> Result<f64, ArmError> {
        let Some((bus, label)) = &mut self.damiao else {
            return Ok(0.0);
        };
        let names: Vec<String> = names_of(self.cfg.spec.damiao);
        let i = names.iter().position(|n| n == joint.name).unwrap_or(0);
        Ok(
            match bus
                .read_register(i, rid::M_OFF)
                .map_err(|e| bus_err(label, &names, &e))?
            {
                RegisterValue::F32(v) => f64::from(v),
                RegisterValue::U32(v) => f64::from(v),
            },
        )
    }
}

/// A leader read on its own, without a follower or a loop: what a teleoperator API that is
/// polled by its caller (lerobot's `Teleoperator.get_action`) needs. Values are the leader's
/// calibrated feature values, the same the loop hands the follower.
pub struct LeaderReader {
    parts: Vec<Box<dyn Part>>,
    names: Vec<String>,
    state: Vec<Vec<f32>>,
    _sims: SimSet,
}

impl LeaderReader {
    /// Opens the leader's buses (starting simulators for `sim` ports); calibration problems
    /// surface first, as in [`open_arms`].
    pub fn open(cfg: &DeviceConfig) -> Result<Self, ArmError> {
        let path = calibration_path(cfg.spec, &cfg.id, cfg.calibration_dir.as_deref());
        if !is_sim_port(&cfg.port) || path.exists() {
            DeviceCalibration::load(cfg.spec, &cfg.id, &path)?;
        }
        let mut sims = SimSet::default();
        let parts = open_device(cfg, &mut sims)?;
        let names = parts
            .iter()
            .flat_map(|p| p.state_names().iter().cloned())
            .collect();
        let state = parts
            .iter()
            .map(|p| vec![0.0; p.state_names().len()])
            .collect();
        Ok(Self {
            parts,
            names,
            state,
            _sims: sims,
        })
    }

    /// What [`read`](Self::read) returns, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The present state of every joint, in [`names`](Self::names) order.
    pub fn read(&mut self) -> Result<Vec<f32>, ArmError> {
        let mut out = Vec::with_capacity(self.names.len());
        for (part, state) in self.parts.iter_mut().zip(self.state.iter_mut()) {
            part.read_state(state)
                .map_err(|e| part_arm_err(part.label(), part.motor_names(), e))?;
            out.extend_from_slice(state);
        }
        Ok(out)
    }
}

impl Drop for LeaderReader {
    fn drop(&mut self) {
        for part in &mut self.parts {
            // A leader commands nothing; stopping only releases the bus. Errors on the way
            // out have nobody left to tell.
            let _ = part.stop(StopAction::Limp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joint_model_the_damiao_codec_does_not_know_is_an_error_not_dm4310() {
        assert_eq!(dm_model("j", MotorModel::Dm4310).unwrap(), DmModel::DM4310);
        assert_eq!(dm_model("j", MotorModel::Dm6006).unwrap(), DmModel::DM6006);
        let err = dm_model("wrist", MotorModel::Sts3215).unwrap_err();
        assert!(matches!(err, ArmError::Config(_)), "{err}");
        assert!(err.to_string().contains("wrist"), "{err}");
    }
}
