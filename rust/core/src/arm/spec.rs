//! The robots and teleoperators openk drives, with the names users type and the joint tables
//! of the reference project (CleanKDev/OpenK).

use std::fmt;
use std::str::FromStr;

use super::ArmError;

/// Robot (follower) or teleoperator (leader); decides the calibration folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Robot,
    Teleoperator,
}

impl DeviceKind {
    /// Folder name under the calibration root (lerobot's layout).
    pub fn folder(self) -> &'static str {
        match self {
            DeviceKind::Robot => "robots",
            DeviceKind::Teleoperator => "teleoperators",
        }
    }

    /// The role's name on the command line (`--robot.*`, `--teleop.*`) and in messages.
    pub fn noun(self) -> &'static str {
        match self {
            DeviceKind::Robot => "robot",
            DeviceKind::Teleoperator => "teleop",
        }
    }

    /// The id a device gets when its config names none (it names the calibration file).
    pub fn default_id(self) -> &'static str {
        match self {
            DeviceKind::Robot => "follower",
            DeviceKind::Teleoperator => "leader",
        }
    }
}

/// A per-joint state channel a robot observes: position, velocity, torque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChannel {
    Pos,
    Vel,
    Tor,
}

impl StateChannel {
    /// Every channel, in feature order (all `.pos`, then `.vel`, then `.tor`).
    pub const ALL: [StateChannel; 3] = [StateChannel::Pos, StateChannel::Vel, StateChannel::Tor];

    /// The channel's name in configs and its feature suffix (`shoulder_pan.vel`).
    pub fn name(self) -> &'static str {
        match self {
            StateChannel::Pos => "pos",
            StateChannel::Vel => "vel",
            StateChannel::Tor => "tor",
        }
    }
}

/// The robot config key selecting which state channels the follower observes (and records).
pub const STATE_CHANNELS_KEY: &str = "state_channels";

/// Motor models on OpenK arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotorModel {
    Dm4310,
    Dm6006,
    Sts3215,
}

impl MotorModel {
    pub fn name(self) -> &'static str {
        match self {
            MotorModel::Dm4310 => "DM4310",
            MotorModel::Dm6006 => "DM6006",
            MotorModel::Sts3215 => "sts3215",
        }
    }

    /// The bus family the motor sits on.
    pub fn bus(self) -> MotorBus {
        match self {
            MotorModel::Dm4310 | MotorModel::Dm6006 => MotorBus::Damiao,
            MotorModel::Sts3215 => MotorBus::Sts,
        }
    }

    /// Unit of the motor's raw position: DAMIAO motors report radians, STS servos steps.
    pub fn raw_unit(self) -> RawUnit {
        match self.bus() {
            MotorBus::Damiao => RawUnit::Radians,
            MotorBus::Sts => RawUnit::Steps,
        }
    }
}

/// The bus family a joint's motor sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotorBus {
    /// DAMIAO ESCs on a USB-CAN adapter (`port`).
    Damiao,
    /// Feetech STS servos (on `sts_port` beside DAMIAO motors, else on `port`).
    Sts,
}

impl MotorBus {
    pub fn name(self) -> &'static str {
        match self {
            MotorBus::Damiao => "damiao",
            MotorBus::Sts => "sts",
        }
    }
}

/// Unit of a joint's raw (uncalibrated) position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawUnit {
    Radians,
    /// STS3215 encoder steps, 4096 per turn.
    Steps,
}

impl RawUnit {
    /// The short name tables print ("rad", "step").
    pub fn name(self) -> &'static str {
        match self {
            RawUnit::Radians => "rad",
            RawUnit::Steps => "step",
        }
    }

    /// Raw units in one turn of the joint.
    pub fn per_turn(self) -> f64 {
        match self {
            RawUnit::Radians => std::f64::consts::TAU,
            RawUnit::Steps => 4096.0,
        }
    }
}

/// DAMIAO control mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Mit,
    PosVel,
}

impl ControlType {
    /// The spelling configs use.
    pub fn name(self) -> &'static str {
        match self {
            ControlType::Mit => "MIT",
            ControlType::PosVel => "POS_VEL",
        }
    }
}

impl FromStr for ControlType {
    type Err = ArmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "MIT" => Ok(Self::Mit),
            "POS_VEL" | "POSVEL" => Ok(Self::PosVel),
            _ => Err(ArmError::Config(format!(
                "control_type must be MIT or POS_VEL (got {s:?})"
            ))),
        }
    }
}

/// How raw motor positions map to the values users and datasets see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormMode {
    /// [-100, 100] over the recorded range.
    RangeM100To100,
    /// [0, 100] over the recorded range.
    Range0To100,
    Degrees,
    /// Native units minus the middle of the recorded range.
    Centering,
    /// Native units (radians / ticks), clamped to the recorded range.
    None,
}

impl FromStr for NormMode {
    type Err = ArmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "range_m100_100" => Ok(Self::RangeM100To100),
            "range_0_100" => Ok(Self::Range0To100),
            "degrees" => Ok(Self::Degrees),
            "centering" => Ok(Self::Centering),
            "none" => Ok(Self::None),
            _ => Err(ArmError::Config(format!(
                "normalisation mode must be one of range_m100_100, range_0_100, degrees, \
                 centering, none (got {s:?})"
            ))),
        }
    }
}

impl fmt::Display for NormMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NormMode::RangeM100To100 => "range_m100_100",
            NormMode::Range0To100 => "range_0_100",
            NormMode::Degrees => "degrees",
            NormMode::Centering => "centering",
            NormMode::None => "none",
        })
    }
}

/// How a device's STS servos are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsLink {
    /// Feetech TTL bus at 1 Mbaud.
    Ttl,
    /// OpenK's STS-over-CAN bridge behind a second DAMIAO adapter (legacy follower).
    OverCan,
}

/// One joint: name, motor model, id on its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JointSpec {
    pub name: &'static str,
    pub model: MotorModel,
    /// DAMIAO ESC (slave) id, or STS servo id.
    pub id: u8,
}

/// The joints' names, owned (for error messages and calibration maps).
pub fn names_of(joints: &[JointSpec]) -> Vec<String> {
    joints.iter().map(|j| j.name.to_owned()).collect()
}

const fn dm(name: &'static str, model: MotorModel, id: u8) -> JointSpec {
    JointSpec { name, model, id }
}

const fn sts(name: &'static str, id: u8) -> JointSpec {
    JointSpec {
        name,
        model: MotorModel::Sts3215,
        id,
    }
}

/// DAMIAO host-side (master) id of the reference configs.
pub const DAMIAO_MASTER_ID: u16 = 0x15;

const OPENK_DAMIAO: [JointSpec; 5] = [
    dm("shoulder_pan", MotorModel::Dm6006, 0x01),
    dm("shoulder_lift", MotorModel::Dm6006, 0x02),
    dm("shoulder_roll", MotorModel::Dm4310, 0x03),
    dm("elbow_flex", MotorModel::Dm4310, 0x04),
    dm("wrist_roll", MotorModel::Dm4310, 0x05),
];

/// A robot or teleoperator type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceSpec {
    /// The name users type (`--robot.type=...`).
    pub type_name: &'static str,
    pub kind: DeviceKind,
    /// DAMIAO motors on `port`.
    pub damiao: &'static [JointSpec],
    /// STS servos: on `sts_port` for followers with DAMIAO motors, else on `port`.
    pub sts: &'static [JointSpec],
    pub sts_link: StsLink,
    pub default_control: ControlType,
    pub default_norm: NormMode,
    pub default_sts_norm: NormMode,
    /// Leader DAMIAO motors are driven compliant (MIT kp = 0) so a hand can move them.
    pub compliant: bool,
    /// Default of `disable_torque_on_disconnect`.
    pub default_disable_torque: bool,
    /// Config keys this type accepts beside [`COMMON_KEYS`] (the reference's config classes).
    pub extra_keys: &'static [&'static str],
}

/// Config keys every device type accepts.
pub const COMMON_KEYS: &[&str] = &[
    "type",
    "id",
    "port",
    "calibration_dir",
    "disable_torque_on_disconnect",
    "motor_norm_mode",
];

/// Keys a session adds to a robot's or teleoperator's config from its own options (the
/// top-level `direction_map`); users do not write them under `robot:` / `teleop:`.
pub const SESSION_KEYS: &[&str] = &["direction_map"];

/// Keys of a DAMIAO follower with STS servos (both OpenK followers).
const FOLLOWER_KEYS: [&str; 6] = [
    "sts_port",
    STATE_CHANNELS_KEY,
    "control_type",
    "sts_motor_norm_mode",
    "max_relative_target",
    "cameras",
];

impl DeviceSpec {
    /// Whether the STS servos sit on a second port (`sts_port`).
    pub fn sts_on_second_port(&self) -> bool {
        !self.damiao.is_empty() && !self.sts.is_empty()
    }

    /// Keys a config of this type may hold: [`COMMON_KEYS`], then the type's own.
    pub fn config_keys(&self) -> Vec<&'static str> {
        COMMON_KEYS.iter().chain(self.extra_keys).copied().collect()
    }

    /// Other names users may type for this device.
    pub fn aliases(&self) -> Vec<&'static str> {
        ALIASES
            .iter()
            .filter(|(_, target)| *target == self.type_name)
            .map(|(alias, _)| *alias)
            .collect()
    }

    /// Joints in feature order: DAMIAO motors first, then STS servos (reference order).
    pub fn joints(&self) -> impl Iterator<Item = &JointSpec> {
        self.damiao.iter().chain(self.sts.iter())
    }

    pub fn joint_names(&self) -> Vec<String> {
        self.joints().map(|j| j.name.to_owned()).collect()
    }

    /// The state channels a robot of this type can observe: `pos`, plus `vel` and `tor` when
    /// it has DAMIAO motors (STS servos report positions only). Teleoperators: none.
    pub fn state_channels(&self) -> Vec<StateChannel> {
        match self.kind {
            DeviceKind::Robot if self.damiao.is_empty() => vec![StateChannel::Pos],
            DeviceKind::Robot => StateChannel::ALL.to_vec(),
            DeviceKind::Teleoperator => Vec::new(),
        }
    }

    /// Checks a `state_channels` value (channel names) against the channels this type offers;
    /// returns them in feature order without repeats. `pos` is required.
    pub fn parse_state_channels<S: AsRef<str>>(
        &self,
        given: &[S],
    ) -> Result<Vec<StateChannel>, ArmError> {
        let offered = self.state_channels();
        let allowed = || {
            offered
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut chosen = Vec::new();
        for name in given {
            let name = name.as_ref();
            let channel = offered.iter().find(|c| c.name() == name).ok_or_else(|| {
                ArmError::Config(format!(
                    "{STATE_CHANNELS_KEY}: {} {} has no state channel {name:?}; allowed: {}",
                    self.kind.noun(),
                    self.type_name,
                    allowed()
                ))
            })?;
            chosen.push(*channel);
        }
        if !chosen.contains(&StateChannel::Pos) {
            return Err(ArmError::Config(format!(
                "{STATE_CHANNELS_KEY} must include pos (joint positions); allowed: {}",
                allowed()
            )));
        }
        Ok(offered.into_iter().filter(|c| chosen.contains(c)).collect())
    }

    /// Observation features of a robot observing every channel (7 × `.pos`, 5 × `.vel`,
    /// 5 × `.tor` on OpenK) or the action features of a teleoperator (positions; DAMIAO
    /// leaders add `.vel`).
    pub fn observation_names(&self) -> Vec<String> {
        self.observation_names_with(&self.state_channels())
    }

    /// Observation features of a robot observing `channels` (see [`Self::state_channels`]):
    /// all joints' `.pos`, then the DAMIAO joints' `.vel`, then their `.tor`, as selected.
    pub fn observation_names_with(&self, channels: &[StateChannel]) -> Vec<String> {
        match self.kind {
            DeviceKind::Robot => {
                let mut names = Vec::new();
                for channel in StateChannel::ALL {
                    if !channels.contains(&channel) {
                        continue;
                    }
                    let joints: Vec<&JointSpec> = match channel {
                        StateChannel::Pos => self.joints().collect(),
                        StateChannel::Vel | StateChannel::Tor => self.damiao.iter().collect(),
                    };
                    names.extend(
                        joints
                            .iter()
                            .map(|j| format!("{}.{}", j.name, channel.name())),
                    );
                }
                names
            }
            DeviceKind::Teleoperator => self.action_names(),
        }
    }

    /// Action features: joint positions (DAMIAO leaders also stream `.vel`, as the reference).
    pub fn action_names(&self) -> Vec<String> {
        match self.kind {
            DeviceKind::Robot => self.joints().map(|j| format!("{}.pos", j.name)).collect(),
            DeviceKind::Teleoperator => {
                let mut names = Vec::new();
                for j in self.damiao {
                    names.push(format!("{}.pos", j.name));
                    names.push(format!("{}.vel", j.name));
                }
                names.extend(self.sts.iter().map(|j| format!("{}.pos", j.name)));
                names
            }
        }
    }
}

pub static DEVICES: &[DeviceSpec] = &[
    DeviceSpec {
        type_name: "openk-1-alpha_follower",
        kind: DeviceKind::Robot,
        damiao: &OPENK_DAMIAO,
        sts: &[sts("grip", 1), sts("wrist_flex", 2)],
        sts_link: StsLink::OverCan,
        default_control: ControlType::PosVel,
        default_norm: NormMode::RangeM100To100,
        default_sts_norm: NormMode::RangeM100To100,
        compliant: false,
        default_disable_torque: false,
        extra_keys: &FOLLOWER_KEYS,
    },
    DeviceSpec {
        type_name: "openk-1-alpha_follower2",
        kind: DeviceKind::Robot,
        damiao: &OPENK_DAMIAO,
        sts: &[sts("wrist_flex", 2), sts("grip", 1)],
        sts_link: StsLink::Ttl,
        default_control: ControlType::Mit,
        default_norm: NormMode::RangeM100To100,
        default_sts_norm: NormMode::RangeM100To100,
        compliant: false,
        default_disable_torque: false,
        extra_keys: &[
            "sts_port",
            STATE_CHANNELS_KEY,
            "control_type",
            "sts_motor_norm_mode",
            "max_relative_target",
            "cameras",
            "damiao_kp",
            "damiao_kd",
            "damiao_velocity_limit",
        ],
    },
    DeviceSpec {
        type_name: "openk_leader",
        kind: DeviceKind::Teleoperator,
        damiao: &OPENK_DAMIAO,
        sts: &[],
        sts_link: StsLink::Ttl,
        default_control: ControlType::Mit,
        default_norm: NormMode::Centering,
        default_sts_norm: NormMode::RangeM100To100,
        compliant: true,
        default_disable_torque: true,
        extra_keys: &["control_type"],
    },
    DeviceSpec {
        type_name: "openk-1-sts_leader",
        kind: DeviceKind::Teleoperator,
        damiao: &[],
        sts: &[
            sts("shoulder_pan", 1),
            sts("shoulder_lift", 2),
            sts("shoulder_roll", 3),
            sts("elbow_flex", 4),
            sts("wrist_roll", 5),
            sts("wrist_flex", 6),
            sts("grip", 7),
        ],
        sts_link: StsLink::Ttl,
        default_control: ControlType::Mit,
        default_norm: NormMode::RangeM100To100,
        default_sts_norm: NormMode::RangeM100To100,
        compliant: false,
        default_disable_torque: true,
        extra_keys: &[],
    },
    DeviceSpec {
        type_name: "one-motor-test_follower",
        kind: DeviceKind::Robot,
        damiao: &[dm("motor1", MotorModel::Dm4310, 0x01)],
        sts: &[],
        sts_link: StsLink::Ttl,
        default_control: ControlType::PosVel,
        default_norm: NormMode::RangeM100To100,
        default_sts_norm: NormMode::RangeM100To100,
        compliant: false,
        default_disable_torque: false,
        extra_keys: &[
            STATE_CHANNELS_KEY,
            "control_type",
            "max_relative_target",
            "cameras",
        ],
    },
    DeviceSpec {
        type_name: "one-motor-test_leader",
        kind: DeviceKind::Teleoperator,
        damiao: &[],
        sts: &[sts("motor1", 1)],
        sts_link: StsLink::Ttl,
        default_control: ControlType::Mit,
        default_norm: NormMode::RangeM100To100,
        default_sts_norm: NormMode::RangeM100To100,
        compliant: false,
        default_disable_torque: true,
        extra_keys: &[],
    },
];

/// Other spellings users type for a device.
const ALIASES: &[(&str, &str)] = &[("openk-1-alpha_leader", "openk_leader")];

/// Names accepted for `kind`, for error messages.
pub fn valid_types(kind: DeviceKind) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = DEVICES
        .iter()
        .filter(|d| d.kind == kind)
        .map(|d| d.type_name)
        .collect();
    for (alias, target) in ALIASES {
        if DEVICES
            .iter()
            .any(|d| d.kind == kind && d.type_name == *target)
        {
            names.push(alias);
        }
    }
    names
}

/// Looks a device type up by the name users type.
pub fn lookup(type_name: &str, kind: DeviceKind) -> Result<&'static DeviceSpec, ArmError> {
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| *alias == type_name)
        .map_or(type_name, |(_, t)| t);
    DEVICES
        .iter()
        .find(|d| d.type_name == canonical && d.kind == kind)
        .ok_or_else(|| ArmError::UnknownType {
            given: type_name.to_owned(),
            kind: kind.noun(),
            valid: valid_types(kind).join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_features_match_the_reference() {
        let f = lookup("openk-1-alpha_follower2", DeviceKind::Robot).unwrap();
        let obs = f.observation_names();
        assert_eq!(obs.len(), 17);
        assert_eq!(obs[0], "shoulder_pan.pos");
        assert_eq!(obs[5], "wrist_flex.pos");
        assert_eq!(obs[6], "grip.pos");
        assert_eq!(obs[7], "shoulder_pan.vel");
        assert_eq!(obs[16], "wrist_roll.tor");
        assert_eq!(f.action_names().len(), 7);
        let legacy = lookup("openk-1-alpha_follower", DeviceKind::Robot).unwrap();
        assert_eq!(legacy.action_names()[5], "grip.pos");
    }

    #[test]
    fn state_channels_select_the_observation() {
        let f = lookup("openk-1-alpha_follower2", DeviceKind::Robot).unwrap();
        let chosen = f.parse_state_channels(&["vel", "pos", "vel"]).unwrap();
        assert_eq!(chosen, vec![StateChannel::Pos, StateChannel::Vel]);
        let obs = f.observation_names_with(&chosen);
        assert_eq!(obs.len(), 12);
        assert_eq!(obs[7], "shoulder_pan.vel");
        assert!(obs.iter().all(|n| !n.ends_with(".tor")));
        assert_eq!(
            f.observation_names_with(&f.state_channels()),
            f.observation_names()
        );
        let err = f
            .parse_state_channels(&["pos", "eff"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state_channels")
                && err.contains("\"eff\"")
                && err.contains("pos, vel, tor"),
            "{err}"
        );
        let err = f.parse_state_channels(&["vel"]).unwrap_err().to_string();
        assert!(err.contains("must include pos"), "{err}");
        let empty: [&str; 0] = [];
        assert!(f.parse_state_channels(&empty).is_err());
        // Teleoperators observe no state channels of their own.
        let leader = lookup("openk-1-sts_leader", DeviceKind::Teleoperator).unwrap();
        assert!(leader.state_channels().is_empty());
    }

    #[test]
    fn aliases_and_unknown_types() {
        assert_eq!(
            lookup("openk-1-alpha_leader", DeviceKind::Teleoperator)
                .unwrap()
                .type_name,
            "openk_leader"
        );
        let err = lookup("so100_follower", DeviceKind::Robot).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("so100_follower") && msg.contains("openk-1-alpha_follower2"),
            "{msg}"
        );
        // A leader is not a robot.
        assert!(lookup("openk_leader", DeviceKind::Robot).is_err());
    }

    #[test]
    fn parses_modes() {
        assert_eq!(
            "pos_vel".parse::<ControlType>().unwrap(),
            ControlType::PosVel
        );
        assert_eq!(
            "CENTERING".parse::<NormMode>().unwrap(),
            NormMode::Centering
        );
        assert!("fast".parse::<NormMode>().is_err());
    }
}
