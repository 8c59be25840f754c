//! DAMIAO USB-CAN adapter framing and DAMIAO motor CAN payloads (spec §A, §B).
//!
//! Host → adapter: 30-byte frames carrying one classic CAN frame. Adapter → host: 16-byte
//! frames, decoded from the byte stream by [`AdapterStreamDecoder`], which resynchronises on
//! garbage and never grows. Motor payloads: MIT (clamped, NaN rejected), POS_VEL, VEL,
//! POS_FORCE, the special commands, the 0x7FF register service and the feedback frame.
//!
//! Quantisation is done in f64 with truncation toward zero, which matches OpenK's `DM_CAN.py`
//! bit for bit for in-range inputs (DAMIAO's C++ uses f32 and may differ by one LSB).

use thiserror::Error;

/// Bytes in one host → adapter frame.
pub const HOST_FRAME_LEN: usize = 30;
/// Bytes in one adapter → host frame.
pub const ADAPTER_FRAME_LEN: usize = 16;
/// CAN id of the register service (read/write/save/refresh).
pub const REGISTER_CAN_ID: u32 = 0x7FF;
/// CAN id used by OpenK's STS-over-CAN bridge node. It does not fit an 11-bit id, yet the
/// bridge sends it with IDE = 0, so the stream decoder accepts it as a special case.
pub const STS_BRIDGE_CAN_ID: u32 = 0xFF00;

const HOST_HEADER: [u8; 2] = [0x55, 0xAA];
const ADAPTER_HEADER: u8 = 0xAA;
const ADAPTER_TAIL: u8 = 0x55;
/// Host command 3: forward the CAN frame without a send-status reply (what every reference uses).
const HOST_CMD_FORWARD_QUIET: u8 = 0x03;
const MAX_STANDARD_ID: u32 = 0x7FF;
const MAX_EXTENDED_ID: u32 = 0x1FFF_FFFF;

/// Errors of the DAMIAO codec layer.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DamiaoProtocolError {
    #[error("{field} = {value} is not a finite number; nothing was sent")]
    NonFinite { field: &'static str, value: f64 },
    #[error("expected a {expected}-byte frame, got {got} bytes")]
    BadLength { expected: usize, got: usize },
    #[error("host frame header/length is {found:02x?}, expected 55 aa 1e")]
    BadHostHeader { found: [u8; 3] },
    #[error("adapter frame is not valid ({reason})")]
    BadAdapterFrame { reason: &'static str },
    #[error("CAN payload is not a register reply (op byte 0x{op:02x})")]
    NotARegisterReply { op: u8 },
    #[error("unknown DAMIAO motor model {0:?}; known: DM3507, DM4310, DM4310_48V, DM4340, DM4340_48V, DM6006, DM8006, DM8009, DM10010L, DM10010, DMH3510, DMH6215, DMG6220")]
    UnknownModel(String),
    #[error(
        "invalid mapping limits PMAX={pmax} VMAX={vmax} TMAX={tmax}: each must be finite and > 0"
    )]
    InvalidLimits { pmax: f64, vmax: f64, tmax: f64 },
    #[error("register {rid} holds a u32; {value} is not an integer in 0..=4294967295")]
    BadRegisterValue { rid: u8, value: f64 },
    #[error("unknown control mode {0}; expected 1 (MIT), 2 (POS_VEL), 3 (VEL) or 4 (POS_FORCE)")]
    UnknownControlMode(u32),
}

impl crate::error::Classified for DamiaoProtocolError {
    fn fault_kind(&self) -> crate::error::FaultKind {
        use crate::error::FaultKind;
        match self {
            DamiaoProtocolError::UnknownModel(_) | DamiaoProtocolError::InvalidLimits { .. } => {
                FaultKind::Config
            }
            // Values the codec cannot put on the wire are refused before anything is sent.
            DamiaoProtocolError::NonFinite { .. }
            | DamiaoProtocolError::BadRegisterValue { .. }
            | DamiaoProtocolError::BadLength { .. }
            | DamiaoProtocolError::BadHostHeader { .. }
            | DamiaoProtocolError::BadAdapterFrame { .. }
            | DamiaoProtocolError::NotARegisterReply { .. }
            | DamiaoProtocolError::UnknownControlMode(_) => FaultKind::Protocol,
        }
    }
}

type Result<T> = std::result::Result<T, DamiaoProtocolError>;

// ---------------------------------------------------------------------------------------------
// A. Adapter framing
// ---------------------------------------------------------------------------------------------

/// Wraps one 8-byte CAN data frame (standard id, DLC 8) into the 30-byte host frame.
pub fn encode_host_frame(can_id: u32, data: &[u8; 8]) -> [u8; HOST_FRAME_LEN] {
    let mut frame = [0u8; HOST_FRAME_LEN];
    frame[0..2].copy_from_slice(&HOST_HEADER);
    frame[2] = HOST_FRAME_LEN as u8;
    frame[3] = HOST_CMD_FORWARD_QUIET;
    frame[4..8].copy_from_slice(&1u32.to_le_bytes()); // send once
    frame[8..12].copy_from_slice(&10u32.to_le_bytes()); // repeat interval (unused for one send)
    frame[12] = 0; // standard id
    frame[13..17].copy_from_slice(&can_id.to_le_bytes());
    frame[17] = 0; // data frame
    frame[18] = 8; // DLC
    frame[21..29].copy_from_slice(data);
    frame
}

/// A CAN frame as the host asked the adapter to send it (decoded by the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFrame {
    pub command: u8,
    pub extended: bool,
    pub remote: bool,
    pub can_id: u32,
    pub dlc: u8,
    pub data: [u8; 8],
}

/// Decodes a 30-byte host frame. Only the header and length byte are checked: the trailing
/// "CRC" byte is documented as ignored by the adapter.
pub fn decode_host_frame(bytes: &[u8]) -> Result<HostFrame> {
    if bytes.len() != HOST_FRAME_LEN {
        return Err(DamiaoProtocolError::BadLength {
            expected: HOST_FRAME_LEN,
            got: bytes.len(),
        });
    }
    let mut frame = [0u8; HOST_FRAME_LEN];
    frame.copy_from_slice(bytes);
    if frame[0..2] != HOST_HEADER || frame[2] != HOST_FRAME_LEN as u8 {
        return Err(DamiaoProtocolError::BadHostHeader {
            found: [frame[0], frame[1], frame[2]],
        });
    }
    let mut data = [0u8; 8];
    data.copy_from_slice(&frame[21..29]);
    Ok(HostFrame {
        command: frame[3],
        extended: frame[12] != 0,
        remote: frame[17] != 0,
        can_id: u32::from_le_bytes([frame[13], frame[14], frame[15], frame[16]]),
        dlc: frame[18],
        data,
    })
}

/// CMD byte of an adapter → host frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterCmd {
    Heartbeat,
    ReceiveFailed,
    SendFailed,
    SetBaudFailed,
    /// A CAN frame was received: the only kind carrying motor data.
    Received,
    SendOk,
    SetBaudOk,
    CommError,
}

impl AdapterCmd {
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x00 => Self::Heartbeat,
            0x01 => Self::ReceiveFailed,
            0x02 => Self::SendFailed,
            0x03 => Self::SetBaudFailed,
            0x11 => Self::Received,
            0x12 => Self::SendOk,
            0x13 => Self::SetBaudOk,
            0xEE => Self::CommError,
            _ => return None,
        })
    }

    pub fn byte(self) -> u8 {
        match self {
            Self::Heartbeat => 0x00,
            Self::ReceiveFailed => 0x01,
            Self::SendFailed => 0x02,
            Self::SetBaudFailed => 0x03,
            Self::Received => 0x11,
            Self::SendOk => 0x12,
            Self::SetBaudOk => 0x13,
            Self::CommError => 0xEE,
        }
    }
}

/// One validated adapter → host frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterFrame {
    pub cmd: AdapterCmd,
    /// bits 0–5 DLC, bit 6 IDE, bit 7 RTR.
    pub info: u8,
    pub can_id: u32,
    pub data: [u8; 8],
}

impl AdapterFrame {
    /// A received standard-id data frame with DLC 8, as the adapter reports motor replies.
    pub fn received(can_id: u32, data: [u8; 8]) -> Self {
        Self {
            cmd: AdapterCmd::Received,
            info: 8,
            can_id,
            data,
        }
    }

    pub fn dlc(&self) -> u8 {
        self.info & 0x3F
    }

    pub fn encode(&self) -> [u8; ADAPTER_FRAME_LEN] {
        let mut out = [0u8; ADAPTER_FRAME_LEN];
        out[0] = ADAPTER_HEADER;
        out[1] = self.cmd.byte();
        out[2] = self.info;
        out[3..7].copy_from_slice(&self.can_id.to_le_bytes());
        out[7..15].copy_from_slice(&self.data);
        out[15] = ADAPTER_TAIL;
        out
    }

    /// Parses a 16-byte window, checking everything that can be checked without a checksum:
    /// header, tail, a known CMD, DLC ≤ 8 and an id that fits its id type.
    pub fn parse(window: &[u8]) -> Result<Self> {
        let bad = |reason| Err(DamiaoProtocolError::BadAdapterFrame { reason });
        if window.len() != ADAPTER_FRAME_LEN {
            return Err(DamiaoProtocolError::BadLength {
                expected: ADAPTER_FRAME_LEN,
                got: window.len(),
            });
        }
        let mut w = [0u8; ADAPTER_FRAME_LEN];
        w.copy_from_slice(window);
        if w[0] != ADAPTER_HEADER {
            return bad("header is not 0xAA");
        }
        if w[15] != ADAPTER_TAIL {
            return bad("tail is not 0x55");
        }
        let Some(cmd) = AdapterCmd::from_byte(w[1]) else {
            return bad("unknown CMD byte");
        };
        let info = w[2];
        if info & 0x3F > 8 {
            return bad("DLC above 8");
        }
        let can_id = u32::from_le_bytes([w[3], w[4], w[5], w[6]]);
        let extended = info & 0x40 != 0;
        let id_ok = if extended {
            can_id <= MAX_EXTENDED_ID
        } else {
            can_id <= MAX_STANDARD_ID || can_id == STS_BRIDGE_CAN_ID
        };
        if !id_ok {
            return bad("CAN id does not fit its id type");
        }
        let mut data = [0u8; 8];
        data.copy_from_slice(&w[7..15]);
        Ok(Self {
            cmd,
            info,
            can_id,
            data,
        })
    }
}

/// Capacity of the stream decoder's ring. Bounded memory: a stream without any valid frame
/// can never make it grow.
pub const STREAM_CAPACITY: usize = 512;

/// Resynchronising decoder for the adapter → host byte stream.
///
/// Bytes go in with [`push`](Self::push), frames come out with
/// [`next_frame`](Self::next_frame). A frame split across reads is reassembled; bytes that
/// cannot start a valid frame are skipped one at a time and counted. If more than
/// [`STREAM_CAPACITY`] bytes are pushed without draining, the oldest are dropped (and counted).
pub struct AdapterStreamDecoder {
    ring: [u8; STREAM_CAPACITY],
    start: usize,
    len: usize,
    skipped: u64,
    frames: u64,
}

impl Default for AdapterStreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl AdapterStreamDecoder {
    pub const fn new() -> Self {
        Self {
            ring: [0; STREAM_CAPACITY],
            start: 0,
            len: 0,
            skipped: 0,
            frames: 0,
        }
    }

    /// Appends bytes from the wire.
    pub fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.len == STREAM_CAPACITY {
                self.discard(1);
            }
            let pos = (self.start + self.len) % STREAM_CAPACITY;
            if let Some(slot) = self.ring.get_mut(pos) {
                *slot = byte;
            }
            self.len += 1;
        }
    }

    /// The next complete valid frame, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<AdapterFrame> {
        while self.len >= ADAPTER_FRAME_LEN {
            if self.byte_at(0) != ADAPTER_HEADER {
                self.discard(1);
                continue;
            }
            let mut window = [0u8; ADAPTER_FRAME_LEN];
            for (i, slot) in window.iter_mut().enumerate() {
                *slot = self.byte_at(i);
            }
            match AdapterFrame::parse(&window) {
                Ok(frame) => {
                    self.consume(ADAPTER_FRAME_LEN);
                    self.frames += 1;
                    return Some(frame);
                }
                Err(_) => self.discard(1),
            }
        }
        None
    }

    /// Bytes skipped so far because they could not start a valid frame.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Valid frames returned so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames
    }

    /// Bytes waiting for the rest of a frame.
    pub fn pending_len(&self) -> usize {
        self.len
    }

    /// Forgets buffered bytes (e.g. after a port reopen); counters are kept.
    pub fn clear(&mut self) {
        self.skipped += self.len as u64;
        self.start = 0;
        self.len = 0;
    }

    fn byte_at(&self, offset: usize) -> u8 {
        self.ring
            .get((self.start + offset) % STREAM_CAPACITY)
            .copied()
            .unwrap_or(0)
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.start = (self.start + n) % STREAM_CAPACITY;
        self.len -= n;
    }

    fn discard(&mut self, n: usize) {
        let n = n.min(self.len);
        self.skipped += n as u64;
        self.consume(n);
    }
}

// ---------------------------------------------------------------------------------------------
// B. Motor models, limits, quantisation
// ---------------------------------------------------------------------------------------------

/// Mapping ranges of a motor: PMAX (rad), VMAX (rad/s), TMAX (N·m). The motor's own registers
/// 21–23 hold the authoritative values; the per-model table is only a default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub pmax: f64,
    pub vmax: f64,
    pub tmax: f64,
}

impl Limits {
    pub fn new(pmax: f64, vmax: f64, tmax: f64) -> Result<Self> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if ok(pmax) && ok(vmax) && ok(tmax) {
            Ok(Self { pmax, vmax, tmax })
        } else {
            Err(DamiaoProtocolError::InvalidLimits { pmax, vmax, tmax })
        }
    }
}

/// DAMIAO motor models, named as users and lerobot spell them (indices differ across
/// projects, so only names are serialised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MotorModel {
    DM3507,
    DM4310,
    DM4310_48V,
    DM4340,
    DM4340_48V,
    DM6006,
    DM8006,
    DM8009,
    DM10010L,
    DM10010,
    DMH3510,
    DMH6215,
    DMG6220,
}

impl MotorModel {
    pub const ALL: [MotorModel; 13] = [
        Self::DM3507,
        Self::DM4310,
        Self::DM4310_48V,
        Self::DM4340,
        Self::DM4340_48V,
        Self::DM6006,
        Self::DM8006,
        Self::DM8009,
        Self::DM10010L,
        Self::DM10010,
        Self::DMH3510,
        Self::DMH6215,
        Self::DMG6220,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::DM3507 => "DM3507",
            Self::DM4310 => "DM4310",
            Self::DM4310_48V => "DM4310_48V",
            Self::DM4340 => "DM4340",
            Self::DM4340_48V => "DM4340_48V",
            Self::DM6006 => "DM6006",
            Self::DM8006 => "DM8006",
            Self::DM8009 => "DM8009",
            Self::DM10010L => "DM10010L",
            Self::DM10010 => "DM10010",
            Self::DMH3510 => "DMH3510",
            Self::DMH6215 => "DMH6215",
            Self::DMG6220 => "DMG6220",
        }
    }

    /// Accepts the canonical names case-insensitively, plus the "DM-J4310" style of the
    /// product names and the aliases seen in other SDKs.
    pub fn from_name(name: &str) -> Result<Self> {
        let norm: String = name
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .collect::<String>()
            .to_ascii_uppercase();
        let norm = norm
            .strip_prefix("DMJ")
            .map_or(norm.clone(), |r| format!("DM{r}"));
        let model = match norm.as_str() {
            "DM4310P" => Self::DM4310_48V,
            "DMG6215" | "G6215" => Self::DMH6215,
            "DMH6220" | "H6220" => Self::DMG6220,
            "H3510" => Self::DMH3510,
            other => match Self::ALL.iter().find(|m| m.name() == other) {
                Some(m) => *m,
                None => return Err(DamiaoProtocolError::UnknownModel(name.to_string())),
            },
        };
        Ok(model)
    }

    /// Default mapping ranges (OpenK/DAMIAO table; DM3507 from lerobot).
    pub fn default_limits(self) -> Limits {
        let (pmax, vmax, tmax) = match self {
            Self::DM3507 => (12.5, 30.0, 10.0),
            Self::DM4310 => (12.5, 30.0, 10.0),
            Self::DM4310_48V => (12.5, 50.0, 10.0),
            Self::DM4340 => (12.5, 8.0, 28.0),
            Self::DM4340_48V => (12.5, 10.0, 28.0),
            Self::DM6006 => (12.5, 45.0, 20.0),
            Self::DM8006 => (12.5, 45.0, 40.0),
            Self::DM8009 => (12.5, 45.0, 54.0),
            Self::DM10010L => (12.5, 25.0, 200.0),
            Self::DM10010 => (12.5, 20.0, 200.0),
            Self::DMH3510 => (12.5, 280.0, 1.0),
            Self::DMH6215 => (12.5, 45.0, 10.0),
            Self::DMG6220 => (12.5, 45.0, 10.0),
        };
        Limits { pmax, vmax, tmax }
    }
}

/// MIT gain ranges fixed by the firmware.
pub const KP_MAX: f64 = 500.0;
pub const KD_MAX: f64 = 5.0;

fn finite(field: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DamiaoProtocolError::NonFinite { field, value })
    }
}

/// Clamp to [lo, hi], then truncate toward zero (OpenK's float64 rule, minus its wrap bug).
fn float_to_uint(x: f64, lo: f64, hi: f64, bits: u32) -> u16 {
    let full = f64::from((1u32 << bits) - 1);
    let x = x.clamp(lo, hi);
    ((x - lo) / (hi - lo) * full) as u16
}

fn uint_to_float(u: u16, lo: f64, hi: f64, bits: u32) -> f64 {
    let full = f64::from((1u32 << bits) - 1);
    f64::from(u) / full * (hi - lo) + lo
}

// ---------------------------------------------------------------------------------------------
// B.3–B.6 Control commands
// ---------------------------------------------------------------------------------------------

/// Control modes, as register 10 (CTRL_MODE) numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlMode {
    Mit = 1,
    PosVel = 2,
    Vel = 3,
    PosForce = 4,
}

impl ControlMode {
    pub fn from_register(value: u32) -> Result<Self> {
        Ok(match value {
            1 => Self::Mit,
            2 => Self::PosVel,
            3 => Self::Vel,
            4 => Self::PosForce,
            other => return Err(DamiaoProtocolError::UnknownControlMode(other)),
        })
    }

    pub fn register_value(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mit => "MIT",
            Self::PosVel => "POS_VEL",
            Self::Vel => "VEL",
            Self::PosForce => "POS_FORCE",
        }
    }

    /// CAN id a command of this mode goes to.
    pub fn command_can_id(self, esc_id: u16) -> u32 {
        let base = match self {
            Self::Mit => 0,
            Self::PosVel => 0x100,
            Self::Vel => 0x200,
            Self::PosForce => 0x300,
        };
        base + u32::from(esc_id)
    }

    /// Mode a command CAN id belongs to, with the target ESC_ID (used by the simulator).
    pub fn from_command_can_id(can_id: u32) -> Option<(Self, u16)> {
        let esc = (can_id & 0xFF) as u16;
        let mode = match can_id & !0xFF {
            0x000 => Self::Mit,
            0x100 => Self::PosVel,
            0x200 => Self::Vel,
            0x300 => Self::PosForce,
            _ => return None,
        };
        Some((mode, esc))
    }
}

/// An MIT command in SI units: τ = kp(q − q_motor) + kd(dq − dq_motor) + tau.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MitCommand {
    pub q: f64,
    pub dq: f64,
    pub kp: f64,
    pub kd: f64,
    pub tau: f64,
}

/// The five integer fields of an MIT command after quantisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MitUints {
    pub q: u16,
    pub dq: u16,
    pub kp: u16,
    pub kd: u16,
    pub tau: u16,
}

/// Quantises an MIT command: every field is clamped to its range; NaN/inf is an error.
pub fn quantise_mit(cmd: &MitCommand, limits: &Limits) -> Result<MitUints> {
    let q = finite("q", cmd.q)?;
    let dq = finite("dq", cmd.dq)?;
    let kp = finite("kp", cmd.kp)?;
    let kd = finite("kd", cmd.kd)?;
    let tau = finite("tau", cmd.tau)?;
    Ok(MitUints {
        q: float_to_uint(q, -limits.pmax, limits.pmax, 16),
        dq: float_to_uint(dq, -limits.vmax, limits.vmax, 12),
        kp: float_to_uint(kp, 0.0, KP_MAX, 12),
        kd: float_to_uint(kd, 0.0, KD_MAX, 12),
        tau: float_to_uint(tau, -limits.tmax, limits.tmax, 12),
    })
}

/// Packs quantised MIT fields MSB-first (q 16 bit, the rest 12 bit).
pub fn pack_mit(u: &MitUints) -> [u8; 8] {
    [
        (u.q >> 8) as u8,
        (u.q & 0xFF) as u8,
        ((u.dq >> 4) & 0xFF) as u8,
        (((u.dq & 0xF) << 4) | ((u.kp >> 8) & 0xF)) as u8,
        (u.kp & 0xFF) as u8,
        ((u.kd >> 4) & 0xFF) as u8,
        (((u.kd & 0xF) << 4) | ((u.tau >> 8) & 0xF)) as u8,
        (u.tau & 0xFF) as u8,
    ]
}

/// MIT payload for CAN id ESC_ID.
pub fn encode_mit(cmd: &MitCommand, limits: &Limits) -> Result<[u8; 8]> {
    Ok(pack_mit(&quantise_mit(cmd, limits)?))
}

/// Inverse of [`pack_mit`].
pub fn unpack_mit(data: &[u8; 8]) -> MitUints {
    let [d0, d1, d2, d3, d4, d5, d6, d7] = data.map(u16::from);
    MitUints {
        q: (d0 << 8) | d1,
        dq: (d2 << 4) | (d3 >> 4),
        kp: ((d3 & 0xF) << 8) | d4,
        kd: (d5 << 4) | (d6 >> 4),
        tau: ((d6 & 0xF) << 8) | d7,
    }
}

/// Decodes an MIT payload back to SI units (what the motor sees).
pub fn decode_mit(data: &[u8; 8], limits: &Limits) -> MitCommand {
    let u = unpack_mit(data);
    MitCommand {
        q: uint_to_float(u.q, -limits.pmax, limits.pmax, 16),
        dq: uint_to_float(u.dq, -limits.vmax, limits.vmax, 12),
        kp: uint_to_float(u.kp, 0.0, KP_MAX, 12),
        kd: uint_to_float(u.kd, 0.0, KD_MAX, 12),
        tau: uint_to_float(u.tau, -limits.tmax, limits.tmax, 12),
    }
}

fn f32_le(value: f64) -> [u8; 4] {
    (value as f32).to_le_bytes()
}

fn f32_at(data: &[u8; 8], offset: usize) -> f32 {
    let mut b = [0u8; 4];
    if let Some(src) = data.get(offset..offset + 4) {
        b.copy_from_slice(src);
    }
    f32::from_le_bytes(b)
}

/// POS_VEL payload (CAN id 0x100 + ESC_ID): f32 LE position (rad), f32 LE speed limit (rad/s).
pub fn encode_pos_vel(position: f64, velocity_limit: f64) -> Result<[u8; 8]> {
    let p = f32_le(finite("position", position)?);
    let v = f32_le(finite("velocity_limit", velocity_limit)?);
    Ok([p[0], p[1], p[2], p[3], v[0], v[1], v[2], v[3]])
}

pub fn decode_pos_vel(data: &[u8; 8]) -> (f32, f32) {
    (f32_at(data, 0), f32_at(data, 4))
}

/// VEL payload (CAN id 0x200 + ESC_ID): f32 LE velocity, then four zero bytes (DLC stays 8).
pub fn encode_vel(velocity: f64) -> Result<[u8; 8]> {
    let v = f32_le(finite("velocity", velocity)?);
    Ok([v[0], v[1], v[2], v[3], 0, 0, 0, 0])
}

pub fn decode_vel(data: &[u8; 8]) -> f32 {
    f32_at(data, 0)
}

/// Full scale of the POS_FORCE speed (×100 rad/s) and current (per-unit ×10000) fields.
pub const POS_FORCE_FIELD_MAX: i64 = 10_000;

/// POS_FORCE payload (CAN id 0x300 + ESC_ID): f32 LE position, u16 LE speed limit ×100, u16 LE
/// current limit per-unit ×10000. Both integer fields are clamped to 0..=10000.
pub fn encode_pos_force(position: f64, velocity_raw: i64, current_raw: i64) -> Result<[u8; 8]> {
    let p = f32_le(finite("position", position)?);
    let v = (velocity_raw.clamp(0, POS_FORCE_FIELD_MAX) as u16).to_le_bytes();
    let c = (current_raw.clamp(0, POS_FORCE_FIELD_MAX) as u16).to_le_bytes();
    Ok([p[0], p[1], p[2], p[3], v[0], v[1], c[0], c[1]])
}

pub fn decode_pos_force(data: &[u8; 8]) -> (f32, u16, u16) {
    (
        f32_at(data, 0),
        u16::from_le_bytes([data[4], data[5]]),
        u16::from_le_bytes([data[6], data[7]]),
    )
}

// ---------------------------------------------------------------------------------------------
// B.7 Special commands
// ---------------------------------------------------------------------------------------------

/// `FF×7 cmd` commands sent to ESC_ID; the motor answers each with a state frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialCommand {
    Enable = 0xFC,
    Disable = 0xFD,
    SetZero = 0xFE,
    ClearError = 0xFB,
}

impl SpecialCommand {
    pub fn payload(self) -> [u8; 8] {
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, self as u8]
    }

    /// Recognises a special-command payload (used by the simulator).
    pub fn from_payload(data: &[u8; 8]) -> Option<Self> {
        if data[..7].iter().any(|b| *b != 0xFF) {
            return None;
        }
        Some(match data[7] {
            0xFC => Self::Enable,
            0xFD => Self::Disable,
            0xFE => Self::SetZero,
            0xFB => Self::ClearError,
            _ => return None,
        })
    }
}

/// CAN id of the legacy-firmware enable: ((mode − 1) << 2) + ESC_ID.
pub fn legacy_enable_can_id(esc_id: u16, mode: ControlMode) -> u32 {
    ((mode.register_value() - 1) << 2) + u32::from(esc_id)
}

// ---------------------------------------------------------------------------------------------
// B.8 Register service
// ---------------------------------------------------------------------------------------------

/// Operation byte (D2) of a register-service frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOp {
    Read = 0x33,
    Write = 0x55,
    Save = 0xAA,
    Refresh = 0xCC,
}

impl RegisterOp {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x33 => Self::Read,
            0x55 => Self::Write,
            0xAA => Self::Save,
            0xCC => Self::Refresh,
            _ => return None,
        })
    }
}

/// Well-known register ids.
pub mod rid {
    pub const MST_ID: u8 = 7;
    pub const ESC_ID: u8 = 8;
    pub const TIMEOUT: u8 = 9;
    pub const CTRL_MODE: u8 = 10;
    pub const PMAX: u8 = 21;
    pub const VMAX: u8 = 22;
    pub const TMAX: u8 = 23;
    pub const KP_ASR: u8 = 25;
    pub const CAN_BR: u8 = 35;
    pub const M_OFF: u8 = 54;
}

/// RIDs 7–10, 13–16 and 35–36 hold u32 values; all others hold f32.
pub fn register_is_u32(rid: u8) -> bool {
    matches!(rid, 7..=10 | 13..=16 | 35..=36)
}

/// A register value with the type the register holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegisterValue {
    U32(u32),
    F32(f32),
}

impl RegisterValue {
    /// Types a number for register `rid`: u32 registers need an integer in range.
    pub fn for_register(rid: u8, value: f64) -> Result<Self> {
        if register_is_u32(rid) {
            if value.is_finite()
                && value.fract() == 0.0
                && (0.0..=f64::from(u32::MAX)).contains(&value)
            {
                Ok(Self::U32(value as u32))
            } else {
                Err(DamiaoProtocolError::BadRegisterValue { rid, value })
            }
        } else {
            Ok(Self::F32(finite("register value", value)? as f32))
        }
    }

    pub fn from_le_bytes(rid: u8, bytes: [u8; 4]) -> Self {
        if register_is_u32(rid) {
            Self::U32(u32::from_le_bytes(bytes))
        } else {
            Self::F32(f32::from_le_bytes(bytes))
        }
    }

    pub fn to_le_bytes(self) -> [u8; 4] {
        match self {
            Self::U32(v) => v.to_le_bytes(),
            Self::F32(v) => v.to_le_bytes(),
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Self::U32(v) => f64::from(v),
            Self::F32(v) => f64::from(v),
        }
    }
}

fn register_frame(esc_id: u16, op: RegisterOp, rid: u8, value: [u8; 4]) -> [u8; 8] {
    let id = esc_id.to_le_bytes();
    [
        id[0], id[1], op as u8, rid, value[0], value[1], value[2], value[3],
    ]
}

/// Register read request (CAN id 0x7FF).
pub fn encode_register_read(esc_id: u16, rid: u8) -> [u8; 8] {
    register_frame(esc_id, RegisterOp::Read, rid, [0; 4])
}

/// Register write request (CAN id 0x7FF); the value's type must suit the register
/// (see [`RegisterValue::for_register`]).
pub fn encode_register_write(esc_id: u16, rid: u8, value: RegisterValue) -> [u8; 8] {
    register_frame(esc_id, RegisterOp::Write, rid, value.to_le_bytes())
}

/// Save-all-registers-to-flash request (CAN id 0x7FF). The motor must be disabled.
pub fn encode_register_save(esc_id: u16) -> [u8; 8] {
    register_frame(esc_id, RegisterOp::Save, 0, [0; 4])
}

/// Refresh request (CAN id 0x7FF): the motor answers with a state frame.
pub fn encode_refresh(esc_id: u16) -> [u8; 8] {
    register_frame(esc_id, RegisterOp::Refresh, 0, [0; 4])
}

/// A register reply (or, seen from the motor side, a register request).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegisterFrame {
    pub esc_id: u16,
    pub op: RegisterOp,
    pub rid: u8,
    pub value: RegisterValue,
}

/// Decodes a register-service payload. Any of the four ops is accepted; a reply from a motor
/// carries 0x33 or 0x55.
pub fn decode_register_frame(data: &[u8; 8]) -> Result<RegisterFrame> {
    let Some(op) = RegisterOp::from_byte(data[2]) else {
        return Err(DamiaoProtocolError::NotARegisterReply { op: data[2] });
    };
    let rid = data[3];
    Ok(RegisterFrame {
        esc_id: u16::from_le_bytes([data[0], data[1]]),
        op,
        rid,
        value: RegisterValue::from_le_bytes(rid, [data[4], data[5], data[6], data[7]]),
    })
}

/// Builds a register reply as a motor sends it (simulator side).
pub fn encode_register_reply(
    esc_id: u16,
    op: RegisterOp,
    rid: u8,
    value: RegisterValue,
) -> [u8; 8] {
    register_frame(esc_id, op, rid, value.to_le_bytes())
}

// ---------------------------------------------------------------------------------------------
// B.9 Feedback
// ---------------------------------------------------------------------------------------------

/// The state nibble (high nibble of D0) of a feedback frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MotorState {
    Disabled,
    Enabled,
    OverVoltage,
    UnderVoltage,
    OverCurrent,
    MosOverTemperature,
    RotorOverTemperature,
    LostCommunication,
    Overload,
    /// A nibble no documentation names.
    Unknown(u8),
}

impl MotorState {
    pub fn from_nibble(n: u8) -> Self {
        match n & 0xF {
            0x0 => Self::Disabled,
            0x1 => Self::Enabled,
            0x8 => Self::OverVoltage,
            0x9 => Self::UnderVoltage,
            0xA => Self::OverCurrent,
            0xB => Self::MosOverTemperature,
            0xC => Self::RotorOverTemperature,
            0xD => Self::LostCommunication,
            0xE => Self::Overload,
            other => Self::Unknown(other),
        }
    }

    pub fn nibble(self) -> u8 {
        match self {
            Self::Disabled => 0x0,
            Self::Enabled => 0x1,
            Self::OverVoltage => 0x8,
            Self::UnderVoltage => 0x9,
            Self::OverCurrent => 0xA,
            Self::MosOverTemperature => 0xB,
            Self::RotorOverTemperature => 0xC,
            Self::LostCommunication => 0xD,
            Self::Overload => 0xE,
            Self::Unknown(n) => n & 0xF,
        }
    }

    /// True for the error states (the motor has disabled itself; clear-error needed).
    pub fn is_fault(self) -> bool {
        !matches!(self, Self::Disabled | Self::Enabled)
    }

    /// Every named state, in nibble order.
    pub const NAMED: [MotorState; 9] = [
        Self::Disabled,
        Self::Enabled,
        Self::OverVoltage,
        Self::UnderVoltage,
        Self::OverCurrent,
        Self::MosOverTemperature,
        Self::RotorOverTemperature,
        Self::LostCommunication,
        Self::Overload,
    ];

    /// The state's one name, used in messages, by the bindings and in Python (snake_case).
    /// An undocumented nibble is `unknown` here and `unknown_0x<n>` when displayed.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
            Self::OverVoltage => "over_voltage",
            Self::UnderVoltage => "under_voltage",
            Self::OverCurrent => "over_current",
            Self::MosOverTemperature => "mos_over_temperature",
            Self::RotorOverTemperature => "rotor_over_temperature",
            Self::LostCommunication => "lost_communication",
            Self::Overload => "overload",
            Self::Unknown(_) => "unknown",
        }
    }

    /// The named state called `name` (see [`MotorState::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for MotorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(n) => write!(f, "unknown_0x{n:x}"),
            other => f.write_str(other.name()),
        }
    }
}

/// A decoded feedback (state) frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    /// Low nibble of the sender's ESC_ID.
    pub id_nibble: u8,
    pub state: MotorState,
    /// Position (rad), velocity (rad/s), torque (N·m), decoded in f64.
    pub q: f64,
    pub dq: f64,
    pub tau: f64,
    /// MOS (driver) and rotor temperatures, °C.
    pub t_mos: u8,
    pub t_rotor: u8,
}

impl Default for Feedback {
    /// A disabled motor at rest: the value a feedback buffer starts with.
    fn default() -> Self {
        Self {
            id_nibble: 0,
            state: MotorState::Disabled,
            q: 0.0,
            dq: 0.0,
            tau: 0.0,
            t_mos: 0,
            t_rotor: 0,
        }
    }
}

/// Raw integer fields of a feedback frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackUints {
    pub id_nibble: u8,
    pub state: u8,
    pub q: u16,
    pub dq: u16,
    pub tau: u16,
    pub t_mos: u8,
    pub t_rotor: u8,
}

pub fn unpack_feedback(data: &[u8; 8]) -> FeedbackUints {
    let [d0, d1, d2, d3, d4, d5, d6, d7] = *data;
    FeedbackUints {
        id_nibble: d0 & 0xF,
        state: d0 >> 4,
        q: (u16::from(d1) << 8) | u16::from(d2),
        dq: (u16::from(d3) << 4) | u16::from(d4 >> 4),
        tau: (u16::from(d4 & 0xF) << 8) | u16::from(d5),
        t_mos: d6,
        t_rotor: d7,
    }
}

pub fn pack_feedback(u: &FeedbackUints) -> [u8; 8] {
    [
        ((u.state & 0xF) << 4) | (u.id_nibble & 0xF),
        (u.q >> 8) as u8,
        (u.q & 0xFF) as u8,
        ((u.dq >> 4) & 0xFF) as u8,
        (((u.dq & 0xF) << 4) | ((u.tau >> 8) & 0xF)) as u8,
        (u.tau & 0xFF) as u8,
        u.t_mos,
        u.t_rotor,
    ]
}

/// Decodes a feedback frame with the sender's mapping limits.
pub fn decode_feedback(data: &[u8; 8], limits: &Limits) -> Feedback {
    let u = unpack_feedback(data);
    Feedback {
        id_nibble: u.id_nibble,
        state: MotorState::from_nibble(u.state),
        q: uint_to_float(u.q, -limits.pmax, limits.pmax, 16),
        dq: uint_to_float(u.dq, -limits.vmax, limits.vmax, 12),
        tau: uint_to_float(u.tau, -limits.tmax, limits.tmax, 12),
        t_mos: u.t_mos,
        t_rotor: u.t_rotor,
    }
}

/// Encodes a feedback frame (simulator side). Non-finite values saturate like clamping does.
pub fn encode_feedback(fb: &Feedback, limits: &Limits) -> [u8; 8] {
    let sane = |v: f64| if v.is_nan() { 0.0 } else { v };
    pack_feedback(&FeedbackUints {
        id_nibble: fb.id_nibble,
        state: fb.state.nibble(),
        q: float_to_uint(sane(fb.q), -limits.pmax, limits.pmax, 16),
        dq: float_to_uint(sane(fb.dq), -limits.vmax, limits.vmax, 12),
        tau: float_to_uint(sane(fb.tau), -limits.tmax, limits.tmax, 12),
        t_mos: fb.t_mos,
        t_rotor: fb.t_rotor,
    })
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

/// The ids of one motor on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotorIds {
    /// Id the motor listens on (RID 8).
    pub esc_id: u16,
    /// Id the motor sends with (RID 7); 0 is allowed.
    pub mst_id: u16,
}

/// Routes incoming frames to motors by `(CAN id, ESC_ID)` — never by CAN id alone, so several
/// motors may share one MST_ID (OpenK's configs give all five 0x15).
///
/// State frames carry only the low nibble of ESC_ID, so two motors sharing an MST_ID must
/// differ in that nibble; [`MotorRouter::new`] enforces it.
#[derive(Debug, Clone, Default)]
pub struct MotorRouter {
    motors: Vec<MotorIds>,
}

/// Two motors that could not be told apart on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousMotors {
    pub first: usize,
    pub second: usize,
}

impl MotorRouter {
    pub fn new(motors: &[MotorIds]) -> std::result::Result<Self, AmbiguousMotors> {
        for (i, a) in motors.iter().enumerate() {
            for (j, b) in motors.iter().enumerate().skip(i + 1) {
                let same_esc = a.esc_id == b.esc_id;
                let same_nibble_same_master =
                    a.mst_id == b.mst_id && (a.esc_id & 0xF) == (b.esc_id & 0xF);
                if same_esc || same_nibble_same_master {
                    return Err(AmbiguousMotors {
                        first: i,
                        second: j,
                    });
                }
            }
        }
        Ok(Self {
            motors: motors.to_vec(),
        })
    }

    pub fn motors(&self) -> &[MotorIds] {
        &self.motors
    }

    /// Index of the motor a state frame came from. A CAN id of 0 means the motor's MST_ID
    /// register is 0 whatever the host configured, so it falls back to the nibble alone when
    /// that nibble is unique.
    pub fn route_state(&self, can_id: u32, data: &[u8; 8]) -> Option<usize> {
        let nibble = u16::from(data[0] & 0xF);
        let exact = self
            .motors
            .iter()
            .position(|m| u32::from(m.mst_id) == can_id && (m.esc_id & 0xF) == nibble);
        if exact.is_some() || can_id != 0 {
            return exact;
        }
        let mut found = None;
        for (i, m) in self.motors.iter().enumerate() {
            if (m.esc_id & 0xF) == nibble {
                if found.is_some() {
                    return None;
                }
                found = Some(i);
            }
        }
        found
    }

    /// Index of the motor a register reply came from: the full ESC_ID is in D0–D1. The CAN id
    /// must be the motor's MST_ID, or 0 (an unset MST_ID register).
    pub fn route_register(&self, can_id: u32, data: &[u8; 8]) -> Option<usize> {
        let esc = u16::from_le_bytes([data[0], data[1]]);
        self.motors
            .iter()
            .position(|m| m.esc_id == esc && (u32::from(m.mst_id) == can_id || can_id == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openk_default_mit_payload() {
        let lim = MotorModel::DM4310.default_limits();
        let cmd = MitCommand {
            kp: 20.0,
            kd: 1.0,
            ..Default::default()
        };
        assert_eq!(
            encode_mit(&cmd, &lim).unwrap(),
            [0x7f, 0xff, 0x7f, 0xf0, 0xa3, 0x33, 0x37, 0xff]
        );
    }

    #[test]
    fn nan_is_rejected() {
        let lim = MotorModel::DM4310.default_limits();
        let cmd = MitCommand {
            q: f64::NAN,
            ..Default::default()
        };
        assert!(matches!(
            encode_mit(&cmd, &lim),
            Err(DamiaoProtocolError::NonFinite { field: "q", .. })
        ));
    }

    #[test]
    fn stream_decoder_bounded_on_garbage() {
        let mut dec = AdapterStreamDecoder::new();
        for _ in 0..100 {
            dec.push(&[0xAA; 64]);
            assert!(dec.next_frame().is_none());
            assert!(dec.pending_len() < ADAPTER_FRAME_LEN);
        }
        assert!(dec.skipped_bytes() > 6000);
    }

    #[test]
    fn model_names() {
        assert_eq!(
            MotorModel::from_name("DM-J4310").unwrap(),
            MotorModel::DM4310
        );
        assert_eq!(MotorModel::from_name("dm6006").unwrap(), MotorModel::DM6006);
        assert!(MotorModel::from_name("DM9999").is_err());
    }
}
