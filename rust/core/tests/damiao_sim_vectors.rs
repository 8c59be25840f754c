//! The adapter simulator answers the golden vectors' requests with the reference's exact reply
//! bytes (register service, STS-over-CAN bridge), seen through a raw serial client.

use std::time::{Duration, Instant};

use openk_core::protocol::damiao::{AdapterStreamDecoder, MotorModel};
use openk_core::sim::damiao::{DamiaoSim, DamiaoSimConfig, SimMotorConfig};
use openk_core::transport::SerialTransport;

mod common;

use common::vectors::{hex, load as vectors};

/// Writes `request` and returns the first complete adapter frame that comes back.
fn exchange(port: &mut SerialTransport, request: &[u8]) -> Vec<u8> {
    port.write_all(request).unwrap();
    let mut dec = AdapterStreamDecoder::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 64];
    loop {
        let n = port.read_some(&mut buf, deadline).unwrap();
        assert!(n > 0, "no reply to {request:02x?}");
        dec.push(&buf[..n]);
        if let Some(frame) = dec.next_frame() {
            return frame.encode().to_vec();
        }
    }
}

#[test]
fn register_replies_are_byte_exact() {
    let mut checked = 0;
    for v in vectors("damiao_vectors.json") {
        let kind = v["kind"].as_str().unwrap();
        if !kind.starts_with("register_") || v["id"] == "dm_reg_read_moff" {
            continue; // m_off is read-only; its vector needs a factory-calibrated motor
        }
        let motors = v["inputs"]["motors"].as_object().unwrap();
        let cfg = DamiaoSimConfig {
            motors: motors
                .iter()
                .map(|(name, m)| SimMotorConfig {
                    name: name.clone(),
                    model: MotorModel::from_name(m["type"].as_str().unwrap()).unwrap(),
                    esc_id: m["slave_id"].as_u64().unwrap() as u16,
                    mst_id: m["master_id"].as_u64().unwrap() as u16,
                })
                .collect(),
            ..DamiaoSimConfig::default()
        };
        let sim = DamiaoSim::start(cfg).unwrap();
        let mut port = SerialTransport::open(sim.port(), 921_600).unwrap();
        let request = hex(v["outputs"]["host_to_adapter_hex"][0].as_str().unwrap());
        let reply = exchange(&mut port, &request);
        assert_eq!(
            reply,
            hex(v["inputs"]["adapter_to_host_reply_hex"].as_str().unwrap()),
            "{}",
            v["id"]
        );
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn sts_bridge_reply_is_byte_exact() {
    let v = vectors("feetech_vectors.json")
        .into_iter()
        .find(|v| v["id"] == "stscan_read_position")
        .unwrap();
    let sim = DamiaoSim::start(DamiaoSimConfig::sts_bridge_only()).unwrap();
    let position = v["outputs"]["return_value"].as_u64().unwrap() as u16;
    assert!(sim.with_adapter(|a| a.set_servo_position(2, position)));
    let mut port = SerialTransport::open(sim.port(), 921_600).unwrap();
    let reply = exchange(
        &mut port,
        &hex(v["outputs"]["host_to_adapter_hex"].as_str().unwrap()),
    );
    assert_eq!(
        reply,
        hex(v["inputs"]["adapter_to_host_reply_hex"].as_str().unwrap())
    );
}
