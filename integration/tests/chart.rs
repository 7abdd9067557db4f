//! The Helm chart, its alert rules and its dashboards, checked with real tools and a real
//! agent (no root needed):
//! - Helm's own engine (helm-python-sdk) renders and lints the chart strict for several
//!   values variants, kubernetes-validate checks every manifest, bad values are refused
//!   (`helm/tests/chart_test.py`), and `tapwire run` accepts every rendered agent config;
//! - `promtool check rules` and `promtool test rules` (a firing and a quiet case per alert);
//! - every metric and label name in the dashboards' and alerts' PromQL is one the agent
//!   exports: the agent replays the project's recorded captures of every protocol with RED
//!   metrics on, and its `/metrics` is the reference.
//!
//! The Python side runs in the venv `scripts/test-all.sh` makes (`TAPWIRE_VENV`, default
//! `~/.cache/tapwire-tools/venv`); without it, or without promtool, the test says SKIP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tapwire_integration::lab::TAPWIRE_PATH;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn venv_python() -> Option<PathBuf> {
    let dir = std::env::var("TAPWIRE_VENV")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache/tapwire-tools/venv")))
        .ok()?;
    let py = dir.join("bin/python");
    py.exists().then_some(py)
}

fn have(cmd: &str) -> bool {
    tapwire_integration::lab::have(cmd)
}

#[test]
fn chart_renders_lints_and_validates_and_the_agent_accepts_its_config() {
    let Some(py) = venv_python() else {
        eprintln!("SKIP: the chart test needs the venv with helm-python-sdk (scripts/test-all.sh)");
        return;
    };
    let out = std::env::temp_dir().join(format!("tapwire-chart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let r = Command::new(py)
        .arg(repo().join("helm/tests/chart_test.py"))
        .arg(repo().join("helm/tapwire"))
        .arg(&out)
        .output()
        .expect("run chart_test.py");
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let variants: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok: "))
        .filter(|l| !l.starts_with("refused"))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(variants.len(), 8, "{stdout}");
    // The agent reads each rendered config: the only complaint left is about the file to
    // replay (or the token file only the pod has), never about a key.
    for v in variants {
        let cfg = out.join(format!("{v}.yaml"));
        let r = Command::new(&*TAPWIRE_PATH)
            .args(["run", "--read", "/nonexistent.pcap", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            err.starts_with("tapwire: --read: /nonexistent.pcap")
                || err.starts_with("tapwire: token_file /etc/tapwire/token/token"),
            "{v}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    if !have("promtool") {
        eprintln!("SKIP: promtool (Debian's prometheus package) is missing");
        return;
    }
    let rules = repo().join("helm/tapwire/files/tapwire-alerts.yaml");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let test = Command::new("promtool")
        .args(["test", "rules", "tapwire-alerts.test.yaml"])
        .current_dir(repo().join("helm/tests"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&test.stdout);
    assert!(test.status.success() && text.contains("SUCCESS"), "{text}");
}

/// The agent's /metrics after replaying `pcap` with RED metrics on.
/// The fake Kubernetes API server (`tw-fake-k8s`) on loopback with a pod for each side of
/// the golden captures (10.77.0.2 → 10.77.0.1); returns it and a kubeconfig naming it.
fn fake_api(dir: &Path) -> (std::process::Child, PathBuf) {
    use tapwire_integration::fake_k8s::objects;
    std::fs::create_dir_all(dir).unwrap();
    let at = "2020-01-01T00:00:00Z";
    let objects = serde_json::json!({
        "pods": [
            objects::pod("shop", "client-0", "u-c", "10.77.0.2", "node-a",
                Some(("StatefulSet", "client", "s-c")), serde_json::json!({"app": "client"}), at),
            objects::pod("shop", "server-0", "u-s", "10.77.0.1", "node-a",
                Some(("StatefulSet", "server", "s-s")), serde_json::json!({"app": "server"}), at),
        ],
        "nodes": [objects::node("node-a", "192.168.49.2")],
    });
    let file = dir.join("objects.json");
    std::fs::write(&file, objects.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tw-fake-k8s"))
        .arg(&file)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("ready ")
        .expect("ready URL")
        .to_string();
    let kc = tapwire_integration::fake_k8s::kubeconfig(&dir.join("kubeconfig"), &url);
    (child, kc)
}

fn agent_metrics(pcap: &Path, port: u16, kubeconfig: &Path) -> String {
    let spool =
        std::env::temp_dir().join(format!("tapwire-chart-spool-{}-{port}", std::process::id()));
    let listen = format!("127.0.0.1:{port}");
    let mut agent = Command::new(&*TAPWIRE_PATH)
        .args(["run", "--red-metrics", "--listen", &listen, "--read"])
        .arg(pcap)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--spool-dir")
        .arg(&spool)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let get = |path: &str| {
        Command::new("curl")
            .args(["-sf", &format!("http://{listen}{path}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    // Done when the exchange count stops moving.
    let until = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    let mut still = 0;
    // Stable for 1.5 s: the worker's once-a-second housekeeping has set its gauges too.
    while Instant::now() < until && still < 15 {
        std::thread::sleep(Duration::from_millis(100));
        let s = get("/v1/status").unwrap_or_default();
        let ex: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        let n = ex["demand"]["exchanges"].to_string();
        if n == last && n != "0" && n != "null" {
            still += 1;
        } else {
            still = 0;
        }
        last = n;
    }
    let text = get("/metrics").expect("/metrics");
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&spool);
    text
}

/// Metric family → label names, from the exposition.
fn families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut types = BTreeMap::new();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (n, t) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            types.insert(n.to_string(), t.to_string());
            out.entry(n.to_string()).or_default();
        }
    }
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap_or("");
        let fam = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        let labels = out.entry(fam.to_string()).or_default();
        if let Some(inner) = l
            .split_once('{')
            .and_then(|(_, r)| r.split_once('}'))
            .map(|(i, _)| i)
        {
            for kv in inner.split("\",") {
                if let Some((k, _)) = kv.split_once('=') {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    out
}

/// (metric names, label names) a PromQL expression uses.
fn promql_names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let strings = regex::Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    let ranges = regex::Regex::new(r"\[[^\]]*\]").unwrap();
    let matcher = regex::Regex::new(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)").unwrap();
    let braces = regex::Regex::new(r"\{[^}]*\}").unwrap();
    let clauses =
        regex::Regex::new(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)")
            .unwrap();
    let ident = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
    let lv = regex::Regex::new(
        r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)",
    )
    .unwrap();
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let e = strings.replace_all(expr, "\"\"");
    let e = ranges.replace_all(&e, "");
    for c in lv.captures_iter(&e) {
        metrics.insert(c[1].to_string());
        if let Some(sel) = c.get(2) {
            for m in matcher.captures_iter(sel.as_str()) {
                labels.insert(m[1].to_string());
            }
        }
        labels.insert(c[3].to_string());
    }
    let e = lv.replace_all(&e, "");
    for b in braces.find_iter(&e) {
        for c in matcher.captures_iter(b.as_str()) {
            labels.insert(c[1].to_string());
        }
    }
    let e = braces.replace_all(&e, "");
    for c in clauses.captures_iter(&e) {
        for l in c[1].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            labels.insert(l.to_string());
        }
    }
    let e = clauses.replace_all(&e, "");
    const WORDS: &[&str] = &[
        "sum", "min", "max", "avg", "count", "and", "or", "unless", "bool", "offset", "topk",
        "bottomk", "quantile", "stddev", "inf", "nan",
    ];
    for m in ident.find_iter(&e) {
        let after = e[m.end()..].trim_start();
        let word = m.as_str();
        if after.starts_with('(') || WORDS.contains(&word) || e[..m.start()].ends_with('$') {
            continue;
        }
        metrics.insert(word.to_string());
    }
    (metrics, labels)
}

#[test]
fn dashboards_and_alerts_use_only_exported_metrics_and_labels() {
    if !have("curl") {
        eprintln!("SKIP: the dashboard check needs curl");
        return;
    }
    // The dashboards are what helm/dashboards.py writes.
    let generated = Command::new("python3")
        .arg(repo().join("helm/dashboards.py"))
        .arg("--check")
        .output()
        .expect("python3");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stdout)
    );

    let golden = repo().join("pipeline/tests/golden");
    let (mut api, kubeconfig) =
        fake_api(&std::env::temp_dir().join(format!("tapwire-chart-k8s-{}", std::process::id())));
    let mut fams: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, p) in [
        "http1/nginx-keepalive-pipelining.pcap",
        "grpc/grpcio-bookshop.pcap",
        "redis/redis-server-mixed.pcap",
        "kafka/tansu-confluent.pcap",
        "amqp/rabbitmq-pika.pcap",
        "dns/dnsmasq-records.pcap",
        "graphql/strawberry-graphql-h2.pcap",
        "tls/nginx-tls.pcap",
        "postgresql/postgres-psql-psycopg.pcap",
        "websocket/websockets-echo.pcap",
        "mysql/mariadb-cli-connector.pcap",
    ]
    .iter()
    .enumerate()
    {
        for (f, l) in families(&agent_metrics(
            &golden.join(p),
            19_500 + i as u16,
            &kubeconfig,
        )) {
            fams.entry(f).or_default().extend(l);
        }
    }
    let _ = api.kill();
    let _ = api.wait();
    for f in [
        "http_server_request_duration_seconds",
        "rpc_server_call_duration_seconds",
        "db_client_operation_duration_seconds",
        "messaging_client_operation_duration_seconds",
        "dns_lookup_duration_seconds",
        "tapwire_k8s_resolutions_total",
        "tapwire_k8s_synced",
    ] {
        assert!(fams.contains_key(f), "the replays produced {f}");
    }

    let mut exprs: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(repo().join("helm/tapwire/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                exprs.push((
                    format!("{name}: {}", p["title"]),
                    t["expr"].as_str().unwrap().into(),
                ));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["definition"].as_str() {
                exprs.push((format!("{name}: variable {}", v["name"]), q.into()));
            }
        }
    }
    let rules: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join("helm/tapwire/files/tapwire-alerts.yaml")).unwrap(),
    )
    .unwrap();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            exprs.push((
                format!("alert {}", r["alert"].as_str().unwrap()),
                r["expr"].as_str().unwrap().into(),
            ));
        }
    }
    assert!(exprs.len() > 40, "{} queries", exprs.len());
    // Labels Prometheus adds to every scraped series, and the bucket bound.
    let target_labels = ["instance", "job", "le"];
    let mut checked = 0;
    for (what, e) in &exprs {
        let (metrics, labels) = promql_names(e);
        assert!(!metrics.is_empty(), "{what}: no metric in {e}");
        let mut known: BTreeSet<&str> = target_labels.iter().copied().collect();
        for m in &metrics {
            if m == "up" {
                continue; // Prometheus's own, per target
            }
            let fam = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| m.strip_suffix(s).filter(|f| fams.contains_key(*f)))
                .unwrap_or(m);
            let labels = fams
                .get(fam)
                .unwrap_or_else(|| panic!("{what}: {m} is not exported by the agent"));
            known.extend(labels.iter().map(String::as_str));
            checked += 1;
        }
        for l in &labels {
            assert!(
                known.contains(l.as_str()),
                "{what}: label {l} is not on {metrics:?}"
            );
        }
    }
    eprintln!("checked {checked} metric uses in {} queries", exprs.len());
}

#[test]
fn promql_names_finds_metrics_and_labels() {
    let (m, l) = promql_names(
        r#"sum by (server_address, http_route) (rate(http_server_request_duration_seconds_count{http_response_status_code=~"5..",x!="a{b}"}[$__rate_interval])) / on (instance) max by (instance) (tapwire_spool_limit_bytes) and up{job=~".*tapwire.*"} == 0"#,
    );
    assert_eq!(
        m.into_iter().collect::<Vec<_>>(),
        [
            "http_server_request_duration_seconds_count",
            "tapwire_spool_limit_bytes",
            "up"
        ]
    );
    assert_eq!(
        l.into_iter().collect::<Vec<_>>(),
        [
            "http_response_status_code",
            "http_route",
            "instance",
            "job",
            "server_address",
            "x"
        ]
    );
    let (m, l) = promql_names("label_values(dns_lookup_duration_seconds_count, server_address)");
    assert_eq!(
        (m.len(), l.len()),
        (1, 1),
        "label_values(metric, label) names both"
    );
    let (m, l) = promql_names(
        r#"label_values(http_server_request_duration_seconds_count{k8s_namespace_name=~"$namespace"}, k8s_workload_name)"#,
    );
    assert_eq!(m.len(), 1);
    assert_eq!(
        l.into_iter().collect::<Vec<_>>(),
        ["k8s_namespace_name", "k8s_workload_name"],
        "a selector's labels too"
    );
}
