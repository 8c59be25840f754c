//! A [`LoopSpec`] is checked once, here: the rates, the error budget, the capacities and the
//! ramp times. The bindings and the command line ask this module, so every front end reports a
//! bad value with the same words (naming the option the way its user typed it).

use super::teleop::{ControlError, LoopSpec};
use crate::arm::config::DeviceConfig;
use crate::arm::part::StopAction;

/// What the options are called in messages: the API's names by default; the command line
/// passes its flags (`--control_hz`, `--dataset.fps`).
#[derive(Debug, Clone)]
pub struct LoopNames {
    pub control_hz: String,
    pub record_fps: String,
    pub max_consecutive_errors: String,
}

impl Default for LoopNames {
    fn default() -> Self {
        Self {
            control_hz: "control_hz".into(),
            record_fps: "record_fps".into(),
            max_consecutive_errors: "max_consecutive_errors".into(),
        }
    }
}

fn config(msg: String) -> ControlError {
    ControlError::Config(msg)
}

fn positive_rate(name: &str, value: f64) -> Result<(), ControlError> {
    if value.is_nan() || value.is_infinite() {
        return Err(config(format!(
            "{name} is {value}; it must be a finite number > 0"
        )));
    }
    if value <= 0.0 {
        return Err(config(format!("{name} is {value}; it must be > 0")));
    }
    Ok(())
}

/// The loop's rates: both finite and positive, and rows no faster than ticks (a row is the
/// state of one tick). `control_hz` None stands for the default rate.
pub fn check_rates(
    control_hz: Option<f64>,
    record_fps: Option<f64>,
    names: &LoopNames,
) -> Result<(), ControlError> {
    let (hz, default) = match control_hz {
        Some(hz) => (hz, ""),
        None => (LoopSpec::default().control_hz, " (the default)"),
    };
    positive_rate(&names.control_hz, hz)?;
    if let Some(fps) = record_fps {
        positive_rate(&names.record_fps, fps)?;
        if fps > hz {
            return Err(config(format!(
                "{}={hz}{default} is below {}={fps}; the loop must run at least as fast as the \
                 dataset rows",
                names.control_hz, names.record_fps
            )));
        }
    }
    Ok(())
}

/// The error budget: failed exchanges of one bus in a row before the loop stops. `None`: about
/// 50 ms of failures at `control_hz`, at least 3 ticks.
pub fn error_budget(
    max_consecutive_errors: Option<u32>,
    control_hz: f64,
    names: &LoopNames,
) -> Result<u32, ControlError> {
    match max_consecutive_errors {
        Some(0) => Err(config(format!(
            "{} is 0; it must be at least 1 (the loop stops after that many failed exchanges \
             of one bus in a row)",
            names.max_consecutive_errors
        ))),
        Some(n) => Ok(n),
        None if control_hz.is_finite() && control_hz > 0.0 => {
            Ok(((control_hz * 0.05).ceil() as u32).max(3))
        }
        None => Ok(3),
    }
}

/// What the follower does when the loop stops: go limp with `disable_torque_on_disconnect`,
/// else hold its last goal.
pub fn stop_action(robot: &DeviceConfig) -> StopAction {
    if robot.disable_torque_on_disconnect {
        StopAction::Limp
    } else {
        StopAction::Hold
    }
}

/// A time in seconds (≥ 0) as nanoseconds.
pub fn seconds_ns(name: &str, seconds: f64) -> Result<u64, ControlError> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(config(format!(
            "{name} must be a number of seconds >= 0 (got {seconds})"
        )));
    }
    Ok((seconds * 1e9).round() as u64)
}

/// A ramp's step period in seconds as nanoseconds; None steps every control tick (0).
pub fn step_ns(name: &str, seconds: Option<f64>) -> Result<u64, ControlError> {
    match seconds {
        None => Ok(0),
        Some(s) if s.is_finite() && s > 0.0 => Ok((s * 1e9).round() as u64),
        Some(s) => Err(config(format!(
            "{name} must be a positive number of seconds, or None to step every control tick \
             (got {s})"
        ))),
    }
}

impl LoopSpec {
    /// Checks every option; the loop refuses to start on a spec that fails this.
    pub fn validate(&self) -> Result<(), ControlError> {
        self.validate_named(&LoopNames::default())
    }

    /// [`LoopSpec::validate`], naming the options as `names` says.
    pub fn validate_named(&self, names: &LoopNames) -> Result<(), ControlError> {
        check_rates(Some(self.control_hz), Some(self.record_fps), names)?;
        error_budget(Some(self.max_consecutive_errors), self.control_hz, names)?;
        let at_least_one = [
            (
                "max_invalid_actions",
                self.max_invalid_actions as usize,
                "invalid actions in a row stop the loop",
            ),
            (
                "schedule_capacity",
                self.schedule_capacity,
                "actions the loop holds ahead",
            ),
            (
                "batch_rows",
                self.builder.batch_rows,
                "rows per recorded batch",
            ),
            (
                "ring_capacity",
                self.ring_capacity,
                "rows between the loop and the batch builder",
            ),
        ];
        for (name, value, what) in at_least_one {
            if value == 0 {
                return Err(config(format!(
                    "{name} is 0; it must be at least 1 ({what})"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(control_hz: &str, record_fps: &str) -> LoopNames {
        LoopNames {
            control_hz: control_hz.into(),
            record_fps: record_fps.into(),
            ..LoopNames::default()
        }
    }

    #[test]
    fn rates_are_checked_with_the_callers_names() {
        let names = named("--control_hz", "--dataset.fps");
        let err = |hz, fps| {
            check_rates(hz, fps, &names)
                .map(|()| String::new())
                .unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(err(Some(0.0), None), "--control_hz is 0; it must be > 0");
        assert_eq!(
            err(Some(100.0), Some(-5.0)),
            "--dataset.fps is -5; it must be > 0"
        );
        assert_eq!(
            err(Some(20.0), Some(30.0)),
            "--control_hz=20 is below --dataset.fps=30; the loop must run at least as fast as \
             the dataset rows"
        );
        assert!(err(None, Some(300.0)).contains("--control_hz=200 (the default) is below"));
        assert!(err(Some(f64::NAN), None).contains("finite"));
        assert_eq!(err(Some(200.0), Some(200.0)), "");
        assert_eq!(err(None, None), "");
    }

    #[test]
    fn a_spec_is_checked_once_whole() {
        assert!(LoopSpec::default().validate().is_ok());
        let bad = |f: fn(&mut LoopSpec)| {
            let mut spec = LoopSpec::default();
            f(&mut spec);
            spec.validate().unwrap_err().to_string()
        };
        assert!(bad(|s| s.record_fps = 400.0).contains("control_hz=200 is below record_fps=400"));
        assert!(bad(|s| s.max_consecutive_errors = 0).starts_with("max_consecutive_errors is 0"));
        assert!(bad(|s| s.max_invalid_actions = 0).starts_with("max_invalid_actions is 0"));
        assert!(bad(|s| s.builder.batch_rows = 0).starts_with("batch_rows is 0"));
    }

    #[test]
    fn the_default_error_budget_is_about_50_ms() {
        let names = LoopNames::default();
        assert_eq!(error_budget(None, 200.0, &names).unwrap(), 10);
        assert_eq!(error_budget(None, 30.0, &names).unwrap(), 3);
        assert_eq!(error_budget(Some(7), 200.0, &names).unwrap(), 7);
        assert!(error_budget(Some(0), 200.0, &names).is_err());
    }

    #[test]
    fn ramp_times_are_seconds() {
        assert_eq!(seconds_ns("t", 1.5).unwrap(), 1_500_000_000);
        assert!(seconds_ns("t", -1.0).is_err());
        assert_eq!(step_ns("dt", None).unwrap(), 0);
        assert!(step_ns("dt", Some(0.0))
            .unwrap_err()
            .to_string()
            .contains("dt"));
    }
}
