//! Export a time window of the spool as one pcapng stream.
//!
//! Segments (closed ones by the time range in their names, the ones being written by a walk
//! of their whole blocks) are taken in order of their first packet; each becomes a section of
//! the output: its section header and interface blocks, then its packets inside the window.
//! Blocks are copied as written, never re-encoded. A flow's packets all live in one worker's
//! segments, in order, so re-dissecting the export sees every flow in order.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::pcapng::{self, EPB, IDB, SHB, le32};

/// A segment file and its time range.
#[derive(Debug, Clone)]
struct Part {
    path: PathBuf,
    first: u64,
    last: u64,
}

fn parts(dir: &Path) -> io::Result<Vec<Part>> {
    let mut v = Vec::new();
    for w in fs::read_dir(dir)? {
        let w = w?;
        if !w.file_type()?.is_dir() {
            continue;
        }
        for f in fs::read_dir(w.path())? {
            let path = f?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(stem) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".pcapng"))
            else {
                continue;
            };
            let nums: Vec<u64> = stem.split('-').filter_map(|p| p.parse().ok()).collect();
            match nums[..] {
                [_, first, last] => v.push(Part { path, first, last }),
                [_] => {
                    // Being written: its range from its whole blocks.
                    let bytes = fs::read(&path)?;
                    let w = pcapng::walk(&bytes);
                    if let (Some(first), Some(last)) = (w.first_ts, w.last_ts) {
                        v.push(Part { path, first, last });
                    }
                }
                _ => {}
            }
        }
    }
    v.sort_by_key(|p| (p.first, p.last));
    Ok(v)
}

/// A block of a spool segment, as written.
pub enum Block<'a> {
    /// The start of a segment (a new pcapng section).
    Section(&'a [u8]),
    /// An interface description: the whole block and its link type.
    Interface(&'a [u8], u16),
    /// A packet inside the window: the whole block, and its parts.
    Packet {
        block: &'a [u8],
        iface: u32,
        ts: u64,
        data: &'a [u8],
        orig_len: u32,
        /// Its `opt_comment` (the TLS plaintext's records carry one).
        comment: Option<&'a [u8]>,
    },
}

/// Walk the segments overlapping `[from, to]` in order of their first packet, passing every
/// section and interface block and the packets inside the window to `f`.
pub fn for_each(
    dir: &Path,
    from: u64,
    to: u64,
    mut f: impl FnMut(Block<'_>) -> io::Result<()>,
) -> io::Result<()> {
    for p in parts(dir)?
        .into_iter()
        .filter(|p| p.last >= from && p.first <= to)
    {
        let bytes = match fs::read(&p.path) {
            Ok(b) => b,
            // Deleted by the cap since it was listed: nothing to read from it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // Only the whole blocks `walk` vouched for; every read is still checked.
        let whole = pcapng::walk(&bytes).whole as usize;
        let bytes = bytes.get(..whole).unwrap_or_default();
        let mut at = 0;
        while let (Some(kind), Some(len)) = (le32(bytes, at), le32(bytes, at + 4)) {
            let len = len as usize;
            let Some(block) = bytes.get(at..at.saturating_add(len)).filter(|_| len >= 12) else {
                break;
            };
            match kind {
                SHB => f(Block::Section(block))?,
                IDB => {
                    if let Some(lt) = le32(block, 8) {
                        f(Block::Interface(block, lt as u16))?;
                    }
                }
                EPB => {
                    if let (Some(iface), Some(hi), Some(lo), Some(cap), Some(orig_len)) = (
                        le32(block, 8),
                        le32(block, 12),
                        le32(block, 16),
                        le32(block, 20),
                        le32(block, 24),
                    ) {
                        let ts = (u64::from(hi) << 32) | u64::from(lo);
                        let data = block
                            .get(28..len.saturating_sub(4))
                            .map(|d| &d[..d.len().min(cap as usize)]);
                        if let Some(data) = data
                            && (from..=to).contains(&ts)
                        {
                            f(Block::Packet {
                                block,
                                iface,
                                ts,
                                data,
                                orig_len,
                                comment: pcapng::packet_comment(block, cap as usize),
                            })?;
                        }
                    }
                }
                _ => {}
            }
            at += len;
        }
    }
    Ok(())
}

/// Write the packets with `from <= ts <= to` (and that `keep` accepts, given the packet's
/// link type and bytes) to `out`; returns how many.
pub fn export(
    dir: &Path,
    from: u64,
    to: u64,
    out: &mut impl Write,
    mut keep: impl FnMut(u16, &[u8]) -> bool,
) -> io::Result<u64> {
    let (mut n, mut sections) = (0u64, 0u64);
    let mut links: Vec<u16> = Vec::new();
    for_each(dir, from, to, |b| match b {
        Block::Section(block) => {
            sections += 1;
            links.clear();
            out.write_all(block)
        }
        Block::Interface(block, link) => {
            links.push(link);
            out.write_all(block)
        }
        Block::Packet {
            block, iface, data, ..
        } => {
            let link = links.get(iface as usize).copied().unwrap_or(1);
            if !keep(link, data) {
                return Ok(());
            }
            n += 1;
            out.write_all(block)
        }
    })?;
    if sections == 0 {
        // Nothing in the window: still a valid (empty) pcapng stream.
        pcapng::section_header(out)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{SpoolConfig, WorkerSpool};

    /// An empty spool folder of its own for one test, with segments of `segment_bytes`.
    fn spool(name: &str, segment_bytes: u64) -> (PathBuf, SpoolConfig) {
        let dir = std::env::temp_dir().join(format!("tapwire-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cfg = SpoolConfig {
            dir: dir.clone(),
            segment_bytes,
            ..SpoolConfig::default()
        };
        (dir, cfg)
    }

    #[test]
    fn a_window_across_workers_and_segments() {
        let (dir, cfg) = spool("export", 2048);
        let mut w0 = WorkerSpool::open(&cfg, 0, 2).unwrap();
        let mut w1 = WorkerSpool::open(&cfg, 1, 2).unwrap();
        for ts in 0..100u64 {
            let w = if ts % 2 == 0 { &mut w0 } else { &mut w1 };
            w.write(1, 1, "eth0", 1_000 + ts, &[], &[ts as u8; 60], 60);
        }
        w0.flush();
        w1.close().unwrap();
        let mut out = Vec::new();
        let n = export(&dir, 1_010, 1_029, &mut out, |_, _| true).unwrap();
        assert_eq!(n, 20);
        let mut seen = Vec::new();
        pipeline::source::read(&out[..], Path::new("export"), |f| seen.push(f.ts)).unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (1_010..1_030).collect::<Vec<_>>());
        let mut empty = Vec::new();
        assert_eq!(
            export(&dir, 5_000, 6_000, &mut empty, |_, _| true).unwrap(),
            0
        );
        let mut odd = Vec::new();
        let n = export(&dir, 1_000, 1_099, &mut odd, |_, d| d[0] % 2 == 1).unwrap();
        assert_eq!(n, 50, "the filter keeps the packets it accepts");
        assert!(pipeline::source::read(&empty[..], Path::new("empty"), |_| {}).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lying_capture_length_and_a_cut_tail_are_read_safely() {
        let (dir, cfg) = spool("export-lie", SpoolConfig::default().segment_bytes);
        let mut w = WorkerSpool::open(&cfg, 0, 1).unwrap();
        for ts in 0..3u64 {
            w.write(1, 1, "eth0", 1_000 + ts, &[], &[7; 60], 60);
        }
        w.close().unwrap();
        let seg = fs::read_dir(dir.join("w0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "pcapng"))
            .expect("a segment");
        let mut bytes = fs::read(&seg).unwrap();
        // The first packet's captured length claims 4 GB; the file ends mid-block.
        let epb = (0..bytes.len() - 4)
            .find(|&i| le32(&bytes, i) == Some(EPB))
            .expect("a packet block");
        bytes[epb + 20..epb + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&EPB.to_le_bytes());
        bytes.extend_from_slice(&200u32.to_le_bytes());
        fs::write(&seg, &bytes).unwrap();
        let mut sizes = Vec::new();
        for_each(&dir, 0, u64::MAX, |b| {
            if let Block::Packet { data, .. } = b {
                sizes.push(data.len());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes, vec![60, 60, 60], "the lie is bounded by the block");
        let _ = fs::remove_dir_all(&dir);
    }
}
