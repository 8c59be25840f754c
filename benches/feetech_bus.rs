//! Bus round trips on the STS3215 simulator with real wire timing (1 Mbaud, 10 bit/byte):
//! `cargo bench -p openk-core --bench feetech_bus`.
//!
//! Wire-time floor (motor-protocols.md §E): sync read of Present_Position from 7 servos =
//! 15 bytes out + 7 × 8 back = 710 µs; from 2 servos = 260 µs; a sync write of 7 goals =
//! 290 µs. Anything above the floor is pty hop, scheduling and our own overhead. The peer
//! comparison (feetech-servo-sdk on the same simulator) is benches/feetech_sdk_ratio.py.
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use openk_core::bus::feetech::BusConfig;
use openk_core::control::testing::{feetech_sim_bus, numbered_motors};
use openk_core::protocol::feetech as ft;

fn bus_round_trip(c: &mut Criterion) {
    let ids: Vec<u8> = (1..=7).collect();
    let config = BusConfig {
        timeout: Duration::from_millis(20),
        ..BusConfig::default()
    };
    let (sim, mut bus) = feetech_sim_bus(numbered_motors(&ids), config);
    let present = ft::register("Present_Position").unwrap();
    let goal = ft::register("Goal_Position").unwrap();
    let mut pos = [0i64; 7];
    let goals = [2048i64; 7];
    eprintln!(
        "feetech_bus: wire-time floor at 1 Mbaud: sync_read 7 = 710 us, sync_read 2 = 260 us, \
         sync_write 7 + sync_read 7 = 1000 us"
    );

    let mut g = c.benchmark_group("feetech_bus_1mbaud");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("sync_read_7_present_position (floor 710us)", |b| {
        b.iter(|| bus.sync_read_ids(present, &ids, &mut pos).unwrap())
    });
    g.bench_function("sync_read_2_present_position (floor 260us)", |b| {
        b.iter(|| bus.sync_read_ids(present, &ids[..2], &mut pos).unwrap())
    });
    g.bench_function("tick_sync_write_7_then_sync_read_7 (floor 1000us)", |b| {
        b.iter(|| {
            bus.sync_write_ids(goal, &ids, &goals).unwrap();
            bus.sync_read_ids(present, &ids, &mut pos).unwrap()
        })
    });
    g.finish();
    let stats = sim.stats();
    eprintln!(
        "feetech_bus: simulator saw {} requests, sent {} replies",
        stats.chunks_received, stats.replies_sent
    );
}

criterion_group!(benches, bus_round_trip);
criterion_main!(benches);
