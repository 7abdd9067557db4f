//! Capture files: pcap and pcapng, streamed record by record (never loaded whole).
//!
//! Reading is the `pcap-file` crate. Ours: pcapng timestamp scaling (the crate hands back the
//! raw 64-bit count; `if_tsresol`/`if_tsoffset` of the packet's interface give its unit),
//! per-interface link types, and the error policy: a file that is not a capture, an
//! unreadable path or an unknown link type is a [`SourceError`]; a capture cut short
//! mid-record ends the file with `cut_short` set (what came before is kept).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap_file::PcapError;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::decode::LinkType;

/// Why a capture file could not be read (one line each, naming the file).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng capture")]
    NotCapture { path: PathBuf },
    #[error("{path}: unsupported link type {linktype}")]
    UnknownLinkType { path: PathBuf, linktype: u32 },
    #[error("{path}: malformed record after {packets} packets: {detail}")]
    Malformed {
        path: PathBuf,
        packets: u64,
        detail: String,
    },
    #[error("{path}: read error after {packets} packets: {source}")]
    Io {
        path: PathBuf,
        packets: u64,
        source: std::io::Error,
    },
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub link: LinkType,
    /// Unix nanoseconds.
    pub ts: u64,
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
    /// The packet's comment (pcapng only): tapwire's TLS plaintext records carry theirs
    /// (`tapwire-tls stream=…`), which says they are a stream's bytes, not a wire packet.
    pub comment: Option<&'a str>,
}

/// What reading one file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub packets: u64,
    /// The file ended in the middle of a record (the rest was used).
    pub cut_short: bool,
    /// Packets on interfaces whose link type tapwire cannot decode (pcapng).
    pub skipped_unknown_link: u64,
    /// Unknown link types met on pcapng interfaces.
    pub unknown_linktypes: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Iface {
    link: Option<LinkType>,
    raw: u32,
    /// Timestamp unit: (multiplier, divisor) to nanoseconds, plus offset in seconds.
    mul: u64,
    div: u64,
    offset_s: i64,
}

fn iface_of(linktype: u32, opts: &[InterfaceDescriptionOption<'_>]) -> Iface {
    let mut resol = 6u8;
    let mut offset_s = 0i64;
    for o in opts {
        match o {
            InterfaceDescriptionOption::IfTsResol(r) => resol = *r,
            InterfaceDescriptionOption::IfTsOffset(off) => offset_s = *off as i64,
            _ => {}
        }
    }
    let (mul, div) = if resol & 0x80 == 0 {
        let e = u32::from(resol.min(19));
        if e <= 9 {
            (10u64.pow(9 - e), 1)
        } else {
            (1, 10u64.pow(e - 9))
        }
    } else {
        // Binary fractions of a second: 2^-n.
        (1_000_000_000, 1u64 << u32::from((resol & 0x7f).min(63)))
    };
    Iface {
        link: LinkType::from_linktype(linktype),
        raw: linktype,
        mul,
        div,
        offset_s,
    }
}

fn scale(iface: &Iface, raw: u64) -> u64 {
    let ns = (u128::from(raw) * u128::from(iface.mul) / u128::from(iface.div)) as u64;
    ns.saturating_add_signed(iface.offset_s.saturating_mul(1_000_000_000))
}

fn is_eof(e: &PcapError) -> bool {
    matches!(e, PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
        || matches!(e, PcapError::IncompleteBuffer)
}

/// Open a capture file for reading (a directory is refused here, not at the first read).
pub fn open(path: &Path) -> Result<File, SourceError> {
    let file = File::open(path).map_err(|source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(SourceError::Open {
            path: path.to_path_buf(),
            source: std::io::Error::other("is a directory"),
        });
    }
    Ok(file)
}

/// Read a capture file, calling `f` for each frame in file order.
pub fn read_file<F: FnMut(Frame<'_>)>(path: &Path, f: F) -> Result<FileSummary, SourceError> {
    let file = open(path)?;
    read(file, path, f)
}

/// Read a capture from any reader (`path` only names it in errors).
pub fn read<R: Read, F: FnMut(Frame<'_>)>(
    mut reader: R,
    path: &Path,
    mut f: F,
) -> Result<FileSummary, SourceError> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(SourceError::Io {
                    path: path.to_path_buf(),
                    packets: 0,
                    source,
                });
            }
        }
    }
    let not_capture = || SourceError::NotCapture {
        path: path.to_path_buf(),
    };
    if got < 4 {
        return Err(not_capture());
    }
    let chained = std::io::Cursor::new(magic).chain(reader);
    match u32::from_le_bytes(magic) {
        0xa1b2c3d4 | 0xd4c3b2a1 | 0xa1b23c4d | 0x4d3cb2a1 => read_pcap(chained, path, &mut f),
        0x0a0d0d0a => read_pcapng(chained, path, &mut f),
        _ => Err(not_capture()),
    }
}

fn read_pcap<R: Read, F: FnMut(Frame<'_>)>(
    reader: R,
    path: &Path,
    f: &mut F,
) -> Result<FileSummary, SourceError> {
    let mut rd = PcapReader::new(reader).map_err(|_| SourceError::NotCapture {
        path: path.to_path_buf(),
    })?;
    let linktype = u32::from(rd.header().datalink);
    let Some(link) = LinkType::from_linktype(linktype) else {
        return Err(SourceError::UnknownLinkType {
            path: path.to_path_buf(),
            linktype,
        });
    };
    // Raw records: the crate's checked records reject `orig_len > snaplen`, which is exactly
    // what a snaplen-cut capture holds.
    let frac_ns: u64 = match rd.header().ts_resolution {
        pcap_file::TsResolution::MicroSecond => 1_000,
        pcap_file::TsResolution::NanoSecond => 1,
    };
    let mut sum = FileSummary::default();
    while let Some(pkt) = rd.next_raw_packet() {
        match pkt {
            Ok(p) => {
                sum.packets += 1;
                let ts = u64::from(p.ts_sec) * 1_000_000_000 + u64::from(p.ts_frac) * frac_ns;
                f(Frame {
                    link,
                    ts,
                    data: &p.data,
                    orig_len: p.orig_len.max(p.incl_len),
                    comment: None,
                });
            }
            Err(e) if is_eof(&e) => {
                sum.cut_short = true;
                break;
            }
            Err(e) => return Err(record_error(path, sum.packets, e)),
        }
    }
    Ok(sum)
}

fn record_error(path: &Path, packets: u64, e: PcapError) -> SourceError {
    match e {
        PcapError::IoError(source) => SourceError::Io {
            path: path.to_path_buf(),
            packets,
            source,
        },
        other => SourceError::Malformed {
            path: path.to_path_buf(),
            packets,
            detail: other.to_string(),
        },
    }
}

fn read_pcapng<R: Read, F: FnMut(Frame<'_>)>(
    reader: R,
    path: &Path,
    f: &mut F,
) -> Result<FileSummary, SourceError> {
    let mut rd = PcapNgReader::new(reader).map_err(|_| SourceError::NotCapture {
        path: path.to_path_buf(),
    })?;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut sum = FileSummary::default();
    while let Some(block) = rd.next_block() {
        match block {
            Ok(Block::SectionHeader(_)) => ifaces.clear(),
            Ok(Block::InterfaceDescription(idb)) => {
                let iface = iface_of(u32::from(idb.linktype), &idb.options);
                if iface.link.is_none() && !sum.unknown_linktypes.contains(&iface.raw) {
                    sum.unknown_linktypes.push(iface.raw);
                }
                ifaces.push(iface);
            }
            Ok(Block::EnhancedPacket(epb)) => {
                sum.packets += 1;
                let Some(iface) = ifaces.get(epb.interface_id as usize) else {
                    return Err(SourceError::Malformed {
                        path: path.to_path_buf(),
                        packets: sum.packets,
                        detail: format!("packet names undeclared interface {}", epb.interface_id),
                    });
                };
                let Some(link) = iface.link else {
                    sum.skipped_unknown_link += 1;
                    continue;
                };
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.as_ref()),
                    _ => None,
                });
                f(Frame {
                    link,
                    ts: scale(iface, epb.timestamp.as_nanos() as u64),
                    data: &epb.data,
                    orig_len: epb.original_len,
                    comment,
                });
            }
            Ok(Block::SimplePacket(spb)) => {
                sum.packets += 1;
                match ifaces.first().and_then(|i| i.link) {
                    Some(link) => f(Frame {
                        link,
                        ts: 0,
                        data: &spb.data,
                        orig_len: spb.original_len,
                        comment: None,
                    }),
                    None => sum.skipped_unknown_link += 1,
                }
            }
            Ok(_) => {}
            Err(e) if is_eof(&e) => {
                sum.cut_short = true;
                break;
            }
            Err(e) => return Err(record_error(path, sum.packets, e)),
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use pcap_file::DataLink;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

    use super::*;

    /// A pcapng with an Ethernet interface (default microsecond resolution) and a raw-IP one
    /// with nanosecond resolution and a 10 s offset: each packet keeps its interface's link
    /// type and its timestamp is scaled by that interface's resolution.
    #[test]
    fn pcapng_interfaces_keep_their_link_type_and_time_unit() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![],
        })
        .unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::IPV4,
            snaplen: 0,
            options: vec![
                InterfaceDescriptionOption::IfTsResol(9),
                InterfaceDescriptionOption::IfTsOffset(10),
            ],
        })
        .unwrap();
        for (iface, raw) in [(0u32, 1_500_000u64), (1, 2_000_000_123)] {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: iface,
                // The crate stores the raw count in a Duration's nanoseconds.
                timestamp: Duration::from_nanos(raw),
                original_len: 4,
                data: Cow::Borrowed(&[1, 2, 3, 4]),
                // The second packet has a comment, which reaches the caller.
                options: if iface == 1 {
                    vec![EnhancedPacketOption::Comment("tapwire-tls stream=1".into())]
                } else {
                    vec![]
                },
            })
            .unwrap();
        }
        let bytes = w.into_inner();
        let mut seen = Vec::new();
        let sum = read(&bytes[..], Path::new("t.pcapng"), |f| {
            seen.push((f.link, f.ts, f.comment.map(str::to_string)))
        })
        .unwrap();
        assert_eq!(sum.packets, 2);
        assert_eq!(
            seen,
            vec![
                (LinkType::Ethernet, 1_500_000_000, None),
                (
                    LinkType::RawIp,
                    12_000_000_123,
                    Some("tapwire-tls stream=1".into())
                )
            ]
        );
    }

    #[test]
    fn not_a_capture_and_empty_input_are_errors() {
        assert!(matches!(
            read(&b"GIF89a..."[..], Path::new("x"), |_| {}),
            Err(SourceError::NotCapture { .. })
        ));
        assert!(matches!(
            read(&b""[..], Path::new("x"), |_| {}),
            Err(SourceError::NotCapture { .. })
        ));
    }
}
