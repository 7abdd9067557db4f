//! Compiles `bpf/tls.bpf.c` with clang (`-target bpf`, CO-RE) into `$OUT_DIR/tls.bpf.o`,
//! which `src/tracer.rs` embeds. libbpf-cargo runs clang with libbpf's own headers.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/tls.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=bpf/kernel.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    if Command::new(&clang).arg("--version").output().is_err() {
        panic!(
            "tapwire-tls: the TLS tracer's eBPF program needs clang to build \
             (Debian: apt-get install clang libelf-dev; or set CLANG). To build tapwire \
             without TLS tracing: cargo build -p tapwire-agent --no-default-features \
             --features libpcap"
        );
    }
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        panic!("tapwire-tls: the TLS tracer supports x86-64 only for now (bpf/kernel.h)");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("tls.bpf.o");
    libbpf_cargo::SkeletonBuilder::new()
        .source(src)
        .obj(&out)
        .clang(&clang)
        .clang_args(["-Ibpf", "-Wall", "-Werror"])
        .build()
        .unwrap_or_else(|e| panic!("tapwire-tls: compiling {src}: {e:#}"));
}
