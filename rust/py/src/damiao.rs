//! Bindings of the DAMIAO stack: codec helpers on bytes, `DamiaoBus`, `StsCanBus` and the
//! adapter simulator `DamiaoSim`. Blocking I/O runs with the GIL released.

use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use openk_core::bus::damiao::{
    DamiaoBus as CoreBus, DamiaoBusError, DamiaoBusOptions, DamiaoMotorSpec,
    StsCanBus as CoreStsCanBus, DEFAULT_BAUD,
};
use openk_core::protocol::damiao::{
    self as proto, AdapterStreamDecoder, ControlMode, Feedback, Limits, MitCommand, MotorModel,
    MotorState,
};
use openk_core::sim::damiao::{
    DamiaoSim as CoreSim, DamiaoSimConfig, HandTrajectory, SimMotorConfig, StsBridgeConfig,
};
use openk_core::sim::pty::Corruption;

use crate::convert::seconds;
use crate::errors::{to_py, ConfigError, OpenKError, PortError, ProtocolError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// Python signatures spell defaults as literals (a constant's name would show as `...` in
// `help()` and to stubtest); these keep the literals equal to the core constants.
const _: () = assert!(DEFAULT_BAUD == 921_600);

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

fn model(name: &str) -> PyResult<MotorModel> {
    MotorModel::from_name(name).map_err(to_py)
}

fn mode_from_name(name: &str) -> PyResult<ControlMode> {
    match name.to_ascii_uppercase().as_str() {
        "MIT" => Ok(ControlMode::Mit),
        "POS_VEL" => Ok(ControlMode::PosVel),
        "VEL" => Ok(ControlMode::Vel),
        "POS_FORCE" => Ok(ControlMode::PosForce),
        _ => Err(ConfigError::new_err(format!(
            "unknown control mode {name:?}; use MIT, POS_VEL, VEL or POS_FORCE"
        ))),
    }
}

fn state_from_name(name: &str) -> PyResult<MotorState> {
    MotorState::from_name(name).ok_or_else(|| {
        ConfigError::new_err(format!(
            "unknown motor state {name:?}; use one of {}",
            MotorState::NAMED.map(MotorState::name).join(", ")
        ))
    })
}

fn limits_of(model_name: &str, limits: Option<(f64, f64, f64)>) -> PyResult<Limits> {
    match limits {
        Some((p, v, t)) => Limits::new(p, v, t).map_err(to_py),
        None => Ok(model(model_name)?.default_limits()),
    }
}

fn payload8(data: &[u8]) -> PyResult<[u8; 8]> {
    data.try_into().map_err(|_| {
        ProtocolError::new_err(format!("a CAN payload is 8 bytes, got {}", data.len()))
    })
}

fn feedback_dict<'py>(py: Python<'py>, fb: &Feedback) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("q", fb.q)?;
    d.set_item("dq", fb.dq)?;
    d.set_item("tau", fb.tau)?;
    d.set_item("state", fb.state.to_string())?;
    d.set_item("t_mos", fb.t_mos)?;
    d.set_item("t_rotor", fb.t_rotor)?;
    d.set_item("id_nibble", fb.id_nibble)?;
    Ok(d)
}

fn register_py(py: Python<'_>, v: proto::RegisterValue) -> PyResult<Py<PyAny>> {
    Ok(match v {
        proto::RegisterValue::U32(u) => u.into_pyobject(py)?.into_any().unbind(),
        proto::RegisterValue::F32(f) => f64::from(f).into_pyobject(py)?.into_any().unbind(),
    })
}

// ---------------------------------------------------------------------------------------------
// Codec functions
// ---------------------------------------------------------------------------------------------

/// The 30-byte host → adapter frame carrying one 8-byte CAN payload.
#[pyfunction(name = "host_frame")]
fn damiao_host_frame<'py>(
    py: Python<'py>,
    can_id: u32,
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &proto::encode_host_frame(can_id, &payload8(payload)?),
    ))
}

/// MIT payload; every field is clamped to its range, NaN/inf raise ProtocolError.
#[pyfunction(name = "encode_mit")]
#[allow(clippy::too_many_arguments)] // mirrors the Python signature
#[pyo3(signature = (q, dq, kp, kd, tau, model="DM4310", limits=None))]
fn damiao_encode_mit<'py>(
    py: Python<'py>,
    q: f64,
    dq: f64,
    kp: f64,
    kd: f64,
    tau: f64,
    model: &str,
    limits: Option<(f64, f64, f64)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let lim = limits_of(model, limits)?;
    let payload = proto::encode_mit(&MitCommand { q, dq, kp, kd, tau }, &lim).map_err(to_py)?;
    Ok(PyBytes::new(py, &payload))
}

/// POS_VEL payload (f32 position, f32 speed limit).
#[pyfunction(name = "encode_pos_vel")]
fn damiao_encode_pos_vel<'py>(
    py: Python<'py>,
    position: f64,
    velocity: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &proto::encode_pos_vel(position, velocity).map_err(to_py)?,
    ))
}

/// Decodes an 8-byte feedback payload with the model's (or given) limits.
#[pyfunction(name = "decode_feedback")]
#[pyo3(signature = (payload, model="DM4310", limits=None))]
fn damiao_decode_feedback<'py>(
    py: Python<'py>,
    payload: &[u8],
    model: &str,
    limits: Option<(f64, f64, f64)>,
) -> PyResult<Bound<'py, PyDict>> {
    let lim = limits_of(model, limits)?;
    feedback_dict(py, &proto::decode_feedback(&payload8(payload)?, &lim))
}

/// Default (PMAX, VMAX, TMAX) of a motor model.
#[pyfunction(name = "model_limits")]
fn damiao_model_limits(model_name: &str) -> PyResult<(f64, f64, f64)> {
    let l = model(model_name)?.default_limits();
    Ok((l.pmax, l.vmax, l.tmax))
}

/// Refresh requests to ESC_IDs `first..=last` on `port`, one at a time: `(esc_id, mst_id,
/// state)` of every motor that answered within `window_s`.
#[pyfunction(name = "scan")]
#[pyo3(signature = (port, first=1, last=16, window_s=0.02))]
fn damiao_scan(
    py: Python<'_>,
    port: &str,
    first: u16,
    last: u16,
    window_s: f64,
) -> PyResult<Vec<(u16, u32, String)>> {
    let window = std::time::Duration::try_from_secs_f64(window_s)
        .map_err(|_| ConfigError::new_err(format!("window_s must be >= 0 (got {window_s})")))?;
    let found = py
        .detach(|| openk_core::bus::damiao::scan(port, first..=last, window))
        .map_err(to_py)?;
    Ok(found
        .into_iter()
        .map(|m| (m.esc_id, m.mst_id, m.state.to_string()))
        .collect())
}

/// Resynchronising decoder for the adapter → host byte stream.
#[pyclass(name = "DamiaoStreamDecoder", module = "openk._core.damiao")]
struct PyStreamDecoder {
    inner: Mutex<AdapterStreamDecoder>,
}

#[pymethods]
impl PyStreamDecoder {
    #[new]
    fn new() -> Self {
        Self {
            inner: Mutex::new(AdapterStreamDecoder::new()),
        }
    }

    /// Feeds bytes; returns the complete frames as (cmd, can_id, payload) tuples.
    fn push<'py>(&self, py: Python<'py>, data: &[u8]) -> Vec<(u8, u32, Bound<'py, PyBytes>)> {
        let mut dec = lock(&self.inner);
        let mut out = Vec::new();
        for chunk in data.chunks(256) {
            dec.push(chunk);
            while let Some(f) = dec.next_frame() {
                out.push((f.cmd.byte(), f.can_id, PyBytes::new(py, &f.data)));
            }
        }
        out
    }

    /// Bytes skipped as garbage so far.
    #[getter]
    fn skipped_bytes(&self) -> u64 {
        lock(&self.inner).skipped_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// DamiaoBus
// ---------------------------------------------------------------------------------------------

/// DAMIAO motors behind one USB-CAN adapter.
#[pyclass(name = "DamiaoBus", module = "openk._core.damiao")]
struct PyDamiaoBus {
    inner: Mutex<Option<CoreBus>>,
    names: Vec<String>,
    port: String,
}

impl PyDamiaoBus {
    /// Runs `f` on the open bus with the GIL released.
    fn with_bus<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut CoreBus) -> Result<T, DamiaoBusError> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = lock(&self.inner);
            match guard.as_mut() {
                Some(bus) => f(bus).map_err(to_py),
                None => Err(PortError::new_err(format!(
                    "DAMIAO bus on {} is closed; open a new DamiaoBus",
                    self.port
                ))),
            }
        })
    }

    fn index(&self, name: &str) -> PyResult<usize> {
        self.names.iter().position(|n| n == name).ok_or_else(|| {
            ConfigError::new_err(format!(
                "no motor named {name:?} on {}; motors: {}",
                self.port,
                self.names.join(", ")
            ))
        })
    }

    fn targets(&self, name: Option<&str>) -> PyResult<Vec<usize>> {
        match name {
            Some(n) => Ok(vec![self.index(n)?]),
            None => Ok((0..self.names.len()).collect()),
        }
    }

    fn feedback_list<'py>(py: Python<'py>, fb: &[Feedback]) -> PyResult<Vec<Bound<'py, PyDict>>> {
        fb.iter().map(|f| feedback_dict(py, f)).collect()
    }
}

#[pymethods]
impl PyDamiaoBus {
    /// `motors`: (name, model, esc_id, mst_id) per motor. Opens the port; no traffic until
    /// `connect()`.
    #[new]
    #[allow(clippy::too_many_arguments)] // mirrors the Python signature
    #[pyo3(signature = (port, motors, baud=921_600, timeout_s=0.02, retries=2, register_timeout_s=0.05, read_registers=true))]
    fn new(
        py: Python<'_>,
        port: String,
        motors: Vec<(String, String, u16, u16)>,
        baud: u32,
        timeout_s: f64,
        retries: u32,
        register_timeout_s: f64,
        read_registers: bool,
    ) -> PyResult<Self> {
        let specs = motors
            .iter()
            .map(|(name, m, esc, mst)| {
                Ok(DamiaoMotorSpec {
                    name: name.clone(),
                    model: model(m)?,
                    esc_id: *esc,
                    mst_id: *mst,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let options = DamiaoBusOptions {
            baud,
            timeout: seconds(timeout_s, "timeout_s")?,
            retries,
            register_timeout: seconds(register_timeout_s, "register_timeout_s")?,
            read_registers_at_connect: read_registers,
        };
        let names = specs.iter().map(|s| s.name.clone()).collect();
        let bus = py
            .detach(|| CoreBus::open(&port, specs, options))
            .map_err(to_py)?;
        Ok(Self {
            inner: Mutex::new(Some(bus)),
            names,
            port,
        })
    }

    #[getter]
    fn port(&self) -> &str {
        &self.port
    }

    #[getter]
    fn motor_names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Reads PMAX/VMAX/TMAX and the control mode of every motor.
    fn connect(&self, py: Python<'_>) -> PyResult<()> {
        self.with_bus(py, |b| b.connect())
    }

    /// Enables one motor, or all when `name` is None.
    #[pyo3(signature = (name=None))]
    fn enable(&self, py: Python<'_>, name: Option<&str>) -> PyResult<()> {
        let idx = self.targets(name)?;
        self.with_bus(py, |b| {
            idx.iter().try_for_each(|&i| b.enable(i).map(|_| ()))
        })
    }

    /// Disables one motor, or all when `name` is None.
    #[pyo3(signature = (name=None))]
    fn disable(&self, py: Python<'_>, name: Option<&str>) -> PyResult<()> {
        let idx = self.targets(name)?;
        self.with_bus(py, |b| {
            idx.iter().try_for_each(|&i| b.disable(i).map(|_| ()))
        })
    }

    /// Switches the control mode ("MIT", "POS_VEL", "VEL", "POS_FORCE") and verifies it.
    #[pyo3(signature = (mode, name=None))]
    fn set_control_mode(&self, py: Python<'_>, mode: &str, name: Option<&str>) -> PyResult<()> {
        let mode = mode_from_name(mode)?;
        let idx = self.targets(name)?;
        self.with_bus(py, |b| {
            idx.iter().try_for_each(|&i| b.set_control_mode(i, mode))
        })
    }

    /// The control mode last read or set, or None if unknown.
    fn control_mode(&self, py: Python<'_>, name: &str) -> PyResult<Option<&'static str>> {
        let i = self.index(name)?;
        self.with_bus(py, |b| Ok(b.control_mode(i).map(ControlMode::name)))
    }

    /// One MIT command (q, dq, kp, kd, tau) per motor; returns each motor's feedback.
    fn mit<'py>(
        &self,
        py: Python<'py>,
        commands: Vec<(f64, f64, f64, f64, f64)>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let cmds: Vec<MitCommand> = commands
            .iter()
            .map(|&(q, dq, kp, kd, tau)| MitCommand { q, dq, kp, kd, tau })
            .collect();
        let fb = self.with_bus(py, |b| {
            let mut fb = vec![Feedback::default(); b.len()];
            b.mit_all(&cmds, &mut fb).map(|_| fb)
        })?;
        Self::feedback_list(py, &fb)
    }

    /// One POS_VEL command (position, speed limit) per motor; returns each motor's feedback.
    fn pos_vel<'py>(
        &self,
        py: Python<'py>,
        targets: Vec<(f64, f64)>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let fb = self.with_bus(py, |b| {
            let mut fb = vec![Feedback::default(); b.len()];
            b.pos_vel_all(&targets, &mut fb).map(|_| fb)
        })?;
        Self::feedback_list(py, &fb)
    }

    /// One VEL command (rad/s) per motor; returns each motor's feedback.
    fn vel<'py>(&self, py: Python<'py>, velocities: Vec<f64>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let fb = self.with_bus(py, |b| {
            let mut fb = vec![Feedback::default(); b.len()];
            b.vel_all(&velocities, &mut fb).map(|_| fb)
        })?;
        Self::feedback_list(py, &fb)
    }

    /// Asks every motor for its state without commanding it.
    fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let fb = self.with_bus(py, |b| {
            let mut fb = vec![Feedback::default(); b.len()];
            b.refresh_all(&mut fb).map(|_| fb)
        })?;
        Self::feedback_list(py, &fb)
    }

    /// The motor's m_off register (RID 54) as read at connect, or None.
    fn angle_offset(&self, py: Python<'_>, name: &str) -> PyResult<Option<f64>> {
        let i = self.index(name)?;
        self.with_bus(py, |b| Ok(b.angle_offset(i)))
    }

    /// Last feedback received from a motor (also after a MotorError), or None.
    fn last_feedback<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let i = self.index(name)?;
        let fb = self.with_bus(py, |b| Ok(b.last_feedback(i)))?;
        fb.map(|f| feedback_dict(py, &f)).transpose()
    }

    /// Reads a register; u32 registers return int, the others float.
    fn read_register(&self, py: Python<'_>, name: &str, rid: u8) -> PyResult<Py<PyAny>> {
        let i = self.index(name)?;
        let v = self.with_bus(py, |b| b.read_register(i, rid))?;
        register_py(py, v)
    }

    /// Writes a register (RAM) and verifies the motor's echo; returns the echoed value.
    fn write_register(
        &self,
        py: Python<'_>,
        name: &str,
        rid: u8,
        value: f64,
    ) -> PyResult<Py<PyAny>> {
        let i = self.index(name)?;
        let v = self.with_bus(py, |b| b.write_register(i, rid, value))?;
        register_py(py, v)
    }

    /// Disables the motor and stores its registers to flash.
    fn save_registers(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let i = self.index(name)?;
        self.with_bus(py, |b| b.save_registers(i))
    }

    /// Makes the current position the motor's zero (disable it first).
    fn set_zero(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let i = self.index(name)?;
        self.with_bus(py, |b| b.set_zero(i).map(|_| ()))
    }

    /// Clears a latched motor fault.
    fn clear_error(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let i = self.index(name)?;
        self.with_bus(py, |b| b.clear_error(i).map(|_| ()))
    }

    /// (PMAX, VMAX, TMAX) used to encode commands for a motor.
    fn limits(&self, py: Python<'_>, name: &str) -> PyResult<(f64, f64, f64)> {
        let i = self.index(name)?;
        let l = self.with_bus(py, |b| Ok(b.limits(i)))?;
        l.map(|l| (l.pmax, l.vmax, l.tmax))
            .ok_or_else(|| ConfigError::new_err("motor index out of range"))
    }

    /// Traffic counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with_bus(py, |b| Ok(b.stats()))?;
        let d = PyDict::new(py);
        d.set_item("frames_sent", s.frames_sent)?;
        d.set_item("frames_received", s.frames_received)?;
        d.set_item("retries", s.retries)?;
        d.set_item("late_frames", s.late_frames)?;
        d.set_item("bytes_skipped", s.bytes_skipped)?;
        Ok(d)
    }

    /// Closes the port (motors keep their last command).
    fn close(&self, py: Python<'_>) {
        py.detach(|| drop(lock(&self.inner).take()));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _t: Py<PyAny>, _v: Py<PyAny>, _tb: Py<PyAny>) -> bool {
        self.close(py);
        false
    }
}

// ---------------------------------------------------------------------------------------------
// StsCanBus
// ---------------------------------------------------------------------------------------------

/// The STS servos behind OpenK's STS-over-CAN bridge (legacy follower).
#[pyclass(name = "StsCanBus", module = "openk._core.damiao")]
struct PyStsCanBus {
    inner: Mutex<CoreStsCanBus>,
}

#[pymethods]
impl PyStsCanBus {
    #[new]
    #[pyo3(signature = (port, controller_id=0xFF00, baud=921_600, timeout_s=0.1, retries=2))]
    fn new(
        py: Python<'_>,
        port: String,
        controller_id: u32,
        baud: u32,
        timeout_s: f64,
        retries: u32,
    ) -> PyResult<Self> {
        let timeout = seconds(timeout_s, "timeout_s")?;
        let bus = py
            .detach(|| CoreStsCanBus::open(&port, baud, controller_id, timeout, retries))
            .map_err(to_py)?;
        Ok(Self {
            inner: Mutex::new(bus),
        })
    }

    /// Sets a servo's goal (steps, clamped to 0–4095).
    fn write_position(&self, py: Python<'_>, servo_id: u16, position: i64) -> PyResult<()> {
        py.detach(|| lock(&self.inner).write_position(servo_id, position))
            .map_err(to_py)
    }

    /// Reads a servo's present position (steps).
    fn read_position(&self, py: Python<'_>, servo_id: u16) -> PyResult<u16> {
        py.detach(|| lock(&self.inner).read_position(servo_id))
            .map_err(to_py)
    }
}

// ---------------------------------------------------------------------------------------------
// DamiaoSim
// ---------------------------------------------------------------------------------------------

/// The DAMIAO USB-CAN adapter simulator on a pty.
#[pyclass(name = "DamiaoSim", module = "openk._core.damiao")]
struct PyDamiaoSim {
    inner: Mutex<Option<CoreSim>>,
    port: String,
}

impl PyDamiaoSim {
    fn with_sim<T>(&self, f: impl FnOnce(&CoreSim) -> PyResult<T>) -> PyResult<T> {
        match lock(&self.inner).as_ref() {
            Some(sim) => f(sim),
            None => Err(OpenKError::new_err(format!(
                "simulator on {} was stopped",
                self.port
            ))),
        }
    }

    fn with_motor<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut openk_core::sim::damiao::SimMotor) -> T,
    ) -> PyResult<T> {
        self.with_sim(|s| {
            s.with_adapter(|a| a.motor_mut(name).map(f)).ok_or_else(|| {
                ConfigError::new_err(format!("the simulator has no motor named {name:?}"))
            })
        })
    }
}

#[pymethods]
impl PyDamiaoSim {
    /// `motors`: (name, model, esc_id, mst_id) per motor; None = the OpenK arm's five motors
    /// (ESC 0x01–0x05, MST 0x11–0x15). `sts_bridge`: also serve the STS-over-CAN bridge node
    /// with servos `bridge_servo_ids`.
    #[new]
    #[pyo3(signature = (motors=None, can_bitrate=1_000_000, usb_latency_s=250e-6, sts_bridge=false, bridge_servo_ids=vec![1, 2], bridge_controller_id=0xFF00))]
    fn new(
        py: Python<'_>,
        motors: Option<Vec<(String, String, u16, u16)>>,
        can_bitrate: u32,
        usb_latency_s: f64,
        sts_bridge: bool,
        bridge_servo_ids: Vec<u16>,
        bridge_controller_id: u32,
    ) -> PyResult<Self> {
        let mut cfg = match motors {
            None => DamiaoSimConfig::openk_arm(),
            Some(list) => DamiaoSimConfig {
                motors: list
                    .into_iter()
                    .map(|(name, m, esc_id, mst_id)| {
                        Ok(SimMotorConfig {
                            name,
                            model: model(&m)?,
                            esc_id,
                            mst_id,
                        })
                    })
                    .collect::<PyResult<Vec<_>>>()?,
                ..DamiaoSimConfig::default()
            },
        };
        cfg.can_bitrate = can_bitrate;
        cfg.usb_latency = seconds(usb_latency_s, "usb_latency_s")?;
        if sts_bridge {
            cfg.sts_bridge = Some(StsBridgeConfig {
                controller_id: bridge_controller_id,
                servo_ids: bridge_servo_ids,
            });
        }
        let sim = py.detach(|| CoreSim::start(cfg)).map_err(to_py)?;
        let port = sim.port().to_string();
        Ok(Self {
            inner: Mutex::new(Some(sim)),
            port,
        })
    }

    /// Path of the pty to open (any baud).
    #[getter]
    fn port(&self) -> &str {
        &self.port
    }

    /// Latches a device fault: "over_voltage", "under_voltage", "over_current",
    /// "mos_over_temperature", "rotor_over_temperature", "lost_communication", "overload".
    fn inject_fault(&self, motor: &str, state: &str) -> PyResult<()> {
        let st = state_from_name(state)?;
        if !st.is_fault() {
            return Err(PyValueError::new_err(format!(
                "{state:?} is not a fault state"
            )));
        }
        self.with_motor(motor, |m| m.inject_fault(st))
    }

    /// Human-hand mode: while disabled or commanded with kp = 0 the motor follows
    /// offset + amplitude·sin(2π·frequency_hz·t + phase). Pass amplitude=None to stop.
    #[pyo3(signature = (motor, amplitude, frequency_hz=0.5, offset=0.0, phase=0.0))]
    fn set_hand(
        &self,
        motor: &str,
        amplitude: Option<f64>,
        frequency_hz: f64,
        offset: f64,
        phase: f64,
    ) -> PyResult<()> {
        let hand = amplitude.map(|amplitude| HandTrajectory {
            offset,
            amplitude,
            frequency_hz,
            phase,
        });
        self.with_motor(motor, |m| m.set_hand(hand))
    }

    /// Moves a motor's shaft instantly (test setup).
    fn set_position(&self, motor: &str, q: f64) -> PyResult<()> {
        self.with_motor(motor, |m| m.set_position(q))
    }

    /// The simulated motor's true state: q, dq, tau, enabled, mode, state.
    fn motor_state<'py>(&self, py: Python<'py>, motor: &str) -> PyResult<Bound<'py, PyDict>> {
        let (q, dq, tau, enabled, mode, state) = self.with_motor(motor, |m| {
            (
                m.position(),
                m.velocity(),
                m.torque(),
                m.is_enabled(),
                m.mode(),
                m.state(),
            )
        })?;
        let d = PyDict::new(py);
        d.set_item("q", q)?;
        d.set_item("dq", dq)?;
        d.set_item("tau", tau)?;
        d.set_item("enabled", enabled)?;
        d.set_item("mode", mode.map(ControlMode::name))?;
        d.set_item("state", state.to_string())?;
        Ok(d)
    }

    /// Present position (steps) of a servo behind the STS bridge, or None.
    fn servo_position(&self, servo_id: u16) -> PyResult<Option<u16>> {
        self.with_sim(|s| Ok(s.with_adapter(|a| a.servo_position(servo_id))))
    }

    /// Moves a bridge servo instantly (a hand moved it).
    fn set_servo_position(&self, servo_id: u16, position: u16) -> PyResult<bool> {
        self.with_sim(|s| Ok(s.with_adapter(|a| a.set_servo_position(servo_id, position))))
    }

    /// The next `n` replies are never sent.
    fn drop_replies(&self, n: u32) -> PyResult<()> {
        self.with_sim(|s| {
            s.faults().drop_replies(n);
            Ok(())
        })
    }

    /// The next `n` replies have their last byte (the 0x55 tail) inverted.
    fn corrupt_replies(&self, n: u32) -> PyResult<()> {
        self.with_sim(|s| {
            s.faults().corrupt_replies(n, Corruption::LastByte);
            Ok(())
        })
    }

    /// Line noise sent just before the next reply.
    fn inject_garbage(&self, data: &[u8]) -> PyResult<()> {
        self.with_sim(|s| {
            s.faults().inject_garbage(data);
            Ok(())
        })
    }

    /// Extra latency on every reply (0 to clear).
    fn set_extra_latency(&self, seconds: f64) -> PyResult<()> {
        let d = crate::convert::seconds(seconds, "seconds")?;
        self.with_sim(|s| {
            s.faults().set_extra_latency(d);
            Ok(())
        })
    }

    /// Closes the pty like a pulled USB cable.
    fn unplug(&self) -> PyResult<()> {
        self.with_sim(|s| {
            s.faults().unplug();
            Ok(())
        })
    }

    /// Adapter and wire counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (a, w) = self.with_sim(|s| Ok((s.with_adapter(|a| a.stats()), s.faults().stats())))?;
        let d = PyDict::new(py);
        d.set_item("host_frames", a.host_frames)?;
        d.set_item("host_bytes_skipped", a.host_bytes_skipped)?;
        d.set_item("can_frames_to_nobody", a.can_frames_to_nobody)?;
        d.set_item("feedback_frames", a.feedback_frames)?;
        d.set_item("register_replies", a.register_replies)?;
        d.set_item("bridge_replies", a.bridge_replies)?;
        d.set_item("replies_sent", w.replies_sent)?;
        d.set_item("replies_dropped", w.replies_dropped)?;
        d.set_item("replies_corrupted", w.replies_corrupted)?;
        Ok(d)
    }

    /// Stops the simulator and closes its pty.
    fn stop(&self, py: Python<'_>) {
        let sim = lock(&self.inner).take();
        py.detach(|| drop(sim));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _t: Py<PyAny>, _v: Py<PyAny>, _tb: Py<PyAny>) -> bool {
        self.stop(py);
        false
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(damiao_host_frame, m)?)?;
    m.add_function(wrap_pyfunction!(damiao_encode_mit, m)?)?;
    m.add_function(wrap_pyfunction!(damiao_encode_pos_vel, m)?)?;
    m.add_function(wrap_pyfunction!(damiao_decode_feedback, m)?)?;
    m.add_function(wrap_pyfunction!(damiao_model_limits, m)?)?;
    m.add_function(wrap_pyfunction!(damiao_scan, m)?)?;
    m.add_class::<PyStreamDecoder>()?;
    m.add_class::<PyDamiaoBus>()?;
    m.add_class::<PyStsCanBus>()?;
    m.add_class::<PyDamiaoSim>()?;
    Ok(())
}
