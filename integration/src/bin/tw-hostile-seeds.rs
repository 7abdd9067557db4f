//! `tw-hostile-seeds DIR`: write the hostile suite's cases as fuzz seeds, `DIR/<target>/hostile-<case>`
//! (the stream targets' layout) and `DIR/pipeline/hostile-<case>.pcap` (a capture of the
//! case), for `fuzz/run-all.sh`.

use std::path::PathBuf;

use tapwire_integration::hostile;
use tapwire_integration::pcapgen::Pcap;

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: tw-hostile-seeds DIR");
        return std::process::ExitCode::from(2);
    };
    for case in hostile::seed_cases() {
        let mut p = Pcap::new();
        case.connect(&mut p, 1);
        let written = [
            (
                dir.join(case.target),
                format!("hostile-{}", case.name),
                case.seed(),
            ),
            (
                dir.join("pipeline"),
                format!("hostile-{}.pcap", case.name),
                p.bytes().to_vec(),
            ),
        ]
        .into_iter()
        .try_for_each(|(d, name, bytes)| {
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join(name), bytes)
        });
        if let Err(e) = written {
            eprintln!("tw-hostile-seeds: {}: {e}", dir.display());
            return std::process::ExitCode::from(1);
        }
    }
    std::process::ExitCode::SUCCESS
}
