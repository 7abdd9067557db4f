//! `tapwire dissect --workers N`: one capture over N pipelines.
//!
//! The reading thread hashes each frame's flow (`pipeline::decode::shard_hash`, symmetric, so
//! both directions meet) and deals the frames out in rounds of at most [`ROUND_PACKETS`]
//! packets or [`ROUND_BYTES`] bytes: every worker gets its share of every round, possibly
//! empty. Each worker runs its own pipeline and renders its lines (filter, NDJSON or table),
//! each line tagged with the index of the packet that completed it. This thread takes the
//! rounds back in order, one from each worker, and writes them: worker by worker, or with
//! `--sort` merged by packet index, which is the order one worker prints. Exchanges still open
//! at the end come last: with `--sort` merged by their start time, without it worker by worker
//! as their flows close (in batches, so many open flows are not all built at once). The output
//! is the same on every run.
//!
//! Limits: [`QUEUE`] rounds wait per worker in each direction, so at most
//! `QUEUE × ROUND_BYTES` of frames (16 MiB, plus their lines) are in flight; a slow stdout slows
//! the workers, which slow the reader. The flow caps (`max_flows`, `--memory-budget`) are
//! shared: each worker gets its part. TLS plaintext records (their pcapng comment says so)
//! all go to the first worker, which keeps each stream in order.
//!
//! What differs from one worker: Kafka topic ids learned from a Metadata response on one
//! connection name the Fetches of another; when the two connections are in different workers,
//! a Fetch can be read before the Metadata that names its topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use pipeline::decode::{LinkType, shard_hash};
use pipeline::{Pipeline, Stats};

use super::{Done, FINISH_BATCH, Output, Render, feed, read_file, report, sort_finished};
use crate::cli::DissectArgs;
use crate::spool::plaintext;

/// Packets per round (all workers together).
const ROUND_PACKETS: usize = 4096;
/// Frame bytes per round (all workers together).
const ROUND_BYTES: usize = 4 << 20;
/// Rounds waiting per worker, in each direction.
const QUEUE: usize = 4;

/// One frame of a round: where its bytes (and its comment's) are in the round's buffer.
struct Frame {
    index: u64,
    ts: u64,
    link: LinkType,
    orig_len: u32,
    data: (usize, usize),
    comment: Option<(usize, usize)>,
}

/// One worker's share of a round.
#[derive(Default)]
struct Share {
    frames: Vec<Frame>,
    bytes: Vec<u8>,
}

/// One worker's lines for a round, each with its sort key (the index of the packet that
/// completed it, or at the end the exchange's start time) and where it ends in `text`.
#[derive(Default)]
struct Lines {
    text: Vec<u8>,
    ends: Vec<(u64, usize)>,
}

/// A worker's answer: one per round, then what was open at the end (without `--sort`, in
/// parts as the flows close, then the rest).
enum Msg {
    Round(Lines),
    Part(Lines),
    End(Lines),
}

pub(super) fn run(
    args: &DissectArgs,
    mut config: pipeline::Config,
    workers: usize,
    out: &mut Output<impl std::io::Write>,
) -> Done {
    config.flow.max_flows = (config.flow.max_flows / workers).max(1);
    config.flow.memory_budget = (config.flow.memory_budget / workers).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let mut inputs = Vec::with_capacity(workers);
    let mut outputs = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    // Emptied shares go back to the reader, which fills them again: buffers allocated on one
    // thread and freed on another would otherwise pile up in the allocator (an 8 MiB budget
    // peaked at 130 MiB).
    let (back_tx, back_rx) = sync_channel::<Share>((QUEUE + 2) * workers);
    for i in 0..workers {
        let (in_tx, in_rx) = sync_channel::<Share>(QUEUE);
        let (out_tx, out_rx) = sync_channel::<Msg>(QUEUE);
        let (config, format, filter) = (config.clone(), args.format, args.filter.clone());
        let (sort, back) = (args.sort, back_tx.clone());
        let spawned = thread::Builder::new()
            .name(format!("dissect-{i}"))
            .spawn(move || worker(config, format, filter, sort, in_rx, out_tx, back));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("tapwire: cannot start worker thread: {e}");
                return Done {
                    stats: Stats::default(),
                    flows_open: 0,
                    failed: true,
                };
            }
        }
        inputs.push(in_tx);
        outputs.push(out_rx);
    }
    let files = args.files.clone();
    let reader_stop = stop.clone();
    let reader = thread::Builder::new()
        .name("dissect-read".into())
        .spawn(move || read_all(&files, inputs, &back_rx, &reader_stop));
    let reader = match reader {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("tapwire: cannot start reader thread: {e}");
            None
        }
    };
    merge(&outputs, args.sort, out);
    if out.closed {
        // Nobody reads any more: the reader skips the rest, the workers see their queues close.
        stop.store(true, Ordering::Relaxed);
    }
    drop(outputs);
    let mut failed = match reader.map(|h| h.join()) {
        Some(Ok(failed)) => failed,
        _ => true,
    };
    let mut stats = Stats::default();
    let mut flows_open = 0;
    for h in handles {
        match h.join() {
            Ok((s, open)) => {
                stats.add(&s);
                flows_open += open;
            }
            Err(_) => failed = true,
        }
    }
    Done {
        stats,
        flows_open,
        failed,
    }
}

/// The reading thread: every file, dealt out in rounds. True when a file failed.
fn read_all(
    files: &[std::path::PathBuf],
    inputs: Vec<SyncSender<Share>>,
    back: &Receiver<Share>,
    stop: &AtomicBool,
) -> bool {
    let n = inputs.len() as u64;
    let mut shares: Vec<Share> = (0..n).map(|_| Share::default()).collect();
    let (mut packets, mut bytes, mut index) = (0usize, 0usize, 0u64);
    let mut failed = false;
    let send = |shares: &mut Vec<Share>| -> bool {
        for (tx, share) in inputs.iter().zip(shares.iter_mut()) {
            let next = back.try_recv().unwrap_or_default();
            if tx.send(std::mem::replace(share, next)).is_err() {
                return false;
            }
        }
        true
    };
    for path in files {
        let res = read_file(path, |frame| {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let comment = frame.comment.map(str::as_bytes);
            let w = if comment.is_some_and(|c| c.starts_with(plaintext::TAG.as_bytes())) {
                0
            } else {
                (shard_hash(frame.link, frame.data) % n) as usize
            };
            let Some(share) = shares.get_mut(w) else {
                return;
            };
            let at = share.bytes.len();
            share.bytes.extend_from_slice(frame.data);
            let data = (at, share.bytes.len());
            let comment = comment.map(|c| {
                let at = share.bytes.len();
                share.bytes.extend_from_slice(c);
                (at, share.bytes.len())
            });
            share.frames.push(Frame {
                index,
                ts: frame.ts,
                link: frame.link,
                orig_len: frame.orig_len,
                data,
                comment,
            });
            index += 1;
            packets += 1;
            bytes += frame.data.len();
            if (packets >= ROUND_PACKETS || bytes >= ROUND_BYTES) && !stop.load(Ordering::Relaxed) {
                if !send(&mut shares) {
                    stop.store(true, Ordering::Relaxed);
                }
                (packets, bytes) = (0, 0);
            }
        });
        failed |= report(path, res);
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    if packets > 0 && !stop.load(Ordering::Relaxed) {
        send(&mut shares);
    }
    failed
}

/// One worker: its pipeline over its shares; its lines back, one message per round.
fn worker(
    config: pipeline::Config,
    format: crate::cli::Format,
    filter: Option<String>,
    sort: bool,
    input: Receiver<Share>,
    output: SyncSender<Msg>,
    back: SyncSender<Share>,
) -> (Stats, usize) {
    let mut pipe = Pipeline::new(config);
    // The filter compiled once already (in `dissect::run`), so it compiles here too.
    let Ok(mut render) = Render::new(format, filter.as_deref()) else {
        return (pipe.stats(), 0);
    };
    let mut events = Vec::new();
    for mut share in input {
        let mut lines = Lines::default();
        for f in &share.frames {
            let data = share.bytes.get(f.data.0..f.data.1).unwrap_or_default();
            let comment = f.comment.and_then(|(a, b)| share.bytes.get(a..b));
            feed(
                &mut pipe,
                f.link,
                f.ts,
                data,
                f.orig_len,
                comment,
                &mut events,
            );
            for ex in events.drain(..) {
                if render.render(&ex, &mut lines.text) {
                    lines.ends.push((f.index, lines.text.len()));
                }
            }
        }
        share.frames.clear();
        share.bytes.clear();
        // A full return queue: the reader has enough; this one is freed.
        let _ = back.try_send(share);
        if output.send(Msg::Round(lines)).is_err() {
            return (pipe.stats(), pipe.flows());
        }
    }
    let open = pipe.flows();
    if sort {
        pipe.finish(&mut events);
        sort_finished(&mut events);
    } else {
        let mut gone = false;
        pipe.finish_each(&mut events, FINISH_BATCH, |evs| {
            let mut lines = Lines::default();
            for ex in evs.drain(..) {
                render.render(&ex, &mut lines.text);
            }
            gone = gone || output.send(Msg::Part(lines)).is_err();
        });
        if gone {
            return (pipe.stats(), open);
        }
    }
    let mut lines = Lines::default();
    for ex in events.drain(..) {
        if render.render(&ex, &mut lines.text) {
            lines.ends.push((ex.start_time_unix_nano, lines.text.len()));
        }
    }
    let _ = output.send(Msg::End(lines));
    (pipe.stats(), open)
}

/// Take the rounds back in order, one from each worker, and write them.
fn merge(outputs: &[Receiver<Msg>], sort: bool, out: &mut Output<impl std::io::Write>) {
    let mut merged = Vec::with_capacity(1 << 16);
    loop {
        let mut round = Vec::with_capacity(outputs.len());
        let mut ended = false;
        for rx in outputs {
            loop {
                match rx.recv() {
                    Ok(Msg::Round(l)) => round.push(l),
                    // Lines of flows closed at the end, unsorted: written as they come.
                    Ok(Msg::Part(l)) => {
                        out.write_all(&l.text);
                        continue;
                    }
                    Ok(Msg::End(l)) => {
                        ended = true;
                        round.push(l);
                    }
                    // A worker that stopped early (its output closed): nothing more to write.
                    Err(_) => return,
                }
                break;
            }
        }
        if sort {
            merged.clear();
            merge_lines(&round, &mut merged);
            out.write_all(&merged);
        } else {
            for l in &round {
                out.write_all(&l.text);
            }
        }
        if ended || out.closed {
            return;
        }
    }
}

/// Merge sorted runs of lines by their keys (ties: the lower worker first).
fn merge_lines(runs: &[Lines], into: &mut Vec<u8>) {
    let mut next = vec![0usize; runs.len()];
    loop {
        let mut best: Option<(u64, usize)> = None;
        for (w, run) in runs.iter().enumerate() {
            if let Some(&(key, _)) = next.get(w).and_then(|&i| run.ends.get(i))
                && best.is_none_or(|(k, _)| key < k)
            {
                best = Some((key, w));
            }
        }
        let Some((_, w)) = best else { return };
        let (Some(run), Some(i)) = (runs.get(w), next.get_mut(w)) else {
            return;
        };
        let start = if *i == 0 {
            0
        } else {
            run.ends.get(*i - 1).map_or(0, |e| e.1)
        };
        let end = run.ends.get(*i).map_or(start, |e| e.1);
        into.extend_from_slice(run.text.get(start..end).unwrap_or_default());
        *i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(lines: &[(u64, &str)]) -> Lines {
        let mut l = Lines::default();
        for (k, s) in lines {
            l.text.extend_from_slice(s.as_bytes());
            l.ends.push((*k, l.text.len()));
        }
        l
    }

    #[test]
    fn runs_merge_by_key_and_ties_keep_worker_order() {
        let runs = [
            run_of(&[(1, "a\n"), (4, "d\n"), (9, "i\n")]),
            run_of(&[]),
            run_of(&[(2, "b\n"), (4, "e\n"), (5, "f\n")]),
        ];
        let mut out = Vec::new();
        merge_lines(&runs, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\nd\ne\nf\ni\n");
    }
}
