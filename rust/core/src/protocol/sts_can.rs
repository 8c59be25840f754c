//! OpenK's STS-over-CAN bridge (spec §C.7), used by the legacy `openk-1-alpha_follower` for its
//! two STS3215 servos. Standard 30-byte adapter frames go to the bridge node's CAN id
//! (default 0xFF00); payloads are big-endian.
//!
//! | direction | payload |
//! |---|---|
//! | write | `id_hi id_lo pos_hi pos_lo 00 FF 00 00` |
//! | read request | `id_hi id_lo 00 00 FF 00 00 00` |
//! | reply (CMD 0x11, CAN id = bridge id) | `id_hi id_lo pos_hi pos_lo …` |

use super::damiao::{AdapterCmd, AdapterFrame};

pub use super::damiao::STS_BRIDGE_CAN_ID as DEFAULT_CONTROLLER_ID;

/// Largest STS3215 position step (12-bit encoder).
pub const MAX_POSITION: u16 = 4095;

/// What a host frame to the bridge asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeRequest {
    WritePosition { motor_id: u16, position: u16 },
    ReadPosition { motor_id: u16 },
}

/// Goal-position write. Positions outside 0..=4095 are clamped (the bridge forwards them to
/// a 12-bit servo).
pub fn encode_write_position(motor_id: u16, position: i64) -> [u8; 8] {
    let id = motor_id.to_be_bytes();
    let pos = (position.clamp(0, i64::from(MAX_POSITION)) as u16).to_be_bytes();
    [id[0], id[1], pos[0], pos[1], 0x00, 0xFF, 0x00, 0x00]
}

/// Present-position read request.
pub fn encode_read_request(motor_id: u16) -> [u8; 8] {
    let id = motor_id.to_be_bytes();
    [id[0], id[1], 0x00, 0x00, 0xFF, 0x00, 0x00, 0x00]
}

/// Classifies a payload sent to the bridge (simulator side). The marker byte tells them
/// apart: D5 = 0xFF for a write, D4 = 0xFF for a read.
pub fn decode_request(data: &[u8; 8]) -> Option<BridgeRequest> {
    let motor_id = u16::from_be_bytes([data[0], data[1]]);
    match (data[4], data[5]) {
        (0x00, 0xFF) => Some(BridgeRequest::WritePosition {
            motor_id,
            position: u16::from_be_bytes([data[2], data[3]]),
        }),
        (0xFF, 0x00) => Some(BridgeRequest::ReadPosition { motor_id }),
        _ => None,
    }
}

/// A position reported by the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionReply {
    pub motor_id: u16,
    pub position: u16,
}

/// Payload of the bridge's position reply.
pub fn encode_reply(motor_id: u16, position: u16) -> [u8; 8] {
    let id = motor_id.to_be_bytes();
    let pos = position.to_be_bytes();
    [id[0], id[1], pos[0], pos[1], 0, 0, 0, 0]
}

/// Decodes a bridge reply: a received frame whose CAN id (low 16 bits) is the controller id.
pub fn decode_reply(frame: &AdapterFrame, controller_id: u32) -> Option<PositionReply> {
    if frame.cmd != AdapterCmd::Received || (frame.can_id & 0xFFFF) != (controller_id & 0xFFFF) {
        return None;
    }
    Some(PositionReply {
        motor_id: u16::from_be_bytes([frame.data[0], frame.data[1]]),
        position: u16::from_be_bytes([frame.data[2], frame.data[3]]),
    })
}
