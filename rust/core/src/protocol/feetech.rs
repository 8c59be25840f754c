//! Feetech STS/SCS serial protocol (STS3215): packets, checksum, status decoding, the control
//! table, sign-magnitude registers and baud-rate codes. Pure: no I/O, no clocks, never panics on
//! input bytes.
//!
//! Wire format (half-duplex TTL, 8N1):
//! - instruction `FF FF ID LEN INSTR P1..Pn CHK`, status `FF FF ID LEN ERR P1..Pn CHK`,
//!   LEN = n + 2, CHK = !(ID + LEN + INSTR/ERR + ΣP).
//! - ID 0xFE is broadcast: only PING and SYNC_READ get answers.
//!
//! Encoders append to a caller-owned `Vec<u8>` (cleared first) so a control loop that keeps
//! its buffers allocates nothing after warm-up.

use std::fmt;

/// Every packet starts with these two bytes.
pub const HEADER: [u8; 2] = [0xFF, 0xFF];
/// Broadcast id: every servo executes the instruction; only PING and SYNC_READ are answered.
pub const BROADCAST_ID: u8 = 0xFE;
/// Highest id a servo can have.
pub const MAX_ID: u8 = 0xFD;
/// Largest LEN field the servos accept (and the SDK parses).
pub const MAX_LEN: u8 = 250;
/// Bytes around the parameters of any packet: header, id, len, instr/err, checksum.
pub const PACKET_OVERHEAD: usize = 6;
/// Model number the STS3215 reports at address 3.
pub const STS3215_MODEL_NUMBER: u16 = 777;

/// Errors of the Feetech codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("bad checksum in status packet from id {id}: got {got:#04x}, expected {expected:#04x} (noise on the bus, or two servos with the same id?)")]
    BadChecksum { id: u8, got: u8, expected: u8 },

    #[error("status packet from id {id} has {got} data bytes, expected {expected}")]
    WrongLength { id: u8, got: usize, expected: usize },

    #[error(
        "packet too long: {params} parameter bytes exceed the {max} a Feetech packet can carry"
    )]
    PacketTooLong { params: usize, max: usize },

    #[error("invalid servo id {0}: ids are 0–253 (254 is broadcast)")]
    InvalidId(u8),

    #[error("value {value} does not fit register {register} ({detail})")]
    ValueOutOfRange {
        register: &'static str,
        value: i64,
        detail: String,
    },

    #[error(
        "unknown STS3215 register {0:?}: see protocol::feetech::STS3215_CONTROL_TABLE for names"
    )]
    UnknownRegister(String),

    #[error("register {0} is read-only")]
    ReadOnly(&'static str),

    #[error("unsupported data size {0}: registers are 1 or 2 bytes")]
    BadSize(usize),
}

impl crate::error::Classified for ProtocolError {
    fn fault_kind(&self) -> crate::error::FaultKind {
        use crate::error::FaultKind;
        match self {
            ProtocolError::BadChecksum { .. } | ProtocolError::WrongLength { .. } => {
                FaultKind::Protocol
            }
            ProtocolError::UnknownRegister(_) | ProtocolError::ReadOnly(_) => FaultKind::Config,
            ProtocolError::PacketTooLong { .. }
            | ProtocolError::InvalidId(_)
            | ProtocolError::ValueOutOfRange { .. }
            | ProtocolError::BadSize(_) => FaultKind::Usage,
        }
    }
}

/// Instruction codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Instruction {
    Ping = 0x01,
    Read = 0x02,
    Write = 0x03,
    RegWrite = 0x04,
    Action = 0x05,
    /// Factory reset in the official FTServo SDK (older SCS docs list 0x06).
    Reset = 0x0A,
    /// Middle-position calibration (official SDK only): sets the current position as `pos`.
    Ofscal = 0x0B,
    SyncRead = 0x82,
    SyncWrite = 0x83,
}

impl Instruction {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Instruction::Ping,
            0x02 => Instruction::Read,
            0x03 => Instruction::Write,
            0x04 => Instruction::RegWrite,
            0x05 => Instruction::Action,
            0x0A => Instruction::Reset,
            0x0B => Instruction::Ofscal,
            0x82 => Instruction::SyncRead,
            0x83 => Instruction::SyncWrite,
            _ => return None,
        })
    }
}

/// How 2-byte values are laid out: STS/SMS servos are little-endian (address 2 "END" = 0), SCS
/// servos big-endian. A per-bus setting, never a global (the PyPI SDK's `SCS_END` is global).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    #[default]
    Little,
    Big,
}

impl ByteOrder {
    /// Appends the low `size` bytes of `raw` (1 or 2) in this order.
    pub fn put(self, out: &mut Vec<u8>, raw: u32, size: usize) {
        let lo = (raw & 0xFF) as u8;
        let hi = ((raw >> 8) & 0xFF) as u8;
        match (size, self) {
            (1, _) => out.push(lo),
            (_, ByteOrder::Little) => out.extend_from_slice(&[lo, hi]),
            (_, ByteOrder::Big) => out.extend_from_slice(&[hi, lo]),
        }
    }

    /// A 16-bit value as two bytes in this order.
    pub fn bytes2(self, value: u16) -> [u8; 2] {
        match self {
            ByteOrder::Little => value.to_le_bytes(),
            ByteOrder::Big => value.to_be_bytes(),
        }
    }

    /// Reads a 1- or 2-byte value; other lengths read the first two bytes, empty reads 0.
    pub fn get(self, bytes: &[u8]) -> u32 {
        match (bytes, self) {
            ([], _) => 0,
            ([b], _) => u32::from(*b),
            ([lo, hi, ..], ByteOrder::Little) => u32::from(*lo) | (u32::from(*hi) << 8),
            ([hi, lo, ..], ByteOrder::Big) => u32::from(*lo) | (u32::from(*hi) << 8),
        }
    }
}

/// Checksum over id, len, instruction/error and parameters (everything between the header and
/// the checksum byte).
pub fn checksum(body: &[u8]) -> u8 {
    !body.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

// ---------------------------------------------------------------------------------------------
// Status error bits

/// Error bits of a status packet (and of register 65 "Status"). All bits are kept: unlike the
/// SDK's `getRxPacketError`, nothing is reduced to the first set bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct StatusFlags(pub u8);

impl StatusFlags {
    pub const VOLTAGE: u8 = 0x01;
    pub const ANGLE_SENSOR: u8 = 0x02;
    pub const OVERHEAT: u8 = 0x04;
    pub const OVER_CURRENT: u8 = 0x08;
    pub const OVERLOAD: u8 = 0x20;

    const NAMES: [(u8, &'static str); 8] = [
        (Self::VOLTAGE, "input_voltage"),
        (Self::ANGLE_SENSOR, "angle_sensor"),
        (Self::OVERHEAT, "overheat"),
        (Self::OVER_CURRENT, "over_current"),
        (0x10, "unknown_bit_4"),
        (Self::OVERLOAD, "overload"),
        (0x40, "unknown_bit_6"),
        (0x80, "unknown_bit_7"),
    ];

    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Names of every set bit, lowest first.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }
}

impl fmt::Display for StatusFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return f.write_str("no error");
        }
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Instruction encoders

fn check_id(id: u8) -> Result<(), ProtocolError> {
    if id > BROADCAST_ID {
        return Err(ProtocolError::InvalidId(id));
    }
    Ok(())
}

/// Encodes any instruction packet into `out` (cleared first).
pub fn encode_instruction(
    out: &mut Vec<u8>,
    id: u8,
    instruction: Instruction,
    params: &[u8],
) -> Result<(), ProtocolError> {
    check_id(id)?;
    encode_frame(out, id, instruction as u8, params)
}

/// The LEN byte for `params` parameter bytes (LEN also counts the code and checksum bytes).
fn length_byte(params: usize) -> Result<u8, ProtocolError> {
    let max = usize::from(MAX_LEN) - 2;
    if params > max {
        return Err(ProtocolError::PacketTooLong { params, max });
    }
    Ok(params as u8 + 2)
}

/// Writes the checksum of everything after the header.
fn push_checksum(out: &mut Vec<u8>) {
    let chk = checksum(out.get(2..).unwrap_or(&[]));
    out.push(chk);
}

/// Frames one packet into `out` (cleared first). Instruction and status packets share this
/// layout; `code` is the instruction code or the status error flags.
fn encode_frame(out: &mut Vec<u8>, id: u8, code: u8, params: &[u8]) -> Result<(), ProtocolError> {
    encode_frame_split(out, id, code, &[], params)
}

/// [`encode_frame`] with the parameters given in two pieces (fixed leading bytes such as an
/// address, then the payload) so callers need not join them first.
fn encode_frame_split(
    out: &mut Vec<u8>,
    id: u8,
    code: u8,
    lead: &[u8],
    payload: &[u8],
) -> Result<(), ProtocolError> {
    let len = length_byte(lead.len() + payload.len())?;
    out.clear();
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&[id, len, code]);
    out.extend_from_slice(lead);
    out.extend_from_slice(payload);
    push_checksum(out);
    Ok(())
}

pub fn encode_ping(out: &mut Vec<u8>, id: u8) -> Result<(), ProtocolError> {
    encode_instruction(out, id, Instruction::Ping, &[])
}

/// READ `len` bytes from `address`.
pub fn encode_read(out: &mut Vec<u8>, id: u8, address: u8, len: u8) -> Result<(), ProtocolError> {
    encode_instruction(out, id, Instruction::Read, &[address, len])
}

/// WRITE raw `data` bytes at `address`.
pub fn encode_write(
    out: &mut Vec<u8>,
    id: u8,
    address: u8,
    data: &[u8],
) -> Result<(), ProtocolError> {
    encode_with_address(out, id, Instruction::Write, address, data)
}

/// REG_WRITE: like WRITE, but the servo holds the data until ACTION.
pub fn encode_reg_write(
    out: &mut Vec<u8>,
    id: u8,
    address: u8,
    data: &[u8],
) -> Result<(), ProtocolError> {
    encode_with_address(out, id, Instruction::RegWrite, address, data)
}

/// ACTION: executes pending REG_WRITEs (usually sent to [`BROADCAST_ID`]).
pub fn encode_action(out: &mut Vec<u8>, id: u8) -> Result<(), ProtocolError> {
    encode_instruction(out, id, Instruction::Action, &[])
}

/// RESET (0x0A, factory reset per the official SDK).
pub fn encode_reset(out: &mut Vec<u8>, id: u8) -> Result<(), ProtocolError> {
    encode_instruction(out, id, Instruction::Reset, &[])
}

/// OFSCAL (0x0B): calibrate the middle position to `position`.
pub fn encode_ofscal(
    out: &mut Vec<u8>,
    id: u8,
    position: u16,
    order: ByteOrder,
) -> Result<(), ProtocolError> {
    encode_instruction(out, id, Instruction::Ofscal, &order.bytes2(position))
}

fn encode_with_address(
    out: &mut Vec<u8>,
    id: u8,
    instruction: Instruction,
    address: u8,
    data: &[u8],
) -> Result<(), ProtocolError> {
    check_id(id)?;
    encode_frame_split(out, id, instruction as u8, &[address], data)
}

/// SYNC_READ `len` bytes at `address` from every id in `ids`, to broadcast. The servos answer
/// with one status packet each, in list order.
pub fn encode_sync_read(
    out: &mut Vec<u8>,
    address: u8,
    len: u8,
    ids: &[u8],
) -> Result<(), ProtocolError> {
    // Length first: a too-long list is reported as such even when it also holds a bad id.
    length_byte(ids.len() + 2)?;
    if let Some(bad) = ids.iter().find(|id| **id > MAX_ID) {
        return Err(ProtocolError::InvalidId(*bad));
    }
    encode_frame_split(
        out,
        BROADCAST_ID,
        Instruction::SyncRead as u8,
        &[address, len],
        ids,
    )
}

/// Builds a SYNC_WRITE in place: `begin`, one `push` per servo, then `finish`. No reply comes.
pub struct SyncWriteBuilder<'a> {
    out: &'a mut Vec<u8>,
    data_len: u8,
}

impl<'a> SyncWriteBuilder<'a> {
    /// Starts a SYNC_WRITE of `data_len` bytes at `address` into `out` (cleared first).
    pub fn begin(out: &'a mut Vec<u8>, address: u8, data_len: u8) -> Self {
        out.clear();
        out.extend_from_slice(&HEADER);
        // LEN is patched in `finish`.
        out.extend_from_slice(&[
            BROADCAST_ID,
            0,
            Instruction::SyncWrite as u8,
            address,
            data_len,
        ]);
        SyncWriteBuilder { out, data_len }
    }

    /// Adds one servo's raw data (must be `data_len` bytes).
    pub fn push_raw(&mut self, id: u8, data: &[u8]) -> Result<(), ProtocolError> {
        if id > MAX_ID {
            return Err(ProtocolError::InvalidId(id));
        }
        if data.len() != usize::from(self.data_len) {
            return Err(ProtocolError::BadSize(data.len()));
        }
        self.out.push(id);
        self.out.extend_from_slice(data);
        Ok(())
    }

    /// Adds one servo's already-encoded register value (`data_len` = 1 or 2 bytes).
    pub fn push_value(&mut self, id: u8, raw: u32, order: ByteOrder) -> Result<(), ProtocolError> {
        if id > MAX_ID {
            return Err(ProtocolError::InvalidId(id));
        }
        if !matches!(self.data_len, 1 | 2) {
            return Err(ProtocolError::BadSize(usize::from(self.data_len)));
        }
        self.out.push(id);
        order.put(self.out, raw, usize::from(self.data_len));
        Ok(())
    }

    /// Writes LEN and the checksum.
    pub fn finish(self) -> Result<(), ProtocolError> {
        // Params = everything after the instruction byte.
        let len = length_byte(self.out.len().saturating_sub(5))?;
        if let Some(slot) = self.out.get_mut(3) {
            *slot = len;
        }
        push_checksum(self.out);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Status packets

/// Status packet encoder (used by the simulator; servos send these).
pub fn encode_status(
    out: &mut Vec<u8>,
    id: u8,
    error: StatusFlags,
    params: &[u8],
) -> Result<(), ProtocolError> {
    encode_frame(out, id, error.0, params)
}

/// A decoded packet: status (servo → host) or instruction (host → servo) share one layout, the
/// third byte being the error flags or the instruction code.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    pub id: u8,
    /// Error flags of a status packet, or the instruction code of an instruction packet.
    pub code: u8,
    len: u8,
    params: [u8; MAX_LEN as usize],
}

impl Packet {
    pub fn params(&self) -> &[u8] {
        self.params.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The error flags, reading this as a status packet.
    pub fn error(&self) -> StatusFlags {
        StatusFlags(self.code)
    }

    /// The instruction, reading this as an instruction packet.
    pub fn instruction(&self) -> Option<Instruction> {
        Instruction::from_code(self.code)
    }

    /// Size of this packet on the wire.
    pub fn wire_len(&self) -> usize {
        usize::from(self.len) + PACKET_OVERHEAD
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("id", &self.id)
            .field("code", &format_args!("{:#04x}", self.code))
            .field("params", &self.params())
            .finish()
    }
}

/// Incremental packet parser that resynchronises on garbage.
///
/// Feed bytes as they arrive with [`PacketParser::push`], then drain [`PacketParser::next`].
/// A candidate is `FF FF ID LEN` with ID ≤ 0xFD (0xFE too for instruction packets) and
/// 2 ≤ LEN ≤ 250; any byte value is accepted as ERR (the SDK's "ERR > 0x7F is garbage" rule
/// is not copied). A candidate with a bad checksum is reported once and the scan resumes one
/// byte later, so noise costs at most the packets it overlaps. Memory is bounded: when the
/// buffer is full of undecodable bytes, the oldest are dropped.
pub struct PacketParser {
    buf: Box<[u8; PARSER_CAPACITY]>,
    start: usize,
    end: usize,
    accept_broadcast: bool,
}

const PARSER_CAPACITY: usize = 1024;

impl Default for PacketParser {
    fn default() -> Self {
        Self::for_status()
    }
}

impl PacketParser {
    /// Parser for status packets (servo → host): id 0xFE is rejected as garbage.
    pub fn for_status() -> Self {
        PacketParser {
            buf: Box::new([0; PARSER_CAPACITY]),
            start: 0,
            end: 0,
            accept_broadcast: false,
        }
    }

    /// Parser for instruction packets (host → servo): id 0xFE (broadcast) is valid.
    pub fn for_instructions() -> Self {
        PacketParser {
            accept_broadcast: true,
            ..Self::for_status()
        }
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Bytes buffered but not yet parsed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Appends received bytes. Never allocates.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.end == PARSER_CAPACITY {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    // Full of bytes that never formed a packet: drop the oldest half.
                    let keep_from = PARSER_CAPACITY / 2;
                    self.buf.copy_within(keep_from..PARSER_CAPACITY, 0);
                    self.end = PARSER_CAPACITY - keep_from;
                }
            }
            let room = PARSER_CAPACITY - self.end;
            let n = room.min(bytes.len());
            let (now, later) = bytes.split_at(n);
            if let Some(dst) = self.buf.get_mut(self.end..self.end + n) {
                dst.copy_from_slice(now);
            }
            self.end += n;
            bytes = later;
        }
    }

    /// Next complete packet, a checksum error, or `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)] // not an Iterator: `None` means "need more bytes"
    pub fn next(&mut self) -> Option<Result<Packet, ProtocolError>> {
        loop {
            let window = self.buf.get(self.start..self.end)?;
            // Find the header.
            let Some(pos) = window.windows(2).position(|w| w == HEADER) else {
                // Keep a trailing 0xFF: it may be the first half of a header.
                let keep = usize::from(window.last() == Some(&0xFF));
                self.start = self.end - keep;
                return None;
            };
            self.start += pos;
            let window = self.buf.get(self.start..self.end)?;
            let (Some(&id), Some(&len)) = (window.get(2), window.get(3)) else {
                return None;
            };
            let id_ok = id <= MAX_ID || (self.accept_broadcast && id == BROADCAST_ID);
            if !id_ok || !(2..=MAX_LEN).contains(&len) {
                self.start += 1;
                continue;
            }
            let total = usize::from(len) + 4;
            let packet = window.get(..total)?;
            let body = packet.get(2..total - 1).unwrap_or(&[]);
            let got = packet.get(total - 1).copied().unwrap_or(0);
            let expected = checksum(body);
            if got != expected {
                self.start += 1;
                return Some(Err(ProtocolError::BadChecksum { id, got, expected }));
            }
            let code = packet.get(4).copied().unwrap_or(0);
            let params = packet.get(5..total - 1).unwrap_or(&[]);
            let mut out = Packet {
                id,
                code,
                len: params.len() as u8,
                params: [0; MAX_LEN as usize],
            };
            if let Some(dst) = out.params.get_mut(..params.len()) {
                dst.copy_from_slice(params);
            }
            self.start += total;
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
            return Some(Ok(out));
        }
    }
}

/// Decodes exactly one packet from a complete byte slice (convenience for tests and bindings).
/// Leading garbage is skipped; `None` if no complete packet is present.
pub fn decode_status(bytes: &[u8]) -> Option<Result<Packet, ProtocolError>> {
    let mut parser = PacketParser::for_status();
    let mut rest = bytes;
    // The parser holds at most 1 KiB; longer input is fed in pieces.
    loop {
        let take = rest.len().min(PARSER_CAPACITY / 2);
        let (chunk, tail) = rest.split_at(take);
        parser.push(chunk);
        rest = tail;
        if let Some(r) = parser.next() {
            return Some(r);
        }
        if rest.is_empty() {
            return None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Control table

/// Who may write a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Where a register lives: EEPROM values persist and need Lock = 0 to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Eeprom,
    Sram,
    /// Factory parameters (EEPROM, normally left alone).
    Factory,
}

/// One control-table entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Register {
    /// Name as lerobot spells it (e.g. `Present_Position`).
    pub name: &'static str,
    pub address: u8,
    /// 1 or 2 bytes.
    pub size: u8,
    pub access: Access,
    pub area: Area,
    /// Bit holding the sign in sign-magnitude registers (`None` = unsigned).
    pub sign_bit: Option<u8>,
    /// Physical unit of one raw step, and its size in that unit.
    pub unit: &'static str,
    pub scale: f64,
}

#[allow(clippy::too_many_arguments)] // one table row, read as a row
const fn reg(
    name: &'static str,
    address: u8,
    size: u8,
    access: Access,
    area: Area,
    sign_bit: Option<u8>,
    unit: &'static str,
    scale: f64,
) -> Register {
    Register {
        name,
        address,
        size,
        access,
        area,
        sign_bit,
        unit,
        scale,
    }
}

use Access::{ReadOnly as RO, ReadWrite as RW};
use Area::{Eeprom as EE, Factory as FA, Sram as SR};

/// The STS3215 control table (addresses and sizes as lerobot's table, cross-checked with the
/// official SDK; sign bits as lerobot's encoding table).
pub const STS3215_CONTROL_TABLE: &[Register] = &[
    reg("Firmware_Major_Version", 0, 1, RO, EE, None, "", 1.0),
    reg("Firmware_Minor_Version", 1, 1, RO, EE, None, "", 1.0),
    reg("END", 2, 1, RO, EE, None, "", 1.0),
    reg("Model_Number", 3, 2, RO, EE, None, "", 1.0),
    reg("ID", 5, 1, RW, EE, None, "", 1.0),
    reg("Baud_Rate", 6, 1, RW, EE, None, "code", 1.0),
    reg("Return_Delay_Time", 7, 1, RW, EE, None, "us", 2.0),
    reg("Response_Status_Level", 8, 1, RW, EE, None, "", 1.0),
    reg("Min_Position_Limit", 9, 2, RW, EE, None, "step", 1.0),
    reg("Max_Position_Limit", 11, 2, RW, EE, None, "step", 1.0),
    reg("Max_Temperature_Limit", 13, 1, RW, EE, None, "degC", 1.0),
    reg("Max_Voltage_Limit", 14, 1, RW, EE, None, "V", 0.1),
    reg("Min_Voltage_Limit", 15, 1, RW, EE, None, "V", 0.1),
    reg("Max_Torque_Limit", 16, 2, RW, EE, None, "%", 0.1),
    reg("Phase", 18, 1, RW, EE, None, "", 1.0),
    reg("Unloading_Condition", 19, 1, RW, EE, None, "", 1.0),
    reg("LED_Alarm_Condition", 20, 1, RW, EE, None, "", 1.0),
    reg("P_Coefficient", 21, 1, RW, EE, None, "", 1.0),
    reg("D_Coefficient", 22, 1, RW, EE, None, "", 1.0),
    reg("I_Coefficient", 23, 1, RW, EE, None, "", 1.0),
    reg("Minimum_Startup_Force", 24, 2, RW, EE, None, "%", 0.1),
    reg("CW_Dead_Zone", 26, 1, RW, EE, None, "step", 1.0),
    reg("CCW_Dead_Zone", 27, 1, RW, EE, None, "step", 1.0),
    reg("Protection_Current", 28, 2, RW, EE, None, "mA", 6.5),
    reg("Angular_Resolution", 30, 1, RW, EE, None, "", 1.0),
    reg("Homing_Offset", 31, 2, RW, EE, Some(11), "step", 1.0),
    reg("Operating_Mode", 33, 1, RW, EE, None, "", 1.0),
    reg("Protective_Torque", 34, 1, RW, EE, None, "%", 1.0),
    reg("Protection_Time", 35, 1, RW, EE, None, "ms", 10.0),
    reg("Overload_Torque", 36, 1, RW, EE, None, "%", 1.0),
    reg(
        "Velocity_closed_loop_P_proportional_coefficient",
        37,
        1,
        RW,
        EE,
        None,
        "",
        1.0,
    ),
    reg(
        "Over_Current_Protection_Time",
        38,
        1,
        RW,
        EE,
        None,
        "ms",
        10.0,
    ),
    reg(
        "Velocity_closed_loop_I_integral_coefficient",
        39,
        1,
        RW,
        EE,
        None,
        "",
        1.0,
    ),
    reg("Torque_Enable", 40, 1, RW, SR, None, "", 1.0),
    reg("Acceleration", 41, 1, RW, SR, None, "step/s^2", 100.0),
    reg("Goal_Position", 42, 2, RW, SR, Some(15), "step", 1.0),
    reg("Goal_Time", 44, 2, RW, SR, None, "ms", 1.0),
    reg("Goal_Velocity", 46, 2, RW, SR, Some(15), "step/s", 1.0),
    reg("Torque_Limit", 48, 2, RW, SR, None, "%", 0.1),
    reg("Lock", 55, 1, RW, SR, None, "", 1.0),
    reg("Present_Position", 56, 2, RO, SR, Some(15), "step", 1.0),
    reg("Present_Velocity", 58, 2, RO, SR, Some(15), "step/s", 1.0),
    reg("Present_Load", 60, 2, RO, SR, Some(10), "%", 0.1),
    reg("Present_Voltage", 62, 1, RO, SR, None, "V", 0.1),
    reg("Present_Temperature", 63, 1, RO, SR, None, "degC", 1.0),
    reg("Status", 65, 1, RO, SR, None, "", 1.0),
    reg("Moving", 66, 1, RO, SR, None, "", 1.0),
    reg("Present_Current", 69, 2, RO, SR, None, "mA", 6.5),
    reg("Goal_Position_2", 71, 2, RO, SR, None, "step", 1.0),
    reg("Moving_Velocity_Threshold", 80, 1, RW, FA, None, "", 1.0),
    reg("DTs", 81, 1, RW, FA, None, "ms", 1.0),
    reg("Velocity_Unit_factor", 82, 1, RW, FA, None, "", 1.0),
    reg("Hts", 83, 1, RW, FA, None, "ns", 1.0),
    reg("Maximum_Velocity_Limit", 84, 1, RW, FA, None, "", 1.0),
    reg("Maximum_Acceleration", 85, 1, RW, FA, None, "", 1.0),
    reg("Acceleration_Multiplier", 86, 1, RW, FA, None, "", 1.0),
];

/// Looks a register up by its name.
pub fn register(name: &str) -> Result<&'static Register, ProtocolError> {
    STS3215_CONTROL_TABLE
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ProtocolError::UnknownRegister(name.to_owned()))
}

/// The register that starts at `address`, if any.
pub fn register_at(address: u8) -> Option<&'static Register> {
    STS3215_CONTROL_TABLE.iter().find(|r| r.address == address)
}

impl Register {
    /// Encodes a signed user value to the raw register value (sign-magnitude where the
    /// register has a sign bit). Refuses values that do not fit instead of wrapping.
    pub fn encode(&self, value: i64) -> Result<u32, ProtocolError> {
        match self.sign_bit {
            Some(bit) => {
                encode_sign_magnitude(value, bit).map_err(|max| ProtocolError::ValueOutOfRange {
                    register: self.name,
                    value,
                    detail: format!("magnitude must be at most {max}, sign in bit {bit}"),
                })
            }
            None => {
                let max = (1i64 << (8 * u32::from(self.size))) - 1;
                if (0..=max).contains(&value) {
                    Ok(value as u32)
                } else {
                    Err(ProtocolError::ValueOutOfRange {
                        register: self.name,
                        value,
                        detail: format!("unsigned, 0..={max}"),
                    })
                }
            }
        }
    }

    /// Decodes a raw register value into the signed user value.
    pub fn decode(&self, raw: u32) -> i64 {
        let raw = raw & self.mask();
        match self.sign_bit {
            Some(bit) => decode_sign_magnitude(raw, bit),
            None => i64::from(raw),
        }
    }

    /// Raw value converted to the physical unit ([`Register::unit`]).
    pub fn to_unit(&self, raw: u32) -> f64 {
        self.decode(raw) as f64 * self.scale
    }

    fn mask(&self) -> u32 {
        if self.size >= 2 {
            0xFFFF
        } else {
            0xFF
        }
    }

    pub fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }
}

/// Sign-magnitude encoding with the sign in `sign_bit`. `Err(max magnitude)` if |value| does
/// not fit below the sign bit.
pub fn encode_sign_magnitude(value: i64, sign_bit: u8) -> Result<u32, i64> {
    let max = (1i64 << sign_bit.min(31)) - 1;
    let magnitude = value.checked_abs().unwrap_or(i64::MAX);
    if magnitude > max {
        return Err(max);
    }
    let sign = u32::from(value < 0) << sign_bit.min(31);
    Ok(sign | magnitude as u32)
}

/// Sign-magnitude decoding with the sign in `sign_bit`; bits above the sign bit are ignored.
pub fn decode_sign_magnitude(raw: u32, sign_bit: u8) -> i64 {
    let bit = sign_bit.min(31);
    let magnitude = i64::from(raw & ((1u32 << bit) - 1));
    if raw & (1u32 << bit) != 0 {
        -magnitude
    } else {
        magnitude
    }
}

// ---------------------------------------------------------------------------------------------
// Baud-rate codes

/// Official baud-rate codes of register 6 (Feetech SDK / memory table). lerobot's codes 5–7
/// (57600, 38400, 19200) are wrong and not used.
pub const BAUD_RATE_CODES: [(u8, u32); 8] = [
    (0, 1_000_000),
    (1, 500_000),
    (2, 250_000),
    (3, 128_000),
    (4, 115_200),
    (5, 76_800),
    (6, 57_600),
    (7, 38_400),
];

pub fn baud_from_code(code: u8) -> Option<u32> {
    BAUD_RATE_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, b)| *b)
}

pub fn code_from_baud(baud: u32) -> Option<u8> {
    BAUD_RATE_CODES
        .iter()
        .find(|(_, b)| *b == baud)
        .map(|(c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_images_from_the_spec() {
        let mut out = Vec::new();
        encode_ping(&mut out, 1).unwrap();
        assert_eq!(out, [0xff, 0xff, 0x01, 0x02, 0x01, 0xfb]);
        encode_read(&mut out, 1, 56, 2).unwrap();
        assert_eq!(out, [0xff, 0xff, 0x01, 0x04, 0x02, 0x38, 0x02, 0xbe]);
        encode_sync_read(&mut out, 56, 2, &[1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(out.len(), 15);
        assert_eq!(out.last(), Some(&0x1e));
    }

    #[test]
    fn status_flags_name_every_bit() {
        let f = StatusFlags(0x25);
        assert_eq!(f.to_string(), "input_voltage, overheat, overload");
        assert_eq!(StatusFlags(0).to_string(), "no error");
    }

    #[test]
    fn parser_resyncs_after_garbage_and_split_reads() {
        let mut p = PacketParser::for_status();
        p.push(&[0x00, 0xfe, 0xff, 0xff, 0xff, 0x03, 0x04]);
        assert!(p.next().is_none());
        p.push(&[0x00, 0xff, 0x0f, 0xea]);
        let pkt = p.next().unwrap().unwrap();
        assert_eq!(pkt.id, 3);
        assert_eq!(ByteOrder::Little.get(pkt.params()), 4095);
        assert!(p.next().is_none());
    }

    #[test]
    fn error_byte_with_bit7_is_a_status_not_garbage() {
        let mut out = Vec::new();
        encode_status(&mut out, 5, StatusFlags(0x80), &[1, 2]).unwrap();
        let pkt = decode_status(&out).unwrap().unwrap();
        assert_eq!(pkt.error(), StatusFlags(0x80));
    }

    #[test]
    fn registers_refuse_what_does_not_fit() {
        let goal = register("Goal_Position").unwrap();
        assert_eq!(goal.encode(-100).unwrap(), 0x8064);
        assert!(goal.encode(40_000).is_err());
        let id = register("ID").unwrap();
        assert!(id.encode(256).is_err());
        assert!(id.encode(-1).is_err());
        assert!(register("Nope").is_err());
    }

    #[test]
    fn official_baud_codes() {
        assert_eq!(baud_from_code(5), Some(76_800));
        assert_eq!(baud_from_code(7), Some(38_400));
        assert_eq!(code_from_baud(1_000_000), Some(0));
        assert_eq!(baud_from_code(8), None);
    }
}
