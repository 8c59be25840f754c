//! Calibration files (JSON per device id, lerobot's layout and shapes) and normalisation.
//!
//! Shapes, as the reference writes them:
//! - DAMIAO-only devices: `{motor: {id, motor_offset, range_min, range_max}}` (radians).
//! - STS-only devices (lerobot `MotorCalibration`): `{motor: {id, drive_mode, homing_offset,
//!   range_min, range_max}}` (ticks).
//! - Followers with both: `{"damiao": {...}, "sts": {...}}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{DeviceSpec, NormMode};
use super::ArmError;

/// STS3215 resolution: ticks per turn minus one (lerobot's `max_res`).
pub const STS_MAX_RES: f64 = 4095.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DamiaoCalibration {
    pub id: u32,
    /// The motor's `m_off` (register 54) when calibrated; a different value now means the
    /// motor was re-zeroed and the ranges no longer hold.
    pub motor_offset: f64,
    pub range_min: f64,
    pub range_max: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StsCalibration {
    pub id: u32,
    #[serde(default)]
    pub drive_mode: u8,
    /// Written to the servo's Homing_Offset register (Present = Actual − Offset).
    #[serde(default, alias = "offset")]
    pub homing_offset: f64,
    pub range_min: f64,
    pub range_max: f64,
}

/// Everything calibrated about one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceCalibration {
    pub damiao: BTreeMap<String, DamiaoCalibration>,
    pub sts: BTreeMap<String, StsCalibration>,
}

#[derive(Serialize, Deserialize)]
struct Combined {
    #[serde(default)]
    damiao: BTreeMap<String, DamiaoCalibration>,
    #[serde(default)]
    sts: BTreeMap<String, StsCalibration>,
}

/// lerobot's calibration root: `$HF_LEROBOT_CALIBRATION`, else `$HF_LEROBOT_HOME/calibration`,
/// else `$HF_HOME/lerobot/calibration`, else `~/.cache/huggingface/lerobot/calibration`.
pub fn calibration_root() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_LEROBOT_CALIBRATION") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_LEROBOT_HOME") {
        return PathBuf::from(p).join("calibration");
    }
    let hf_home = std::env::var_os("HF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache").join("huggingface")
        });
    hf_home.join("lerobot").join("calibration")
}

/// `<dir or root/{robots|teleoperators}/<type>>/<id>.json`.
pub fn calibration_path(spec: &DeviceSpec, id: &str, calibration_dir: Option<&Path>) -> PathBuf {
    let dir = calibration_dir.map_or_else(
        || {
            calibration_root()
                .join(spec.kind.folder())
                .join(spec.type_name)
        },
        Path::to_path_buf,
    );
    dir.join(format!("{id}.json"))
}

/// The command that (re)creates a device's calibration, for error messages.
pub fn calibrate_command(spec: &DeviceSpec, id: &str) -> String {
    let flag = spec.kind.noun();
    format!(
        "openk calibrate --{flag}.type={} --{flag}.port=<port> --{flag}.id={id}",
        spec.type_name
    )
}

impl DeviceCalibration {
    /// Reads and checks a calibration file: every joint of `spec` must be present with a
    /// usable range and the right motor id.
    pub fn load(spec: &DeviceSpec, id: &str, path: &Path) -> Result<Self, ArmError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArmError::CalibrationMissing {
                    device: format!("{} {id:?}", spec.type_name),
                    path: path.to_path_buf(),
                    command: calibrate_command(spec, id),
                })
            }
            Err(e) => {
                return Err(ArmError::CalibrationInvalid {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                    command: calibrate_command(spec, id),
                })
            }
        };
        let invalid = |detail: String| ArmError::CalibrationInvalid {
            path: path.to_path_buf(),
            detail,
            command: calibrate_command(spec, id),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let combined = value.get("damiao").is_some() || value.get("sts").is_some();
        let cal = if combined {
            let c: Combined = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
            DeviceCalibration {
                damiao: c.damiao,
                sts: c.sts,
            }
        } else if spec.damiao.is_empty() {
            DeviceCalibration {
                damiao: BTreeMap::new(),
                sts: serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?,
            }
        } else {
            DeviceCalibration {
                damiao: serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?,
                sts: BTreeMap::new(),
            }
        };
        cal.check(spec).map_err(invalid)?;
        Ok(cal)
    }

    /// Every joint present, ids match, ranges are finite and not empty.
    pub fn check(&self, spec: &DeviceSpec) -> Result<(), String> {
        for j in spec.damiao {
            let c = self
                .damiao
                .get(j.name)
                .ok_or_else(|| format!("no entry for DAMIAO motor {:?}", j.name))?;
            if c.id != u32::from(j.id) {
                return Err(format!(
                    "motor {:?} has id {} in the file but {} on this arm",
                    j.name, c.id, j.id
                ));
            }
            check_range(j.name, c.range_min, c.range_max)?;
        }
        for j in spec.sts {
            let c = self
                .sts
                .get(j.name)
                .ok_or_else(|| format!("no entry for STS servo {:?}", j.name))?;
            if c.id != u32::from(j.id) {
                return Err(format!(
                    "servo {:?} has id {} in the file but {} on this arm",
                    j.name, c.id, j.id
                ));
            }
            check_range(j.name, c.range_min, c.range_max)?;
        }
        Ok(())
    }

    /// Writes the file in the shape the reference uses for this device (atomically).
    pub fn save(&self, spec: &DeviceSpec, path: &Path) -> Result<(), ArmError> {
        let value = if spec.damiao.is_empty() {
            serde_json::to_value(&self.sts)
        } else if spec.sts.is_empty() {
            serde_json::to_value(&self.damiao)
        } else {
            serde_json::to_value(Combined {
                damiao: self.damiao.clone(),
                sts: self.sts.clone(),
            })
        }
        .map_err(|e| ArmError::Config(format!("cannot serialise calibration: {e}")))?;
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| ArmError::Config(format!("cannot serialise calibration: {e}")))?;
        let io = |e: std::io::Error| ArmError::CalibrationInvalid {
            path: path.to_path_buf(),
            detail: format!("cannot write: {e}"),
            command: "check the folder's permissions or pass calibration_dir".into(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }
}

fn check_range(name: &str, min: f64, max: f64) -> Result<(), String> {
    if !(min.is_finite() && max.is_finite()) {
        return Err(format!("joint {name:?} has a non-finite range"));
    }
    if max <= min {
        return Err(format!(
            "joint {name:?} has range_min {min} >= range_max {max}; sweep the joint through its \
             range when calibrating"
        ));
    }
    Ok(())
}

/// Native unit of a joint's raw position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawUnit {
    Radians,
    /// STS encoder ticks (4096 per turn).
    Ticks,
}

/// Maps one joint's raw position to its normalised value and back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointNorm {
    pub mode: NormMode,
    pub unit: RawUnit,
    pub min: f64,
    pub max: f64,
    /// lerobot's drive_mode = 1: the normalised direction is inverted.
    pub invert: bool,
}

impl JointNorm {
    /// Raw → normalised (same formulas as the reference / lerobot).
    pub fn normalize(&self, raw: f64) -> f32 {
        let (min, max) = (self.min, self.max);
        let bounded = raw.clamp(min, max);
        let span = max - min;
        let v = match self.mode {
            NormMode::None => bounded,
            NormMode::Centering => bounded - (min + max) / 2.0,
            NormMode::Degrees => match self.unit {
                RawUnit::Radians => bounded.to_degrees(),
                RawUnit::Ticks => (raw - (min + max) / 2.0) * 360.0 / STS_MAX_RES,
            },
            NormMode::RangeM100To100 => {
                let n = (bounded - min) / span * 200.0 - 100.0;
                if self.invert {
                    -n
                } else {
                    n
                }
            }
            NormMode::Range0To100 => {
                let n = (bounded - min) / span * 100.0;
                if self.invert {
                    100.0 - n
                } else {
                    n
                }
            }
        };
        v as f32
    }

    /// The normalised values the calibrated range spans, (low, high).
    pub fn normalized_range(&self) -> (f32, f32) {
        let (a, b) = (self.normalize(self.min), self.normalize(self.max));
        if a <= b {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// Normalised → raw goal, clamped to the calibrated range.
    pub fn unnormalize(&self, value: f32) -> f64 {
        let (min, max) = (self.min, self.max);
        let v = f64::from(value);
        let span = max - min;
        let raw = match self.mode {
            NormMode::None => v,
            NormMode::Centering => v.clamp(-span / 2.0, span / 2.0) + (min + max) / 2.0,
            NormMode::Degrees => match self.unit {
                RawUnit::Radians => v.to_radians(),
                RawUnit::Ticks => v * STS_MAX_RES / 360.0 + (min + max) / 2.0,
            },
            NormMode::RangeM100To100 => {
                let v = if self.invert { -v } else { v };
                (v.clamp(-100.0, 100.0) + 100.0) / 200.0 * span + min
            }
            NormMode::Range0To100 => {
                let v = if self.invert { 100.0 - v } else { v };
                v.clamp(0.0, 100.0) / 100.0 * span + min
            }
        };
        raw.clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::spec::{lookup, DeviceKind};

    fn norm(mode: NormMode, unit: RawUnit, invert: bool) -> JointNorm {
        JointNorm {
            mode,
            unit,
            min: 1000.0,
            max: 3000.0,
            invert,
        }
    }

    #[test]
    fn range_modes_match_lerobot() {
        let n = norm(NormMode::RangeM100To100, RawUnit::Ticks, false);
        assert_eq!(n.normalize(1000.0), -100.0);
        assert_eq!(n.normalize(2000.0), 0.0);
        assert_eq!(n.normalize(5000.0), 100.0, "clamped to the range");
        assert_eq!(n.unnormalize(50.0), 2500.0);
        let inv = norm(NormMode::RangeM100To100, RawUnit::Ticks, true);
        assert_eq!(inv.normalize(1500.0), 50.0);
        assert_eq!(inv.unnormalize(50.0), 1500.0);
        let z = norm(NormMode::Range0To100, RawUnit::Ticks, false);
        assert_eq!(z.normalize(2500.0), 75.0);
        assert_eq!(z.unnormalize(75.0), 2500.0);
        let d = norm(NormMode::Degrees, RawUnit::Ticks, false);
        assert!((d.normalize(2000.0 + 4095.0 / 4.0) - 90.0).abs() < 1e-4);
    }

    #[test]
    fn damiao_modes_match_the_reference() {
        let c = JointNorm {
            mode: NormMode::Centering,
            unit: RawUnit::Radians,
            min: -1.0,
            max: 2.0,
            invert: false,
        };
        assert_eq!(c.normalize(0.5), 0.0);
        assert_eq!(c.normalize(2.0), 1.5);
        assert_eq!(c.unnormalize(10.0), 2.0);
        let d = JointNorm {
            mode: NormMode::Degrees,
            ..c
        };
        assert!((d.normalize(1.0) - 57.29578).abs() < 1e-4);
        assert!((d.unnormalize(57.29578) - 1.0).abs() < 1e-6);
        let none = JointNorm {
            mode: NormMode::None,
            ..c
        };
        assert_eq!(none.normalize(-3.0), -1.0);
    }

    #[test]
    fn files_round_trip_in_the_reference_shapes() {
        let dir = std::env::temp_dir().join(format!("openk-cal-{}", std::process::id()));
        let spec = lookup("openk-1-alpha_follower2", DeviceKind::Robot).unwrap();
        let mut cal = DeviceCalibration::default();
        for j in spec.damiao {
            cal.damiao.insert(
                j.name.into(),
                DamiaoCalibration {
                    id: j.id.into(),
                    motor_offset: 0.25,
                    range_min: -1.0,
                    range_max: 1.0,
                },
            );
        }
        for j in spec.sts {
            cal.sts.insert(
                j.name.into(),
                StsCalibration {
                    id: j.id.into(),
                    drive_mode: 0,
                    homing_offset: -12.0,
                    range_min: 1000.0,
                    range_max: 3000.0,
                },
            );
        }
        let path = calibration_path(spec, "f1", Some(&dir));
        cal.save(spec, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"damiao\"") && text.contains("\"homing_offset\""));
        assert_eq!(DeviceCalibration::load(spec, "f1", &path).unwrap(), cal);

        // An STS-only leader file in lerobot's flat shape.
        let leader = lookup("one-motor-test_leader", DeviceKind::Teleoperator).unwrap();
        let lpath = dir.join("l.json");
        std::fs::write(
            &lpath,
            r#"{"motor1": {"id": 1, "drive_mode": 0, "homing_offset": 5, "range_min": 100, "range_max": 4000}}"#,
        )
        .unwrap();
        let l = DeviceCalibration::load(leader, "l", &lpath).unwrap();
        assert_eq!(l.sts["motor1"].range_max, 4000.0);

        // Wrong id → mismatch naming the motor and the fix.
        std::fs::write(
            &lpath,
            r#"{"motor1": {"id": 9, "drive_mode": 0, "homing_offset": 5, "range_min": 100, "range_max": 4000}}"#,
        )
        .unwrap();
        let err = DeviceCalibration::load(leader, "l", &lpath)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("motor1") && err.contains("openk calibrate"),
            "{err}"
        );
        let missing = DeviceCalibration::load(leader, "nope", &dir.join("nope.json"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("openk calibrate --teleop.type=one-motor-test_leader"),
            "{missing}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn default_location_follows_lerobot() {
        let spec = lookup("openk-1-sts_leader", DeviceKind::Teleoperator).unwrap();
        let p = calibration_path(spec, "me", None);
        assert!(
            p.ends_with("teleoperators/openk-1-sts_leader/me.json"),
            "{p:?}"
        );
    }
}
