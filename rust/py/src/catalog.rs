//! The device catalogue: the core's facts about every robot and teleoperator type, as frozen
//! Python objects. Python reads device facts here and nowhere else.

use pyo3::prelude::*;

use openk_core::arm::config::{is_sim_port as core_is_sim_port, SIM_PORT};
use openk_core::arm::spec::{DeviceSpec, JointSpec, StsLink, DEVICES};

/// One joint of a device type, in feature order.
#[pyclass(module = "openk._core", frozen, eq, get_all, skip_from_py_object)]
#[derive(Clone, PartialEq)]
pub struct JointInfo {
    /// Joint name, the prefix of its features (`shoulder_pan.pos`).
    name: String,
    /// Motor model: "DM4310", "DM6006" or "sts3215".
    model: String,
    /// Bus family: "damiao" (on `port`) or "sts" (on `sts_port` beside DAMIAO motors, else
    /// on `port`).
    bus: String,
    /// DAMIAO ESC id or STS servo id.
    motor_id: u8,
    /// Unit of the raw position: "rad" (DAMIAO) or "step" (STS, 4096 per turn).
    raw_unit: String,
    /// Raw units in one turn (2π for radians, 4096 STS steps).
    raw_per_turn: f64,
}

impl JointInfo {
    fn new(j: &JointSpec) -> Self {
        Self {
            name: j.name.to_owned(),
            model: j.model.name().to_owned(),
            bus: j.model.bus().name().to_owned(),
            motor_id: j.id,
            raw_unit: j.model.raw_unit().name().to_owned(),
            raw_per_turn: j.model.raw_unit().per_turn(),
        }
    }
}

#[pymethods]
impl JointInfo {
    /// Whether the raw position is in radians (DAMIAO) rather than steps (STS).
    #[getter]
    fn radians(&self) -> bool {
        self.raw_unit == "rad"
    }

    fn __repr__(&self) -> String {
        format!(
            "JointInfo(name={:?}, model={:?}, bus={:?}, motor_id={}, raw_unit={:?})",
            self.name, self.model, self.bus, self.motor_id, self.raw_unit
        )
    }
}

/// A robot or teleoperator type: the names users type, its joints, keys and defaults.
#[pyclass(module = "openk._core", frozen, eq, get_all, skip_from_py_object)]
#[derive(Clone, PartialEq)]
pub struct DeviceInfo {
    /// The canonical type name (`--robot.type=...`).
    type_name: String,
    /// Other spellings of the type.
    aliases: Vec<String>,
    /// "robot" (a follower) or "teleop" (a leader).
    kind: String,
    /// Joints in feature order: DAMIAO motors first, then STS servos.
    joints: Vec<JointInfo>,
    /// Whether the STS servos sit on a second port, `sts_port` (required unless `port` is a
    /// simulator).
    needs_sts_port: bool,
    /// "ttl" (a Feetech bus) or "can" (OpenK's STS-over-CAN bridge); None without STS servos.
    sts_link: Option<String>,
    /// Keys a config of this type may hold under `robot:` / `teleop:`.
    config_keys: Vec<String>,
    /// The id used when the config names none.
    default_id: String,
    /// "MIT" or "POS_VEL" (DAMIAO motors).
    default_control_type: String,
    default_norm_mode: String,
    default_sts_norm_mode: String,
    default_disable_torque_on_disconnect: bool,
    /// DAMIAO motors driven compliant (MIT kp = 0) so a hand can move them.
    compliant: bool,
    /// The state channels a robot can observe (`state_channels`), e.g. ["pos", "vel", "tor"];
    /// empty for teleoperators.
    state_channels: Vec<String>,
    /// Observation features with every state channel.
    observation_names: Vec<String>,
    action_names: Vec<String>,
}

impl DeviceInfo {
    fn new(d: &DeviceSpec) -> Self {
        let strings = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect();
        Self {
            type_name: d.type_name.to_owned(),
            aliases: strings(d.aliases()),
            kind: d.kind.noun().to_owned(),
            joints: d.joints().map(JointInfo::new).collect(),
            needs_sts_port: d.sts_on_second_port(),
            sts_link: (!d.sts.is_empty()).then(|| {
                match d.sts_link {
                    StsLink::Ttl => "ttl",
                    StsLink::OverCan => "can",
                }
                .to_owned()
            }),
            config_keys: strings(d.config_keys()),
            default_id: d.kind.default_id().to_owned(),
            default_control_type: d.default_control.name().to_owned(),
            default_norm_mode: d.default_norm.to_string(),
            default_sts_norm_mode: d.default_sts_norm.to_string(),
            default_disable_torque_on_disconnect: d.default_disable_torque,
            compliant: d.compliant,
            state_channels: d
                .state_channels()
                .iter()
                .map(|c| c.name().to_owned())
                .collect(),
            observation_names: d.observation_names(),
            action_names: d.action_names(),
        }
    }
}

#[pymethods]
impl DeviceInfo {
    /// Every name that selects this type: the canonical one, then the aliases.
    #[getter]
    fn names(&self) -> Vec<String> {
        std::iter::once(self.type_name.clone())
            .chain(self.aliases.iter().cloned())
            .collect()
    }

    /// Joints whose raw positions are radians (DAMIAO); the others read STS steps.
    #[getter]
    fn radian_joints(&self) -> Vec<String> {
        self.joints
            .iter()
            .filter(|j| j.raw_unit == "rad")
            .map(|j| j.name.clone())
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "DeviceInfo(type_name={:?}, kind={:?}, joints={})",
            self.type_name,
            self.kind,
            self.joints.len()
        )
    }
}

/// Every robot and teleoperator type openk drives, robots first, in the core's order.
#[pyfunction]
fn device_catalog() -> Vec<DeviceInfo> {
    let mut out: Vec<DeviceInfo> = DEVICES.iter().map(DeviceInfo::new).collect();
    out.sort_by_key(|d| d.kind != "robot");
    out
}

/// Whether `port` selects the built-in simulator: `sim`, or `sim://` with options.
#[pyfunction]
fn is_sim_port(port: &str) -> bool {
    core_is_sim_port(port)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DeviceInfo>()?;
    m.add_class::<JointInfo>()?;
    m.add_function(wrap_pyfunction!(device_catalog, m)?)?;
    m.add_function(wrap_pyfunction!(is_sim_port, m)?)?;
    m.add("SIM_PORT", SIM_PORT)?;
    Ok(())
}
