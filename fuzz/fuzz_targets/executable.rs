//! The TLS tracer reads every executable processes on the node run: any bytes as an ELF file
//! (Go's function table and build info, symbol tables, `.rodata`), and the function-table and
//! instruction readers on raw bytes. Never a panic, never an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapwire_tls::{executable, golang};

fuzz_target!(|data: &[u8]| {
    let _ = executable::inspect_bytes(data);
    let names = ["crypto/tls.(*Conn).Read", "crypto/tls.(*Conn).Write"];
    let _ = golang::find_functions(data, 0x40_1000, &names);
    let _ = golang::build_version(data, |addr, len| {
        let at = usize::try_from(addr % 4096).ok()?;
        data.get(at..at.checked_add(len)?).map(<[u8]>::to_vec)
    });
    let _ = golang::returns(data, 0x40_1000);
});
