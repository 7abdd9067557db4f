//! AF_PACKET capture with a TPACKET_V3 memory-mapped ring and PACKET_FANOUT, over the socket
//! fd with `libc`.
//!
//! Written here because no crate does it: `afpacket` only opens and binds a socket (no ring, no
//! fanout, no timestamps or `sockaddr_ll`, and its sync type double-closes the fd when cloned),
//! and socket plus bind are a few lines. This module holds the agent's `unsafe` (the only
//! other is one `poll(2)` in `source.rs`): system calls, the `mmap` of the ring, and reading
//! the kernel's block and packet headers in it. Every offset the kernel writes is checked against the block before it is followed.
//!
//! A ring is `block_nr` blocks of `block_size` bytes. The kernel fills a block with packets and
//! hands it over (`TP_STATUS_USER`) when it is full or `retire_ms` after its first packet; the
//! reader walks its packets and gives it back (`TP_STATUS_KERNEL`). No copy, no allocation per
//! packet. When every block is in user space the kernel drops packets and counts them
//! (`PACKET_STATISTICS`: drops, and freezes of the queue).
//!
//! Several rings bound to the same interface join one fanout group (`PACKET_FANOUT_HASH` with
//! defragmentation): the kernel spreads flows across them by a symmetric hash, so both
//! directions of a connection reach the same worker.
//!
//! `any` (no interface) uses a cooked socket (`SOCK_DGRAM`): packets start at the network
//! header and `sockaddr_ll` says the protocol, interface and direction. On loopback every
//! packet is seen twice (sent and received): outgoing copies on loopback are skipped.
//!
//! Failure behaviour: opening fails with a [`CaptureError`] naming the step (no such interface,
//! not permitted without `CAP_NET_RAW`, ring refused); reading never fails once open (a block
//! whose headers do not fit is given back and counted in `bad_blocks`).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use pipeline::wire::{be16, ne16, ne32};

/// Why a capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no interface named {0}")]
    NoInterface(String),
    #[error("{step} failed on {what}: {source}")]
    Sys {
        step: &'static str,
        what: String,
        source: io::Error,
    },
}

/// Ring geometry and capture settings.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// Interface name; `None` captures on every interface (cooked).
    pub interface: Option<String>,
    /// Bytes per block (a multiple of the page size).
    pub block_size: u32,
    pub block_nr: u32,
    /// A block is handed over at the latest this long after its first packet.
    pub retire_ms: u32,
    /// Fanout group shared by the rings of one capture (`None`: no fanout).
    pub fanout_group: Option<u16>,
    /// Classic BPF program, attached before the socket is bound.
    pub filter: Option<std::sync::Arc<[libc::sock_filter]>>,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            interface: None,
            block_size: 1 << 20,
            block_nr: 64,
            retire_ms: 20,
            fanout_group: None,
            filter: None,
        }
    }
}

/// One packet in the ring, borrowed until the block is given back.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Unix nanoseconds.
    pub ts: u64,
    /// From the link header (named interface) or the network header (`any`).
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
    pub ifindex: i32,
    /// `PACKET_HOST`, `PACKET_OUTGOING`, …
    pub pkttype: u8,
    /// ARPHRD type of the interface.
    pub hatype: u16,
    /// EtherType (host order).
    pub protocol: u16,
    /// VLAN tag the NIC stripped, when there was one.
    pub vlan: Option<u16>,
    /// Starts at the network header (`protocol`, `ifindex`, `hatype`, `pkttype` describe it).
    pub cooked: bool,
}

/// Kernel counters since the last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub packets: u64,
    pub drops: u64,
    pub freezes: u64,
}

/// An AF_PACKET socket with its mapped TPACKET_V3 ring.
pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    len: usize,
    block_size: usize,
    block_nr: usize,
    cur: usize,
    /// Cooked socket (`any`).
    pub cooked: bool,
    loopback: Option<i32>,
    /// Blocks whose headers did not fit (given back unread).
    pub bad_blocks: u64,
}

// SAFETY: the mapping is owned by the ring and only touched through `&mut self`.
unsafe impl Send for Ring {}

fn sys(step: &'static str, what: &str) -> CaptureError {
    CaptureError::Sys {
        step,
        what: what.to_string(),
        source: io::Error::last_os_error(),
    }
}

fn setsockopt<T>(
    fd: i32,
    level: i32,
    name: i32,
    value: &T,
    step: &'static str,
    what: &str,
) -> Result<(), CaptureError> {
    // SAFETY: `value` points to a live `T` of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(sys(step, what)) }
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> Result<i32, CaptureError> {
    let c = CString::new(name).map_err(|_| CaptureError::NoInterface(name.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(CaptureError::NoInterface(name.to_string()))
    } else {
        Ok(i as i32)
    }
}

/// The name of interface `index` (for the spool's interface blocks).
pub fn ifname(index: i32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as the call requires.
    let p = unsafe { libc::if_indextoname(index as u32, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

impl Ring {
    /// Open, configure, map and bind a ring (and join the fanout group).
    pub fn open(cfg: &RingConfig) -> Result<Ring, CaptureError> {
        let what = cfg.interface.clone().unwrap_or_else(|| "any".into());
        let ifindex = match &cfg.interface {
            Some(name) => ifindex(name)?,
            None => 0,
        };
        let cooked = cfg.interface.is_none();
        let kind = if cooked {
            libc::SOCK_DGRAM
        } else {
            libc::SOCK_RAW
        };
        // Protocol 0: the socket receives nothing until it is bound (with the filter already
        // attached), so no packet of another interface slips in before the bind.
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket(AF_PACKET)", &what));
        }
        // SAFETY: `raw` is a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "PACKET_VERSION",
            &what,
        )?;
        let frame_size = 2048u32;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_nr,
            tp_frame_size: frame_size,
            tp_frame_nr: cfg.block_size / frame_size * cfg.block_nr,
            tp_retire_blk_tov: cfg.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: libc::TP_FT_REQ_FILL_RXHASH,
        };
        setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "PACKET_RX_RING",
            &what,
        )?;
        let len = cfg.block_size as usize * cfg.block_nr as usize;
        // SAFETY: maps the ring the kernel just allocated for this fd.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(sys("mmap of the ring", &what));
        }
        let ring = Ring {
            fd,
            map: map.cast(),
            len,
            block_size: cfg.block_size as usize,
            block_nr: cfg.block_nr as usize,
            cur: 0,
            cooked,
            loopback: ifindex_of_loopback(),
            bad_blocks: 0,
        };
        if let Some(prog) = &cfg.filter {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr().cast_mut(),
            };
            setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &fprog,
                "SO_ATTACH_FILTER",
                &what,
            )?;
        }
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(sys("bind", &what));
        }
        if let Some(group) = cfg.fanout_group {
            let arg: u32 = u32::from(group)
                | ((libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16);
            setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &arg,
                "PACKET_FANOUT",
                &what,
            )?;
        }
        Ok(ring)
    }

    /// Wait up to `timeout_ms` for a block, and pass each of its packets to `f`; returns the
    /// number of packets (0 on timeout).
    pub fn next_block(&mut self, timeout_ms: i32, mut f: impl FnMut(Packet<'_>)) -> usize {
        let block = self.cur * self.block_size;
        // SAFETY: `block` is inside the mapping; the descriptor is at the block's start.
        let desc = unsafe { self.map.add(block) };
        if !self.block_ready(desc) {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if !self.block_ready(desc) {
                return 0;
            }
        }
        let n = self.walk(block, &mut f);
        // Give the block back.
        // SAFETY: block_status is the first u32 of the v1 header at offset 8 of the block.
        unsafe {
            let status = desc.add(8).cast::<u32>();
            std::ptr::write_volatile(status, libc::TP_STATUS_KERNEL);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.cur = (self.cur + 1) % self.block_nr;
        n
    }

    fn block_ready(&self, desc: *mut u8) -> bool {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // SAFETY: the status word lies inside the block descriptor.
        let status = unsafe { std::ptr::read_volatile(desc.add(8).cast::<u32>()) };
        status & libc::TP_STATUS_USER != 0
    }

    fn walk(&mut self, block: usize, f: &mut impl FnMut(Packet<'_>)) -> usize {
        // SAFETY: the block lies inside the mapping and the kernel has handed it to us.
        let bytes = unsafe { std::slice::from_raw_parts(self.map.add(block), self.block_size) };
        let u32_at = |at: usize| ne32(bytes, at);
        let u16_at = |at: usize| ne16(bytes, at);
        // tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1 at 8.
        let (Some(num), Some(first)) = (u32_at(12), u32_at(16)) else {
            self.bad_blocks += 1;
            return 0;
        };
        let hdr_len = (size_of::<libc::tpacket3_hdr>() + 15) & !15;
        let mut at = first as usize;
        let mut seen = 0;
        for _ in 0..num {
            // tpacket3_hdr: next_offset 0, sec 4, nsec 8, snaplen 12, len 16, status 20,
            // mac 24 (u16), net 26, hv1 { rxhash 28, vlan_tci 32, vlan_tpid 36 }.
            let (
                Some(next),
                Some(sec),
                Some(nsec),
                Some(snaplen),
                Some(len),
                Some(status),
                Some(mac),
            ) = (
                u32_at(at),
                u32_at(at + 4),
                u32_at(at + 8),
                u32_at(at + 12),
                u32_at(at + 16),
                u32_at(at + 20),
                u16_at(at + 24),
            )
            else {
                self.bad_blocks += 1;
                break;
            };
            let vlan_tci = u32_at(at + 32).unwrap_or(0);
            // sockaddr_ll after the aligned header: family 0, protocol 2 (BE), ifindex 4,
            // hatype 8, pkttype 10.
            let sll = at + hdr_len;
            let proto = be16(bytes, sll + 2).unwrap_or(0);
            let ifindex = u32_at(sll + 4).unwrap_or(0) as i32;
            let hatype = u16_at(sll + 8).unwrap_or(0);
            let pkttype = bytes.get(sll + 10).copied().unwrap_or(0);
            let start = at + usize::from(mac);
            let Some(data) = start
                .checked_add(snaplen as usize)
                .and_then(|end| bytes.get(start..end))
            else {
                self.bad_blocks += 1;
                break;
            };
            let skip = pkttype == libc::PACKET_OUTGOING && Some(ifindex) == self.loopback;
            if !skip {
                f(Packet {
                    ts: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
                    data,
                    orig_len: len,
                    ifindex,
                    pkttype,
                    hatype,
                    protocol: proto,
                    vlan: (status & libc::TP_STATUS_VLAN_VALID != 0).then_some(vlan_tci as u16),
                    cooked: self.cooked,
                });
                seen += 1;
            }
            if next == 0 {
                break;
            }
            at += next as usize;
        }
        seen
    }

    /// Kernel counters since the previous call (reading resets them).
    pub fn stats(&self) -> KernelStats {
        let mut s = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `s` is a tpacket_stats_v3 of the size passed.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut s as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return KernelStats::default();
        }
        KernelStats {
            packets: u64::from(s.tp_packets),
            drops: u64::from(s.tp_drops),
            freezes: u64::from(s.tp_freeze_q_cnt),
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe { libc::munmap(self.map.cast(), self.len) };
    }
}

fn ifindex_of_loopback() -> Option<i32> {
    ifindex("lo").ok()
}
