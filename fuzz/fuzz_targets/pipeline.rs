#![no_main]
// The whole pipeline on an arbitrary capture file: source, decode, defrag, flows, reassembly,
// detection and every dissector. Buffers must be released at the end.
use libfuzzer_sys::fuzz_target;
use pipeline::Pipeline;

fuzz_target!(|data: &[u8]| {
    let mut pipe = Pipeline::default();
    let mut out = Vec::new();
    let _ = pipeline::source::read(data, std::path::Path::new("fuzz"), |f| {
        pipe.packet(f.link, f.ts, f.data, f.orig_len, &mut out);
        out.clear();
    });
    pipe.finish(&mut out);
    assert_eq!(pipe.buffered_bytes(), 0);
});
