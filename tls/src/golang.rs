//! Go programs' `crypto/tls`: where `(*Conn).Write` and `(*Conn).Read` start and return, in an
//! executable file, for uprobes.
//!
//! Go links its TLS statically into every program, usually without a symbol table (`-s -w`),
//! so the functions are found through `.gopclntab` (the runtime's own function table, which
//! stripping keeps; `.data.rel.ro.gopclntab` in PIE builds). Its layouts for Go 1.16–1.17
//! (magic `0xfffffffa`) and 1.18+ (`0xfffffff0`, `0xfffffff1`) are read here. The Go version
//! comes from `.go.buildinfo` (1.13–1.17 pointer form and the 1.18+ inline form).
//!
//! Uretprobes are never used on Go: the runtime moves goroutine stacks, and a return probe's
//! rewritten return address breaks that. Instead every `RET` instruction inside a function's
//! bounds gets a uprobe of its own; the bounds are the function table's next entry, and the
//! instructions are decoded with `iced-x86` (Go's amd64 functions hold no data between
//! instructions, so a linear decode from the entry finds every `RET`).
//!
//! Supported: x86-64 executables of Go ≥ 1.17 (the register ABI: receiver in RAX, buffer in
//! RBX and RCX, the result in RAX, the goroutine in R14). Anything else is an [`GoError`] the
//! caller reports per process. Limits: at most [`MAX_RETURNS`] returns per function, a function
//! table of at most [`MAX_FUNCTIONS`] entries, functions of at most [`MAX_FUNCTION_BYTES`].
//! Every read of the file is bounds-checked: a hostile binary is an error, never a panic.
//!
//! Written here: no Rust crate reads `.gopclntab` (Go's `debug/gosym` is Go).

use std::path::Path;

use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSegment, ReadCache};

/// The functions traced, and whether each writes (else reads) plaintext.
pub const FUNCTIONS: [(&str, bool); 2] = [
    ("crypto/tls.(*Conn).Write", true),
    ("crypto/tls.(*Conn).Read", false),
];

/// Most `RET` instructions probed in one function (Go's are a handful).
pub const MAX_RETURNS: usize = 64;
/// Most entries read from a function table.
pub const MAX_FUNCTIONS: u64 = 1 << 22;
/// Largest function decoded.
pub const MAX_FUNCTION_BYTES: u64 = 1 << 20;

/// One traced function in one file: file offsets of its entry and of each `RET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    pub name: &'static str,
    pub write: bool,
    pub entry: u64,
    pub returns: Vec<u64>,
}

/// A Go executable's traced functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTls {
    /// As the binary states it (`go1.19.8`).
    pub version: String,
    pub functions: Vec<GoFunction>,
}

/// Why a Go executable is not traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoError {
    #[error("not a Go executable")]
    NotGo,
    #[error("built with {0}, which predates Go 1.17's register calling convention")]
    TooOld(String),
    #[error("Go version unknown (no readable .go.buildinfo)")]
    UnknownVersion,
    #[error("not an x86-64 executable")]
    Arch,
    #[error("malformed Go function table: {0}")]
    BadTable(&'static str),
    #[error("does not use crypto/tls")]
    NoTls,
    #[error("no return instruction found in {0}")]
    NoReturns(&'static str),
    #[error("reading the file: {0}")]
    Io(String),
}

impl GoError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GoError::NotGo => "not_go",
            GoError::TooOld(_) => "go_too_old",
            GoError::UnknownVersion => "go_version_unknown",
            GoError::Arch => "architecture",
            GoError::BadTable(_) => "malformed",
            GoError::NoTls => "no_tls",
            GoError::NoReturns(_) => "no_returns",
            GoError::Io(_) => "unreadable",
        }
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn usize_of(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

/// `(major, minor)` of a Go version string (`go1.19.8`, `go1.21rc2`, `devel go1.23-…`).
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (_, rest) = v.split_once("go1.")?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((1, minor.parse().ok()?))
}

/// The Go version in a `.go.buildinfo` section. The 1.18+ form holds it inline (a varint
/// length, then the bytes, 32 bytes in); the older form holds a pointer to a string header,
/// resolved with `read` (virtual address, length → bytes).
pub fn build_version(info: &[u8], read: impl Fn(u64, usize) -> Option<Vec<u8>>) -> Option<String> {
    if info.get(..14)? != b"\xff Go buildinf:" {
        return None;
    }
    let ptr_size = *info.get(14)?;
    let flags = *info.get(15)?;
    let bytes = if flags & 2 != 0 {
        let mut len = 0usize;
        let mut at = 32;
        for shift in (0..35).step_by(7) {
            let b = *info.get(at)?;
            at += 1;
            len |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        info.get(at..at.checked_add(len)?)?.to_vec()
    } else {
        if ptr_size != 8 || flags & 1 != 0 {
            return None; // 32-bit or big-endian: not supported here anyway
        }
        let header = read(le64(info, 16)?, 16)?;
        let (ptr, len) = (le64(&header, 0)?, le64(&header, 8)?);
        read(ptr, usize_of(len).filter(|l| *l <= 64)?)?
    };
    String::from_utf8(bytes).ok()
}

/// Where one function of a `.gopclntab` starts and ends (virtual addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub start: u64,
    pub end: u64,
}

/// Find `names` in a `.gopclntab` (x86-64 layouts). `text` stands in for the table's text
/// start when the table holds 0 there. One entry per name, `None` for names not found.
pub fn find_functions(
    tab: &[u8],
    text: u64,
    names: &[&str],
) -> Result<Vec<Option<Bounds>>, GoError> {
    let bad = GoError::BadTable;
    let magic = le32(tab, 0).ok_or(bad("short header"))?;
    if tab.get(4..8) != Some(&[0, 0, 1, 8][..]) {
        return Err(bad("not an x86-64 table"));
    }
    let word = |i: usize| le64(tab, 8 + i * 8).ok_or(bad("short header"));
    // (functions, text start, name table, function table, bytes per table entry)
    let (nfunc, text_start, names_at, pcln_at, wide) = match magic {
        0xffff_fff0 | 0xffff_fff1 => {
            let t = word(2)?;
            (
                word(0)?,
                if t == 0 { text } else { t },
                word(3)?,
                word(7)?,
                false,
            )
        }
        0xffff_fffa => (word(0)?, 0, word(2)?, word(6)?, true),
        _ => {
            return Err(bad(
                "unknown magic (Go older than 1.16, or not a function table)",
            ));
        }
    };
    if nfunc > MAX_FUNCTIONS {
        return Err(bad("too many functions"));
    }
    let funcs = tab
        .get(usize_of(pcln_at).ok_or(bad("offset"))?..)
        .ok_or(bad("offset"))?;
    let name_tab = tab
        .get(usize_of(names_at).ok_or(bad("offset"))?..)
        .ok_or(bad("offset"))?;
    let entry_size = if wide { 16 } else { 8 };
    // (entry address, offset of the function's record) of table entry i
    let entry = |i: usize| -> Result<(u64, usize), GoError> {
        let at = i * entry_size;
        let (pc, off) = if wide {
            (le64(funcs, at), le64(funcs, at + 8))
        } else {
            (
                le32(funcs, at).map(|e| text_start.wrapping_add(u64::from(e))),
                le32(funcs, at + 4).map(u64::from),
            )
        };
        match (pc, off.and_then(usize_of)) {
            (Some(pc), Some(off)) => Ok((pc, off)),
            _ => Err(bad("function table past the section")),
        }
    };
    let mut found: Vec<Option<Bounds>> = vec![None; names.len()];
    let nfunc = usize_of(nfunc).ok_or(bad("too many functions"))?;
    for i in 0..nfunc {
        let (start, rec) = entry(i)?;
        let name_off = if wide {
            le32(funcs, rec.saturating_add(8))
        } else {
            le32(funcs, rec.saturating_add(4))
        }
        .ok_or(bad("function record past the section"))?;
        let Some(name) = usize_of(u64::from(name_off)).and_then(|o| name_tab.get(o..)) else {
            continue;
        };
        for (slot, want) in found.iter_mut().zip(names) {
            let w = want.as_bytes();
            if slot.is_none() && name.starts_with(w) && name.get(w.len()) == Some(&0) {
                let (end, _) = entry(i + 1)?;
                if end <= start || end - start > MAX_FUNCTION_BYTES {
                    return Err(bad("function bounds"));
                }
                *slot = Some(Bounds { start, end });
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    Ok(found)
}

/// Addresses of the `RET` instructions in x86-64 `code` loaded at `ip`, at most
/// [`MAX_RETURNS`].
pub fn returns(code: &[u8], ip: u64) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
        .into_iter()
        .filter(|i| i.mnemonic() == Mnemonic::Ret)
        .map(|i| i.ip())
        .take(MAX_RETURNS)
        .collect()
}

/// The file offset of virtual address `addr` in a loaded segment of `segments`
/// (`(vaddr, file offset, file size)`).
fn file_offset(segments: &[(u64, u64, u64)], addr: u64) -> Option<u64> {
    segments.iter().find_map(|&(va, off, size)| {
        let d = addr.checked_sub(va)?;
        (d < size).then(|| off + d)
    })
}

/// Inspect the executable at `path` for Go's `crypto/tls`. Reads only the parts it needs.
pub fn inspect(path: &Path) -> Result<GoTls, GoError> {
    let file = std::fs::File::open(path).map_err(|e| GoError::Io(e.to_string()))?;
    let cache = ReadCache::new(file);
    let elf = ElfFile64::<Endianness, _>::parse(&cache).map_err(|_| GoError::NotGo)?;
    inspect_elf(&elf)
}

/// [`inspect`] on a parsed file.
pub fn inspect_elf<'d, R: object::ReadRef<'d>>(
    elf: &ElfFile64<'d, Endianness, R>,
) -> Result<GoTls, GoError> {
    let tab = elf
        .section_by_name(".gopclntab")
        .or_else(|| elf.section_by_name(".data.rel.ro.gopclntab"))
        .ok_or(GoError::NotGo)?;
    if elf.architecture() != object::Architecture::X86_64 {
        return Err(GoError::Arch);
    }
    let endian = elf.endian();
    // Loaded segments: (virtual address, file offset, bytes in the file).
    let segments: Vec<(u64, u64, u64)> = elf
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
        .map(|p| (p.p_vaddr(endian), p.p_offset(endian), p.p_filesz(endian)))
        .collect();
    let read = |addr: u64, len: usize| -> Option<Vec<u8>> {
        elf.segments().find_map(|s| {
            let d = s.data_range(addr, len as u64).ok()??;
            (d.len() == len).then(|| d.to_vec())
        })
    };
    let version = elf
        .section_by_name(".go.buildinfo")
        .and_then(|s| s.data().ok())
        .and_then(|d| build_version(d, read))
        .ok_or(GoError::UnknownVersion)?;
    match parse_version(&version) {
        Some((1, minor)) if minor >= 17 => {}
        Some(_) => return Err(GoError::TooOld(version)),
        None => return Err(GoError::UnknownVersion),
    }
    let text = elf.section_by_name(".text").map_or(0, |s| s.address());
    let data = tab.data().map_err(|e| GoError::Io(e.to_string()))?;
    let names: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
    let bounds = find_functions(data, text, &names)?;
    if bounds.iter().all(Option::is_none) {
        return Err(GoError::NoTls);
    }
    let mut functions = Vec::new();
    for ((name, write), b) in FUNCTIONS.into_iter().zip(bounds) {
        let Some(b) = b else { continue };
        let code = read(
            b.start,
            usize_of(b.end - b.start).ok_or(GoError::BadTable("bounds"))?,
        )
        .ok_or(GoError::BadTable("function outside the file"))?;
        let rets: Vec<u64> = returns(&code, b.start)
            .into_iter()
            .filter_map(|a| file_offset(&segments, a))
            .collect();
        if rets.is_empty() {
            return Err(GoError::NoReturns(name));
        }
        let entry = file_offset(&segments, b.start)
            .ok_or(GoError::BadTable("function outside the file"))?;
        functions.push(GoFunction {
            name,
            write,
            entry,
            returns: rets,
        });
    }
    Ok(GoTls { version, functions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("go1.19.8"), Some((1, 19)));
        assert_eq!(parse_version("go1.21rc2"), Some((1, 21)));
        assert_eq!(parse_version("devel go1.23-abcdef"), Some((1, 23)));
        assert_eq!(parse_version("go1.9"), Some((1, 9)));
        assert_eq!(parse_version("gccgo"), None);
    }

    #[test]
    fn inline_build_info() {
        let mut info = b"\xff Go buildinf:\x08\x02".to_vec();
        info.resize(32, 0);
        info.push(8);
        info.extend_from_slice(b"go1.20.3");
        assert_eq!(
            build_version(&info, |_, _| None).as_deref(),
            Some("go1.20.3")
        );
        info.truncate(38);
        assert_eq!(
            build_version(&info, |_, _| None),
            None,
            "length past the end"
        );
    }

    #[test]
    fn pointer_build_info() {
        let mut info = b"\xff Go buildinf:\x08\x00".to_vec();
        info.extend_from_slice(&0x1000u64.to_le_bytes());
        let read = |addr: u64, len: usize| match (addr, len) {
            (0x1000, 16) => {
                let mut h = 0x2000u64.to_le_bytes().to_vec();
                h.extend_from_slice(&7u64.to_le_bytes());
                Some(h)
            }
            (0x2000, 7) => Some(b"go1.17.1".get(..7)?.to_vec()),
            _ => None,
        };
        assert_eq!(build_version(&info, read).as_deref(), Some("go1.17."));
    }

    /// A 1.18-layout table with functions `a` at text+0x10 and `crypto/tls.(*Conn).Read` at
    /// text+0x40, ending at text+0x80.
    fn table(text_start: u64) -> Vec<u8> {
        let mut t = 0xffff_fff0u32.to_le_bytes().to_vec();
        t.extend_from_slice(&[0, 0, 1, 8]);
        let names = b"a\0crypto/tls.(*Conn).Read\0";
        let header = 8 + 8 * 8;
        let names_at = header as u64;
        let pcln_at = names_at + names.len() as u64;
        // nfunc, nfiles, text, names, cu, files, pc, pcln
        for w in [2u64, 0, text_start, names_at, 0, 0, 0, pcln_at] {
            t.extend_from_slice(&w.to_le_bytes());
        }
        t.extend_from_slice(names);
        // functab: (entryoff, funcoff) × 3, then two records (entryoff, nameoff)
        let recs = 3 * 8u32;
        for (e, f) in [(0x10u32, recs), (0x40, recs + 8), (0x80, 0)] {
            t.extend_from_slice(&e.to_le_bytes());
            t.extend_from_slice(&f.to_le_bytes());
        }
        for (e, n) in [(0x10u32, 0u32), (0x40, 2)] {
            t.extend_from_slice(&e.to_le_bytes());
            t.extend_from_slice(&n.to_le_bytes());
        }
        t
    }

    #[test]
    fn functions_by_name_with_their_bounds() {
        let t = table(0x40_1000);
        let got = find_functions(
            &t,
            0,
            &["crypto/tls.(*Conn).Read", "crypto/tls.(*Conn).Write", "a"],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                Some(Bounds {
                    start: 0x40_1040,
                    end: 0x40_1080
                }),
                None,
                Some(Bounds {
                    start: 0x40_1010,
                    end: 0x40_1040
                }),
            ]
        );
        // A table holding no text start takes the caller's.
        let got = find_functions(&table(0), 0x50_0000, &["a"]).unwrap();
        assert_eq!(
            got,
            [Some(Bounds {
                start: 0x50_0010,
                end: 0x50_0040
            })]
        );
    }

    #[test]
    fn truncated_or_hostile_tables_are_errors() {
        let t = table(0x40_1000);
        for cut in 0..t.len() {
            // Never a panic; a name past the cut is simply not found.
            let _ = find_functions(&t[..cut], 0, &["crypto/tls.(*Conn).Read"]);
        }
        let mut huge = t.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(find_functions(&huge, 0, &["x"]).is_err());
        let mut wild = t.clone();
        let pcln = 8 + 7 * 8;
        wild[pcln..pcln + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(find_functions(&wild, 0, &["x"]).is_err());
        let mut arm = t;
        arm[7] = 4;
        assert!(find_functions(&arm, 0, &["x"]).is_err());
    }

    #[test]
    fn returns_at_instruction_boundaries_only() {
        // mov eax, 0xc3c3c3c3 (the C3 bytes are an immediate); ret; int3; ret
        let code = [0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xcc, 0xc3];
        assert_eq!(returns(&code, 0x1000), [0x1005, 0x1007]);
        assert!(returns(&[], 0).is_empty());
    }
}
