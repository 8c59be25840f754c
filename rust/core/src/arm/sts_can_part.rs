//! The legacy follower's two STS servos behind OpenK's STS-over-CAN bridge, as a loop part.
//! The bridge answers one servo per request, so a tick writes every goal, then reads every
//! position in turn.

use crate::bus::damiao::{DamiaoBusError, StsCanBus};

use super::calibration::JointNorm;
use super::damiao_part::part_error;
use super::part::{part_names, Part, PartError, StopAction};

pub struct StsCanPart {
    label: String,
    bus: StsCanBus,
    ids: Vec<u16>,
    offsets: Vec<f64>,
    norms: Vec<JointNorm>,
    motor_names: Vec<String>,
    goal_names: Vec<String>,
    state_names: Vec<String>,
}

impl StsCanPart {
    /// `joints` are (name, servo id, homing offset in ticks, normalisation), in feature order.
    pub fn new(label: String, bus: StsCanBus, joints: Vec<(String, u16, f64, JointNorm)>) -> Self {
        let motor_names: Vec<String> = joints.iter().map(|j| j.0.clone()).collect();
        Self {
            label,
            bus,
            ids: joints.iter().map(|j| j.1).collect(),
            offsets: joints.iter().map(|j| j.2).collect(),
            norms: joints.iter().map(|j| j.3).collect(),
            goal_names: motor_names.iter().map(|m| format!("{m}.pos")).collect(),
            state_names: motor_names.iter().map(|m| format!("{m}.pos")).collect(),
            motor_names,
        }
    }

    /// Changes the bus's reply timeout and retries (see [`StsCanBus::set_timeouts`]).
    pub fn set_timeouts(&mut self, timeout: std::time::Duration, retries: u32) {
        self.bus.set_timeouts(timeout, retries);
    }

    fn err(&self, e: &DamiaoBusError, servo: usize) -> PartError {
        let mut pe = part_error(&self.motor_names, e);
        if pe.motor.is_none() && matches!(e, DamiaoBusError::Timeout { .. }) {
            pe.motor = Some(servo);
        }
        pe
    }
}

impl StsCanPart {
    /// Reads every servo's position into `state`; resent requests count in `retries[servo]`.
    fn read_positions(&mut self, state: &mut [f32], retries: &mut [u32]) -> Result<(), PartError> {
        for i in 0..self.ids.len() {
            let (Some(id), Some(norm), Some(off)) =
                (self.ids.get(i), self.norms.get(i), self.offsets.get(i))
            else {
                continue;
            };
            let resent_before = self.bus.resent();
            let read = self.bus.read_position(*id);
            if let Some(r) = retries.get_mut(i) {
                *r += (self.bus.resent() - resent_before) as u32;
            }
            let raw = read.map_err(|e| self.err(&e, i))?;
            if let Some(s) = state.get_mut(i) {
                *s = norm.normalize(f64::from(raw) - off);
            }
        }
        Ok(())
    }
}

impl Part for StsCanPart {
    part_names!(label, motor_names, goal_names, state_names);

    fn exchange(
        &mut self,
        goal: &[f32],
        state: &mut [f32],
        retries: &mut [u32],
    ) -> Result<(), PartError> {
        for i in 0..self.ids.len() {
            let (Some(g), Some(norm), Some(id), Some(off)) = (
                goal.get(i),
                self.norms.get(i),
                self.ids.get(i),
                self.offsets.get(i),
            ) else {
                continue;
            };
            let raw = norm.unnormalize(*g) + off;
            self.bus
                .write_position(*id, raw.round() as i64)
                .map_err(|e| self.err(&e, i))?;
        }
        self.read_positions(state, retries)
    }

    fn read_state(&mut self, state: &mut [f32]) -> Result<(), PartError> {
        self.read_positions(state, &mut [])
    }

    fn stop(&mut self, _action: StopAction) -> Result<(), PartError> {
        // The bridge has no torque switch; the servos hold their last goal.
        Ok(())
    }
}
