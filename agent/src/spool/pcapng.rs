//! The three pcapng blocks the spool writes (section header, interface description, enhanced
//! packet; little-endian, nanosecond timestamps), and the block walk that finds where a cut
//! file's last whole block ends.
//!
//! Written here rather than through `pcap-file`'s writer: the spool needs each block's exact
//! size for its caps, must write a packet without allocating, and must trim a file a crash
//! cut, which no writer does. Reading back (export, `since` replay) uses the pipeline's
//! `pcap-file`-based source.

use std::io::{self, Write};

pub const SHB: u32 = 0x0A0D_0D0A;
pub const IDB: u32 = 1;
pub const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Section header block with no options.
pub fn section_header(w: &mut impl Write) -> io::Result<u64> {
    let len = 28u32;
    w.write_all(&SHB.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&BYTE_ORDER_MAGIC.to_le_bytes())?;
    w.write_all(&1u16.to_le_bytes())?;
    w.write_all(&0u16.to_le_bytes())?;
    w.write_all(&(-1i64).to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    Ok(u64::from(len))
}

/// Most bytes of a packet comment (an option's length is 16 bits).
const MAX_COMMENT: usize = u16::MAX as usize;

/// The zero bytes that pad a field of `n` bytes to a multiple of four.
fn padding(n: usize) -> &'static [u8] {
    static ZEROS: [u8; 3] = [0; 3];
    ZEROS.get(..pad4(n)).unwrap_or_default()
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Interface description block: link type, snaplen, `if_name`, `if_tsresol` = 9 (ns).
pub fn interface(w: &mut impl Write, link: u16, snaplen: u32, name: &str) -> io::Result<u64> {
    let name = &name.as_bytes()[..name.len().min(64)];
    let opts = 4 + name.len() + pad4(name.len()) + 4 + 4 + 4;
    let len = (8 + 8 + opts + 4) as u32;
    w.write_all(&IDB.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&link.to_le_bytes())?;
    w.write_all(&0u16.to_le_bytes())?;
    w.write_all(&snaplen.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?; // if_name
    w.write_all(&(name.len() as u16).to_le_bytes())?;
    w.write_all(name)?;
    w.write_all(padding(name.len()))?;
    w.write_all(&9u16.to_le_bytes())?; // if_tsresol
    w.write_all(&1u16.to_le_bytes())?;
    w.write_all(&[9, 0, 0, 0])?;
    w.write_all(&[0; 4])?; // opt_endofopt
    w.write_all(&len.to_le_bytes())?;
    Ok(u64::from(len))
}

/// Enhanced packet block; `prefix` (a link header built for the record, may be empty) goes
/// before `data`; a non-empty `comment` (at most 65535 bytes) is its `opt_comment`.
pub fn packet(
    w: &mut impl Write,
    iface: u32,
    ts: u64,
    prefix: &[u8],
    data: &[u8],
    orig_len: u32,
    comment: &[u8],
) -> io::Result<u64> {
    let cap = prefix.len() + data.len();
    let comment = comment.get(..MAX_COMMENT).unwrap_or(comment);
    let opts = if comment.is_empty() {
        0
    } else {
        4 + comment.len() + pad4(comment.len()) + 4
    };
    let len = (28 + cap + pad4(cap) + opts + 4) as u32;
    w.write_all(&EPB.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&iface.to_le_bytes())?;
    w.write_all(&((ts >> 32) as u32).to_le_bytes())?;
    w.write_all(&(ts as u32).to_le_bytes())?;
    w.write_all(&(cap as u32).to_le_bytes())?;
    w.write_all(&(orig_len + prefix.len() as u32).to_le_bytes())?;
    w.write_all(prefix)?;
    w.write_all(data)?;
    w.write_all(padding(cap))?;
    if !comment.is_empty() {
        w.write_all(&1u16.to_le_bytes())?; // opt_comment
        w.write_all(&(comment.len() as u16).to_le_bytes())?;
        w.write_all(comment)?;
        w.write_all(padding(comment.len()))?;
        w.write_all(&[0; 4])?; // opt_endofopt
    }
    w.write_all(&len.to_le_bytes())?;
    Ok(u64::from(len))
}

/// The `opt_comment` of an enhanced packet block whose packet holds `cap` bytes, if any.
pub fn packet_comment(block: &[u8], cap: usize) -> Option<&[u8]> {
    let mut at = 28usize.checked_add(cap)?;
    at += pad4(cap);
    let end = block.len().checked_sub(4)?;
    while at.checked_add(4)? <= end {
        let code = u16::from_le_bytes(block.get(at..at + 2)?.try_into().ok()?);
        let len = usize::from(u16::from_le_bytes(
            block.get(at + 2..at + 4)?.try_into().ok()?,
        ));
        if code == 0 {
            return None;
        }
        let value = block.get(at + 4..(at + 4).checked_add(len)?)?;
        if code == 1 {
            return Some(value);
        }
        at += 4 + len + pad4(len);
    }
    None
}

/// What a walk over a spool file found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    /// End of the last whole block (the file is cut beyond it).
    pub whole: u64,
    pub first_ts: Option<u64>,
    pub last_ts: Option<u64>,
    pub packets: u64,
}

/// Reads of the spool's own files (which a crash may have cut anywhere) go through the
/// pipeline's checked reader.
pub use pipeline::wire::le32;

/// Walk the blocks of a file the spool wrote (little-endian, ns timestamps).
pub fn walk(bytes: &[u8]) -> Walk {
    let mut w = Walk::default();
    let mut at = 0usize;
    let u32_at = |i: usize| le32(bytes, i);
    while let (Some(kind), Some(len)) = (u32_at(at), u32_at(at + 4)) {
        let len = len as usize;
        if len < 12
            || !len.is_multiple_of(4)
            || at + len > bytes.len()
            || u32_at(at + len - 4) != Some(len as u32)
        {
            break;
        }
        if at == 0 && (kind != SHB || u32_at(8) != Some(BYTE_ORDER_MAGIC)) {
            break;
        }
        if kind == EPB
            && let (Some(hi), Some(lo)) = (u32_at(at + 12), u32_at(at + 16))
        {
            let ts = (u64::from(hi) << 32) | u64::from(lo);
            w.first_ts.get_or_insert(ts);
            w.last_ts = Some(ts);
            w.packets += 1;
        }
        at += len;
        w.whole = at as u64;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_walk_back_and_a_cut_is_found() {
        let mut f = Vec::new();
        section_header(&mut f).unwrap();
        interface(&mut f, 1, 262_144, "veth0").unwrap();
        packet(&mut f, 0, 1_700_000_000_123_456_789, &[], b"abcde", 60, &[]).unwrap();
        let whole = f.len();
        packet(
            &mut f,
            0,
            1_700_000_001_000_000_000,
            &[1, 2],
            b"xyz",
            3,
            &[],
        )
        .unwrap();
        let w = walk(&f);
        assert_eq!((w.whole as usize, w.packets), (f.len(), 2));
        assert_eq!(w.first_ts, Some(1_700_000_000_123_456_789));
        let cut = walk(&f[..f.len() - 3]);
        assert_eq!((cut.whole as usize, cut.packets), (whole, 1));
        assert_eq!(walk(b"not pcapng at all").whole, 0);
    }

    #[test]
    fn pipeline_reads_what_the_spool_writes() {
        let mut f = Vec::new();
        section_header(&mut f).unwrap();
        interface(&mut f, 101, 65_535, "any").unwrap();
        let at = f.len();
        packet(
            &mut f,
            0,
            1_700_000_000_000_000_042,
            &[],
            &[0x45, 0, 0, 20],
            20,
            b"a comment of 17 b",
        )
        .unwrap();
        // The comment reads back; a block without one has none.
        let block = &f[at..];
        assert_eq!(packet_comment(block, 4), Some(&b"a comment of 17 b"[..]));
        let mut plain = Vec::new();
        packet(&mut plain, 0, 1, &[], b"abcde", 5, &[]).unwrap();
        assert_eq!(packet_comment(&plain, 5), None);
        assert_eq!(packet_comment(&block[..20], 4), None, "cut: nothing");
        let mut seen = Vec::new();
        pipeline::source::read(&f[..], std::path::Path::new("memory"), |fr| {
            seen.push((fr.ts, fr.data.to_vec(), fr.orig_len))
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![(1_700_000_000_000_000_042, vec![0x45, 0, 0, 20], 20)]
        );
    }
}
