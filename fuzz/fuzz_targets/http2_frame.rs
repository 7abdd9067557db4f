#![no_main]
// HTTP/2 frame views on arbitrary bytes: header parsing, the plausibility rules, boundary
// search, and the payload readers. Offsets they return must lie inside the input.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::http2::frame::{self, Header, Sync};

fuzz_target!(|data: &[u8]| {
    match frame::find_sync(data) {
        Sync::At(at) | Sync::NeedMore(at) => assert!(at <= data.len()),
        Sync::None => {}
    }
    if let Some(h) = Header::plausible(data, u32::MAX).or_else(|| Header::parse(data)) {
        let payload = &data[frame::HEADER_LEN..];
        let _ = frame::headers_fragment(&h, payload).map(|f| assert!(f.len() <= payload.len()));
        let _ = frame::push_promise(&h, payload);
        let _ = frame::unpad(&h, payload);
        let _ = frame::settings(payload).count();
        let _ = frame::u32_at(payload, usize::from(data[0]));
        let _ = frame::error_name(h.stream);
    }
});
