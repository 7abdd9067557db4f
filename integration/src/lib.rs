//! End-to-end tests of the tapwire agent live in `tests/`; the fixture recorder
//! (`record.sh`), its servers and its clients live next to them.

use std::path::PathBuf;

/// The `tapwire` binary of this build (the workspace build puts it in the target folder,
/// next to the test executables' `deps/`).
pub fn tapwire() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target folder");
    let bin = dir.join("tapwire");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p tapwire-agent` first",
        bin.display()
    );
    bin
}
