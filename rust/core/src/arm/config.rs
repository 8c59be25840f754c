//! Device configuration as users write it (YAML/CLI → plain dicts → JSON here), checked
//! against the device's joints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::spec::{
    lookup, ControlType, DeviceKind, DeviceSpec, NormMode, StateChannel, SESSION_KEYS,
    STATE_CHANNELS_KEY,
};
use super::ArmError;

/// A number for every joint, or one per joint by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerJoint {
    All(f64),
    Each(BTreeMap<String, f64>),
}

impl PerJoint {
    pub fn get(&self, joint: &str) -> Option<f64> {
        match self {
            PerJoint::All(v) => Some(*v),
            PerJoint::Each(m) => m.get(joint).copied(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    type_name: Option<String>,
    port: Option<String>,
    sts_port: Option<String>,
    id: Option<Value>,
    calibration_dir: Option<PathBuf>,
    max_relative_target: Option<PerJoint>,
    disable_torque_on_disconnect: Option<bool>,
    control_type: Option<String>,
    direction_map: Option<BTreeMap<String, f64>>,
    damiao_kp: Option<PerJoint>,
    damiao_kd: Option<PerJoint>,
    damiao_velocity_limit: Option<PerJoint>,
    motor_norm_mode: Option<String>,
    sts_motor_norm_mode: Option<String>,
    state_channels: Option<Value>,
}

/// A checked robot or teleoperator configuration.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub spec: &'static DeviceSpec,
    pub port: String,
    pub sts_port: Option<String>,
    pub id: String,
    pub calibration_dir: Option<PathBuf>,
    pub max_relative_target: Option<PerJoint>,
    pub disable_torque_on_disconnect: bool,
    pub control_type: ControlType,
    /// ±1 per joint name (missing joints: +1).
    pub direction_map: BTreeMap<String, f32>,
    pub damiao_kp: Option<PerJoint>,
    pub damiao_kd: Option<PerJoint>,
    pub damiao_velocity_limit: Option<PerJoint>,
    pub norm_mode: NormMode,
    pub sts_norm_mode: NormMode,
    /// The state channels the robot observes and records (all the type offers by default).
    pub state_channels: Vec<StateChannel>,
}

/// Reference defaults for the DAMIAO gains.
pub const DEFAULT_KP: f64 = 20.0;
pub const DEFAULT_KD: f64 = 1.0;
pub const DEFAULT_VELOCITY_LIMIT: f64 = 2.0;

impl DeviceConfig {
    /// Parses `value` (a JSON object) as a config of a device of `kind`. Keys the type does
    /// not accept are refused; `cameras` (a robot key) is accepted and left to the layer that
    /// opens cameras.
    pub fn from_json(value: &Value, kind: DeviceKind) -> Result<Self, ArmError> {
        let noun = kind.noun();
        // Keys first, so a key the type does not take is named as such, whatever its value.
        if let (Some(map), Some(type_name)) = (value.as_object(), value["type"].as_str()) {
            let spec = lookup(type_name, kind)?;
            let keys = spec.config_keys();
            if let Some(bad) = map
                .keys()
                .find(|k| !keys.contains(&k.as_str()) && !SESSION_KEYS.contains(&k.as_str()))
            {
                return Err(ArmError::Config(format!(
                    "{noun} {type_name} has no config key {bad:?}; valid keys: {}",
                    keys.join(", ")
                )));
            }
        }
        let raw: Raw = serde_json::from_value(value.clone())
            .map_err(|e| ArmError::Config(format!("{noun} config: {e}")))?;
        let type_name = raw.type_name.ok_or_else(|| {
            ArmError::Config(format!(
                "{noun} config has no `type`; valid types: {}",
                super::spec::valid_types(kind).join(", ")
            ))
        })?;
        let spec = lookup(&type_name, kind)?;
        let port = raw.port.filter(|p| !p.is_empty()).ok_or_else(|| {
            ArmError::Config(format!(
                "{noun} {type_name} needs `port` (a serial device such as /dev/ttyACM0, or `sim`)"
            ))
        })?;
        if spec.sts_on_second_port()
            && raw.sts_port.as_deref().is_none_or(str::is_empty)
            && !is_sim_port(&port)
        {
            return Err(ArmError::Config(format!(
                "{noun} {type_name} needs `sts_port` for its STS servos (or `sim`)"
            )));
        }
        let id = match raw.id {
            None | Some(Value::Null) => kind.default_id().to_owned(),
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
        };
        if id.is_empty() || id.contains(['/', '\\']) || id == "." || id == ".." {
            return Err(ArmError::Config(format!(
                "{noun} id {id:?} cannot name a calibration file; use letters, digits, - or _"
            )));
        }
        let joints: Vec<&str> = spec.joints().map(|j| j.name).collect();
        let check_joint = |what: &str, name: &str| -> Result<(), ArmError> {
            if joints.contains(&name) {
                Ok(())
            } else {
                Err(ArmError::Config(format!(
                    "{what} names joint {name:?}, which {type_name} does not have; joints: {}",
                    joints.join(", ")
                )))
            }
        };
        let mut direction_map = BTreeMap::new();
        for (joint, sign) in raw.direction_map.unwrap_or_default() {
            check_joint("direction_map", &joint)?;
            if sign != 1.0 && sign != -1.0 {
                return Err(ArmError::Config(format!(
                    "direction_map[{joint:?}] must be 1 or -1 (got {sign})"
                )));
            }
            direction_map.insert(joint, sign as f32);
        }
        for (what, pj) in [
            ("max_relative_target", &raw.max_relative_target),
            ("damiao_kp", &raw.damiao_kp),
            ("damiao_kd", &raw.damiao_kd),
            ("damiao_velocity_limit", &raw.damiao_velocity_limit),
        ] {
            match pj {
                Some(PerJoint::All(v)) if !(v.is_finite() && *v >= 0.0) => {
                    return Err(ArmError::Config(format!(
                        "{what} must be a non-negative number (got {v})"
                    )))
                }
                Some(PerJoint::Each(m)) => {
                    for (joint, v) in m {
                        check_joint(what, joint)?;
                        if !(v.is_finite() && *v >= 0.0) {
                            return Err(ArmError::Config(format!(
                                "{what}[{joint:?}] must be a non-negative number (got {v})"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        let control_type = match raw.control_type {
            Some(s) => s.parse()?,
            None => spec.default_control,
        };
        let norm_mode = match raw.motor_norm_mode {
            Some(s) => s.parse()?,
            None => spec.default_norm,
        };
        let sts_norm_mode = match raw.sts_motor_norm_mode {
            Some(s) => s.parse()?,
            None => spec.default_sts_norm,
        };
        let state_channels = match raw.state_channels {
            None | Some(Value::Null) => spec.state_channels(),
            Some(Value::Array(items)) => {
                let names = items
                    .iter()
                    .map(|v| {
                        v.as_str().ok_or_else(|| {
                            ArmError::Config(format!(
                                "{STATE_CHANNELS_KEY} takes channel names such as [pos, vel] \
                                 (got {v})"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                spec.parse_state_channels(&names)?
            }
            Some(other) => {
                return Err(ArmError::Config(format!(
                "{STATE_CHANNELS_KEY} must be a list of channels such as [pos, vel] (got {other})"
            )))
            }
        };
        Ok(Self {
            spec,
            port,
            sts_port: raw.sts_port.filter(|p| !p.is_empty()),
            id,
            calibration_dir: raw.calibration_dir,
            max_relative_target: raw.max_relative_target,
            disable_torque_on_disconnect: raw
                .disable_torque_on_disconnect
                .unwrap_or(spec.default_disable_torque),
            control_type,
            direction_map,
            damiao_kp: raw.damiao_kp,
            damiao_kd: raw.damiao_kd,
            damiao_velocity_limit: raw.damiao_velocity_limit,
            norm_mode,
            sts_norm_mode,
            state_channels,
        })
    }

    /// The robot's observation features: its type's, limited to the chosen state channels.
    pub fn observation_names(&self) -> Vec<String> {
        self.spec.observation_names_with(&self.state_channels)
    }

    /// Parses JSON text (a dict serialised by the bindings).
    pub fn from_json_text(text: &str, kind: DeviceKind) -> Result<Self, ArmError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ArmError::Config(format!("{} config is not a JSON object: {e}", kind.noun()))
        })?;
        if !value.is_object() {
            return Err(ArmError::Config(format!(
                "{} config must be a dict with at least `type` and `port`",
                kind.noun()
            )));
        }
        Self::from_json(&value, kind)
    }

    /// Whether `port` asks for the built-in simulator.
    pub fn is_sim(&self) -> bool {
        is_sim_port(&self.port)
    }

    pub fn gain(&self, which: &Option<PerJoint>, joint: &str, default: f64) -> f64 {
        which.as_ref().and_then(|p| p.get(joint)).unwrap_or(default)
    }
}

/// The port name that selects the built-in simulator.
pub const SIM_PORT: &str = "sim";

/// Whether `port` selects the simulator: exactly `sim`, or `sim://` followed by options
/// (`sim://?missing=grip`). Anything else, `sim:x` included, names a serial device.
pub fn is_sim_port(port: &str) -> bool {
    port == SIM_PORT
        || port
            .strip_prefix(SIM_PORT)
            .is_some_and(|rest| rest.starts_with("://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_follower_config_with_overrides() {
        let c = DeviceConfig::from_json(
            &json!({
                "type": "openk-1-alpha_follower2", "port": "/dev/ttyACM1", "sts_port": "/dev/ttyUSB0",
                "id": "f1", "max_relative_target": 5, "control_type": "POS_VEL",
                "direction_map": {"shoulder_pan": -1, "grip": -1},
                "damiao_kp": {"elbow_flex": 30.0}, "cameras": {}
            }),
            DeviceKind::Robot,
        )
        .unwrap();
        assert_eq!(c.control_type, ControlType::PosVel);
        assert_eq!(c.direction_map["grip"], -1.0);
        assert_eq!(
            c.max_relative_target.as_ref().unwrap().get("grip"),
            Some(5.0)
        );
        assert_eq!(c.gain(&c.damiao_kp, "elbow_flex", DEFAULT_KP), 30.0);
        assert_eq!(c.gain(&c.damiao_kp, "shoulder_pan", DEFAULT_KP), 20.0);
        assert!(!c.disable_torque_on_disconnect);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let err = |v: Value| {
            DeviceConfig::from_json(&v, DeviceKind::Robot)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({"type": "nope", "port": "sim"})).contains("openk-1-alpha_follower2"));
        assert!(err(json!({"type": "openk-1-alpha_follower2"})).contains("needs `port`"));
        assert!(
            err(json!({"type": "openk-1-alpha_follower2", "port": "/dev/x"})).contains("sts_port")
        );
        assert!(err(json!({"type": "one-motor-test_follower", "port": "sim", "direction_map": {"elbow": -1}}))
            .contains("motor1"));
        assert!(err(json!({"type": "one-motor-test_follower", "port": "sim", "direction_map": {"motor1": 2}}))
            .contains("1 or -1"));
        assert!(
            err(json!({"type": "one-motor-test_follower", "port": "sim", "id": "../x"}))
                .contains("calibration file")
        );
        assert!(
            err(json!({"type": "one-motor-test_follower", "port": "sim", "sts_motors": []}))
                .contains("no config key \"sts_motors\"")
        );
        // Sim ports need no second port.
        assert!(DeviceConfig::from_json(
            &json!({"type": "openk-1-alpha_follower", "port": "sim"}),
            DeviceKind::Robot
        )
        .is_ok());
    }

    #[test]
    fn state_channels_limit_the_observation() {
        let parse = |v: Value| DeviceConfig::from_json(&v, DeviceKind::Robot);
        let all = parse(json!({"type": "openk-1-alpha_follower2", "port": "sim"})).unwrap();
        assert_eq!(all.observation_names(), all.spec.observation_names());
        let c = parse(
            json!({"type": "openk-1-alpha_follower2", "port": "sim", "state_channels": ["pos", "vel"]}),
        )
        .unwrap();
        assert_eq!(c.observation_names().len(), 12);
        for bad in [
            json!(["pos", "torque"]),
            json!(["vel"]),
            json!("pos"),
            json!([1]),
        ] {
            let err = parse(
                json!({"type": "openk-1-alpha_follower2", "port": "sim", "state_channels": bad}),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("state_channels"), "{err}");
        }
        // A leader does not take the key.
        let err = DeviceConfig::from_json(
            &json!({"type": "openk-1-sts_leader", "port": "sim", "state_channels": ["pos"]}),
            DeviceKind::Teleoperator,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no config key \"state_channels\""), "{err}");
    }

    #[test]
    fn one_sim_port_rule() {
        for port in ["sim", "sim://", "sim://?missing=grip"] {
            assert!(is_sim_port(port), "{port}");
        }
        for port in ["sim:x", "sim:", "simulator", "/dev/sim", "", "SIM"] {
            assert!(!is_sim_port(port), "{port}");
        }
    }

    #[test]
    fn default_ids_name_the_role() {
        let robot = DeviceConfig::from_json(
            &json!({"type": "one-motor-test_follower", "port": "sim"}),
            DeviceKind::Robot,
        )
        .unwrap();
        assert_eq!(robot.id, "follower");
        let teleop = DeviceConfig::from_json(
            &json!({"type": "one-motor-test_leader", "port": "sim", "id": null}),
            DeviceKind::Teleoperator,
        )
        .unwrap();
        assert_eq!(teleop.id, "leader");
    }
}
