//! tapwire's second source: the plaintext programs hand to their TLS library, read with eBPF
//! uprobes where they hand it over, and bound to the TCP connection it travels on.
//!
//! - `bpf/tls.bpf.c`: the BPF program (uprobes on OpenSSL's `SSL_read`/`SSL_write` and their
//!   `_ex` forms, and on Go's `crypto/tls.(*Conn).Read`/`Write` entries and returns; a raw
//!   `sys_enter` tracepoint that binds each `SSL*` to its socket; a raw exec tracepoint; ring
//!   buffers of chunks and execs). Its comment states how connections are identified and every
//!   cap.
//! - [`discover`]: which libssl files processes have mapped (`/proc/*/maps`, containers
//!   through `/proc/<pid>/root`), and which executables they run.
//! - [`executable`] and [`golang`]: what an executable holds (Go's `crypto/tls` through its
//!   function table, OpenSSL linked in statically), or why it cannot be traced.
//! - [`tracer`]: loading the program, attaching per library file, reading the ring buffer,
//!   the counters.
//! - [`chunk`]: one ring-buffer record as a [`Chunk`]: process, connection, direction,
//!   per-direction byte offset (a jump is a gap), endpoints, plaintext.
//! - [`sockets`]: the TCP connections processes hold when the probes attach (their plaintext
//!   is then picked up mid-stream).
//! - [`reorder`]: chunks back in time order (a read reported before the write it answers).
//! - [`feed`]: chunks into the pipeline's plaintext streams (`Pipeline::stream`): stream ids,
//!   the owning process, wall-clock time, one owner per TCP connection when both ends are
//!   traced.
//!
//! Written here rather than taken from a crate: libbpf-rs loads the program; no crate traces
//! TLS libraries (the peers that do, Pixie, Beyla, Kubeshark's tracer, are applications). The
//! BPF program is C, compiled by clang at build time (`build.rs`): there is no nightly Rust or
//! `rust-src` here for BPF in Rust, and aya's multi-uprobe releases need a newer rustc.
//!
//! Needs root, or `CAP_BPF` + `CAP_PERFMON` + `CAP_SYS_PTRACE` (to read other processes'
//! maps and files), and a kernel with BTF (`/sys/kernel/btf/vmlinux`). x86-64 only for now
//! (the register frame in `bpf/kernel.h`). See ARCHITECTURE.md for how chunks reach the
//! dissectors.

pub mod chunk;
pub mod discover;
pub mod executable;
pub mod feed;
pub mod golang;
pub mod reorder;
pub mod sockets;
pub mod tracer;

pub use chunk::{Chunk, ChunkError, ConnId, Direction, Endpoints};
pub use feed::{Feed, FeedStats};
pub use reorder::Reorder;
pub use tracer::{Config, Counters, SyncReport, TlsError, Tracer, UnsupportedExecutable};
