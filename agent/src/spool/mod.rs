//! The bounded PCAP spool: every captured packet goes to rotating pcapng segments in a folder,
//! whether or not anyone is dissecting.
//!
//! Layout: one folder per capture worker (`w0/`, `w1/`, …) so workers never share a file, and
//! `tls/` for the TLS plaintext source's records ([`plaintext`]) when it is on;
//! each holds `seg-<seq>.pcapng` (being written) and `seg-<seq>-<first ns>-<last ns>.pcapng`
//! (closed, its time range in the name, so the index needs no reading).
//!
//! Caps ([`SpoolConfig`]): total bytes (split evenly across workers), bytes per segment, and
//! the age of a segment's newest packet. A segment is closed when it reaches its size or
//! `max_segment_age`; then the oldest closed segments are deleted until the total is under the
//! cap, so the folder never exceeds the cap by more than one segment per worker.
//!
//! Privacy: the spool holds raw packets, so its folders are created `0700` and its files
//! `0600` (from creation, never widened later); the workers' folders and segments found from
//! an earlier run are narrowed to the same modes on start. A spool folder that already
//! existed keeps its mode (it may be shared, like `/tmp`): the worker folders inside it are
//! what guard the packets.
//!
//! Failure behaviour: a write error (disk full, folder removed) stops spooling on that worker
//! (`write_errors` counted, logged once) and it retries after [`RETRY_AFTER_NS`]; capture and
//! dissection go on. On start, a segment a crash cut is trimmed to its last whole block and
//! given its time range.

pub mod export;
pub mod pcapng;
pub mod plaintext;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the spool's folders: only the agent's user.
pub const DIR_MODE: u32 = 0o700;
/// Mode of spool segments and exported captures.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` (and missing parents) as `0700`; with `narrow`, an existing one becomes
/// `0700` too.
pub fn private_dir(dir: &Path, narrow: bool) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    if narrow {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Create (or truncate) a file readable by its owner only, from its creation.
pub fn private_file(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// A worker whose writes failed tries again this long after (capture time).
pub const RETRY_AFTER_NS: u64 = 10_000_000_000;

/// Spool caps.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Total bytes across workers.
    pub limit_bytes: u64,
    /// Bytes per segment.
    pub segment_bytes: u64,
    /// Closed segments whose newest packet is older than this are deleted.
    pub max_age_ns: u64,
    /// A segment is closed this long after its first packet, even if small.
    pub max_segment_age_ns: u64,
    /// Bytes kept per packet.
    pub snaplen: u32,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("tapwire-spool"),
            limit_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            max_age_ns: 600_000_000_000,
            max_segment_age_ns: 10_000_000_000,
            snaplen: 262_144,
        }
    }
}

/// A closed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub seq: u64,
    pub bytes: u64,
    pub first_ts: u64,
    pub last_ts: u64,
}

/// Counters of one worker's spool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub packets: u64,
    pub bytes_written: u64,
    pub segments_deleted: u64,
    pub write_errors: u64,
    pub trimmed_bytes: u64,
}

struct Active {
    out: BufWriter<File>,
    path: PathBuf,
    seq: u64,
    bytes: u64,
    first_ts: Option<u64>,
    last_ts: u64,
    /// (interface key, pcapng interface id) for the interfaces described so far.
    ifaces: Vec<(u64, u32)>,
}

/// One worker's spool.
pub struct WorkerSpool {
    dir: PathBuf,
    cfg: SpoolConfig,
    limit: u64,
    closed: Vec<Segment>,
    active: Option<Active>,
    next_seq: u64,
    failed_until: Option<u64>,
    pub stats: SpoolStats,
}

fn parse_name(name: &str) -> Option<(u64, Option<(u64, u64)>)> {
    let stem = name.strip_prefix("seg-")?.strip_suffix(".pcapng")?;
    let mut parts = stem.split('-');
    let seq = parts.next()?.parse().ok()?;
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => Some((seq, Some((a.parse().ok()?, b.parse().ok()?)))),
        _ => Some((seq, None)),
    }
}

fn closed_name(seq: u64, first: u64, last: u64) -> String {
    format!("seg-{seq:010}-{first}-{last}.pcapng")
}

impl WorkerSpool {
    /// Open worker `index`'s folder (`w<index>`, one of `shares` equal parts of the cap):
    /// index closed segments, trim and close one a crash cut.
    pub fn open(cfg: &SpoolConfig, index: usize, shares: usize) -> io::Result<WorkerSpool> {
        Self::open_folder(cfg, &format!("w{index}"), shares)
    }

    /// Open the spool folder `name` (one of `shares` equal parts of the cap): the TLS
    /// plaintext source's is `tls`.
    pub fn open_folder(cfg: &SpoolConfig, name: &str, shares: usize) -> io::Result<WorkerSpool> {
        private_dir(&cfg.dir, false)?;
        let dir = cfg.dir.join(name);
        private_dir(&dir, true)?;
        let mut s = WorkerSpool {
            dir: dir.clone(),
            cfg: cfg.clone(),
            limit: cfg.limit_bytes / shares.max(1) as u64,
            closed: Vec::new(),
            active: None,
            next_seq: 0,
            failed_until: None,
            stats: SpoolStats::default(),
        };
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((seq, range)) = parse_name(&name) else {
                continue;
            };
            let path = entry.path();
            fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))?;
            s.next_seq = s.next_seq.max(seq + 1);
            match range {
                Some((first_ts, last_ts)) => s.closed.push(Segment {
                    bytes: entry.metadata()?.len(),
                    path,
                    seq,
                    first_ts,
                    last_ts,
                }),
                None => s.recover(&path, seq)?,
            }
        }
        s.closed.sort_by_key(|g| g.seq);
        Ok(s)
    }

    /// A segment left open by a crash: cut it to its last whole block and close it (or
    /// delete it when it holds no packet).
    fn recover(&mut self, path: &Path, seq: u64) -> io::Result<()> {
        let bytes = fs::read(path)?;
        let w = pcapng::walk(&bytes);
        self.stats.trimmed_bytes += bytes.len() as u64 - w.whole;
        match (w.first_ts, w.last_ts) {
            (Some(first), Some(last)) => {
                let f = fs::OpenOptions::new().write(true).open(path)?;
                f.set_len(w.whole)?;
                let to = self.dir.join(closed_name(seq, first, last));
                fs::rename(path, &to)?;
                self.closed.push(Segment {
                    path: to,
                    seq,
                    bytes: w.whole,
                    first_ts: first,
                    last_ts: last,
                });
            }
            _ => fs::remove_file(path)?,
        }
        Ok(())
    }

    /// Closed segments, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.closed
    }

    /// Bytes on disk (closed segments and the one being written).
    pub fn bytes(&self) -> u64 {
        self.closed.iter().map(|g| g.bytes).sum::<u64>()
            + self.active.as_ref().map_or(0, |a| a.bytes)
    }

    /// Write one packet. `iface` identifies the interface (a key of the caller's choosing),
    /// with its link type and name for the interface block. Errors are counted, not returned.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        iface: u64,
        link: u16,
        name: &str,
        ts: u64,
        prefix: &[u8],
        data: &[u8],
        orig_len: u32,
    ) {
        if !self.ready(ts) {
            return;
        }
        if let Err(e) = self.try_write(iface, link, name, ts, prefix, data, orig_len, &[]) {
            self.failed(e, ts);
        }
    }

    /// Write one record with a comment (`opt_comment`): the TLS plaintext's records say which
    /// stream and process they belong to. Errors are counted, as for [`WorkerSpool::write`].
    pub fn write_commented(
        &mut self,
        iface: u64,
        link: u16,
        name: &str,
        ts: u64,
        data: &[u8],
        comment: &[u8],
    ) {
        if !self.ready(ts) {
            return;
        }
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if let Err(e) = self.try_write(iface, link, name, ts, &[], data, len, comment) {
            self.failed(e, ts);
        }
    }

    /// False while an earlier write error's back-off lasts (capture time `ts`).
    fn ready(&mut self, ts: u64) -> bool {
        match self.failed_until {
            Some(until) if ts < until => false,
            _ => {
                self.failed_until = None;
                true
            }
        }
    }

    /// A write failed: count it, say it once, stop until [`RETRY_AFTER_NS`] later.
    fn failed(&mut self, e: io::Error, ts: u64) {
        self.stats.write_errors += 1;
        if self.stats.write_errors == 1 {
            eprintln!(
                "tapwire: spool write failed in {}: {e}; retrying every 10 s",
                self.dir.display()
            );
        }
        self.active = None;
        self.failed_until = Some(ts.saturating_add(RETRY_AFTER_NS));
    }

    #[allow(clippy::too_many_arguments)]
    fn try_write(
        &mut self,
        iface: u64,
        link: u16,
        name: &str,
        ts: u64,
        prefix: &[u8],
        data: &[u8],
        orig_len: u32,
        comment: &[u8],
    ) -> io::Result<()> {
        let rotate = self.active.as_ref().is_some_and(|a| {
            a.bytes >= self.cfg.segment_bytes
                || a.first_ts
                    .is_some_and(|f| ts.saturating_sub(f) >= self.cfg.max_segment_age_ns)
        });
        if rotate {
            self.close()?;
            self.enforce(ts);
        }
        if self.active.is_none() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let path = self.dir.join(format!("seg-{seq:010}.pcapng"));
            let mut out = BufWriter::with_capacity(1 << 16, private_file(&path)?);
            let bytes = pcapng::section_header(&mut out)?;
            self.active = Some(Active {
                out,
                path,
                seq,
                bytes,
                first_ts: None,
                last_ts: ts,
                ifaces: Vec::new(),
            });
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let id = match a.ifaces.iter().find(|(k, _)| *k == iface) {
            Some(&(_, id)) => id,
            None => {
                let id = a.ifaces.len() as u32;
                a.bytes += pcapng::interface(&mut a.out, link, self.cfg.snaplen, name)?;
                a.ifaces.push((iface, id));
                id
            }
        };
        let keep = data.len().min(self.cfg.snaplen as usize);
        a.bytes += pcapng::packet(&mut a.out, id, ts, prefix, &data[..keep], orig_len, comment)?;
        a.first_ts.get_or_insert(ts);
        a.last_ts = a.last_ts.max(ts);
        self.stats.packets += 1;
        Ok(())
    }

    /// Flush the segment being written (readers see whole blocks up to here).
    pub fn flush(&mut self) {
        if let Some(a) = self.active.as_mut()
            && a.out.flush().is_err()
        {
            self.stats.write_errors += 1;
        }
    }

    /// Close the segment being written (rename it with its time range).
    pub fn close(&mut self) -> io::Result<()> {
        let Some(mut a) = self.active.take() else {
            return Ok(());
        };
        a.out.flush()?;
        self.stats.bytes_written += a.bytes;
        match a.first_ts {
            Some(first) => {
                let to = self.dir.join(closed_name(a.seq, first, a.last_ts));
                fs::rename(&a.path, &to)?;
                self.closed.push(Segment {
                    path: to,
                    seq: a.seq,
                    bytes: a.bytes,
                    first_ts: first,
                    last_ts: a.last_ts,
                });
            }
            None => fs::remove_file(&a.path)?,
        }
        Ok(())
    }

    /// Delete the oldest closed segments while over the cap, and those too old.
    pub fn enforce(&mut self, now: u64) {
        while !self.closed.is_empty()
            && (self.bytes() > self.limit
                || self.closed[0].last_ts.saturating_add(self.cfg.max_age_ns) < now)
        {
            let g = self.closed.remove(0);
            if fs::remove_file(&g.path).is_err() {
                self.stats.write_errors += 1;
            }
            self.stats.segments_deleted += 1;
        }
    }

    /// The file being written and its time range so far, for readers that want the newest
    /// packets (flushed first).
    #[cfg(test)]
    pub fn active(&mut self) -> Option<(PathBuf, u64, u64)> {
        self.flush();
        let a = self.active.as_ref()?;
        Some((a.path.clone(), a.first_ts?, a.last_ts))
    }
}

impl Drop for WorkerSpool {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            limit_bytes: 64 * 1024,
            segment_bytes: 8 * 1024,
            max_age_ns: u64::MAX / 2,
            max_segment_age_ns: u64::MAX / 2,
            snaplen: 1500,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tapwire-spool-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_cap_holds_and_oldest_go_first() {
        let dir = tmp("cap");
        let mut s = WorkerSpool::open(&cfg(&dir), 0, 1).unwrap();
        let pkt = [0x45u8; 400];
        for i in 0..2000u64 {
            s.write(1, 1, "eth0", 1_000 + i, &[], &pkt, 400);
            assert!(
                s.bytes() <= 64 * 1024 + 8 * 1024 + 512,
                "cap plus one segment at most"
            );
        }
        s.close().unwrap();
        assert!(s.stats.segments_deleted > 0);
        let segs = s.segments().to_vec();
        assert!(
            segs.windows(2).all(|w| w[0].last_ts < w[1].first_ts),
            "oldest were deleted"
        );
        assert_eq!(segs.last().unwrap().last_ts, 1_000 + 1999);
        // Every closed segment reads back with the pipeline's reader.
        let mut n = 0;
        for g in &segs {
            pipeline::source::read_file(&g.path, |_| n += 1).unwrap();
        }
        assert!(n > 100);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn segments_older_than_the_max_age_go() {
        let dir = tmp("age");
        let mut c = cfg(&dir);
        c.max_age_ns = 1_000;
        c.max_segment_age_ns = 100;
        let mut s = WorkerSpool::open(&c, 0, 1).unwrap();
        for ts in (0..5_000u64).step_by(10) {
            s.write(1, 1, "eth0", ts, &[], &[1u8; 60], 60);
        }
        s.enforce(5_000);
        let segs = s.segments();
        assert!(!segs.is_empty());
        assert!(
            segs.iter().all(|g| g.last_ts + 1_000 >= 5_000),
            "only the last second of capture time kept"
        );
        assert!(s.stats.segments_deleted > 10);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cut_segment_is_trimmed_and_indexed_on_start() {
        let dir = tmp("crash");
        {
            let mut s = WorkerSpool::open(&cfg(&dir), 0, 1).unwrap();
            for i in 0..5u64 {
                s.write(1, 1, "eth0", 500 + i, &[], &[7u8; 100], 100);
            }
            s.flush();
            let (path, ..) = s.active().unwrap();
            // A crash: the writer is gone without closing, and the file ends mid-block.
            std::mem::forget(s);
            let len = fs::metadata(&path).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len - 10)
                .unwrap();
        }
        let s = WorkerSpool::open(&cfg(&dir), 0, 1).unwrap();
        assert_eq!(s.segments().len(), 1);
        let g = &s.segments()[0];
        assert_eq!(
            (g.first_ts, g.last_ts),
            (500, 503),
            "the cut packet is gone"
        );
        assert!(s.stats.trimmed_bytes > 0);
        let mut n = 0;
        pipeline::source::read_file(&g.path, |_| n += 1).unwrap();
        assert_eq!(n, 4);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn folders_are_0700_and_segments_0600_from_creation() {
        let dir = tmp("modes");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = WorkerSpool::open(&cfg(&dir), 0, 1).unwrap();
        s.write(1, 1, "eth0", 1, &[], &[1u8; 10], 10);
        let (active, ..) = s.active().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&active), 0o600, "the segment being written");
        s.close().unwrap();
        assert_eq!(mode(&s.segments()[0].path), 0o600, "closed");
        assert_eq!(mode(&dir), 0o755, "an existing spool folder keeps its mode");
        assert_eq!(
            mode(&dir.join("w0")),
            0o700,
            "the worker's folder is narrowed"
        );
        let fresh = tmp("modes-fresh");
        WorkerSpool::open(&cfg(&fresh), 0, 1).unwrap();
        assert_eq!(mode(&fresh), 0o700, "a new spool folder is private");
        let _ = fs::remove_dir_all(&fresh);
        // A segment an older version left world-readable is narrowed on start.
        fs::set_permissions(&s.segments()[0].path, fs::Permissions::from_mode(0o644)).unwrap();
        let again = WorkerSpool::open(&cfg(&dir), 0, 1).unwrap();
        assert_eq!(mode(&again.segments()[0].path), 0o600);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_write_error_stops_spooling_and_retries_later() {
        let dir = tmp("err");
        let mut s = WorkerSpool::open(&cfg(&dir), 0, 1).unwrap();
        s.write(1, 1, "eth0", 1, &[], &[1u8; 10], 10);
        s.close().unwrap();
        fs::remove_dir_all(&dir).unwrap();
        s.write(1, 1, "eth0", 2, &[], &[1u8; 10], 10);
        assert_eq!(s.stats.write_errors, 1);
        s.write(1, 1, "eth0", 3, &[], &[1u8; 10], 10);
        assert_eq!(s.stats.write_errors, 1, "no retry before the delay");
        fs::create_dir_all(dir.join("w0")).unwrap();
        s.write(1, 1, "eth0", 3 + RETRY_AFTER_NS, &[], &[1u8; 10], 10);
        assert_eq!(s.stats.packets, 2, "spooling resumed");
        let _ = fs::remove_dir_all(&dir);
    }
}
