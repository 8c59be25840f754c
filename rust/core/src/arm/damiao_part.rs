//! DAMIAO motors of a follower (MIT or POS_VEL goals) or of a compliant leader, as a loop
//! [`Part`]. Goals and state are normalised with the device's calibration.

use crate::bus::damiao::{DamiaoBus, DamiaoBusError, MAX_MOTORS};
use crate::protocol::damiao::{ControlMode, Feedback, MitCommand};

use super::calibration::JointNorm;
use super::part::{part_names, Part, PartError, StopAction};
use crate::error::Classified;

/// Gains of OpenK's "compliant read" command: a hand moves the motor, which still reports.
const COMPLIANT_KD: f64 = 0.1;

/// How a DAMIAO part drives its motors.
#[derive(Debug, Clone)]
pub enum DamiaoDrive {
    /// Follower in MIT mode: q goal, dq = 0, per-motor kp/kd, tau = 0.
    Mit { kp: Vec<f64>, kd: Vec<f64> },
    /// Follower in POS_VEL mode with a per-motor velocity limit.
    PosVel { velocity_limit: Vec<f64> },
    /// Leader: MIT with kp = 0 so it can be moved by hand.
    Compliant,
}

pub struct DamiaoPart {
    label: String,
    bus: DamiaoBus,
    drive: DamiaoDrive,
    motor_names: Vec<String>,
    goal_names: Vec<String>,
    state_names: Vec<String>,
    norms: Vec<JointNorm>,
    mit: Vec<MitCommand>,
    pos_vel: Vec<(f64, f64)>,
    feedback: Vec<Feedback>,
    /// The bus's retry counts by motor when last reported to the loop.
    retries_seen: [u64; MAX_MOTORS],
}

/// Maps a bus error onto a part error naming the motor.
pub fn part_error(names: &[String], e: &DamiaoBusError) -> PartError {
    let index = e.motor().and_then(|m| names.iter().position(|n| n == m));
    PartError::new(e.fault_kind(), index, e.to_string())
}

impl DamiaoPart {
    /// `bus` is connected, in the right control mode and enabled. `norms` follow the bus's
    /// motor order. A follower reports `<j>.pos`, `<j>.vel`, `<j>.tor`; a leader `<j>.pos`,
    /// `<j>.vel`.
    pub fn new(label: String, bus: DamiaoBus, drive: DamiaoDrive, norms: Vec<JointNorm>) -> Self {
        let motor_names: Vec<String> = bus.motor_names().map(str::to_owned).collect();
        let n = motor_names.len();
        let leader = matches!(drive, DamiaoDrive::Compliant);
        let goal_names = if leader {
            Vec::new()
        } else {
            motor_names.iter().map(|m| format!("{m}.pos")).collect()
        };
        let mut state_names: Vec<String> = motor_names.iter().map(|m| format!("{m}.pos")).collect();
        state_names.extend(motor_names.iter().map(|m| format!("{m}.vel")));
        if !leader {
            state_names.extend(motor_names.iter().map(|m| format!("{m}.tor")));
        }
        let retries_seen = bus.stats().retries_by_motor;
        Self {
            label,
            bus,
            drive,
            motor_names,
            goal_names,
            state_names,
            norms,
            mit: vec![
                MitCommand {
                    q: 0.0,
                    dq: 0.0,
                    kp: 0.0,
                    kd: COMPLIANT_KD,
                    tau: 0.0,
                };
                n
            ],
            pos_vel: vec![(0.0, 0.0); n],
            feedback: vec![Feedback::default(); n],
            retries_seen,
        }
    }

    fn fill_state(&self, state: &mut [f32]) {
        let n = self.feedback.len();
        for (i, fb) in self.feedback.iter().enumerate() {
            if let (Some(s), Some(norm)) = (state.get_mut(i), self.norms.get(i)) {
                *s = norm.normalize(fb.q);
            }
            if let Some(s) = state.get_mut(n + i) {
                *s = fb.dq as f32;
            }
            if let Some(s) = state.get_mut(2 * n + i) {
                *s = fb.tau as f32;
            }
        }
    }

    fn err(&self, e: &DamiaoBusError) -> PartError {
        part_error(&self.motor_names, e)
    }

    pub fn bus_mut(&mut self) -> &mut DamiaoBus {
        &mut self.bus
    }
}

impl Part for DamiaoPart {
    part_names!(label, motor_names, goal_names, state_names);

    /// Pipelined: the replies to the previous tick's commands are collected first (they
    /// crossed the CAN bus while the loop slept), then this tick's commands are sent without
    /// waiting. A tick thus costs microseconds on this bus instead of the ~1.5 ms CAN round,
    /// and the state reported is the motors' answer to the last command, i.e. measured
    /// before this tick's goal is applied (lerobot's observation-then-action order).
    fn exchange(
        &mut self,
        goal: &[f32],
        state: &mut [f32],
        retries: &mut [u32],
    ) -> Result<(), PartError> {
        let collected = if self.bus.round_in_flight() {
            self.bus.finish_round(&mut self.feedback)
        } else {
            Ok(())
        };
        let now = self.bus.stats().retries_by_motor;
        for ((r, seen), total) in retries.iter_mut().zip(&mut self.retries_seen).zip(now) {
            *r += total.saturating_sub(*seen) as u32;
            *seen = total;
        }
        // Send this tick's goals even if the last round failed: a motor that missed one
        // reply must still get fresh goals.
        let started = match &self.drive {
            DamiaoDrive::Mit { kp, kd } => {
                for (i, cmd) in self.mit.iter_mut().enumerate() {
                    let (Some(g), Some(norm)) = (goal.get(i), self.norms.get(i)) else {
                        continue;
                    };
                    *cmd = MitCommand {
                        q: norm.unnormalize(*g),
                        dq: 0.0,
                        kp: kp.get(i).copied().unwrap_or(0.0),
                        kd: kd.get(i).copied().unwrap_or(COMPLIANT_KD),
                        tau: 0.0,
                    };
                }
                self.bus.start_mit_all(&self.mit)
            }
            DamiaoDrive::PosVel { velocity_limit } => {
                for (i, target) in self.pos_vel.iter_mut().enumerate() {
                    let (Some(g), Some(norm)) = (goal.get(i), self.norms.get(i)) else {
                        continue;
                    };
                    *target = (
                        norm.unnormalize(*g),
                        velocity_limit.get(i).copied().unwrap_or(0.0),
                    );
                }
                self.bus.start_pos_vel_all(&self.pos_vel)
            }
            DamiaoDrive::Compliant => self.bus.start_mit_all(&self.mit),
        };
        collected.map_err(|e| self.err(&e))?;
        started.map_err(|e| self.err(&e))?;
        self.fill_state(state);
        Ok(())
    }

    fn read_state(&mut self, state: &mut [f32]) -> Result<(), PartError> {
        if self.bus.round_in_flight() {
            self.bus
                .finish_round(&mut self.feedback)
                .map_err(|e| self.err(&e))?;
        }
        match self.drive {
            // A compliant leader reports through its (harmless) kp = 0 command.
            DamiaoDrive::Compliant => self.bus.mit_all(&self.mit, &mut self.feedback),
            _ => self.bus.refresh_all(&mut self.feedback),
        }
        .map_err(|e| self.err(&e))?;
        self.fill_state(state);
        Ok(())
    }

    fn stop(&mut self, action: StopAction) -> Result<(), PartError> {
        if self.bus.round_in_flight() {
            // The last replies no longer matter; the bus must be idle for what follows.
            let _ = self.bus.finish_round(&mut self.feedback);
        }
        match action {
            // The motors keep tracking the last goal they received.
            StopAction::Hold => Ok(()),
            StopAction::Limp => self.bus.disable_all().map_err(|e| self.err(&e)),
        }
    }
}

/// The control mode a drive needs on the motors.
pub fn control_mode(drive: &DamiaoDrive) -> ControlMode {
    match drive {
        DamiaoDrive::PosVel { .. } => ControlMode::PosVel,
        _ => ControlMode::Mit,
    }
}
