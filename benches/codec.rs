//! Codec throughput benchmarks (criterion). Filled in with the protocol codecs.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use openk_core::protocol::damiao::{
    decode_feedback, encode_host_frame, encode_mit, AdapterFrame, AdapterStreamDecoder, MitCommand,
    MotorModel,
};

fn placeholder(_c: &mut Criterion) {}

/// DAMIAO: what one 5-motor MIT tick costs the CPU, excluding I/O.
fn damiao_codec(c: &mut Criterion) {
    let limits = MotorModel::DM4310.default_limits();
    let cmd = MitCommand {
        q: 0.3,
        dq: 0.1,
        kp: 20.0,
        kd: 1.0,
        tau: 0.05,
    };
    c.bench_function("damiao/encode_mit_host_frame", |b| {
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
    c.bench_function("damiao/decode_5_feedback_frames", |b| {
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
}

criterion_group!(benches, placeholder);
criterion_group!(damiao, damiao_codec);
criterion_main!(benches, damiao);
