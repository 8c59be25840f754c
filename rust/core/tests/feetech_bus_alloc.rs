//! The control loop calls sync_read / sync_write at 500 Hz+: after construction they must not
//! allocate. A counting allocator tallies allocations made by this test's thread only (the
//! simulator thread allocates freely).

use std::time::Duration;

use openk_core::bus::feetech::BusConfig;
use openk_core::control::testing::{feetech_sim_bus, numbered_motors};
use openk_core::protocol::feetech as ft;

mod common;

use common::counting_alloc::{allocations_on_this_thread as allocs, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn sync_read_and_sync_write_do_not_allocate() {
    let ids: Vec<u8> = (1..=7).collect();
    let config = BusConfig {
        timeout: Duration::from_millis(100),
        ..BusConfig::default()
    };
    let (_sim, mut bus) = feetech_sim_bus(numbered_motors(&ids), config);
    let present = ft::register("Present_Position").unwrap();
    let goal = ft::register("Goal_Position").unwrap();
    let mut pos = [0i64; 7];
    let goals = [2000i64, 2010, 2020, 2030, 2040, 2050, 2060];
    // Warm-up (first use may size buffers).
    bus.sync_read_ids(present, &ids, &mut pos).unwrap();
    bus.sync_write_ids(goal, &ids, &goals).unwrap();

    let before = allocs();
    for _ in 0..50 {
        bus.sync_read_ids(present, &ids, &mut pos).unwrap();
        bus.sync_write_ids(goal, &ids, &goals).unwrap();
        bus.sync_read("Present_Position", &mut pos).unwrap();
        bus.sync_write("Goal_Position", &goals).unwrap();
    }
    assert_eq!(allocs() - before, 0);
}
