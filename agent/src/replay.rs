//! `since=DURATION`: a new subscription first receives the exchanges dissected from the spool
//! for that window, then continues live, with no duplicate and no hole at the seam.
//!
//! The seam is the subscription's start `t0`, and every exchange belongs to one side of it by
//! its start time: the live side delivers only exchanges that started at or after `t0` (the
//! hub's `min_start`), the replay only those that started before. The replay dissects the
//! spool from `t0 - since` to the newest packet written, so an exchange that started before
//! `t0` and ended after it is still complete. It begins once the workers have flushed their
//! segments past `t0` ([`FLUSH_WAIT`]); meanwhile the live events wait in the subscriber's
//! queue, which is delivered after the replay.
//!
//! The TLS plaintext source's records (`spool::plaintext`) are fed back as the streams they
//! were, so decrypted exchanges replay with `tls.established` and `process.*`.
//!
//! Limits: an exchange still open when the replay reaches the newest spooled packet is
//! reported as it stands (`incomplete` or `no_response`); the replay sees what the spool
//! kept (its caps may have deleted the start of the window).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use pipeline::Pipeline;
use pipeline::decode::LinkType;
use tokio::sync::mpsc;

use crate::filter::Filter;
use crate::spool::export::{Block, for_each};
use crate::spool::plaintext;

/// How long the replay waits for the workers' once-a-second flush.
pub const FLUSH_WAIT: Duration = Duration::from_millis(1_200);

/// What a replay applies to the exchanges it finds.
pub struct Options<'a> {
    pub filter: Option<&'a Filter>,
    pub enricher: Option<&'a crate::k8s::Enricher>,
    /// The workers' pipeline configuration (caps, redaction).
    pub pipeline: &'a pipeline::Config,
    /// CEL time per exchange; over it, the replay ends with a notice.
    pub budget: Duration,
    /// How long to wait for a subscriber that reads nothing.
    pub stall: Duration,
}

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every exchange of the window was sent; how many.
    Done(u64),
    /// The subscriber left.
    Gone,
    /// The subscriber read nothing for the stall time.
    Stalled,
    /// The filter overran its budget (the subscriber was told).
    FilterTooSlow,
}

/// Replay `[from, now]` of the spool into `tx`: exchanges that started before `t0` and that
/// the filter accepts.
pub fn replay(
    dir: &Path,
    from: u64,
    t0: u64,
    opts: &Options<'_>,
    tx: &mpsc::Sender<Bytes>,
) -> Outcome {
    std::thread::sleep(FLUSH_WAIT);
    let mut pipe = Pipeline::new(opts.pipeline.clone());
    let mut out = Vec::new();
    let mut links: Vec<Option<LinkType>> = Vec::new();
    let mut sent = 0u64;
    let mut ended = None;
    let mut send = |out: &mut Vec<schemas::Exchange>| -> Result<(), Outcome> {
        for mut ex in out.drain(..) {
            if ex.start_time_unix_nano >= t0 {
                continue;
            }
            if let Some(en) = opts.enricher {
                en.enrich(&mut ex);
            }
            match crate::demand::admit(opts.filter, &ex, opts.budget) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(slow) => {
                    let notice = crate::demand::too_slow_notice(slow, opts.budget);
                    let _ = crate::demand::send_within(tx, notice, opts.stall);
                    return Err(Outcome::FilterTooSlow);
                }
            }
            let Some(line) = sinks::json_line(&ex) else {
                continue;
            };
            crate::demand::send_within(tx, line, opts.stall).map_err(|why| {
                if why == "client gone" {
                    Outcome::Gone
                } else {
                    Outcome::Stalled
                }
            })?;
            sent += 1;
        }
        Ok(())
    };
    let walked = for_each(dir, from, u64::MAX, |b| {
        match b {
            Block::Section(_) => links.clear(),
            Block::Interface(_, lt) => links.push(LinkType::from_linktype(u32::from(lt))),
            Block::Packet {
                iface,
                ts,
                data,
                orig_len,
                comment,
                ..
            } => {
                // The TLS plaintext's records go back in as the streams they were.
                let record = comment.and_then(|c| plaintext::decode(data, c));
                if let Some(r) = record {
                    pipe.stream(&r.chunk(ts), &mut out);
                } else if let Some(Some(link)) = links.get(iface as usize) {
                    pipe.packet(*link, ts, data, orig_len, &mut out);
                }
                if let Err(o) = send(&mut out) {
                    ended = Some(o);
                    return Err(std::io::Error::other("replay ended"));
                }
            }
        }
        Ok(())
    });
    if let Some(o) = ended {
        return o;
    }
    if walked.is_ok() {
        pipe.finish(&mut out);
        if let Err(o) = send(&mut out) {
            return o;
        }
    }
    Outcome::Done(sent)
}
