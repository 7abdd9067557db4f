//! The agent's configuration: a YAML file (`--config`), every key overridable by its flag or
//! `TAPWIRE_*` variable, and built-in defaults (architecture.md §5) so that `tapwire run`
//! needs none.
//!
//! ```yaml
//! interfaces: [eth0, "~^cali"]   # names, `~REGEX`, or `any` (the default)
//! workers: 2                     # per interface; default one per core
//! filter: "tcp or udp"           # capture filter (tcpdump syntax or `tcpdump -ddd` text)
//! listen: 0.0.0.0:9464
//! token_file: /etc/tapwire/token
//! snaplen: 262144                # bytes kept per packet
//! ring_size: 64MiB               # capture ring per worker
//! spool:
//!   dir: /var/lib/tapwire/spool
//!   limit: 1GiB
//! ```
//!
//! An unknown key or a bad value is one line naming the key (`spool.limit: not a size:
//! "lots"`), and `tapwire run` exits 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::RunArgs;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interfaces: Option<Vec<String>>,
    workers: Option<usize>,
    filter: Option<String>,
    listen: Option<String>,
    token_file: Option<PathBuf>,
    snaplen: Option<u32>,
    ring_size: Option<String>,
    #[serde(default)]
    spool: SpoolFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolFile {
    dir: Option<PathBuf>,
    limit: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Interface names or `~REGEX` patterns; empty: every interface.
    pub interfaces: Vec<String>,
    pub workers: usize,
    pub filter: Option<String>,
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub spool_dir: PathBuf,
    pub spool_limit: u64,
    /// The spool limit as written (for messages).
    pub spool_limit_text: String,
    pub snaplen: u32,
    /// 1 MiB blocks per capture ring.
    pub ring_blocks: u32,
}

/// `64MiB`, `1GiB`, `500MB`, `4096`: bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "not a size: {s:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

fn read_file(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_norway::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().replace('\n', " ")))
}

impl Config {
    /// Flags and environment over the file over the defaults.
    pub fn resolve(args: &RunArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => File::default(),
        };
        let interfaces = if args.interface.is_empty() {
            file.interfaces.unwrap_or_default()
        } else {
            args.interface.clone()
        };
        let interfaces = if interfaces.iter().any(|i| i == "any") {
            Vec::new()
        } else {
            interfaces
        };
        let workers = args
            .workers
            .or(file.workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 || workers > 256 {
            return Err(format!("workers: {workers} is not between 1 and 256"));
        }
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9464".into());
        let listen = listen_text
            .parse()
            .map_err(|_| format!("listen: not an address:port: {listen_text:?}"))?;
        let spool_limit_text = args
            .spool_limit
            .clone()
            .or(file.spool.limit)
            .unwrap_or_else(|| "1GiB".into());
        let spool_limit = parse_size(&spool_limit_text).map_err(|e| format!("spool.limit: {e}"))?;
        if spool_limit < 1 << 20 {
            return Err(format!(
                "spool.limit: {spool_limit_text:?} is under the 1MiB minimum"
            ));
        }
        let snaplen = args.snaplen.or(file.snaplen).unwrap_or(262_144);
        if !(64..=262_144).contains(&snaplen) {
            return Err(format!("snaplen: {snaplen} is not between 64 and 262144"));
        }
        let ring_text = args
            .ring_size
            .clone()
            .or(file.ring_size)
            .unwrap_or_else(|| "64MiB".into());
        let ring = parse_size(&ring_text).map_err(|e| format!("ring_size: {e}"))?;
        let ring_blocks = u32::try_from(ring >> 20).unwrap_or(u32::MAX);
        if !(8..=4096).contains(&ring_blocks) {
            return Err(format!(
                "ring_size: {ring_text:?} is not between 8MiB and 4GiB"
            ));
        }
        Ok(Config {
            snaplen,
            ring_blocks,
            interfaces,
            workers,
            filter: args.filter.clone().or(file.filter),
            listen,
            token_file: args.token_file.clone().or(file.token_file),
            spool_dir: args
                .spool_dir
                .clone()
                .or(file.spool.dir)
                .unwrap_or_else(|| PathBuf::from("tapwire-spool")),
            spool_limit,
            spool_limit_text,
        })
    }
}

/// Interface names for the configured patterns: names as given, `~REGEX` expanded over the
/// host's interfaces (`/sys/class/net`). Empty: every interface (`any`).
pub fn expand_interfaces(patterns: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in patterns {
        match p.strip_prefix('~') {
            None => out.push(p.clone()),
            Some(re) => {
                let re = regex::Regex::new(re)
                    .map_err(|e| format!("interfaces: bad pattern {p:?}: {e}"))?;
                let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
                    .map_err(|e| format!("interfaces: cannot list interfaces: {e}"))?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| re.is_match(n))
                    .collect();
                names.sort();
                if names.is_empty() {
                    return Err(format!("interfaces: no interface matches {p:?}"));
                }
                out.extend(names);
            }
        }
    }
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut v = vec!["tapwire", "run"];
        v.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(v).unwrap().command {
            crate::cli::Command::Run(a) => a,
            _ => unreachable!(),
        }
    }

    fn file(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "tapwire-config-{}-{}.yaml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_file_and_flags_in_that_order() {
        let c = Config::resolve(&args(&[])).unwrap();
        assert_eq!((c.interfaces.len(), c.spool_limit), (0, 1 << 30));
        assert_eq!(c.listen, "127.0.0.1:9464".parse().unwrap());
        let f = file("interfaces: [eth0]\nworkers: 3\nspool:\n  dir: /tmp/x\n  limit: 64MiB\n");
        let c = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap();
        assert_eq!(
            (c.interfaces, c.workers, c.spool_limit),
            (vec!["eth0".to_string()], 3, 64 << 20)
        );
        let c = Config::resolve(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--workers",
            "1",
            "-i",
            "lo",
        ]))
        .unwrap();
        assert_eq!(
            (c.interfaces, c.workers),
            (vec!["lo".to_string()], 1),
            "flags win"
        );
    }

    #[test]
    fn a_bad_key_or_value_is_named() {
        let f = file("spool:\n  limt: 1GiB\n");
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.contains("limt") && !e.contains('\n'), "{e}");
        let f = file("spool:\n  limit: lots\n");
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.starts_with("spool.limit: not a size"), "{e}");
        let e = Config::resolve(&args(&["--listen", "nowhere"])).unwrap_err();
        assert!(e.starts_with("listen:"), "{e}");
        let e = Config::resolve(&args(&["--workers", "0"])).unwrap_err();
        assert!(e.starts_with("workers:"), "{e}");
        let e = Config::resolve(&args(&["--ring-size", "1MiB"])).unwrap_err();
        assert!(e.starts_with("ring_size:"), "{e}");
        let e = Config::resolve(&args(&["--snaplen", "10"])).unwrap_err();
        assert!(e.starts_with("snaplen:"), "{e}");
        let c = Config::resolve(&args(&["--snaplen", "128", "--ring-size", "16MiB"])).unwrap();
        assert_eq!((c.snaplen, c.ring_blocks), (128, 16));
    }

    #[test]
    fn interface_patterns() {
        assert_eq!(
            expand_interfaces(&["~^lo$".into()]).unwrap(),
            vec!["lo".to_string()]
        );
        assert!(
            expand_interfaces(&["~^nosuch-if".into()])
                .unwrap_err()
                .contains("no interface matches")
        );
        assert!(expand_interfaces(&["~(".into()]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }
}
