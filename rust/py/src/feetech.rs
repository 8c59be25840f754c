//! Feetech STS3215 bindings: the codec as pure functions on bytes, `FeetechBus`, and the
//! `FeetechSim` simulator. Only type conversion and error mapping live here.

use std::path::Path;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use openk_core::bus::feetech::{BusConfig, BusError, FailureKind, FeetechBus, Motor};
use openk_core::protocol::feetech::{self as ft, ByteOrder, ProtocolError, StatusFlags};
use openk_core::sim::feetech::{FeetechSim, FeetechSimConfig, HandScript, ServoSpec, SimMode};
use openk_core::sim::pty::Corruption;

use crate::convert::seconds;
use crate::errors::{to_py, ConfigError, OpenKError, PortError};

// ---------------------------------------------------------------------------------------------
// Error details (the class comes from crate::errors::to_py)

fn failure_kind(kind: FailureKind) -> (&'static str, Vec<&'static str>) {
    match kind {
        FailureKind::Timeout => ("timeout", Vec::new()),
        FailureKind::Corrupt => ("corrupt", Vec::new()),
        FailureKind::Status(flags) => ("status", flags.names().collect()),
    }
}

/// A bus error as the exception of its fault kind, with `failures` (list of dicts: motor, id,
/// kind, flags) and, for a single motor, `motor` and `flags` attached, so callers can react
/// without parsing the message.
fn to_py_with_failures(py: Python<'_>, e: BusError) -> PyErr {
    let err = to_py(&e);
    let failures = e.failures();
    let value = err.value(py);
    let list: Vec<Bound<'_, PyDict>> = failures
        .iter()
        .filter_map(|f| {
            let d = PyDict::new(py);
            let (kind, flags) = failure_kind(f.kind);
            d.set_item("motor", &f.motor).ok()?;
            d.set_item("id", f.id).ok()?;
            d.set_item("kind", kind).ok()?;
            d.set_item("flags", flags).ok()?;
            Some(d)
        })
        .collect();
    let _ = value.setattr("failures", list);
    if let [only] = failures.as_slice() {
        let _ = value.setattr("motor", &only.motor);
        let _ = value.setattr("flags", failure_kind(only.kind).1);
    }
    err
}

fn order(scs: bool) -> ByteOrder {
    if scs {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    }
}

// The Python signature spells the broadcast id as a literal (a constant's name would show as
// `...` in `help()` and to stubtest); this keeps it equal to the core constant.
const _: () = assert!(ft::BROADCAST_ID == 0xFE);

// ---------------------------------------------------------------------------------------------
// Codec functions

fn to_bytes<'py>(
    py: Python<'py>,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), ProtocolError>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    f(&mut out).map_err(to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// Checksum of a packet body (id, len, instruction/error, params).
#[pyfunction(name = "checksum")]
fn feetech_checksum(body: &[u8]) -> u8 {
    ft::checksum(body)
}

#[pyfunction(name = "encode_ping")]
fn feetech_encode_ping(py: Python<'_>, id: u8) -> PyResult<Bound<'_, PyBytes>> {
    to_bytes(py, |o| ft::encode_ping(o, id))
}

#[pyfunction(name = "encode_read")]
fn feetech_encode_read(
    py: Python<'_>,
    id: u8,
    address: u8,
    length: u8,
) -> PyResult<Bound<'_, PyBytes>> {
    to_bytes(py, |o| ft::encode_read(o, id, address, length))
}

#[pyfunction(name = "encode_write")]
fn feetech_encode_write<'py>(
    py: Python<'py>,
    id: u8,
    address: u8,
    data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    to_bytes(py, |o| ft::encode_write(o, id, address, data))
}

#[pyfunction(name = "encode_reg_write")]
fn feetech_encode_reg_write<'py>(
    py: Python<'py>,
    id: u8,
    address: u8,
    data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    to_bytes(py, |o| ft::encode_reg_write(o, id, address, data))
}

#[pyfunction(name = "encode_action")]
#[pyo3(signature = (id=0xFE))]
fn feetech_encode_action(py: Python<'_>, id: u8) -> PyResult<Bound<'_, PyBytes>> {
    to_bytes(py, |o| ft::encode_action(o, id))
}

#[pyfunction(name = "encode_reset")]
fn feetech_encode_reset(py: Python<'_>, id: u8) -> PyResult<Bound<'_, PyBytes>> {
    to_bytes(py, |o| ft::encode_reset(o, id))
}

#[pyfunction(name = "encode_sync_read")]
#[pyo3(signature = (address, length, ids))]
fn feetech_encode_sync_read(
    py: Python<'_>,
    address: u8,
    length: u8,
    ids: Vec<u8>,
) -> PyResult<Bound<'_, PyBytes>> {
    to_bytes(py, |o| ft::encode_sync_read(o, address, length, &ids))
}

/// SYNC_WRITE of raw per-servo data: `items` is a list of (id, bytes of `length`).
#[pyfunction(name = "encode_sync_write")]
fn feetech_encode_sync_write(
    py: Python<'_>,
    address: u8,
    length: u8,
    items: Vec<(u8, Vec<u8>)>,
) -> PyResult<Bound<'_, PyBytes>> {
    to_bytes(py, |o| {
        let mut b = ft::SyncWriteBuilder::begin(o, address, length);
        for (id, data) in &items {
            b.push_raw(*id, data)?;
        }
        b.finish()
    })
}

/// Status packet encoder (what a servo sends).
#[pyfunction(name = "encode_status")]
#[pyo3(signature = (id, error=0, params=Vec::new()))]
fn feetech_encode_status(
    py: Python<'_>,
    id: u8,
    error: u8,
    params: Vec<u8>,
) -> PyResult<Bound<'_, PyBytes>> {
    to_bytes(py, |o| {
        ft::encode_status(o, id, StatusFlags(error), &params)
    })
}

/// A decoded status packet.
#[pyclass(frozen, module = "openk._core.feetech", name = "FeetechStatus")]
struct PyFeetechStatus {
    #[pyo3(get)]
    id: u8,
    #[pyo3(get)]
    error: u8,
    #[pyo3(get)]
    error_names: Vec<&'static str>,
    params: Vec<u8>,
}

#[pymethods]
impl PyFeetechStatus {
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.params)
    }

    fn __repr__(&self) -> String {
        format!(
            "FeetechStatus(id={}, error={:#04x} {:?}, params={:02x?})",
            self.id, self.error, self.error_names, self.params
        )
    }
}

fn status_of(p: &ft::Packet) -> PyFeetechStatus {
    PyFeetechStatus {
        id: p.id,
        error: p.code,
        error_names: p.error().names().collect(),
        params: p.params().to_vec(),
    }
}

/// Every status packet in `data` (garbage skipped). A bad checksum raises ProtocolError.
#[pyfunction(name = "decode_status")]
fn feetech_decode_status(data: &[u8]) -> PyResult<Vec<PyFeetechStatus>> {
    let mut parser = ft::PacketParser::for_status();
    let mut out = Vec::new();
    for chunk in data.chunks(256) {
        parser.push(chunk);
        while let Some(r) = parser.next() {
            out.push(status_of(&r.map_err(to_py)?));
        }
    }
    Ok(out)
}

/// Names of the error bits set in a status byte.
#[pyfunction(name = "error_names")]
fn feetech_error_names(error: u8) -> Vec<&'static str> {
    StatusFlags(error).names().collect()
}

/// The STS3215 control table: list of dicts (name, address, size, access, area, sign_bit,
/// unit, scale).
#[pyfunction(name = "control_table")]
fn feetech_control_table(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    ft::STS3215_CONTROL_TABLE
        .iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("name", r.name)?;
            d.set_item("address", r.address)?;
            d.set_item("size", r.size)?;
            d.set_item("access", if r.writable() { "rw" } else { "r" })?;
            d.set_item(
                "area",
                match r.area {
                    ft::Area::Eeprom => "eeprom",
                    ft::Area::Sram => "sram",
                    ft::Area::Factory => "factory",
                },
            )?;
            d.set_item("sign_bit", r.sign_bit)?;
            d.set_item("unit", r.unit)?;
            d.set_item("scale", r.scale)?;
            Ok(d)
        })
        .collect()
}

/// Raw register value for a signed user value (sign-magnitude where the register has a sign
/// bit). ValueError if it does not fit.
#[pyfunction(name = "encode_value")]
fn feetech_encode_value(register: &str, value: i64) -> PyResult<u32> {
    let r = ft::register(register).map_err(to_py)?;
    r.encode(value).map_err(to_py)
}

/// Signed user value of a raw register value.
#[pyfunction(name = "decode_value")]
fn feetech_decode_value(register: &str, raw: u32) -> PyResult<i64> {
    Ok(ft::register(register).map_err(to_py)?.decode(raw))
}

/// Baud rate of a register-6 code (official table), or None.
#[pyfunction(name = "baud_from_code")]
fn feetech_baud_from_code(code: u8) -> Option<u32> {
    ft::baud_from_code(code)
}

/// Register-6 code of a baud rate, or None.
#[pyfunction(name = "code_from_baud")]
fn feetech_code_from_baud(baud: u32) -> Option<u8> {
    ft::code_from_baud(baud)
}

// ---------------------------------------------------------------------------------------------
// Bus

/// A dict's items, or a sequence of (key, value) pairs, in order.
fn pairs(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, i64)>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return d
            .iter()
            .map(|(k, v)| Ok((k.extract::<String>()?, v.extract::<i64>()?)))
            .collect();
    }
    obj.extract::<Vec<(String, i64)>>()
}

#[derive(FromPyObject)]
enum MotorRef {
    Id(u8),
    Name(String),
}

/// A Feetech STS3215 bus on a serial port. Blocking calls release the GIL.
#[pyclass(module = "openk._core.feetech", name = "FeetechBus")]
struct PyFeetechBus {
    bus: Option<FeetechBus>,
    names: Vec<String>,
}

impl PyFeetechBus {
    fn bus(&mut self) -> PyResult<&mut FeetechBus> {
        self.bus
            .as_mut()
            .ok_or_else(|| PortError::new_err("this FeetechBus is closed; open a new one"))
    }
}

fn resolve(bus: &FeetechBus, motor: &MotorRef) -> Result<u8, BusError> {
    match motor {
        MotorRef::Id(id) => Ok(*id),
        MotorRef::Name(name) => bus.id_of(name),
    }
}

#[pymethods]
impl PyFeetechBus {
    /// Opens `port`. `motors` maps motor names to ids, in the order sync reads report them.
    #[new]
    #[pyo3(signature = (port, motors, baudrate=1_000_000, timeout_s=0.01, retries=1, fail_on_status_error=true, write_ack=true, scs=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        port: String,
        motors: &Bound<'_, PyAny>,
        baudrate: u32,
        timeout_s: f64,
        retries: u32,
        fail_on_status_error: bool,
        write_ack: bool,
        scs: bool,
    ) -> PyResult<Self> {
        let config = BusConfig {
            timeout: seconds(timeout_s, "timeout_s")?,
            retries,
            byte_order: order(scs),
            write_ack,
            fail_on_status_error,
        };
        let motors = pairs(motors)?
            .into_iter()
            .map(|(name, id)| match u8::try_from(id) {
                Ok(id) if id <= ft::MAX_ID => Ok((name, id)),
                _ => Err(ConfigError::new_err(format!(
                    "motor {name:?} has id {id}; Feetech ids are 0-253"
                ))),
            })
            .collect::<PyResult<Vec<(String, u8)>>>()?;
        let names = motors.iter().map(|(n, _)| n.clone()).collect();
        let motors = motors
            .into_iter()
            .map(|(name, id)| Motor { name, id })
            .collect();
        let bus = py
            .detach(|| FeetechBus::open(&port, baudrate, motors, config))
            .map_err(|e| to_py_with_failures(py, e))?;
        Ok(PyFeetechBus {
            bus: Some(bus),
            names,
        })
    }

    #[getter]
    fn port(&mut self) -> PyResult<String> {
        Ok(self.bus()?.port().to_owned())
    }

    /// Motor names in configuration order.
    #[getter]
    fn motors(&self) -> Vec<String> {
        self.names.clone()
    }

    /// PING a motor (name or id); returns its status error byte (0 = fine).
    fn ping(&mut self, py: Python<'_>, motor: MotorRef) -> PyResult<u8> {
        let bus = self.bus()?;
        let id = resolve(bus, &motor).map_err(|e| to_py_with_failures(py, e))?;
        py.detach(|| bus.ping(id))
            .map(|f| f.0)
            .map_err(|e| to_py_with_failures(py, e))
    }

    /// Broadcast PING; the ids that answered within `window_s`, sorted.
    #[pyo3(signature = (window_s=0.02))]
    fn scan(&mut self, py: Python<'_>, window_s: f64) -> PyResult<Vec<u16>> {
        let window = seconds(window_s, "window_s")?;
        let bus = self.bus()?;
        // u16, not u8: pyo3 turns a Vec<u8> into bytes, and callers want a list of ids.
        py.detach(|| bus.scan(window))
            .map(|ids| ids.into_iter().map(u16::from).collect())
            .map_err(|e| to_py_with_failures(py, e))
    }

    /// Reads a register (by name) of one motor: the signed value (sign-magnitude decoded).
    fn read(&mut self, py: Python<'_>, register: &str, motor: MotorRef) -> PyResult<i64> {
        let reg = ft::register(register).map_err(to_py)?;
        let bus = self.bus()?;
        let id = resolve(bus, &motor).map_err(|e| to_py_with_failures(py, e))?;
        py.detach(|| bus.read_id(reg, id))
            .map_err(|e| to_py_with_failures(py, e))
    }

    /// Reads a register in its physical unit (V, degC, %, ...).
    fn read_unit(&mut self, py: Python<'_>, register: &str, motor: MotorRef) -> PyResult<f64> {
        let reg = ft::register(register).map_err(to_py)?;
        let bus = self.bus()?;
        let id = resolve(bus, &motor).map_err(|e| to_py_with_failures(py, e))?;
        py.detach(|| bus.read_id(reg, id))
            .map(|v| v as f64 * reg.scale)
            .map_err(|e| to_py_with_failures(py, e))
    }

    /// Writes a register (by name) of one motor; id 254 writes every motor (no reply).
    fn write(
        &mut self,
        py: Python<'_>,
        register: &str,
        motor: MotorRef,
        value: i64,
    ) -> PyResult<()> {
        let reg = ft::register(register).map_err(to_py)?;
        let bus = self.bus()?;
        let id = resolve(bus, &motor).map_err(|e| to_py_with_failures(py, e))?;
        py.detach(|| bus.write_id(reg, id, value))
            .map_err(|e| to_py_with_failures(py, e))
    }

    /// One SYNC_READ of `register` from `motors` (default: all); {name: value}.
    #[pyo3(signature = (register, motors=None))]
    fn sync_read<'py>(
        &mut self,
        py: Python<'py>,
        register: &str,
        motors: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let reg = ft::register(register).map_err(to_py)?;
        let names = motors.unwrap_or_else(|| self.names.clone());
        let bus = self.bus()?;
        let ids = names
            .iter()
            .map(|n| bus.id_of(n))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| to_py_with_failures(py, e))?;
        let mut values = vec![0i64; ids.len()];
        py.detach(|| bus.sync_read_ids(reg, &ids, &mut values))
            .map_err(|e| to_py_with_failures(py, e))?;
        let out = PyDict::new(py);
        for (n, v) in names.iter().zip(values) {
            out.set_item(n, v)?;
        }
        Ok(out)
    }

    /// One SYNC_WRITE of `register`: {name: value}. Every value is range-checked first.
    fn sync_write(
        &mut self,
        py: Python<'_>,
        register: &str,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let values = pairs(values)?;
        let reg = ft::register(register).map_err(to_py)?;
        let bus = self.bus()?;
        let mut ids = Vec::with_capacity(values.len());
        let mut vals = Vec::with_capacity(values.len());
        for (name, v) in &values {
            ids.push(bus.id_of(name).map_err(|e| to_py_with_failures(py, e))?);
            vals.push(*v);
        }
        py.detach(|| bus.sync_write_ids(reg, &ids, &vals))
            .map_err(|e| to_py_with_failures(py, e))
    }

    /// Error flags (names) of the last status packet from a motor.
    fn last_status(&mut self, py: Python<'_>, motor: MotorRef) -> PyResult<Vec<&'static str>> {
        let bus = self.bus()?;
        let id = resolve(bus, &motor).map_err(|e| to_py_with_failures(py, e))?;
        Ok(bus.last_status(id).names().collect())
    }

    /// Closes the port. Further calls raise PortError.
    fn close(&mut self) {
        self.bus = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Simulator

fn sim_mode(
    mode: &str,
    trajectory: Option<String>,
    hand_amplitude: f64,
    hand_period_s: f64,
) -> PyResult<SimMode> {
    Ok(match (mode, trajectory) {
        ("follower", None) => SimMode::Follower,
        ("hand", Some(path)) => {
            SimMode::HumanHand(HandScript::from_file(Path::new(&path)).map_err(to_py)?)
        }
        ("hand", None) => SimMode::HumanHand(HandScript::Sinusoid {
            amplitude: hand_amplitude,
            period: seconds(hand_period_s, "hand_period_s")?,
            phase_step: 0.7,
        }),
        ("follower", Some(_)) => {
            return Err(ConfigError::new_err(
                "a trajectory drives a passive arm: use mode=\"hand\"",
            ))
        }
        (other, _) => {
            return Err(ConfigError::new_err(format!(
                "unknown simulator mode {other:?}: use \"follower\" or \"hand\""
            )))
        }
    })
}

/// A simulated STS3215 bus on a pseudo-terminal; open `.port` with any serial client.
#[pyclass(module = "openk._core.feetech", name = "FeetechSim")]
struct PyFeetechSim {
    sim: Option<FeetechSim>,
}

impl PyFeetechSim {
    fn sim(&self) -> PyResult<&FeetechSim> {
        self.sim
            .as_ref()
            .ok_or_else(|| OpenKError::new_err("this FeetechSim is stopped"))
    }
}

#[pymethods]
impl PyFeetechSim {
    /// Starts a simulator.
    ///
    /// mode: "follower" (position control when torque is on) or "hand" (passive arm moved by a
    /// scripted hand: sinusoids, or `trajectory` = path of a "t, pos_1, ..., pos_n" file).
    #[new]
    #[pyo3(signature = (ids=vec![1, 2, 3, 4, 5, 6, 7], baudrate=1_000_000, mode="follower", positions=None, return_delay=0, usb_latency_s=0.0, hand_amplitude=300.0, hand_period_s=4.0, trajectory=None, goal_write_enables_torque=true, scs=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        ids: Vec<u8>,
        baudrate: u32,
        mode: &str,
        positions: Option<Vec<u16>>,
        return_delay: u8,
        usb_latency_s: f64,
        hand_amplitude: f64,
        hand_period_s: f64,
        trajectory: Option<String>,
        goal_write_enables_torque: bool,
        scs: bool,
    ) -> PyResult<Self> {
        let positions = positions.unwrap_or_else(|| vec![2048; ids.len()]);
        if positions.len() != ids.len() {
            return Err(PyValueError::new_err(format!(
                "{} positions given for {} ids",
                positions.len(),
                ids.len()
            )));
        }
        let mode = sim_mode(mode, trajectory, hand_amplitude, hand_period_s)?;
        let config = FeetechSimConfig {
            servos: ids
                .iter()
                .zip(&positions)
                .map(|(id, p)| ServoSpec {
                    id: *id,
                    position: *p,
                    return_delay,
                })
                .collect(),
            baud: baudrate,
            usb_latency: seconds(usb_latency_s, "usb_latency_s")?,
            mode,
            byte_order: order(scs),
            goal_write_enables_torque,
        };
        let sim = FeetechSim::start(config).map_err(to_py)?;
        Ok(PyFeetechSim { sim: Some(sim) })
    }

    /// Path of the pty (`/dev/pts/N`).
    #[getter]
    fn port(&self) -> PyResult<String> {
        Ok(self.sim()?.port().to_owned())
    }

    /// The next `n` replies are not sent.
    fn drop_replies(&self, n: u32) -> PyResult<()> {
        self.sim()?.faults().drop_replies(n);
        Ok(())
    }

    /// The next `n` replies are corrupted: last byte (checksum) inverted by default, or the
    /// byte at `byte_index`, or cut to `truncate` bytes.
    #[pyo3(signature = (n, byte_index=None, truncate=None))]
    fn corrupt_replies(
        &self,
        n: u32,
        byte_index: Option<usize>,
        truncate: Option<usize>,
    ) -> PyResult<()> {
        let how = match (byte_index, truncate) {
            (None, None) => Corruption::LastByte,
            (Some(i), None) => Corruption::Byte(i),
            (None, Some(k)) => Corruption::Truncate(k),
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "give byte_index or truncate, not both",
                ))
            }
        };
        self.sim()?.faults().corrupt_replies(n, how);
        Ok(())
    }

    /// Line noise sent just before the next reply.
    fn inject_garbage(&self, data: &[u8]) -> PyResult<()> {
        self.sim()?.faults().inject_garbage(data);
        Ok(())
    }

    /// Extra delay on every reply (0 to clear).
    fn set_extra_latency(&self, latency_s: f64) -> PyResult<()> {
        let d = seconds(latency_s, "latency_s")?;
        self.sim()?.faults().set_extra_latency(d);
        Ok(())
    }

    /// Closes the pty like a pulled cable: clients see a disconnect.
    fn unplug(&self, py: Python<'_>) -> PyResult<()> {
        let faults = self.sim()?.faults();
        py.detach(|| faults.unplug());
        Ok(())
    }

    /// Clears drops, corruptions, garbage and extra latency.
    fn clear_faults(&self) -> PyResult<()> {
        self.sim()?.faults().clear();
        Ok(())
    }

    /// Servo `id` reports `bits` in every status packet (1 voltage, 2 angle sensor,
    /// 4 overheat, 8 over-current, 32 overload); 0 clears.
    fn set_error_bits(&self, id: u8, bits: u8) -> PyResult<()> {
        if !self.sim()?.set_error_bits(id, bits) {
            return Err(ConfigError::new_err(format!(
                "no servo with id {id} on this simulator"
            )));
        }
        Ok(())
    }

    /// Servo `id` stops (True) or resumes (False) answering.
    fn set_silent(&self, id: u8, silent: bool) -> PyResult<()> {
        if !self.sim()?.set_silent(id, silent) {
            return Err(ConfigError::new_err(format!(
                "no servo with id {id} on this simulator"
            )));
        }
        Ok(())
    }

    /// A register of servo `id`, decoded, now.
    fn register(&self, id: u8, name: &str) -> PyResult<i64> {
        ft::register(name).map_err(to_py)?;
        self.sim()?
            .register(id, name)
            .ok_or_else(|| ConfigError::new_err(format!("no servo with id {id} on this simulator")))
    }

    /// Sets a register of servo `id` directly (no Lock check).
    fn set_register(&self, id: u8, name: &str, value: i64) -> PyResult<()> {
        let r = ft::register(name).map_err(to_py)?;
        r.encode(value).map_err(to_py)?;
        if !self.sim()?.set_register(id, name, value) {
            return Err(ConfigError::new_err(format!(
                "no servo with id {id} on this simulator"
            )));
        }
        Ok(())
    }

    /// Mechanical position of servo `id` in steps (unrounded), now.
    fn position(&self, id: u8) -> PyResult<f64> {
        self.sim()?
            .position(id)
            .ok_or_else(|| ConfigError::new_err(format!("no servo with id {id} on this simulator")))
    }

    /// Switches the motion model at run time (same arguments as the constructor); a hand
    /// script starts from the servos' current positions.
    #[pyo3(signature = (mode, hand_amplitude=300.0, hand_period_s=4.0, trajectory=None))]
    fn set_mode(
        &self,
        mode: &str,
        hand_amplitude: f64,
        hand_period_s: f64,
        trajectory: Option<String>,
    ) -> PyResult<()> {
        let mode = sim_mode(mode, trajectory, hand_amplitude, hand_period_s)?;
        self.sim()?.set_mode(mode);
        Ok(())
    }

    /// Traffic counters of the simulated link.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.sim()?.stats();
        let d = PyDict::new(py);
        d.set_item("chunks_received", s.chunks_received)?;
        d.set_item("bytes_received", s.bytes_received)?;
        d.set_item("replies_sent", s.replies_sent)?;
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("replies_dropped", s.replies_dropped)?;
        d.set_item("replies_corrupted", s.replies_corrupted)?;
        Ok(d)
    }

    /// Stops the simulator and closes the pty (idempotent).
    fn stop(&mut self, py: Python<'_>) {
        if let Some(sim) = self.sim.take() {
            py.detach(|| sim.stop());
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("BROADCAST_ID", ft::BROADCAST_ID)?;
    m.add_function(wrap_pyfunction!(feetech_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_ping, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_read, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_write, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_reg_write, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_action, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_reset, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_sync_read, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_sync_write, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_status, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_decode_status, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_error_names, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_control_table, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_encode_value, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_decode_value, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_baud_from_code, m)?)?;
    m.add_function(wrap_pyfunction!(feetech_code_from_baud, m)?)?;
    m.add_class::<PyFeetechStatus>()?;
    m.add_class::<PyFeetechBus>()?;
    m.add_class::<PyFeetechSim>()?;
    Ok(())
}
