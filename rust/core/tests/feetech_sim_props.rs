//! The STS3215 simulator never panics, whatever a client sends it, and stays consistent.

use std::time::{Duration, Instant};

use openk_core::protocol::feetech::{self as ft, Instruction, PacketParser};
use openk_core::sim::feetech::{FeetechBusDevice, FeetechSimConfig};
use openk_core::sim::pty::{Replies, SimDevice};
use proptest::prelude::*;

fn instruction() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(Instruction::Ping as u8),
        Just(Instruction::Read as u8),
        Just(Instruction::Write as u8),
        Just(Instruction::RegWrite as u8),
        Just(Instruction::Action as u8),
        Just(Instruction::Reset as u8),
        Just(Instruction::Ofscal as u8),
        Just(Instruction::SyncRead as u8),
        Just(Instruction::SyncWrite as u8),
        any::<u8>(),
    ]
}

proptest! {
    #[test]
    fn any_traffic_is_answered_with_valid_packets_or_not_at_all(
        noise in prop::collection::vec(any::<u8>(), 0..200),
        packets in prop::collection::vec(
            (prop_oneof![1u8..=3, Just(ft::BROADCAST_ID), any::<u8>()], instruction(),
             prop::collection::vec(any::<u8>(), 0..40)),
            0..12),
        dt_ms in 0u64..3000,
    ) {
        let mut d = FeetechBusDevice::new(&FeetechSimConfig::new(&[1, 2, 3])).unwrap();
        let t0 = Instant::now();
        let mut replies = Replies::default();
        d.on_receive(&noise, t0, &mut replies);
        for (i, (id, code, params)) in packets.iter().enumerate() {
            // Encoded by hand so that unknown instruction codes reach the device too.
            let mut pkt = vec![0xff, 0xff, *id, params.len() as u8 + 2, *code];
            pkt.extend_from_slice(params);
            pkt.push(ft::checksum(&pkt[2..]));
            let now = t0 + Duration::from_millis(dt_ms * i as u64 / 4);
            d.on_receive(&pkt, now, &mut replies);
        }
        let mut parser = PacketParser::for_status();
        for (_, bytes) in replies.take() {
            parser.push(&bytes);
            // Every reply is one well-formed status packet.
            let pkt = parser.next().unwrap().unwrap();
            prop_assert!(pkt.id <= ft::MAX_ID);
            prop_assert!(parser.next().is_none());
        }
        for id in d.ids() {
            let p = d.read_register(id, "Present_Position", t0 + Duration::from_secs(10));
            prop_assert!(p.is_some());
        }
    }
}
