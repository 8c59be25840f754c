//! Codec throughput benchmarks (criterion): `cargo bench -p openk-core --bench codec`.
//!
//! One function per protocol; add yours to `criterion_group!` at the bottom.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use openk_core::protocol::damiao::{
    decode_feedback, encode_host_frame, encode_mit, AdapterFrame, AdapterStreamDecoder, MitCommand,
    MotorModel,
};
use openk_core::protocol::feetech::{self as ft, ByteOrder, PacketParser, SyncWriteBuilder};

/// Feetech STS3215: the packets of one teleop tick (7-motor sync read + sync write).
fn feetech(c: &mut Criterion) {
    let ids = [1u8, 2, 3, 4, 5, 6, 7];
    let goal = ft::register("Goal_Position").unwrap();
    let present = ft::register("Present_Position").unwrap();
    let goals = [2048i64, 1990, 2100, -3000, 1024, 512, 4000];

    let mut g = c.benchmark_group("feetech");
    let mut out = Vec::with_capacity(64);

    g.bench_function("encode_sync_read_7", |b| {
        b.iter(|| {
            ft::encode_sync_read(&mut out, present.address, present.size, black_box(&ids)).unwrap();
            black_box(out.len())
        })
    });

    g.bench_function("encode_sync_write_7_goal", |b| {
        b.iter(|| {
            let mut w = SyncWriteBuilder::begin(&mut out, goal.address, goal.size);
            for (id, v) in ids.iter().zip(black_box(&goals)) {
                w.push_value(*id, goal.encode(*v).unwrap(), ByteOrder::Little)
                    .unwrap();
            }
            w.finish().unwrap();
            black_box(out.len())
        })
    });

    // The 7 status packets of a sync-read reply (56 bytes), as the bus parses them.
    let mut reply = Vec::new();
    let mut pkt = Vec::new();
    for (id, v) in ids.iter().zip([2048u16, 1990, 2100, 3000, 1024, 512, 4000]) {
        ft::encode_status(&mut pkt, *id, ft::StatusFlags(0), &v.to_le_bytes()).unwrap();
        reply.extend_from_slice(&pkt);
    }
    let mut parser = PacketParser::for_status();
    g.throughput(Throughput::Bytes(reply.len() as u64));
    g.bench_function("decode_sync_read_reply_7", |b| {
        b.iter(|| {
            parser.push(black_box(&reply));
            let mut sum = 0i64;
            while let Some(Ok(p)) = parser.next() {
                sum += present.decode(ByteOrder::Little.get(p.params()));
            }
            black_box(sum)
        })
    });

    // Worst case for the resync: the reply behind 64 bytes of line noise.
    let mut noisy: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) | 0x01).collect();
    noisy.extend_from_slice(&reply);
    g.throughput(Throughput::Bytes(noisy.len() as u64));
    g.bench_function("decode_with_64B_garbage", |b| {
        b.iter(|| {
            parser.push(black_box(&noisy));
            let mut n = 0;
            while let Some(r) = parser.next() {
                n += usize::from(r.is_ok());
            }
            black_box(n)
        })
    });
    g.finish();
}

/// DAMIAO: what one 5-motor MIT tick costs the CPU, excluding I/O.
fn damiao(c: &mut Criterion) {
    let limits = MotorModel::DM4310.default_limits();
    let cmd = MitCommand {
        q: 0.3,
        dq: 0.1,
        kp: 20.0,
        kd: 1.0,
        tau: 0.05,
    };
    let mut g = c.benchmark_group("damiao");
    g.bench_function("encode_mit_host_frame", |b| {
        b.iter(|| {
            let payload = encode_mit(black_box(&cmd), &limits).unwrap_or_default();
            encode_host_frame(black_box(3), &payload)
        })
    });
    let reply =
        AdapterFrame::received(0x13, [0x13, 0x90, 0x00, 0x80, 0x07, 0xff, 0x20, 0x20]).encode();
    let stream: Vec<u8> = reply
        .iter()
        .copied()
        .cycle()
        .take(reply.len() * 5)
        .collect();
    g.bench_function("decode_5_feedback_frames", |b| {
        let mut dec = AdapterStreamDecoder::new();
        b.iter(|| {
            dec.push(black_box(&stream));
            let mut q = 0.0;
            while let Some(frame) = dec.next_frame() {
                q += decode_feedback(&frame.data, &limits).q;
            }
            q
        })
    });
    g.finish();
}

criterion_group!(benches, feetech, damiao);
criterion_main!(benches);
