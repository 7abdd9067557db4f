#![no_main]
// Kafka dissector on arbitrary bytes (the kafka-protocol decoders included), fed in pieces
// from both directions with a gap.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::kafka::KafkaDissector;
use schemas::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut d = KafkaDissector::new();
    common::drive(&mut d, Transport::Tcp, data);
});
