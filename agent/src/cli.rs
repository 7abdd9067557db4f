//! Command-line interface (each subcommand is in `cmd/`; the README documents them).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tapwire",
    version,
    about = "Network sniffer for Kubernetes: capture, spool and dissect HTTP, DNS and more"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read pcap/pcapng files and print the request/response exchanges in them.
    Dissect(DissectArgs),
    /// The node agent: capture, spool, dissect on demand, serve the API and /metrics.
    Run(RunArgs),
    /// Subscribe to a running agent and print its exchanges live.
    Watch(WatchArgs),
    /// Export a time window of a running agent's spool as a pcapng file.
    Pcap(PcapArgs),
}

/// How the clients reach a running agent.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The agent's API.
    #[arg(
        long = "agent",
        value_name = "URL",
        env = "TAPWIRE_AGENT",
        default_value = "http://127.0.0.1:9464"
    )]
    pub url: String,
    /// Bearer token for the agent's API (or TAPWIRE_TOKEN).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TAPWIRE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PcapArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Start of the window, as a duration before now (`30s`, `5m`, `1h`).
    #[arg(long, value_name = "DURATION")]
    pub since: String,
    /// End of the window, as a duration before now (default: now).
    #[arg(long, value_name = "DURATION")]
    pub until: Option<String>,
    /// Only the packets this capture filter (tcpdump syntax) accepts.
    #[arg(long, value_name = "BPF")]
    pub filter: Option<String>,
    /// Output file.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// YAML config file; every key can be overridden by its flag or `TAPWIRE_*` variable.
    #[arg(long, short, value_name = "FILE", env = "TAPWIRE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Interface to capture on (repeatable, or comma-separated); `any` or none: every
    /// interface; `~REGEX`: every interface whose name matches.
    #[arg(
        long,
        short,
        value_name = "IF",
        env = "TAPWIRE_INTERFACE",
        value_delimiter = ','
    )]
    pub interface: Vec<String>,
    /// TLS plaintext through eBPF uprobes: `on-demand` (probes attached while someone
    /// subscribes), `always` (attached from the start), `off` [default: on-demand].
    #[arg(long, value_name = "MODE", env = "TAPWIRE_TLS")]
    pub tls: Option<String>,
    /// Spool folder [default: tapwire-spool].
    #[arg(long, value_name = "DIR", env = "TAPWIRE_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Spool size cap (`64MiB`, `1GiB`, …) [default: 1GiB].
    #[arg(long, value_name = "SIZE", env = "TAPWIRE_SPOOL_LIMIT")]
    pub spool_limit: Option<String>,
    /// API and /metrics address [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR:PORT", env = "TAPWIRE_LISTEN")]
    pub listen: Option<String>,
    /// Capture filter in tcpdump syntax (`tcp port 80 or udp port 53`), or `tcpdump -ddd` output.
    #[arg(long, value_name = "BPF", env = "TAPWIRE_FILTER")]
    pub filter: Option<String>,
    /// File holding the API's bearer token (every endpoint but /healthz and /readyz needs it).
    #[arg(long, value_name = "FILE", env = "TAPWIRE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Capture worker threads per interface [default: one per core].
    #[arg(long, value_name = "N", env = "TAPWIRE_WORKERS")]
    pub workers: Option<usize>,
    /// Bytes kept per packet, in the spool and for dissection [default: 262144].
    #[arg(long, value_name = "BYTES", env = "TAPWIRE_SNAPLEN")]
    pub snaplen: Option<u32>,
    /// Capture ring per worker (`64MiB`; 1 MiB blocks, at least 8) [default: 64MiB].
    #[arg(long, value_name = "SIZE", env = "TAPWIRE_RING_SIZE")]
    pub ring_size: Option<String>,
    /// Replay a pcap/pcapng file instead of capturing (the agent keeps serving afterwards).
    #[arg(long, value_name = "FILE", conflicts_with = "libpcap")]
    pub read: Option<PathBuf>,
    /// With --read: replay at the pace the file was recorded at, not as fast as possible.
    #[arg(long, requires = "read")]
    pub recorded_speed: bool,
    /// Capture through libpcap instead of the TPACKET_V3 ring (one worker per interface).
    #[arg(long)]
    pub libpcap: bool,
    /// Record RED metrics (request rate, errors, duration histograms) on /metrics; this
    /// keeps dissection running (sinks.prometheus.enabled).
    #[arg(long, env = "TAPWIRE_RED_METRICS")]
    pub red_metrics: bool,
    /// Send one span per exchange to this OTLP endpoint (`http://collector:4317`); also
    /// OTEL_EXPORTER_OTLP_ENDPOINT (sinks.otlp.endpoint).
    #[arg(long, value_name = "URL", env = "TAPWIRE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: `grpc` or `http/protobuf`; also OTEL_EXPORTER_OTLP_PROTOCOL
    /// [default: grpc].
    #[arg(long, value_name = "PROTOCOL", env = "TAPWIRE_OTLP_PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// Produce each exchange as a JSON message to these Kafka brokers (`host:port,…`)
    /// (sinks.kafka.brokers).
    #[arg(long, value_name = "HOST:PORT,…", env = "TAPWIRE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka topic, or a template with `{protocol}` [default: tapwire.exchanges].
    #[arg(long, value_name = "NAME", env = "TAPWIRE_KAFKA_TOPIC")]
    pub kafka_topic: Option<String>,
    /// Kubeconfig for Kubernetes enrichment (in a pod the service account is used without
    /// one).
    #[arg(long, value_name = "FILE", env = "TAPWIRE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Only the exchanges this CEL expression accepts (evaluated by the agent).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Start with the exchanges of this recent past held in the spool (`30s`, `5m`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Every agent in the cluster: find their pods through the Kubernetes API (kubeconfig),
    /// reach each through the API server's pod proxy, and merge the streams in time order.
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: only exchanges with a client or server in this Kubernetes namespace.
    #[arg(long, short = 'n', value_name = "NS", requires = "cluster")]
    pub namespace: Option<String>,
    /// With --cluster: the kubeconfig (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// With --cluster: the label selector of the agents' pods.
    #[arg(
        long,
        value_name = "SELECTOR",
        default_value = "app.kubernetes.io/name=tapwire",
        requires = "cluster"
    )]
    pub agents_selector: String,
    /// With --cluster: the namespace the agents run in (default: every namespace).
    #[arg(long, value_name = "NS", requires = "cluster")]
    pub agents_namespace: Option<String>,
}

/// Output format of `dissect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON event per line (the event contract's shape).
    Ndjson,
    /// One readable line per exchange.
    Table,
}

#[derive(Debug, clap::Args)]
pub struct DissectArgs {
    /// Capture files (pcap or pcapng), read in order as one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,
    /// Do not print the summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Protobuf descriptor set (`protoc --include_imports --descriptor_set_out=FILE`): decode
    /// gRPC messages of the services it describes to JSON.
    #[arg(long, value_name = "FILE")]
    pub proto_descriptor: Option<PathBuf>,
    /// Print only the exchanges this CEL expression accepts (`status != "ok"`,
    /// `http.response.status_code >= 500`, `dns.question.name.endsWith(".local")`).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Bytes all flows may hold together (`256MiB`); past it the largest flows are closed.
    #[arg(long, value_name = "SIZE")]
    pub memory_budget: Option<String>,
    /// Worker threads, flows spread over them by a symmetric hash of their addresses and
    /// ports; each flow's exchanges stay in order [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Print the exchanges in the order one worker would: as the capture's packets complete
    /// them (those still open at the end last, in the order they started). Without it, each
    /// batch of packets is printed worker by worker.
    #[arg(long)]
    pub sort: bool,
}
