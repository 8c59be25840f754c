//! `FeetechBus`: transactions with STS3215 servos over a [`SerialTransport`].
//!
//! Every transaction flushes stale input, writes one instruction and parses status packets as
//! they arrive until it has what it needs or its deadline passes. The deadline of one try is
//! the wire time of the exchange at the port's baud plus [`BusConfig::timeout`], so a silent
//! servo costs one short timeout per try, never the SDK's 50 ms × 4.
//!
//! Sync read matches each status packet to its own id (out-of-order replies are fine), retries
//! only the servos still missing, and reports every servo's error flags. After construction the
//! sync read / sync write paths allocate nothing (the control loop runs them at 500 Hz+); only
//! building an error allocates.

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Classified, FaultKind};
use crate::protocol::feetech::{
    self as ft, ByteOrder, PacketParser, ProtocolError, Register, StatusFlags, SyncWriteBuilder,
    BROADCAST_ID,
};
use crate::transport::{SerialTransport, TransportError};

/// What went wrong for one motor in a multi-motor transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No valid status packet arrived in time.
    Timeout,
    /// Only corrupted packets (bad checksum or length) arrived.
    Corrupt,
    /// The motor answered, with error flags set.
    Status(StatusFlags),
}

/// One motor's failure, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MotorFailure {
    pub motor: String,
    pub id: u8,
    pub kind: FailureKind,
}

impl fmt::Display for MotorFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::Timeout => write!(f, "{} did not answer", self.motor),
            FailureKind::Corrupt => write!(f, "{} sent corrupted replies", self.motor),
            FailureKind::Status(flags) => write!(f, "{} reports {flags}", self.motor),
        }
    }
}

fn list(failures: &[MotorFailure]) -> String {
    failures
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Errors of the Feetech bus. Messages name the port, the motor and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Transport(#[from] TransportError),

    #[error("{port}: {source}")]
    Protocol {
        port: String,
        #[source]
        source: ProtocolError,
    },

    #[error(
        "motor {motor} on {port} did not answer {what} ({tries} tries, {waited:?} each): check \
         its power and cable, and that its id and the baud rate are right (`openk scan {port} \
         --all-bauds` lists the ids that answer)"
    )]
    Timeout {
        port: String,
        motor: String,
        what: &'static str,
        tries: u32,
        waited: Duration,
    },

    #[error(
        "motor {motor} on {port} sent corrupted replies to {what} ({source}); check the cable, \
         ground and that no two motors share an id"
    )]
    Corrupt {
        port: String,
        motor: String,
        what: &'static str,
        #[source]
        source: ProtocolError,
    },

    #[error(
        "motor {motor} on {port} reports {flags}: remove the load or let it cool, check the \
         supply voltage, then power-cycle it"
    )]
    Motor {
        port: String,
        motor: String,
        id: u8,
        flags: StatusFlags,
    },

    #[error("{what} of {register} on {port} failed: {}", list(.failures))]
    Group {
        port: String,
        what: &'static str,
        register: &'static str,
        failures: Vec<MotorFailure>,
    },

    #[error("unknown motor {name:?} on {port}; this bus has: {known}")]
    UnknownMotor {
        port: String,
        name: String,
        known: String,
    },

    #[error("{0}")]
    Usage(String),
}

impl Classified for BusError {
    fn fault_kind(&self) -> FaultKind {
        match self {
            BusError::Transport(e) => e.fault_kind(),
            BusError::Protocol { source, .. } => source.fault_kind(),
            BusError::Timeout { .. } => FaultKind::Timeout,
            BusError::Corrupt { .. } => FaultKind::Protocol,
            BusError::Motor { .. } => FaultKind::Motor,
            BusError::Group { failures, .. } => group_kind(failures),
            BusError::UnknownMotor { .. } => FaultKind::Config,
            BusError::Usage(_) => FaultKind::Usage,
        }
    }
}

/// The kind of a transaction in which several motors failed differently. Corrupted bytes from
/// any servo point at the wiring or the adapter, so they outrank a servo that merely answered
/// late; a silent servo outranks one that answered with error flags.
fn group_kind(failures: &[MotorFailure]) -> FaultKind {
    let any = |k: fn(&FailureKind) -> bool| failures.iter().any(|f| k(&f.kind));
    if any(|k| *k == FailureKind::Corrupt) {
        FaultKind::Protocol
    } else if any(|k| *k == FailureKind::Timeout) {
        FaultKind::Timeout
    } else if any(|k| matches!(k, FailureKind::Status(_))) {
        FaultKind::Motor
    } else {
        FaultKind::Other
    }
}

impl BusError {
    /// The motors involved, with their decoded flags where they reported any.
    pub fn failures(&self) -> Vec<MotorFailure> {
        match self {
            BusError::Group { failures, .. } => failures.clone(),
            BusError::Motor {
                motor, id, flags, ..
            } => vec![MotorFailure {
                motor: motor.clone(),
                id: *id,
                kind: FailureKind::Status(*flags),
            }],
            _ => Vec::new(),
        }
    }
}

/// Tunables of a [`FeetechBus`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BusConfig {
    /// Margin added to the wire time of each try: covers the servos' return delay, the USB
    /// hop (≈1 ms) and scheduling noise.
    pub timeout: Duration,
    /// Extra tries after the first for a motor that did not answer (0 = no retry).
    pub retries: u32,
    /// STS (little-endian) or SCS (big-endian) servos.
    pub byte_order: ByteOrder,
    /// Wait for a status packet after WRITE (servos with Response_Status_Level 0 send none).
    pub write_ack: bool,
    /// A status packet with error flags fails the transaction (values are still returned).
    pub fail_on_status_error: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            timeout: Duration::from_millis(10),
            retries: 1,
            byte_order: ByteOrder::Little,
            write_ack: true,
            fail_on_status_error: true,
        }
    }
}

/// A named motor on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Motor {
    pub name: String,
    pub id: u8,
}

/// STS3215 bus over a serial port.
pub struct FeetechBus {
    transport: SerialTransport,
    motors: Vec<Motor>,
    config: BusConfig,
    tx: Vec<u8>,
    rx: Box<[u8; 512]>,
    parser: PacketParser,
    pending: Vec<u8>,
    corrupt: [bool; 256],
    status: [u8; 256],
    /// Extra requests each id needed in the last sync read (telemetry: retries by motor).
    retried: [u8; 256],
    all_ids: Vec<u8>,
    /// The last framing error seen, to explain a `Corrupt` failure.
    last_protocol_error: Option<ProtocolError>,
}

impl fmt::Debug for FeetechBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeetechBus")
            .field("port", &self.transport.path())
            .field("motors", &self.motors)
            .finish()
    }
}

impl FeetechBus {
    /// Opens `port` at `baud` with the given motors (name, id).
    pub fn open(
        port: &str,
        baud: u32,
        motors: Vec<Motor>,
        config: BusConfig,
    ) -> Result<Self, BusError> {
        let transport = SerialTransport::open(port, baud)?;
        Self::new(transport, motors, config)
    }

    /// Wraps an open transport.
    pub fn new(
        transport: SerialTransport,
        motors: Vec<Motor>,
        config: BusConfig,
    ) -> Result<Self, BusError> {
        let mut seen = [false; 256];
        for m in &motors {
            if m.id > ft::MAX_ID {
                return Err(BusError::Usage(format!(
                    "motor {:?} has id {}; ids are 0–253",
                    m.name, m.id
                )));
            }
            if std::mem::replace(&mut seen[usize::from(m.id)], true) {
                return Err(BusError::Usage(format!(
                    "two motors share id {} on {}",
                    m.id,
                    transport.path()
                )));
            }
        }
        let all_ids = motors.iter().map(|m| m.id).collect();
        Ok(FeetechBus {
            transport,
            motors,
            config,
            tx: Vec::with_capacity(512),
            rx: Box::new([0; 512]),
            parser: PacketParser::for_status(),
            pending: Vec::with_capacity(256),
            corrupt: [false; 256],
            status: [0; 256],
            retried: [0; 256],
            all_ids,
            last_protocol_error: None,
        })
    }

    pub fn port(&self) -> &str {
        self.transport.path()
    }

    pub fn motors(&self) -> &[Motor] {
        &self.motors
    }

    /// Ids of every configured motor, in configuration order.
    pub fn ids(&self) -> &[u8] {
        &self.all_ids
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: BusConfig) {
        self.config = config;
    }

    /// How many times the last sync read had to ask `id` again (0 when its first reply came).
    pub fn last_retries(&self, id: u8) -> u8 {
        self.retried[usize::from(id)]
    }

    /// Error flags of the last status packet each id sent in this bus's transactions.
    pub fn last_status(&self, id: u8) -> StatusFlags {
        StatusFlags(self.status[usize::from(id)])
    }

    /// The id of the motor called `name`.
    pub fn id_of(&self, name: &str) -> Result<u8, BusError> {
        self.motors
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.id)
            .ok_or_else(|| BusError::UnknownMotor {
                port: self.port().to_owned(),
                name: name.to_owned(),
                known: self
                    .motors
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn describe(&self, id: u8) -> String {
        match self.motors.iter().find(|m| m.id == id) {
            Some(m) => format!("'{}' (id {})", m.name, id),
            None => format!("id {id}"),
        }
    }

    fn protocol(&self, source: ProtocolError) -> BusError {
        BusError::Protocol {
            port: self.port().to_owned(),
            source,
        }
    }

    fn deadline(&self, request: usize, expected_reply: usize) -> Instant {
        let wire = self.transport.byte_time() * (request + expected_reply) as u32;
        Instant::now() + wire + self.config.timeout
    }

    fn send(&mut self) -> Result<(), BusError> {
        // Stale bytes from a previous timed-out exchange must not be taken for this reply.
        self.transport.clear_input()?;
        self.parser.clear();
        self.transport.write_all(&self.tx)?;
        Ok(())
    }

    /// Waits for one status packet from `id` with `data_len` data bytes.
    /// Ok(Some(flags)) with the data in `self.rx[..data_len]`, Ok(None) on timeout.
    fn await_status(
        &mut self,
        id: u8,
        data_len: usize,
        deadline: Instant,
    ) -> Result<Option<(StatusFlags, u32)>, BusError> {
        loop {
            while let Some(result) = self.parser.next() {
                match result {
                    Ok(pkt) if pkt.id == id && pkt.params().len() == data_len => {
                        self.status[usize::from(id)] = pkt.code;
                        let value = self.config.byte_order.get(pkt.params());
                        return Ok(Some((pkt.error(), value)));
                    }
                    Ok(pkt) if pkt.id == id => {
                        self.corrupt[usize::from(id)] = true;
                        self.last_protocol_error = Some(ProtocolError::WrongLength {
                            id,
                            got: pkt.params().len(),
                            expected: data_len,
                        });
                    }
                    Ok(_) => {} // another servo's late reply
                    Err(e) => {
                        if let ProtocolError::BadChecksum { id: bad, .. } = e {
                            self.corrupt[usize::from(bad)] = true;
                        }
                        self.last_protocol_error = Some(e);
                    }
                }
            }
            let n = self.transport.read_some(&mut self.rx[..], deadline)?;
            if n == 0 {
                return Ok(None);
            }
            self.parser.push(self.rx.get(..n).unwrap_or(&[]));
        }
    }

    /// One request/one reply transaction with retries. Returns (flags, raw value).
    fn transact(
        &mut self,
        id: u8,
        data_len: usize,
        what: &'static str,
    ) -> Result<(StatusFlags, u32), BusError> {
        self.corrupt[usize::from(id)] = false;
        self.last_protocol_error = None;
        let tries = self.config.retries + 1;
        for _ in 0..tries {
            self.send()?;
            let deadline = self.deadline(self.tx.len(), data_len + ft::PACKET_OVERHEAD);
            if let Some(reply) = self.await_status(id, data_len, deadline)? {
                return Ok(reply);
            }
        }
        let motor = self.describe(id);
        if self.corrupt[usize::from(id)] {
            let source = self
                .last_protocol_error
                .take()
                .unwrap_or(ProtocolError::WrongLength {
                    id,
                    got: 0,
                    expected: data_len,
                });
            return Err(BusError::Corrupt {
                port: self.port().to_owned(),
                motor,
                what,
                source,
            });
        }
        Err(BusError::Timeout {
            port: self.port().to_owned(),
            motor,
            what,
            tries,
            waited: self.transport.byte_time() * (self.tx.len() + data_len + 6) as u32
                + self.config.timeout,
        })
    }

    fn check_flags(&self, id: u8, flags: StatusFlags) -> Result<(), BusError> {
        if self.config.fail_on_status_error && !flags.is_ok() {
            return Err(BusError::Motor {
                port: self.port().to_owned(),
                motor: self.describe(id),
                id,
                flags,
            });
        }
        Ok(())
    }

    /// PING one servo.
    pub fn ping(&mut self, id: u8) -> Result<StatusFlags, BusError> {
        ft::encode_ping(&mut self.tx, id).map_err(|e| self.protocol(e))?;
        let (flags, _) = self.transact(id, 0, "ping")?;
        Ok(flags)
    }

    /// Broadcast PING: every servo answers. Returns the ids heard within `window` (plus wire
    /// time), sorted.
    pub fn scan(&mut self, window: Duration) -> Result<Vec<u8>, BusError> {
        ft::encode_ping(&mut self.tx, BROADCAST_ID).map_err(|e| self.protocol(e))?;
        self.send()?;
        let deadline = self.deadline(self.tx.len(), 254 * ft::PACKET_OVERHEAD) + window;
        let mut found = Vec::new();
        loop {
            while let Some(result) = self.parser.next() {
                if let Ok(pkt) = result {
                    if pkt.params().is_empty() && !found.contains(&pkt.id) {
                        self.status[usize::from(pkt.id)] = pkt.code;
                        found.push(pkt.id);
                    }
                }
            }
            let n = self.transport.read_some(&mut self.rx[..], deadline)?;
            if n == 0 {
                break;
            }
            self.parser.push(self.rx.get(..n).unwrap_or(&[]));
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Reads the raw register value of one servo (sign-magnitude decoded).
    pub fn read_id(&mut self, register: &Register, id: u8) -> Result<i64, BusError> {
        ft::encode_read(&mut self.tx, id, register.address, register.size)
            .map_err(|e| self.protocol(e))?;
        let (flags, raw) = self.transact(id, usize::from(register.size), "a read")?;
        self.check_flags(id, flags)?;
        Ok(register.decode(raw))
    }

    /// Reads register `register` (by name) of motor `motor` (by name).
    pub fn read(&mut self, register: &str, motor: &str) -> Result<i64, BusError> {
        let reg = ft::register(register).map_err(|e| self.protocol(e))?;
        let id = self.id_of(motor)?;
        self.read_id(reg, id)
    }

    /// Reads a register in its physical unit ([`Register::unit`], e.g. V, °C, %).
    pub fn read_unit(&mut self, register: &str, motor: &str) -> Result<f64, BusError> {
        let reg = ft::register(register).map_err(|e| self.protocol(e))?;
        let id = self.id_of(motor)?;
        Ok(self.read_id(reg, id)? as f64 * reg.scale)
    }

    /// Writes a value (sign-magnitude encoded where the register is signed) to one servo, or
    /// to every servo with [`BROADCAST_ID`] (no reply).
    pub fn write_id(&mut self, register: &Register, id: u8, value: i64) -> Result<(), BusError> {
        if !register.writable() {
            return Err(self.protocol(ProtocolError::ReadOnly(register.name)));
        }
        let raw = register.encode(value).map_err(|e| self.protocol(e))?;
        let data = if register.size == 1 {
            [raw as u8, 0]
        } else {
            self.config.byte_order.bytes2(raw as u16)
        };
        let data = data.get(..usize::from(register.size)).unwrap_or(&[]);
        ft::encode_write(&mut self.tx, id, register.address, data).map_err(|e| self.protocol(e))?;
        if id == BROADCAST_ID || !self.config.write_ack {
            self.send()?;
            return Ok(());
        }
        let (flags, _) = self.transact(id, 0, "a write")?;
        self.check_flags(id, flags)
    }

    /// Writes register `register` (by name) of motor `motor` (by name).
    pub fn write(&mut self, register: &str, motor: &str, value: i64) -> Result<(), BusError> {
        let reg = ft::register(register).map_err(|e| self.protocol(e))?;
        let id = self.id_of(motor)?;
        self.write_id(reg, id, value)
    }

    /// SYNC_READ of `register` from `ids`; `out[i]` receives the value of `ids[i]`.
    ///
    /// Replies are matched by id, in any order. Servos still missing at the deadline are asked
    /// again (alone) up to [`BusConfig::retries`] times. On failure, values of the servos that
    /// did answer are still in `out` and the error names every failing servo.
    pub fn sync_read_ids(
        &mut self,
        register: &Register,
        ids: &[u8],
        out: &mut [i64],
    ) -> Result<(), BusError> {
        if out.len() < ids.len() {
            return Err(BusError::Usage(format!(
                "sync read of {} ids needs an output of at least that length (got {})",
                ids.len(),
                out.len()
            )));
        }
        let size = usize::from(register.size);
        self.pending.clear();
        self.pending.extend_from_slice(ids);
        for &id in ids {
            self.corrupt[usize::from(id)] = false;
            self.status[usize::from(id)] = 0;
            self.retried[usize::from(id)] = 0;
        }
        let tries = self.config.retries + 1;
        for attempt in 0..tries {
            if attempt > 0 {
                for &id in &self.pending {
                    let n = &mut self.retried[usize::from(id)];
                    *n = n.saturating_add(1);
                }
            }
            ft::encode_sync_read(&mut self.tx, register.address, register.size, &self.pending)
                .map_err(|e| self.protocol(e))?;
            self.send()?;
            let expected = self.pending.len() * (size + ft::PACKET_OVERHEAD);
            let deadline = self.deadline(self.tx.len(), expected);
            self.collect_sync_read(register, ids, out, deadline)?;
            if self.pending.is_empty() {
                break;
            }
        }
        self.sync_read_outcome(register, ids)
    }

    fn collect_sync_read(
        &mut self,
        register: &Register,
        ids: &[u8],
        out: &mut [i64],
        deadline: Instant,
    ) -> Result<(), BusError> {
        let size = usize::from(register.size);
        while !self.pending.is_empty() {
            while let Some(result) = self.parser.next() {
                match result {
                    Ok(pkt) => {
                        let Some(p) = self.pending.iter().position(|id| *id == pkt.id) else {
                            continue; // not asked for, or already have it
                        };
                        if pkt.params().len() != size {
                            self.corrupt[usize::from(pkt.id)] = true;
                            continue;
                        }
                        self.status[usize::from(pkt.id)] = pkt.code;
                        let value = register.decode(self.config.byte_order.get(pkt.params()));
                        if let Some(i) = ids.iter().position(|id| *id == pkt.id) {
                            if let Some(slot) = out.get_mut(i) {
                                *slot = value;
                            }
                        }
                        self.pending.swap_remove(p);
                    }
                    Err(e) => {
                        if let ProtocolError::BadChecksum { id, .. } = e {
                            self.corrupt[usize::from(id)] = true;
                        }
                        self.last_protocol_error = Some(e);
                    }
                }
            }
            if self.pending.is_empty() {
                break;
            }
            let n = self.transport.read_some(&mut self.rx[..], deadline)?;
            if n == 0 {
                break;
            }
            self.parser.push(self.rx.get(..n).unwrap_or(&[]));
        }
        Ok(())
    }

    fn sync_read_outcome(&self, register: &Register, ids: &[u8]) -> Result<(), BusError> {
        let flagged = ids.iter().any(|id| self.status[usize::from(*id)] != 0);
        if self.pending.is_empty() && !(flagged && self.config.fail_on_status_error) {
            return Ok(());
        }
        // Error path: allocation is fine from here on.
        let mut failures = Vec::new();
        for &id in ids {
            let kind = if self.pending.contains(&id) {
                if self.corrupt[usize::from(id)] {
                    FailureKind::Corrupt
                } else {
                    FailureKind::Timeout
                }
            } else if self.config.fail_on_status_error && self.status[usize::from(id)] != 0 {
                FailureKind::Status(StatusFlags(self.status[usize::from(id)]))
            } else {
                continue;
            };
            failures.push(MotorFailure {
                motor: self.describe(id),
                id,
                kind,
            });
        }
        Err(BusError::Group {
            port: self.port().to_owned(),
            what: "sync read",
            register: register.name,
            failures,
        })
    }

    /// SYNC_READ of `register` (by name) from every motor, in configuration order.
    pub fn sync_read(&mut self, register: &str, out: &mut [i64]) -> Result<(), BusError> {
        let reg = ft::register(register).map_err(|e| self.protocol(e))?;
        let ids = std::mem::take(&mut self.all_ids);
        let result = self.sync_read_ids(reg, &ids, out);
        self.all_ids = ids;
        result
    }

    /// SYNC_WRITE of `values[i]` to `ids[i]`. Every value is encoded (and range-checked)
    /// before anything is sent. No reply.
    pub fn sync_write_ids(
        &mut self,
        register: &Register,
        ids: &[u8],
        values: &[i64],
    ) -> Result<(), BusError> {
        if !register.writable() {
            return Err(self.protocol(ProtocolError::ReadOnly(register.name)));
        }
        if values.len() != ids.len() {
            return Err(BusError::Usage(format!(
                "sync write of {} ids got {} values",
                ids.len(),
                values.len()
            )));
        }
        let order = self.config.byte_order;
        let mut builder = SyncWriteBuilder::begin(&mut self.tx, register.address, register.size);
        let mut failed = None;
        for (&id, &value) in ids.iter().zip(values) {
            let pushed = register
                .encode(value)
                .and_then(|raw| builder.push_value(id, raw, order));
            if let Err(e) = pushed {
                failed = Some(e);
                break;
            }
        }
        let finished = match failed {
            Some(e) => Err(e),
            None => builder.finish(),
        };
        if let Err(e) = finished {
            self.tx.clear();
            return Err(self.protocol(e));
        }
        self.send()
    }

    /// SYNC_WRITE of `register` (by name) to every motor, in configuration order.
    pub fn sync_write(&mut self, register: &str, values: &[i64]) -> Result<(), BusError> {
        let reg = ft::register(register).map_err(|e| self.protocol(e))?;
        let ids = std::mem::take(&mut self.all_ids);
        let result = self.sync_write_ids(reg, &ids, values);
        self.all_ids = ids;
        result
    }

    /// Access to the underlying port (e.g. to change timeouts of raw exchanges).
    pub fn transport_mut(&mut self) -> &mut SerialTransport {
        &mut self.transport
    }
}
