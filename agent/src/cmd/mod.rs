//! One module per subcommand: `run` (the node agent), `watch` (one agent's live events),
//! `cluster` (`watch --cluster`: every agent of a cluster, merged), `pcap` (download packets
//! from an agent) and `dissect` (capture files offline). Each returns the process's exit
//! status; they share the output module (`crate::output`), never each other's internals,
//! except `cluster`, which uses `run`'s runtime builder.

pub mod cluster;
pub mod dissect;
pub mod pcap;
pub mod run;
pub mod watch;
