#!/usr/bin/env python3
"""Writes the Grafana dashboards of the chart (helm/tapwire/dashboards/*.json).

The panels are listed here, compactly; the JSON files are generated from this and checked
in. `python3 helm/dashboards.py` rewrites them; `python3 helm/dashboards.py --check` fails
when a checked-in file differs from what this script writes (the chart test runs it).
Every query uses only metrics and labels the agent exports: the chart test checks them
against a real agent's /metrics.
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).parent / "tapwire" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(title, exprs, unit="short", kind="timeseries", legend=None, w=12, h=8, desc=""):
    targets = []
    for i, e in enumerate(exprs):
        expr, fmt = e if isinstance(e, tuple) else (e, legend)
        t = {"datasource": DS, "expr": expr, "refId": chr(ord("A") + i)}
        if fmt:
            t["legendFormat"] = fmt
        targets.append(t)
    return {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": targets,
        "gridPos": {"w": w, "h": h},
    }


def variable(name, label, query):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard(uid, title, description, panels, variables=()):
    x = y = 0
    for i, p in enumerate(panels):
        g = p["gridPos"]
        if x + g["w"] > 24:
            x, y = 0, y + 8
        g.update({"x": x, "y": y})
        x += g["w"]
        p["id"] = i + 1
    templating = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        }
    ] + list(variables)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tapwire"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "panels": panels,
    }


H = "http_server_request_duration_seconds"
R = "rpc_server_call_duration_seconds"
SEL = 'k8s_namespace_name=~"$namespace",k8s_workload_name=~"$workload",server_address=~"$server"'
GRPC_ERR = 'rpc_response_status_code=~"UNKNOWN|DEADLINE_EXCEEDED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS"'

DASHBOARDS = {
    "tapwire-http-grpc": dashboard(
        "tapwire-http-grpc",
        "tapwire / HTTP and gRPC",
        "Rate, errors and duration of every HTTP route and gRPC method seen on the wire.",
        [
            panel("HTTP requests/s by workload",
                  [f'sum by (k8s_namespace_name, k8s_workload_name) (rate({H}_count{{{SEL}}}[$__rate_interval]))'],
                  "reqps", legend="{{k8s_namespace_name}}/{{k8s_workload_name}}",
                  desc="The serving pod's namespace and workload (Kubernetes enrichment); empty outside Kubernetes."),
            panel("HTTP 5xx ratio by workload",
                  [f'sum by (k8s_namespace_name, k8s_workload_name) (rate({H}_count{{{SEL},http_response_status_code=~"5.."}}[$__rate_interval])) / sum by (k8s_namespace_name, k8s_workload_name) (rate({H}_count{{{SEL}}}[$__rate_interval]))'],
                  "percentunit", legend="{{k8s_namespace_name}}/{{k8s_workload_name}}"),
            panel("HTTP requests/s by route",
                  [f'sum by (server_address, http_route) (rate({H}_count{{{SEL}}}[$__rate_interval]))'],
                  "reqps", legend="{{server_address}} {{http_route}}"),
            panel("HTTP 5xx ratio by route",
                  [f'sum by (server_address, http_route) (rate({H}_count{{{SEL},http_response_status_code=~"5.."}}[$__rate_interval])) / sum by (server_address, http_route) (rate({H}_count{{{SEL}}}[$__rate_interval]))'],
                  "percentunit", legend="{{server_address}} {{http_route}}"),
            panel("HTTP p50 / p99 duration by route",
                  [(f'histogram_quantile(0.5, sum by (le, server_address, http_route) (rate({H}_bucket{{{SEL}}}[$__rate_interval])))', "p50 {{server_address}} {{http_route}}"),
                   (f'histogram_quantile(0.99, sum by (le, server_address, http_route) (rate({H}_bucket{{{SEL}}}[$__rate_interval])))', "p99 {{server_address}} {{http_route}}")],
                  "s"),
            panel("HTTP responses/s by status code",
                  [f'sum by (http_response_status_code) (rate({H}_count{{{SEL}}}[$__rate_interval]))'],
                  "reqps", legend="{{http_response_status_code}}"),
            panel("HTTP response body size p99",
                  [f'histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_response_body_size_bytes_bucket{{{SEL}}}[$__rate_interval])))'],
                  "bytes", legend="{{http_route}}"),
            panel("gRPC calls/s by method and status",
                  [f'sum by (rpc_method, rpc_response_status_code) (rate({R}_count{{{SEL}}}[$__rate_interval]))'],
                  "reqps", legend="{{rpc_method}} {{rpc_response_status_code}}"),
            panel("gRPC server-error ratio by method",
                  [f'sum by (rpc_method) (rate({R}_count{{{SEL},{GRPC_ERR}}}[$__rate_interval])) / sum by (rpc_method) (rate({R}_count{{{SEL}}}[$__rate_interval]))'],
                  "percentunit", legend="{{rpc_method}}"),
            panel("gRPC p99 duration by method",
                  [f'histogram_quantile(0.99, sum by (le, rpc_method) (rate({R}_bucket{{{SEL}}}[$__rate_interval])))'],
                  "s", legend="{{rpc_method}}"),
        ],
        [variable("namespace", "Namespace", f"label_values({H}_count, k8s_namespace_name)"),
         variable("workload", "Workload", f'label_values({H}_count{{k8s_namespace_name=~"$namespace"}}, k8s_workload_name)'),
         variable("server", "Server", f"label_values({H}_count, server_address)")],
    ),
    "tapwire-redis": dashboard(
        "tapwire-redis",
        "tapwire / Redis",
        "Redis commands seen on the wire: rate, error replies and duration by command.",
        [
            panel("Commands/s by operation",
                  ['sum by (db_operation_name) (rate(db_client_operation_duration_seconds_count{db_system_name="redis"}[$__rate_interval]))'],
                  "ops", legend="{{db_operation_name}}"),
            panel("Error replies/s by error",
                  ['sum by (db_operation_name, db_response_status_code) (rate(db_client_operation_duration_seconds_count{db_system_name="redis",db_response_status_code!=""}[$__rate_interval]))'],
                  "ops", legend="{{db_operation_name}} {{db_response_status_code}}"),
            panel("p99 duration by operation",
                  ['histogram_quantile(0.99, sum by (le, db_operation_name) (rate(db_client_operation_duration_seconds_bucket{db_system_name="redis"}[$__rate_interval])))'],
                  "s", legend="{{db_operation_name}}"),
            panel("Commands/s by server",
                  ['sum by (server_address, server_port) (rate(db_client_operation_duration_seconds_count{db_system_name="redis"}[$__rate_interval]))'],
                  "ops", legend="{{server_address}}:{{server_port}}"),
        ],
    ),
    "tapwire-messaging": dashboard(
        "tapwire-messaging",
        "tapwire / Kafka and RabbitMQ",
        "Kafka requests and AMQP methods seen on the wire, by operation and topic or exchange.",
        [
            panel("Operations/s by system and operation",
                  ['sum by (messaging_system, messaging_operation_name) (rate(messaging_client_operation_duration_seconds_count[$__rate_interval]))'],
                  "ops", legend="{{messaging_system}} {{messaging_operation_name}}"),
            panel("Sends/s by destination",
                  ['sum by (messaging_system, messaging_destination_name) (rate(messaging_client_operation_duration_seconds_count{messaging_operation_type="send"}[$__rate_interval]))'],
                  "ops", legend="{{messaging_system}} {{messaging_destination_name}}"),
            panel("Receives/s by destination",
                  ['sum by (messaging_system, messaging_destination_name) (rate(messaging_client_operation_duration_seconds_count{messaging_operation_type="receive"}[$__rate_interval]))'],
                  "ops", legend="{{messaging_system}} {{messaging_destination_name}}"),
            panel("Errors/s by error",
                  ['sum by (messaging_system, messaging_operation_name, error_type) (rate(messaging_client_operation_duration_seconds_count{error_type!=""}[$__rate_interval]))'],
                  "ops", legend="{{messaging_system}} {{messaging_operation_name}} {{error_type}}"),
            panel("p99 duration by operation",
                  ['histogram_quantile(0.99, sum by (le, messaging_system, messaging_operation_name) (rate(messaging_client_operation_duration_seconds_bucket[$__rate_interval])))'],
                  "s", legend="{{messaging_system}} {{messaging_operation_name}}"),
        ],
    ),
    "tapwire-dns": dashboard(
        "tapwire-dns",
        "tapwire / DNS",
        "DNS lookups seen on the wire, by response code, query type and server.",
        [
            panel("Lookups/s by response code",
                  ['sum by (dns_response_code) (rate(dns_lookup_duration_seconds_count[$__rate_interval]))'],
                  "ops", legend="{{dns_response_code}}"),
            panel("Failure ratio by server (not NOERROR or NXDOMAIN)",
                  ['sum by (server_address) (rate(dns_lookup_duration_seconds_count{dns_response_code!="NOERROR",dns_response_code!="NXDOMAIN"}[$__rate_interval])) / sum by (server_address) (rate(dns_lookup_duration_seconds_count[$__rate_interval]))'],
                  "percentunit", legend="{{server_address}}"),
            panel("Lookups/s by query type",
                  ['sum by (dns_question_type) (rate(dns_lookup_duration_seconds_count[$__rate_interval]))'],
                  "ops", legend="{{dns_question_type}}"),
            panel("p50 / p99 lookup duration",
                  [('histogram_quantile(0.5, sum by (le) (rate(dns_lookup_duration_seconds_bucket[$__rate_interval])))', "p50"),
                   ('histogram_quantile(0.99, sum by (le) (rate(dns_lookup_duration_seconds_bucket[$__rate_interval])))', "p99")],
                  "s"),
        ],
    ),
    "tapwire-agent": dashboard(
        "tapwire-agent",
        "tapwire / agent health",
        "The agents themselves: capture rate, kernel and pipeline drops, spool, subscriptions and sink delivery.",
        [
            panel("Captured packets/s by node and interface",
                  ['sum by (instance, interface) (rate(tapwire_capture_packets_total[$__rate_interval]))'],
                  "pps", legend="{{instance}} {{interface}}"),
            panel("Kernel drops/s (capture rings full)",
                  ['sum by (instance, interface) (rate(tapwire_kernel_drops_total[$__rate_interval]))'],
                  "pps", legend="{{instance}} {{interface}}"),
            panel("Pipeline drops/s by cap",
                  ['sum by (instance, cap) (rate(tapwire_pipeline_drops_total[$__rate_interval]))'],
                  "short", legend="{{instance}} {{cap}}"),
            panel("Exchanges/s by protocol",
                  ['sum by (protocol) (rate(tapwire_exchanges_total[$__rate_interval]))'],
                  "ops", legend="{{protocol}}"),
            panel("Spool use (of its cap)",
                  ['sum by (instance) (tapwire_spool_bytes) / on (instance) max by (instance) (tapwire_spool_limit_bytes)'],
                  "percentunit", legend="{{instance}}"),
            panel("Spool reaches back",
                  ['min by (instance) (tapwire_spool_oldest_age_seconds)'],
                  "s", legend="{{instance}}"),
            panel("Subscriptions and dissection",
                  [('sum by (instance) (tapwire_subscriptions_active)', "subscriptions {{instance}}"),
                   ('max by (instance) (tapwire_dissection_active)', "dissecting {{instance}}")],
                  "short"),
            panel("TLS plaintext: chunks/s by outcome, probes attached",
                  [('sum by (outcome) (rate(tapwire_tls_chunks_total[$__rate_interval]))', "{{outcome}}"),
                   ('sum(tapwire_tls_tracing)', "nodes with probes attached")],
                  "short",
                  desc="dissected: handed to the dissectors; duplicate: the other end of a connection traced on the same node; lost: the ring buffer was full (a gap); unbound: no socket known."),
            panel("Sink delivery/s",
                  [('sum by (sink) (rate(tapwire_sink_delivered_total[$__rate_interval]))', "delivered {{sink}}"),
                   ('sum by (sink, reason) (rate(tapwire_sink_dropped_total[$__rate_interval]))', "dropped {{sink}} {{reason}}")],
                  "ops"),
            panel("Sink queues",
                  ['sum by (instance, sink) (tapwire_sink_queued)'],
                  "short", legend="{{instance}} {{sink}}"),
            panel("Subscriber drops/s and series overflow",
                  [('sum by (instance) (rate(tapwire_subscriber_dropped_events_total[$__rate_interval]))', "subscriber drops {{instance}}"),
                   ('sum by (metric) (rate(tapwire_metric_series_overflow_total[$__rate_interval]))', "overflow {{metric}}")],
                  "ops"),
            panel("Kubernetes names: peers by resolution",
                  ['sum by (side, resolution) (rate(tapwire_k8s_resolutions_total[$__rate_interval]))'],
                  "ops", legend="{{side}} {{resolution}}",
                  desc="unknown: outside the cluster or not listed yet; ambiguous: two pods claimed the address at that time."),
            panel("Kubernetes watches not synced and errors/s",
                  [('count by (resource) (tapwire_k8s_synced == 0)', "not synced {{resource}}"),
                   ('sum by (resource) (rate(tapwire_k8s_watch_errors_total[$__rate_interval]))', "errors {{resource}}")],
                  "short"),
        ],
    ),
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, d in DASHBOARDS.items():
        text = json.dumps(d, indent=2, sort_keys=True) + "\n"
        path = OUT / f"{name}.json"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale (run python3 helm/dashboards.py): " + ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
