//! Every capture in `../shared/corpus/` (all protocols) goes through the pipeline without a
//! panic, and the pipeline's buffers stay within their caps while it does.

mod common;

use pipeline::Pipeline;

#[test]
fn every_corpus_file_is_processed_with_bounded_memory() {
    let Some(corpus) = common::corpus() else {
        common::skip("../shared/corpus is absent: corpus robustness test not run");
        return;
    };
    let files = common::captures_under(&corpus);
    assert!(files.len() > 80, "only {} captures found", files.len());
    let cfg = pipeline::Config::default();
    let cap = cfg.flow.max_ooo_total + cfg.defrag.max_bytes;
    for f in &files {
        let mut pipe = Pipeline::new(cfg.clone());
        let mut out = Vec::new();
        let mut peak = 0;
        let res = pipeline::source::read_file(f, |fr| {
            pipe.packet(fr.link, fr.ts, fr.data, fr.orig_len, &mut out);
            peak = peak.max(pipe.buffered_bytes());
            out.clear();
        });
        assert!(res.is_ok(), "{}: {:?}", f.display(), res.err());
        pipe.finish(&mut out);
        assert!(peak <= cap, "{}: {peak} bytes buffered", f.display());
        assert_eq!(
            pipe.buffered_bytes(),
            0,
            "{}: buffers not released",
            f.display()
        );
    }
}
