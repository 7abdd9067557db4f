//! The TCP connections processes hold when the probes attach to them: the sockets among their
//! descriptors (`/proc/<pid>/fd`), looked up by inode in `/proc/<pid>/net/tcp` and `tcp6`
//! (the process's own network namespace), established ones only. A TLS connection the feed
//! later sees with these endpoints was opened before the probes, so its plaintext is picked up
//! mid-stream ([`crate::Feed::opened_before`]).
//!
//! Hand-written: a directory of links and two text tables of fixed layout; the `procfs` crate
//! would bring a large dependency for them.
//!
//! Limits: at most [`MAX_DESCRIPTORS`] descriptors read per process, [`MAX_CONNECTIONS`]
//! connections per call, and [`BUDGET`] of time per call (the caller's thread polls the ring
//! buffer: processes left when it is spent are skipped, and all of these counted in
//! [`Established::over_cap`]; their old connections then count as picked up at their start);
//! each network namespace's tables are read once per call; a process gone or not readable is
//! skipped (counted).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::chunk::Endpoints;

/// Most connections one call returns.
pub const MAX_CONNECTIONS: usize = 65536;
/// Most descriptors read per process.
pub const MAX_DESCRIPTORS: usize = 65536;
/// Most time one call spends reading descriptors.
pub const BUDGET: std::time::Duration = std::time::Duration::from_millis(50);

/// The established connections some processes hold.
#[derive(Debug, Default)]
pub struct Established {
    pub connections: Vec<Endpoints>,
    /// Connections and descriptors past the caps.
    pub over_cap: usize,
    /// Processes whose namespace, descriptors or tables could not be read.
    pub unreadable: usize,
}

/// The established TCP connections `pids` hold, read under `proc_root`.
pub fn established(proc_root: &Path, pids: &[u32]) -> Established {
    let mut out = Established::default();
    // Network namespace → a process in it, and the socket inodes its processes hold.
    let mut by_netns: BTreeMap<u32, (u32, BTreeSet<u64>)> = BTreeMap::new();
    let start = std::time::Instant::now();
    for &pid in pids {
        if start.elapsed() >= BUDGET {
            out.over_cap += 1;
            continue;
        }
        let dir = proc_root.join(pid.to_string());
        let netns = std::fs::read_link(dir.join("ns/net"))
            .ok()
            .and_then(|l| namespace_inode(&l.to_string_lossy()));
        let (Some(netns), Ok(fds)) = (netns, std::fs::read_dir(dir.join("fd"))) else {
            out.unreadable += 1;
            continue;
        };
        let (_, inodes) = by_netns.entry(netns).or_insert((pid, BTreeSet::new()));
        for (i, fd) in fds.flatten().enumerate() {
            if i >= MAX_DESCRIPTORS {
                out.over_cap += 1;
                break;
            }
            if let Ok(link) = std::fs::read_link(fd.path())
                && let Some(inode) = socket_inode(&link.to_string_lossy())
            {
                inodes.insert(inode);
            }
        }
    }
    for (netns, (pid, inodes)) in by_netns {
        if inodes.is_empty() {
            continue;
        }
        let dir = proc_root.join(pid.to_string());
        for table in ["net/tcp", "net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(dir.join(table)) else {
                out.unreadable += 1;
                continue;
            };
            for (local, peer, inode) in text.lines().skip(1).filter_map(established_line) {
                if !inodes.contains(&inode) {
                    continue;
                }
                if out.connections.len() >= MAX_CONNECTIONS {
                    out.over_cap += 1;
                    continue;
                }
                out.connections.push(Endpoints { local, peer, netns });
            }
        }
    }
    out
}

/// `socket:[123456]` → 123456.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `net:[4026531840]` → 4026531840.
fn namespace_inode(link: &str) -> Option<u32> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// One row of `/proc/net/tcp{,6}`: its endpoints and socket inode when its state is
/// ESTABLISHED (`01`).
fn established_line(line: &str) -> Option<(SocketAddr, SocketAddr, u64)> {
    let mut cols = line.split_whitespace();
    let _slot = cols.next()?;
    let local = endpoint(cols.next()?)?;
    let peer = endpoint(cols.next()?)?;
    if cols.next()? != "01" {
        return None;
    }
    // tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, then the inode.
    let inode = cols.nth(5)?.parse().ok()?;
    Some((local, peer, inode))
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the kernel prints each 32-bit
/// word of the address as a number in the machine's byte order, the port in host order.
fn endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_both_tables_decode() {
        // Rows as a little-endian kernel prints them (the tests run on x86-64).
        let v4 = "   3: 0100007F:1F90 0200007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            established_line(v4),
            Some((
                "127.0.0.1:8080".parse().unwrap(),
                "127.0.0.2:50000".parse().unwrap(),
                12345
            ))
        );
        let listening = v4.replacen(" 01 ", " 0A ", 1);
        assert_eq!(established_line(&listening), None);
        let v6 = "   0: 00000000000000000000000001000000:01BB 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1";
        assert_eq!(
            established_line(v6),
            Some((
                "[::1]:443".parse().unwrap(),
                "[::ffff:127.0.0.1]:54321".parse().unwrap(),
                1
            ))
        );
        for bad in [
            "",
            "0:",
            "0: 0100007F 0200007F:C350 01",
            "0: 0100007G:1F90 0200007F:C350 01",
            "0: 0100:1F90 0200007F:C350 01",
        ] {
            assert_eq!(established_line(bad), None, "{bad:?}");
        }
        assert_eq!(namespace_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("pipe:[77]"), None);
        assert_eq!(namespace_inode("mnt:[4026531840]"), None);
    }

    #[test]
    fn this_process_sees_its_own_connection() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let (_accepted, _) = server.accept().unwrap();
        let found = established(Path::new("/proc"), &[std::process::id()]);
        let (local, peer) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        assert!(
            found
                .connections
                .iter()
                .any(|e| e.local == local && e.peer == peer && e.netns != 0),
            "{found:?}"
        );
        assert!(
            found
                .connections
                .iter()
                .any(|e| e.local == peer && e.peer == local)
        );
        let gone = established(Path::new("/proc"), &[u32::MAX]);
        assert_eq!((gone.connections.len(), gone.unreadable), (0, 1));
    }
}
