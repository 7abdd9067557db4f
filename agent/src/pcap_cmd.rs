//! `tapwire pcap`: export a time window of a running agent's spool to a pcapng file.
//! The file appears only when the export is complete (written next to it, then renamed).

use std::process::ExitCode;

use crate::cli::PcapArgs;

pub fn run(args: PcapArgs) -> ExitCode {
    let url = format!("{}/v1/pcap", args.agent.trim_end_matches('/'));
    let mut req = ureq::get(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .query("since", &args.since);
    if let Some(u) = &args.until {
        req = req.query("until", u);
    }
    if let Some(f) = &args.filter {
        req = req.query("filter", f);
    }
    if let Some(t) = &args.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = match req.call() {
        Ok(r) if r.status().is_success() => r,
        Ok(mut r) => {
            let why = r.body_mut().read_to_string().unwrap_or_default();
            eprintln!("tapwire: {url}: {}", why.trim());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("tapwire: cannot export from {url}: {e}");
            return ExitCode::from(2);
        }
    };
    let part = args.output.with_extension("pcapng.part");
    let result = std::fs::File::create(&part).and_then(|mut f| {
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
