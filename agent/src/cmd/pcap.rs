//! `tapwire pcap`: export a time window of a running agent's spool to a pcapng file.
//! The file appears only when the export is complete (written next to it, then renamed).

use std::process::ExitCode;

use crate::cli::PcapArgs;

pub fn run(args: PcapArgs) -> ExitCode {
    let query = [
        ("since", Some(args.since.as_str())),
        ("until", args.until.as_deref()),
        ("filter", args.filter.as_deref()),
    ];
    let mut resp = match crate::client::get(&args.agent, "/v1/pcap", &query) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapwire: {e}");
            return ExitCode::from(2);
        }
    };
    let part = args.output.with_extension("pcapng.part");
    let result = crate::spool::private_file(&part).and_then(|mut f| {
        std::io::copy(&mut resp.body_mut().as_reader(), &mut f)?;
        f.sync_all()
    });
    match result.and_then(|_| std::fs::rename(&part, &args.output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            eprintln!("tapwire: cannot write {}: {e}", args.output.display());
            ExitCode::from(2)
        }
    }
}
