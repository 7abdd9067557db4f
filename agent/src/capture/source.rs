//! Packet sources behind one trait: the TPACKET_V3 ring (the agent's own capture), a
//! pcap/pcapng file replayed (as fast as it can be read, or at the recorded pace), and
//! libpcap live capture (the `libpcap` feature), for hosts where a ring cannot be used.
//!
//! Every source hands the worker [`Packet`]s as the ring does: a link-layer frame
//! (`hatype` Ethernet, or none for raw IP), or a cooked packet starting at the network header
//! with its protocol, interface and direction. File and libpcap frames with a Linux cooked
//! header (SLL, SLL2) or a BSD loopback header are turned into that form.

use pipeline::wire::{be16, be32};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use pipeline::decode::LinkType;

use super::ring::{KernelStats, Packet, Ring};

/// ARPHRD types used for non-cooked packets.
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_NONE: u16 = 0xfffe;

/// Where a worker's packets come from.
pub trait Source: Send {
    /// Wait up to `timeout_ms` for packets and pass each to `f`; returns how many.
    fn next_batch(&mut self, timeout_ms: i32, f: &mut dyn FnMut(Packet<'_>)) -> usize;
    /// Drops counted by the kernel (or libpcap) since the last call.
    fn stats(&mut self) -> KernelStats;
}

impl Source for Ring {
    fn next_batch(&mut self, timeout_ms: i32, f: &mut dyn FnMut(Packet<'_>)) -> usize {
        self.next_block(timeout_ms, f)
    }
    fn stats(&mut self) -> KernelStats {
        Ring::stats(self)
    }
}

/// A frame as read from a file or libpcap.
struct Frame<'a> {
    ts: u64,
    link: LinkType,
    data: &'a [u8],
    orig_len: u32,
}

/// A frame as the worker wants it: a cooked packet (`Some(fields)`) or a frame whose link
/// header the worker understands.
/// A cooked packet (network header first) and its link fields.
fn cooked<'a>(
    fr: &Frame<'_>,
    data: &'a [u8],
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
) -> Packet<'a> {
    Packet {
        ts: fr.ts,
        data,
        orig_len: fr
            .orig_len
            .saturating_sub((fr.data.len() - data.len()) as u32),
        ifindex,
        pkttype,
        hatype,
        protocol,
        vlan: None,
        cooked: true,
    }
}

fn present(fr: &Frame<'_>, f: &mut dyn FnMut(Packet<'_>)) {
    let d = fr.data;
    let u16_at = |at: usize| be16(d, at).unwrap_or_default();
    match fr.link {
        LinkType::Ethernet => f(Packet {
            ts: fr.ts,
            data: d,
            orig_len: fr.orig_len,
            ifindex: 0,
            pkttype: 0,
            hatype: ARPHRD_ETHER,
            protocol: 0,
            vlan: None,
            cooked: false,
        }),
        LinkType::RawIp => f(Packet {
            ts: fr.ts,
            data: d,
            orig_len: fr.orig_len,
            ifindex: 0,
            pkttype: 0,
            hatype: ARPHRD_NONE,
            protocol: 0,
            vlan: None,
            cooked: false,
        }),
        LinkType::LinuxSll2 if d.len() >= 20 => f(cooked(
            fr,
            d.get(20..).unwrap_or_default(),
            u16_at(0),
            be32(d, 4).unwrap_or_default() as i32,
            u16_at(8),
            d.get(10).copied().unwrap_or_default(),
        )),
        LinkType::LinuxSll if d.len() >= 16 => f(cooked(
            fr,
            d.get(16..).unwrap_or_default(),
            u16_at(14),
            0,
            u16_at(2),
            u16_at(0) as u8,
        )),
        LinkType::Null if d.len() >= 4 => {
            let rest = d.get(4..).unwrap_or_default();
            let proto = if rest.first().is_some_and(|b| b >> 4 == 6) {
                0x86dd
            } else {
                0x0800
            };
            f(cooked(fr, rest, proto, 0, ARPHRD_NONE, 0))
        }
        _ => {}
    }
}

/// Frames read from a file, handed from the reading thread to the worker together: one
/// buffer for their bytes and one record per frame. Handing frames over one by one cost the
/// worker a futex wake of the reader for every packet (a quarter of its CPU in
/// `bench/sinks.sh`'s profile); a batch costs one per [`BATCH_FRAMES`] frames.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    frames: Vec<BatchFrame>,
}

struct BatchFrame {
    ts: u64,
    link: LinkType,
    orig_len: u32,
    end: usize,
}

impl Batch {
    fn frame(&self, i: usize) -> Option<Frame<'_>> {
        let m = self.frames.get(i)?;
        let start = match i.checked_sub(1) {
            Some(p) => self.frames.get(p)?.end,
            None => 0,
        };
        Some(Frame {
            ts: m.ts,
            link: m.link,
            data: self.data.get(start..m.end)?,
            orig_len: m.orig_len,
        })
    }
}

/// A batch is handed over at this many frames...
const BATCH_FRAMES: usize = 512;
/// ...or this many bytes, whichever comes first.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued between the reader and the worker. The reader takes a new buffer only when
/// none came back, so with the one it fills and the one the worker reads, about ten batches
/// (ten MiB) exist at most.
const BATCH_QUEUE: usize = 8;

/// A capture file replayed. A reader thread parses it into batches (a bounded queue, their
/// buffers handed back for reuse); the worker takes the frames, at the recorded pace when
/// `paced`.
pub struct FileSource {
    rx: Receiver<Batch>,
    /// Emptied batches, back to the reader.
    back: SyncSender<Batch>,
    /// The batch being handed out and the next frame in it.
    current: Option<(Batch, usize)>,
    paced: bool,
    /// (first frame's capture time, when it was handed over).
    start: Option<(u64, Instant)>,
    pub done: bool,
}

impl FileSource {
    pub fn open(
        path: &std::path::Path,
        paced: bool,
    ) -> Result<FileSource, pipeline::source::SourceError> {
        // Open now, so a missing or unreadable file is refused before anything starts.
        let file = pipeline::source::open(path)?;
        let (tx, rx) = sync_channel::<Batch>(BATCH_QUEUE);
        let (back, back_rx) = sync_channel::<Batch>(BATCH_QUEUE + 2);
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("tapwire-read".into())
            .spawn(move || {
                let path = owned;
                let mut b = Batch::default();
                let mut open = true;
                let _ = pipeline::source::read(file, &path, |f| {
                    if !open {
                        return;
                    }
                    b.data.extend_from_slice(f.data);
                    b.frames.push(BatchFrame {
                        ts: f.ts,
                        link: f.link,
                        orig_len: f.orig_len,
                        end: b.data.len(),
                    });
                    if b.frames.len() >= BATCH_FRAMES || b.data.len() >= BATCH_BYTES {
                        let mut next = back_rx.try_recv().unwrap_or_default();
                        next.data.clear();
                        next.frames.clear();
                        open = tx.send(std::mem::replace(&mut b, next)).is_ok();
                    }
                });
                if open && !b.frames.is_empty() {
                    let _ = tx.send(b);
                }
            })
            .map_err(|source| pipeline::source::SourceError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(FileSource {
            rx,
            back,
            current: None,
            paced,
            start: None,
            done: false,
        })
    }
}

impl Source for FileSource {
    fn next_batch(&mut self, timeout_ms: i32, f: &mut dyn FnMut(Packet<'_>)) -> usize {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
        let mut n = 0;
        loop {
            let (batch, at) = match self.current.take() {
                Some(c) => c,
                None => match self
                    .rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(b) => (b, 0),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return n,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        self.done = true;
                        if n == 0 {
                            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                        }
                        return n;
                    }
                },
            };
            let Some(ts) = batch.frames.get(at).map(|m| m.ts) else {
                // Emptied: back to the reader (dropped if its queue is full).
                let _ = self.back.try_send(batch);
                continue;
            };
            if self.paced {
                let (t0, w0) = *self.start.get_or_insert((ts, Instant::now()));
                let due = w0 + Duration::from_nanos(ts.saturating_sub(t0));
                if due > Instant::now() {
                    if due > deadline {
                        self.current = Some((batch, at));
                        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                        return n;
                    }
                    std::thread::sleep(due - Instant::now());
                }
            }
            if let Some(fr) = batch.frame(at) {
                present(&fr, f);
            }
            n += 1;
            self.current = Some((batch, at + 1));
            if n >= 4096 {
                return n;
            }
        }
    }
    fn stats(&mut self) -> KernelStats {
        KernelStats::default()
    }
}

/// libpcap live capture on one interface (or `any`).
#[cfg(feature = "libpcap")]
pub struct PcapSource {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    last: (u32, u32),
}

#[cfg(feature = "libpcap")]
impl PcapSource {
    pub fn open(
        interface: Option<&str>,
        snaplen: u32,
        filter: Option<&str>,
    ) -> Result<PcapSource, String> {
        let name = interface.unwrap_or("any");
        let err = |e: pcap::Error| format!("libpcap on {name}: {e}");
        let mut cap = pcap::Capture::from_device(name)
            .map_err(err)?
            .snaplen(snaplen as i32)
            .immediate_mode(true)
            .timeout(100)
            .buffer_size(64 << 20)
            .open()
            .map_err(err)?;
        if let Some(f) = filter {
            cap.filter(f, true).map_err(err)?;
        }
        // Non-blocking, so the worker waits with its own timeout (libpcap's read timeout may
        // never fire on an idle Linux socket, which would keep the worker from stopping).
        let cap = cap.setnonblock().map_err(err)?;
        let link = LinkType::from_linktype(cap.get_datalink().0 as u32).ok_or_else(|| {
            format!(
                "libpcap on {name}: link type {} not supported",
                cap.get_datalink().0
            )
        })?;
        Ok(PcapSource {
            cap,
            link,
            last: (0, 0),
        })
    }
}

#[cfg(feature = "libpcap")]
impl Source for PcapSource {
    fn next_batch(&mut self, timeout_ms: i32, f: &mut dyn FnMut(Packet<'_>)) -> usize {
        use std::os::fd::AsRawFd;
        let mut n = 0;
        let mut waited = false;
        while n < 4096 {
            match self.cap.next_packet() {
                Ok(p) => {
                    let ts = p.header.ts.tv_sec as u64 * 1_000_000_000
                        + p.header.ts.tv_usec as u64 * 1_000;
                    let fr = Frame {
                        ts,
                        link: self.link,
                        data: p.data,
                        orig_len: p.header.len,
                    };
                    present(&fr, f);
                    n += 1;
                }
                Err(_) if n == 0 && !waited => {
                    // Nothing ready: wait for the socket, once.
                    waited = true;
                    let mut pfd = libc::pollfd {
                        fd: self.cap.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the capture's own descriptor.
                    #[allow(unsafe_code)]
                    unsafe {
                        libc::poll(&mut pfd, 1, timeout_ms)
                    };
                }
                Err(_) => break,
            }
        }
        n
    }
    fn stats(&mut self) -> KernelStats {
        let Ok(s) = self.cap.stats() else {
            return KernelStats::default();
        };
        let (received, dropped) = (s.received, s.dropped + s.if_dropped);
        let d = KernelStats {
            packets: u64::from(received.wrapping_sub(self.last.0)),
            drops: u64::from(dropped.wrapping_sub(self.last.1)),
            freezes: 0,
        };
        self.last = (received, dropped);
        d
    }
}
