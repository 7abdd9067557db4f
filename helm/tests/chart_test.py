#!/usr/bin/env python3
"""Renders and lints the chart with Helm's own engine (helm-python-sdk: Helm's Go library,
no helm binary) and validates every rendered manifest with kubernetes-validate.

    python chart_test.py CHART OUTDIR

For every values variant below: `helm lint --strict`, render, validate each manifest against
Kubernetes (strict: unknown fields are errors) and check what the chart promises (only
NET_RAW, plus BPF, PERFMON and SYS_PTRACE with hostPID for the TLS plaintext source unless
`tls.mode` is off; never privileged, read-only root filesystem, an emptyDir above the spool cap, the
rules and dashboards in place) and what it must never do: serve `/v1/*` on the node's
network without a token, or put a credential in a ConfigMap. Each variant's agent config is written to
OUTDIR/<variant>.yaml for the caller to hand to `tapwire run`. Bad values must be refused by
values.schema.json. Exit 1 on the first failure, with what failed.
"""
import json
import os
import pathlib
import subprocess
import sys

import helm_python as helm
import yaml

KUBE = "1.34.0"
CRDS = {"ServiceMonitor", "PrometheusRule"}

VARIANTS = {
    "defaults": {},
    "everything": {
        "agent": {"interfaces": ["eth0", "~^cali"], "workers": 4, "filter": "tcp or udp",
                  "tokenSecret": "tapwire-token", "extraArgs": ["--snaplen", "65535"]},
        "spool": {"limitMiB": 4096, "headroomMiB": 1024},
        "sinks": {
            "prometheus": {"enabled": True, "maxSeries": 5000, "filter": 'protocol != "dns"'},
            "otlp": {"endpoint": "https://otel-collector.observability:4317", "protocol": "grpc",
                     "headers": {"x-api-key": "k3y-in-values"}, "serviceName": "mesh"},
            "kafka": {"brokers": "kafka-0.kafka:9092,kafka-1.kafka:9092",
                      "properties": {"compression.type": "lz4", "acks": "all",
                                     "sasl.password": "p4ss-in-values"}},
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                    "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}},
        "dashboards": {"enabled": True},
        "podAnnotations": {"example.com/team": "netops"},
        "kubernetes": {"labels": ["app", "team"], "grace": "30m"},
    },
    "hostpath-no-metrics-sink": {
        "spool": {"volume": "hostPath"},
        "sinks": {"prometheus": {"enabled": False}},
        "priorityClassName": "",
    },
    "external-service-account": {
        "serviceAccount": {"create": False, "name": "tapwire-sa"},
        "rbac": {"create": False},
        "kubernetes": {"enabled": False},
        "nameOverride": "sniffer",
    },
    "own-secrets": {
        "agent": {"tokenSecret": "my-token", "publicMetrics": False},
        "sinks": {"existingSecret": "my-sink-credentials",
                  "otlp": {"endpoint": "http://collector:4318", "protocol": "http/protobuf"}},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
    "tls-off": {"tls": {"mode": "off"}},
    "tls-always": {"tls": {"mode": "always"}},
    "non-root": {
        "securityContext": {"runAsUser": 65532, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": True, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    },
}

BAD = [
    {"spool": {"limitMiB": "big"}},
    {"spool": {"limitMiB": 4}},
    {"spool": {"volume": "nfs"}},
    {"sinks": {"otlp": {"protocol": "http/json"}}},
    {"agent": {"port": 70000}},
    {"securityContext": {"privileged": True}},
    {"unknownKey": 1},
    {"kubernetes": {"grace": "soon"}},
    {"tls": {"mode": "sometimes"}},
    {"kubernetes": {"labels": [""]}},
]


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def mib(q):
    q = str(q)
    assert q.endswith("Mi"), q
    return int(q[:-2])


SECRETS_IN_VALUES = ["k3y-in-values", "p4ss-in-values"]


def check_private(name, values, cfg, by_kind, spec, c):
    """No unauthenticated /v1/* off loopback; no credential in any ConfigMap."""
    listen = cfg.get("listen", "127.0.0.1:9464")
    if not listen.startswith("127.") and not cfg.get("token_file"):
        fail(f"{name}: the API listens on {listen} without a token")
    full = by_kind["DaemonSet"][0]["metadata"]["name"]
    token_secret = values.get("agent", {}).get("tokenSecret") or f"{full}-token"
    mounted = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == token_secret]
    if not mounted:
        fail(f"{name}: the token Secret {token_secret} is not mounted")
    if not values.get("agent", {}).get("tokenSecret"):
        generated = [s for s in by_kind.get("Secret", []) if s["metadata"]["name"] == token_secret]
        if not generated or len(generated[0]["data"]["token"]) < 40:
            fail(f"{name}: no generated token Secret {token_secret}")
    for cm in by_kind["ConfigMap"]:
        text = json.dumps(cm.get("data", {}))
        for secret in SECRETS_IN_VALUES:
            if secret in text:
                fail(f"{name}: ConfigMap {cm['metadata']['name']} holds a credential ({secret})")
        for key in ("headers", "properties", "sasl.password"):
            if f'"{key}"' in text or f"{key}:" in text:
                fail(f"{name}: ConfigMap {cm['metadata']['name']} has sink {key}")
    sinks = values.get("sinks", {})
    inline = sinks.get("otlp", {}).get("headers") or sinks.get("kafka", {}).get("properties")
    if inline or sinks.get("existingSecret"):
        refs = [e["secretRef"]["name"] for e in c.get("envFrom", [])]
        want = sinks.get("existingSecret") or f"{full}-sinks"
        if refs != [want]:
            fail(f"{name}: sink credentials not from the Secret {want}: {refs}")
    if inline and not sinks.get("existingSecret"):
        s = next(s for s in by_kind["Secret"] if s["metadata"]["name"] == f"{full}-sinks")
        text = json.dumps(s["stringData"])
        for secret in SECRETS_IN_VALUES:
            if secret not in text:
                fail(f"{name}: {secret} missing from the sinks Secret")
    public = values.get("agent", {}).get("publicMetrics", True)
    if cfg.get("api", {}).get("public_metrics") != public:
        fail(f"{name}: api.public_metrics is not {public}")
    for sm in by_kind.get("ServiceMonitor", []):
        has_auth = "authorization" in sm["spec"]["endpoints"][0]
        if has_auth == public:
            fail(f"{name}: ServiceMonitor authorization {has_auth} with public metrics {public}")


def check_variant(name, values, chart, chart_dir, out, validator):
    report = helm.lint(chart_dir, values, strict=True, kube_version=f"v{KUBE}")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    if report.get("errors") or problems:
        fail(f"{name}: helm lint --strict: {report}")
    rendered = chart.render(values, name="tw", namespace="tapwire", is_install=True)
    docs = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for d in yaml.safe_load_all(text):
            if d:
                docs.append((path, d))
    kinds = sorted(d["kind"] for _, d in docs)
    files = []
    for i, (path, d) in enumerate(docs):
        if d["kind"] in CRDS:
            continue
        f = out / f"{name}-{i}-{d['kind']}.yaml"
        f.write_text(yaml.safe_dump(d))
        files.append(str(f))
    r = subprocess.run([validator, "--strict", "-k", KUBE, *files], capture_output=True, text=True)
    if r.returncode != 0 or "ERROR" in r.stdout or "ERROR" in r.stderr:
        fail(f"{name}: kubernetes-validate: {r.stdout}{r.stderr}")
    by_kind = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    ds = by_kind["DaemonSet"][0]
    spec = ds["spec"]["template"]["spec"]
    c = spec["containers"][0]
    sc = c["securityContext"]
    if sc.get("privileged"):
        fail(f"{name}: privileged")
    tls_on = values.get("tls", {}).get("mode", "on-demand") != "off"
    want_caps = ["NET_RAW"] + (["BPF", "PERFMON", "SYS_PTRACE"] if tls_on else [])
    if sc["capabilities"]["add"] != want_caps or sc["capabilities"]["drop"] != ["ALL"]:
        fail(f"{name}: capabilities {sc['capabilities']}, want {want_caps}")
    if bool(spec.get("hostPID")) != tls_on:
        fail(f"{name}: hostPID {spec.get('hostPID')} with the TLS plaintext source {'on' if tls_on else 'off'}")
    if not sc.get("readOnlyRootFilesystem"):
        fail(f"{name}: root filesystem is writable")
    if not spec.get("hostNetwork"):
        fail(f"{name}: not on the host network")
    cfg = yaml.safe_load(by_kind["ConfigMap"][0]["data"]["tapwire.yaml"])
    check_private(name, values, cfg, by_kind, spec, c)
    limit = int(cfg["spool"]["limit"].removesuffix("MiB"))
    spool = next(v for v in spec["volumes"] if v["name"] == "spool")
    if "emptyDir" in spool:
        if mib(spool["emptyDir"]["sizeLimit"]) <= limit:
            fail(f"{name}: emptyDir sizeLimit {spool['emptyDir']['sizeLimit']} not above the spool cap {limit}MiB")
    elif "hostPath" not in spool:
        fail(f"{name}: spool volume {spool}")
    (out / f"{name}.yaml").write_text(by_kind["ConfigMap"][0]["data"]["tapwire.yaml"])
    if values.get("metrics", {}).get("prometheusRule", {}).get("enabled"):
        rule = by_kind["PrometheusRule"][0]
        plain = yaml.safe_load((pathlib.Path(chart_dir) / "files" / "tapwire-alerts.yaml").read_text())
        if rule["spec"] != plain:
            fail(f"{name}: PrometheusRule differs from files/tapwire-alerts.yaml")
    if values.get("dashboards", {}).get("enabled"):
        boards = [d for d in by_kind["ConfigMap"] if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
        names = sorted(k for d in boards for k in d["data"])
        want = sorted(p.name for p in (pathlib.Path(chart_dir) / "dashboards").glob("*.json"))
        if names != want:
            fail(f"{name}: dashboards {names} != {want}")
        for d in boards:
            for k, v in d["data"].items():
                json.loads(v)
    print(f"ok: {name}: {len(docs)} manifests ({', '.join(kinds)})")


def main():
    chart_dir, out = sys.argv[1], pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    validator = str(pathlib.Path(sys.executable).parent / "kubernetes-validate")
    chart = helm.Chart.load(chart_dir)
    for name, values in VARIANTS.items():
        check_variant(name, values, chart, chart_dir, out, validator)
    for values in BAD:
        try:
            chart.validate_schema(values)
        except helm.HelmValuesError as e:
            print(f"ok: refused {json.dumps(values)}: {str(e).splitlines()[0]}")
            continue
        fail(f"values.schema.json accepted {values}")


if __name__ == "__main__":
    main()
