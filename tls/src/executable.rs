//! What a process's executable file holds for the TLS tracer: Go's `crypto/tls` (found through
//! its function table, [`crate::golang`]), OpenSSL or BoringSSL linked in statically with its
//! symbols (attached by name like a `libssl.so`), or nothing to trace (no TLS, or TLS from a
//! shared `libssl.so` the library scan covers). What cannot be traced is said, with a reason:
//! an old Go, another architecture, a static TLS library whose symbols were stripped.
//!
//! Limits: files above [`MAX_FILE_BYTES`] are not read (reported); only the parts needed are
//! read (section and symbol tables, `.gopclntab`, `.rodata` when looking for a stripped static
//! library). Reading a hostile file is an error at worst, never a panic.

use std::path::Path;

use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectSection, ObjectSymbol, ReadCache, ReadRef};

use crate::golang::{self, GoError, GoTls};

/// Largest executable inspected.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// OpenSSL's and BoringSSL's own source paths (their error macros keep `__FILE__`): bytes
/// only a binary with the TLS library linked in holds. Kept in two pieces, joined at run
/// time, so tapwire's own executable does not hold them and match itself.
const STATIC_TLS_MARKERS: [(&[u8], &[u8]); 2] = [(b"ssl/", b"ssl_lib.c"), (b"ssl/", b"s3_lib.c")];

/// Why an executable that does TLS is not traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// A short label for metrics (`go_too_old`, `stripped_static_tls`, …).
    pub reason: &'static str,
    /// One sentence for the log.
    pub detail: String,
}

/// What an executable holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executable {
    /// Go with `crypto/tls`: probes at the functions' entries and returns.
    Go(GoTls),
    /// OpenSSL or BoringSSL linked in, its `SSL_read`/`SSL_write` in a symbol table.
    StaticOpenSsl,
    /// Nothing to trace in the file itself.
    NoTls,
    Unsupported(Unsupported),
}

/// Inspect the executable at `path`.
pub fn inspect(path: &Path) -> Executable {
    let unreadable = |e: String| {
        Executable::Unsupported(Unsupported {
            reason: "unreadable",
            detail: e,
        })
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return unreadable(e.to_string()),
    };
    match file.metadata() {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return unreadable(format!("larger than {MAX_FILE_BYTES} bytes"));
        }
        Ok(_) => {}
        Err(e) => return unreadable(e.to_string()),
    }
    let cache = ReadCache::new(file);
    classify(&cache)
}

/// [`inspect`] on a file's bytes in memory.
pub fn inspect_bytes(data: &[u8]) -> Executable {
    classify(data)
}

fn classify<'d, R: ReadRef<'d>>(data: R) -> Executable {
    // Not a 64-bit ELF file (a script's interpreter is the process's executable, so this is
    // rare): nothing this tracer could attach to.
    let Ok(elf) = ElfFile64::<Endianness, R>::parse(data) else {
        return Executable::NoTls;
    };
    match golang::inspect_elf(&elf) {
        Ok(go) => return Executable::Go(go),
        Err(GoError::NotGo) => {}
        Err(GoError::NoTls) => return Executable::NoTls,
        Err(e) => {
            return Executable::Unsupported(Unsupported {
                reason: e.reason(),
                detail: format!("Go program: {e}"),
            });
        }
    }
    // Only a file holding OpenSSL's or BoringSSL's own source paths has the library linked
    // in; the search over `.rodata` is cheaper than walking a large symbol table, so it comes
    // first (a program importing SSL_* from a shared libssl holds no such path).
    let rodata = elf.section_by_name(".rodata").and_then(|s| s.data().ok());
    let linked_in = rodata.is_some_and(|d| {
        STATIC_TLS_MARKERS
            .iter()
            .any(|(a, b)| memchr::memmem::find(d, &[*a, *b].concat()).is_some())
    });
    if !linked_in {
        return Executable::NoTls;
    }
    let exported = elf.symbols().chain(elf.dynamic_symbols()).any(|sym| {
        matches!(sym.name_bytes(), Ok(b"SSL_write" | b"SSL_read")) && !sym.is_undefined()
    });
    if exported {
        return Executable::StaticOpenSsl;
    }
    Executable::Unsupported(Unsupported {
        reason: "stripped_static_tls",
        detail: "OpenSSL or BoringSSL is linked in, but without SSL_read/SSL_write symbols".into(),
    })
}
