//! Bindings of the arms, the teleop/record loop and calibration: type conversion, error
//! mapping, and GIL release around every blocking wait. No logic lives here.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arrow_array::RecordBatch;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyList};

use openk_core::arm::calibration::calibration_path as core_calibration_path;
use openk_core::arm::config::DeviceConfig;
use openk_core::arm::device::{
    self, Calibrator as CoreCalibrator, LeaderReader as CoreLeaderReader, OpenedArms,
};
use openk_core::arm::spec::{lookup, valid_types, DeviceKind, STATE_CHANNELS_KEY};
use openk_core::arm::ArmError;
use openk_core::control::loop_spec::{self, LoopNames};
use openk_core::control::{
    GoalSource, LoopSpec, RealtimeMode, SafetyEvent, TelemetryReport, TeleopLoop,
};
use openk_core::record::stream::to_ffi_stream;
use openk_core::record::BuilderConfig;

use crate::errors::{to_py, ConfigError, OpenKError};
use crate::telemetry::LoopTelemetry;

fn kind_of(kind: &str) -> PyResult<DeviceKind> {
    match kind {
        "robot" => Ok(DeviceKind::Robot),
        "teleop" | "teleoperator" => Ok(DeviceKind::Teleoperator),
        other => Err(ConfigError::new_err(format!(
            "kind must be \"robot\" or \"teleop\" (got {other:?})"
        ))),
    }
}

/// A Python dict (or any JSON-able mapping) as JSON text; paths become strings.
fn to_json(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let json = py.import("json")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("default", py.import("builtins")?.getattr("str")?)?;
    json.call_method("dumps", (obj,), Some(&kwargs))
        .map_err(|e| ConfigError::new_err(format!("config cannot be read as a dict: {e}")))?
        .extract()
}

fn device_config(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    kind: DeviceKind,
) -> PyResult<DeviceConfig> {
    DeviceConfig::from_json_text(&to_json(py, obj)?, kind).map_err(to_py)
}

fn report(r: &TelemetryReport) -> LoopTelemetry {
    LoopTelemetry::from(r)
}

fn event_dict<'py>(py: Python<'py>, e: &SafetyEvent) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("time_ns", e.time_ns)?;
    d.set_item("device", &e.device)?;
    d.set_item("motor", &e.motor)?;
    d.set_item("reason", &e.reason)?;
    d.set_item("response", &e.response)?;
    Ok(d)
}

/// Rows of the recording as Arrow data; pyarrow reads it without copying through
/// `__arrow_c_stream__` (`pa.table(batch)`, `pa.RecordBatchReader.from_stream(batch)`).
#[pyclass(module = "openk._core", frozen)]
pub struct FrameBatch {
    schema: openk_core::record::SchemaRef,
    batches: Vec<RecordBatch>,
}

#[pymethods]
impl FrameBatch {
    #[getter]
    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    fn __len__(&self) -> usize {
        self.num_rows()
    }

    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The schema is fixed by the loop; a consumer asking for another one casts itself.
        let _ = requested_schema;
        let stream = to_ffi_stream(self.schema.clone(), self.batches.clone());
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }

    fn __repr__(&self) -> String {
        format!("FrameBatch(num_rows={})", self.num_rows())
    }
}

struct SessionState {
    robot: DeviceConfig,
    teleop: Option<DeviceConfig>,
    spec: LoopSpec,
    opened: Option<OpenedArms>,
    running: Option<Arc<TeleopLoop>>,
    sims: Option<device::SimSet>,
    /// The events of the last loop, kept by `stop` (its return home included).
    stopped_events: Vec<SafetyEvent>,
}

/// A teleoperation (or replay) session: leader → follower at `control_hz`, rows at
/// `record_fps` while an episode is open.
#[pyclass(module = "openk._core", frozen)]
pub struct TeleopSession {
    state: Mutex<SessionState>,
}

impl TeleopSession {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self) -> PyResult<Arc<TeleopLoop>> {
        self.lock()
            .running
            .clone()
            .ok_or_else(|| OpenKError::new_err("the session is not started; call start() first"))
    }

    /// The scheduled loop (no teleoperator) and the names its actions are ordered by.
    fn scheduled(&self, what: &str) -> PyResult<(Arc<TeleopLoop>, Vec<String>)> {
        let (lp, names, has_teleop, switchable) = {
            let st = self.lock();
            (
                st.running.clone(),
                st.robot.spec.action_names(),
                st.teleop.is_some(),
                st.spec.initial_source.is_some(),
            )
        };
        if has_teleop && !switchable {
            return Err(ConfigError::new_err(format!(
                "{what} is for replay and policy rollout; this session's goals come from its \
                 teleoperator (pass goal_source=\"schedule\" to hand them between the two)"
            )));
        }
        let lp = lp
            .ok_or_else(|| OpenKError::new_err("the session is not started; call start() first"))?;
        Ok((lp, names))
    }
}

#[pymethods]
impl TeleopSession {
    #[new]
    #[pyo3(signature = (robot, teleop=None, *, control_hz=200.0, record_fps=30.0, realtime="auto", cpu=None, batch_rows=256, max_consecutive_errors=None, parallel=true, start_ramp_time_s=0.0, start_ramp_dt_s=None, end_home_ramp_time_s=0.0, end_home_ramp_dt_s=None, end_home_settle_s=0.0, goal_velocity_limit=None, max_invalid_actions=5, schedule_capacity=4096, goal_source=None, handover_time_s=0.5))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        robot: &Bound<'_, PyAny>,
        teleop: Option<&Bound<'_, PyAny>>,
        control_hz: f64,
        record_fps: f64,
        realtime: &str,
        cpu: Option<usize>,
        batch_rows: usize,
        max_consecutive_errors: Option<u32>,
        parallel: bool,
        start_ramp_time_s: f64,
        start_ramp_dt_s: Option<f64>,
        end_home_ramp_time_s: f64,
        end_home_ramp_dt_s: Option<f64>,
        end_home_settle_s: f64,
        goal_velocity_limit: Option<&Bound<'_, PyAny>>,
        max_invalid_actions: u32,
        schedule_capacity: usize,
        goal_source: Option<&str>,
        handover_time_s: f64,
    ) -> PyResult<Self> {
        let robot = device_config(py, robot, DeviceKind::Robot)?;
        let teleop = teleop
            .filter(|t| !t.is_none())
            .map(|t| device_config(py, t, DeviceKind::Teleoperator))
            .transpose()?;
        let realtime: RealtimeMode = realtime.parse().map_err(ConfigError::new_err)?;
        let action_names = robot.spec.action_names();
        let max_goal_speed = per_action(goal_velocity_limit, &action_names, "goal_velocity_limit")?;
        let names = LoopNames::default();
        let initial_source = goal_source.map(parse_source).transpose()?;
        if initial_source.is_some() && teleop.is_none() {
            return Err(ConfigError::new_err(
                "goal_source is for a session with a teleoperator (DAgger: the leader and the \
                 schedule take turns); without one the schedule drives",
            ));
        }
        let spec = LoopSpec {
            initial_source,
            handover_ns: loop_spec::seconds_ns("handover_time_s", handover_time_s)
                .map_err(to_py)?,
            start_ramp_ns: loop_spec::seconds_ns("start_ramp_time_s", start_ramp_time_s)
                .map_err(to_py)?,
            start_ramp_step_ns: loop_spec::step_ns("start_ramp_dt_s", start_ramp_dt_s)
                .map_err(to_py)?,
            end_ramp_ns: loop_spec::seconds_ns("end_home_ramp_time_s", end_home_ramp_time_s)
                .map_err(to_py)?,
            end_ramp_step_ns: loop_spec::step_ns("end_home_ramp_dt_s", end_home_ramp_dt_s)
                .map_err(to_py)?,
            end_settle_ns: loop_spec::seconds_ns("end_home_settle_s", end_home_settle_s)
                .map_err(to_py)?,
            max_goal_speed,
            max_invalid_actions,
            schedule_capacity,
            control_hz,
            record_fps,
            realtime,
            cpu,
            max_consecutive_errors: loop_spec::error_budget(
                max_consecutive_errors,
                control_hz,
                &names,
            )
            .map_err(to_py)?,
            stop_action: loop_spec::stop_action(&robot),
            parallel,
            builder: BuilderConfig {
                batch_rows,
                ..BuilderConfig::default()
            },
            ..LoopSpec::default()
        };
        spec.validate_named(&names).map_err(to_py)?;
        Ok(Self {
            state: Mutex::new(SessionState {
                robot,
                teleop,
                spec,
                opened: None,
                running: None,
                sims: None,
                stopped_events: Vec::new(),
            }),
        })
    }

    /// Opens the ports (starting simulators for `sim` ports), loads and checks calibration.
    fn connect(&self, py: Python<'_>) -> PyResult<()> {
        let (robot, teleop) = {
            let st = self.lock();
            if st.opened.is_some() || st.running.is_some() {
                return Ok(());
            }
            (st.robot.clone(), st.teleop.clone())
        };
        let opened = py
            .detach(|| device::open_arms(&robot, teleop.as_ref()))
            .map_err(to_py)?;
        self.lock().opened = Some(opened);
        Ok(())
    }

    /// Starts the control loop (connecting first if needed). The follower's first goal is its
    /// present position.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        self.connect(py)?;
        let (opened, spec) = {
            let mut st = self.lock();
            if st.running.is_some() {
                return Ok(());
            }
            let Some(opened) = st.opened.take() else {
                return Err(OpenKError::new_err("the session could not connect"));
            };
            (opened, st.spec.clone())
        };
        let OpenedArms {
            arms,
            sims,
            action_limits,
        } = opened;
        let spec = LoopSpec {
            action_limits,
            ..spec
        };
        let lp = py.detach(|| TeleopLoop::start(arms, spec)).map_err(to_py)?;
        let mut st = self.lock();
        st.running = Some(Arc::new(lp));
        st.sims = Some(sims);
        Ok(())
    }

    /// True while the loop runs (False after stop() or after it stopped on a failure).
    #[getter]
    fn is_running(&self) -> bool {
        self.lock().running.as_ref().is_some_and(|l| l.is_running())
    }

    /// Scheduling the loop got, e.g. "SCHED_FIFO priority 80" or "SCHED_OTHER (timer slack 1 ns)".
    #[getter]
    fn realtime(&self) -> PyResult<String> {
        Ok(self.running()?.realtime().to_string())
    }

    #[getter]
    fn observation_names(&self) -> Vec<String> {
        self.lock().robot.observation_names()
    }

    #[getter]
    fn action_names(&self) -> Vec<String> {
        self.lock().robot.spec.action_names()
    }

    /// Starts recording rows into a new episode; returns its index.
    #[pyo3(signature = (timeout=5.0))]
    fn start_episode(&self, py: Python<'_>, timeout: f64) -> PyResult<i64> {
        let lp = self.running()?;
        py.detach(|| lp.start_episode(secs(timeout))).map_err(to_py)
    }

    /// Stops recording. When it returns, every row of the episode can be read with
    /// next_batch(); returns the episode's loop telemetry.
    #[pyo3(signature = (timeout=10.0))]
    fn end_episode(&self, py: Python<'_>, timeout: f64) -> PyResult<LoopTelemetry> {
        let lp = self.running()?;
        let r = py.detach(|| lp.end_episode(secs(timeout))).map_err(to_py)?;
        Ok(report(&r))
    }

    /// The next batch of rows, or None if none arrived within `timeout` seconds. Raises the
    /// loop's failure once the rows produced before it have all been returned.
    #[pyo3(signature = (timeout=0.1))]
    fn next_batch(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<FrameBatch>> {
        let lp = self.running()?;
        let schema = lp.schema();
        let batch = py.detach(|| lp.next_batch(secs(timeout))).map_err(to_py)?;
        Ok(batch.map(|b| FrameBatch {
            schema,
            batches: vec![b],
        }))
    }

    /// Loop telemetry of the whole run.
    fn telemetry(&self) -> PyResult<LoopTelemetry> {
        let lp = self.running()?;
        Ok(report(&lp.telemetry()))
    }

    /// Loop telemetry of the current or last episode.
    fn episode_telemetry(&self) -> PyResult<LoopTelemetry> {
        let lp = self.running()?;
        Ok(report(&lp.episode_telemetry()))
    }

    /// Hands the goals to "leader" or "schedule" (a session made with goal_source): they blend
    /// from the goal in force to the new source's over handover_time_s; rows recorded while
    /// the leader drives carry intervention=True. Waits for the loop to take it.
    fn set_goal_source(&self, py: Python<'_>, source: &str) -> PyResult<()> {
        let source = parse_source(source)?;
        let switchable = self.lock().spec.initial_source.is_some();
        if !switchable {
            return Err(ConfigError::new_err(
                "set_goal_source needs a session made with goal_source=\"leader\" or \
                 \"schedule\" and a teleoperator",
            ));
        }
        let lp = self.running()?;
        py.detach(|| lp.set_source(source, std::time::Duration::from_secs(2)))
            .map_err(to_py)
    }

    /// One action: the goal reaches it one dataset row period (1/record_fps) after the loop
    /// receives it, interpolated at control_hz from the goal in force. `action` is a dict keyed
    /// by action names or a sequence in action order. Never waits for the loop.
    fn send_action(&self, action: &Bound<'_, PyAny>) -> PyResult<()> {
        let (lp, names) = self.scheduled("send_action")?;
        let values = action_values(action, &names)?;
        lp.send_actions(&values, None).map_err(to_py)
    }

    /// A timed sequence of actions (rows in action order, e.g. a policy's action chunk or a
    /// whole episode): row i is due at start_ns + i/record_fps; the goal is interpolated
    /// between rows at control_hz. The sequence replaces what was scheduled from its start on.
    #[pyo3(signature = (actions, start_ns=None))]
    fn send_actions(&self, actions: &Bound<'_, PyAny>, start_ns: Option<u64>) -> PyResult<()> {
        let (lp, names) = self.scheduled("send_actions")?;
        let rows: Vec<Vec<f32>> = actions.extract().map_err(|e| {
            ConfigError::new_err(format!(
                "actions must be a 2-D sequence of numbers (rows of {} values: {names:?}): {e}",
                names.len()
            ))
        })?;
        if rows.is_empty() {
            return Err(ConfigError::new_err(
                "actions is empty; send at least one row",
            ));
        }
        if let Some((i, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != names.len())
        {
            return Err(ConfigError::new_err(format!(
                "row {i} of actions has {} values; every row needs {} ({names:?})",
                r.len(),
                names.len()
            )));
        }
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        lp.send_actions(&flat, start_ns).map_err(to_py)
    }

    /// Scheduled actions not yet reached (nor replaced, dropped as late or refused).
    #[getter]
    fn pending_actions(&self) -> PyResult<u64> {
        Ok(self.running()?.pending_actions())
    }

    /// Waits (GIL released) until every scheduled action has been reached, up to `timeout`
    /// seconds; True when done, False on timeout. Raises if the loop stopped.
    #[pyo3(signature = (timeout=None))]
    fn wait_idle(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let lp = self.running()?;
        let timeout = timeout.map_or(Duration::from_secs(u64::from(u32::MAX)), secs);
        py.detach(|| lp.wait_idle(timeout)).map_err(to_py)
    }

    /// Safety events so far (leader lost, bus errors, stop), each with device, motor, reason;
    /// after `stop`, those of the loop it stopped (the return home included).
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = {
            let st = self.lock();
            match &st.running {
                Some(l) => l.events(),
                None => st.stopped_events.clone(),
            }
        };
        let list = PyList::empty(py);
        for e in &events {
            list.append(event_dict(py, e)?)?;
        }
        Ok(list)
    }

    /// Why the loop stopped on its own (as the exception it maps to), or None.
    fn failure(&self) -> Option<PyErr> {
        let lp = self.lock().running.clone()?;
        lp.failure().map(to_py)
    }

    /// Test hook: the simulator behind `device` ("robot" or "teleop") and `bus` ("damiao" or
    /// "sts") unplugs its pty, as a cable pulled out mid-run.
    #[pyo3(signature = (device, bus="damiao"))]
    fn simulate_unplug(&self, device: &str, bus: &str) -> PyResult<()> {
        let st = self.lock();
        let sims = st
            .sims
            .as_ref()
            .or(st.opened.as_ref().map(|o| &o.sims))
            .ok_or_else(|| OpenKError::new_err("the session is not connected"))?;
        if sims.unplug(device, bus) {
            Ok(())
        } else {
            Err(ConfigError::new_err(format!(
                "no simulator for {device} {bus}; only `sim` ports can be unplugged"
            )))
        }
    }

    /// Stops the loop safely and closes the ports: the follower first returns home (when
    /// end_home_ramp_time_s > 0; Ctrl-C meanwhile cuts it short), then holds, or goes limp
    /// with disable_torque_on_disconnect. Safe to call twice.
    fn stop(&self, py: Python<'_>) {
        let (lp, sims, opened) = {
            let mut st = self.lock();
            (st.running.take(), st.sims.take(), st.opened.take())
        };
        if let Some(lp) = &lp {
            py.detach(|| lp.request_stop());
            let mut cut_short = false;
            while !py.detach(|| lp.wait_stopped(Duration::from_millis(100))) {
                if py.check_signals().is_err() && !cut_short {
                    cut_short = true;
                    py.detach(|| lp.request_stop());
                }
            }
            self.lock().stopped_events = lp.events();
        }
        py.detach(|| {
            if let Some(lp) = lp {
                lp.stop();
            }
            drop(opened);
            drop(sims);
        });
    }

    fn __enter__<'py>(slf: Bound<'py, Self>, py: Python<'py>) -> PyResult<Bound<'py, Self>> {
        slf.get().start(py)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }
}

/// A per-joint option (one number for every action, or {joint: number}) by action index.
fn per_action(
    value: Option<&Bound<'_, PyAny>>,
    action_names: &[String],
    name: &str,
) -> PyResult<Vec<Option<f32>>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(Vec::new());
    };
    let joint_of = |a: &str| a.strip_suffix(".pos").unwrap_or(a).to_owned();
    if let Ok(d) = value.cast::<PyDict>() {
        let mut out = vec![None; action_names.len()];
        for (k, v) in d.iter() {
            let key: String = k.extract()?;
            let i = action_names
                .iter()
                .position(|a| *a == key || joint_of(a) == key)
                .ok_or_else(|| {
                    ConfigError::new_err(format!(
                        "{name}: {key:?} is not a joint of this robot; use one of {:?}",
                        action_names.iter().map(|a| joint_of(a)).collect::<Vec<_>>()
                    ))
                })?;
            out[i] = Some(v.extract()?);
        }
        return Ok(out);
    }
    let v: f32 = value.extract().map_err(|_| {
        ConfigError::new_err(format!(
            "{name} must be a number or a {{joint: number}} mapping"
        ))
    })?;
    Ok(vec![Some(v); action_names.len()])
}

/// An action as a dict keyed by action names or a sequence in action order.
fn action_values(action: &Bound<'_, PyAny>, names: &[String]) -> PyResult<Vec<f32>> {
    if let Ok(d) = action.cast::<PyDict>() {
        let mut v = Vec::with_capacity(names.len());
        for n in names {
            let item = d.get_item(n)?.ok_or_else(|| {
                ConfigError::new_err(format!("action has no {n:?}; it needs {names:?}"))
            })?;
            v.push(item.extract()?);
        }
        return Ok(v);
    }
    action.extract()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s } else { 0.0 })
}

/// Feature names and shapes of a device type, for declaring dataset features before
/// connecting: {"observation.state": {"dtype", "shape", "names"}, "action": {...}}.
/// `state_channels` (a robot's, e.g. ["pos", "vel"]) limits the observation as the robot
/// config's key does; None: every channel.
#[pyfunction]
#[pyo3(signature = (type_name, kind="robot", *, state_channels=None))]
fn device_features<'py>(
    py: Python<'py>,
    type_name: &str,
    kind: &str,
    state_channels: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = lookup(type_name, kind_of(kind)?).map_err(to_py)?;
    let observation = match state_channels {
        Some(given) => {
            if spec.kind != DeviceKind::Robot {
                return Err(ConfigError::new_err(format!(
                    "{STATE_CHANNELS_KEY} is a robot option; {type_name} is a {}",
                    spec.kind.noun()
                )));
            }
            spec.observation_names_with(&spec.parse_state_channels(&given).map_err(to_py)?)
        }
        None => spec.observation_names(),
    };
    let out = PyDict::new(py);
    for (key, names) in [
        ("observation.state", observation),
        ("action", spec.action_names()),
    ] {
        let f = PyDict::new(py);
        f.set_item("dtype", "float32")?;
        f.set_item("shape", (names.len(),))?;
        f.set_item("names", names)?;
        out.set_item(key, f)?;
    }
    Ok(out)
}

/// Checks the loop's rates and error budget the way the session will, naming the options as
/// `names` says ({"control_hz": "--control_hz", "record_fps": "--dataset.fps",
/// "max_consecutive_errors": ...}); raises ConfigError. `control_hz` None: the default rate.
#[pyfunction]
#[pyo3(signature = (control_hz=None, record_fps=None, *, max_consecutive_errors=None, names=None))]
fn validate_loop(
    control_hz: Option<f64>,
    record_fps: Option<f64>,
    max_consecutive_errors: Option<u32>,
    names: Option<std::collections::HashMap<String, String>>,
) -> PyResult<()> {
    let mut n = LoopNames::default();
    for (key, name) in names.unwrap_or_default() {
        match key.as_str() {
            "control_hz" => n.control_hz = name,
            "record_fps" => n.record_fps = name,
            "max_consecutive_errors" => n.max_consecutive_errors = name,
            other => {
                return Err(ConfigError::new_err(format!(
                    "names: {other:?} is not a loop option; use control_hz, record_fps or \
                     max_consecutive_errors"
                )))
            }
        }
    }
    loop_spec::check_rates(control_hz, record_fps, &n).map_err(to_py)?;
    let hz = control_hz.unwrap_or(LoopSpec::default().control_hz);
    loop_spec::error_budget(max_consecutive_errors, hz, &n).map_err(to_py)?;
    Ok(())
}

/// Type names users can type, by kind: {"robot": [...], "teleop": [...]}.
#[pyfunction]
fn device_types<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("robot", valid_types(DeviceKind::Robot))?;
    d.set_item("teleop", valid_types(DeviceKind::Teleoperator))?;
    Ok(d)
}

/// Where the calibration file of a configured device lives.
#[pyfunction]
#[pyo3(signature = (config, kind="robot"))]
fn calibration_path(py: Python<'_>, config: &Bound<'_, PyAny>, kind: &str) -> PyResult<String> {
    let cfg = device_config(py, config, kind_of(kind)?)?;
    Ok(
        core_calibration_path(cfg.spec, &cfg.id, cfg.calibration_dir.as_deref())
            .to_string_lossy()
            .into_owned(),
    )
}

/// Scripted calibration: connect, (optionally) set homing at the middle pose, sample
/// positions while the joints are swept, then save. The interactive prompts are the CLI's.
#[pyclass(module = "openk._core", frozen)]
pub struct Calibrator {
    inner: Mutex<Option<CoreCalibrator>>,
}

impl Calibrator {
    fn with<R>(&self, f: impl FnOnce(&mut CoreCalibrator) -> Result<R, ArmError>) -> PyResult<R> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let cal = guard
            .as_mut()
            .ok_or_else(|| OpenKError::new_err("the calibrator is closed"))?;
        f(cal).map_err(to_py)
    }
}

#[pymethods]
impl Calibrator {
    #[new]
    #[pyo3(signature = (config, kind="robot"))]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>, kind: &str) -> PyResult<Self> {
        let cfg = device_config(py, config, kind_of(kind)?)?;
        let cal = py.detach(|| CoreCalibrator::connect(cfg)).map_err(to_py)?;
        Ok(Self {
            inner: Mutex::new(Some(cal)),
        })
    }

    /// Raw positions by joint (radians for DAMIAO, ticks for STS).
    fn read_raw(&self, py: Python<'_>) -> PyResult<Vec<(String, f64)>> {
        py.detach(|| self.with(|c| c.read_raw()))
    }

    /// Makes the present pose the middle: STS half-turn homing, DAMIAO zero (unless
    /// `zero_damiao` is False, then m_off is only read).
    #[pyo3(signature = (zero_damiao=true))]
    fn set_homing(&self, py: Python<'_>, zero_damiao: bool) -> PyResult<()> {
        py.detach(|| self.with(|c| c.set_homing(zero_damiao)))
    }

    /// Reads positions once and widens each joint's recorded range; returns
    /// [(joint, min, position, max)].
    fn sample(&self, py: Python<'_>) -> PyResult<Vec<(String, f64, f64, f64)>> {
        py.detach(|| self.with(|c| c.sample()))
    }

    /// Writes the calibration file; returns its path.
    fn save(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.with(|c| c.save()))
            .map(|p| p.to_string_lossy().into_owned())
    }

    #[getter]
    fn path(&self) -> PyResult<String> {
        self.with(|c| Ok(c.path().to_string_lossy().into_owned()))
    }

    /// Closes the ports (and simulators).
    fn close(&self, py: Python<'_>) {
        let cal = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(|| drop(cal));
    }
}

/// A leader read on its own (no follower, no loop), for teleoperator APIs polled by their
/// caller (lerobot's `get_action`): calibrated feature values by name.
#[pyclass(module = "openk._core", frozen)]
pub struct LeaderReader {
    inner: Mutex<Option<CoreLeaderReader>>,
    names: Vec<String>,
}

#[pymethods]
impl LeaderReader {
    #[new]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Self> {
        let cfg = device_config(py, config, DeviceKind::Teleoperator)?;
        let reader = py.detach(|| CoreLeaderReader::open(&cfg)).map_err(to_py)?;
        let names = reader.names().to_vec();
        Ok(Self {
            inner: Mutex::new(Some(reader)),
            names,
        })
    }

    /// The names `read` returns values for, in order (e.g. `shoulder_pan.pos`).
    #[getter]
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The leader's present values, in `names` order (GIL released while the bus answers).
    fn read(&self, py: Python<'_>) -> PyResult<Vec<f32>> {
        py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let reader = guard
                .as_mut()
                .ok_or_else(|| OpenKError::new_err("the leader reader is closed"))?;
            reader.read().map_err(to_py)
        })
    }

    /// Closes the ports (and simulators).
    fn close(&self, py: Python<'_>) {
        let reader = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(|| drop(reader));
    }
}

/// Simulators of a robot type (and teleop type) for peers and benchmarks: `ports` names the
/// pty of each bus ("robot.port", "robot.sts_port", "teleop.port").
#[pyclass(module = "openk._core", frozen)]
pub struct SimRig {
    sims: Mutex<Option<device::SimSet>>,
}

#[pymethods]
impl SimRig {
    #[new]
    #[pyo3(signature = (robot_type, teleop_type=None))]
    fn new(py: Python<'_>, robot_type: &str, teleop_type: Option<&str>) -> PyResult<Self> {
        let sims = py
            .detach(|| device::start_sim_rig(robot_type, teleop_type))
            .map_err(to_py)?;
        Ok(Self {
            sims: Mutex::new(Some(sims)),
        })
    }

    #[getter]
    fn ports(&self) -> std::collections::HashMap<String, String> {
        self.sims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.ports().into_iter().collect())
            .unwrap_or_default()
    }

    /// Stops the simulators.
    fn close(&self, py: Python<'_>) {
        let sims = self.sims.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(|| drop(sims));
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TeleopSession>()?;
    m.add_class::<SimRig>()?;
    m.add_class::<LeaderReader>()?;
    m.add_class::<FrameBatch>()?;
    m.add_class::<Calibrator>()?;
    m.add_function(wrap_pyfunction!(device_features, m)?)?;
    m.add_function(wrap_pyfunction!(device_types, m)?)?;
    m.add_function(wrap_pyfunction!(validate_loop, m)?)?;
    m.add_function(wrap_pyfunction!(calibration_path, m)?)?;
    Ok(())
}

fn parse_source(s: &str) -> PyResult<GoalSource> {
    match s {
        "leader" => Ok(GoalSource::Leader),
        "schedule" | "policy" => Ok(GoalSource::Schedule),
        other => Err(ConfigError::new_err(format!(
            "goal_source must be \"leader\" or \"schedule\" (got {other:?})"
        ))),
    }
}
