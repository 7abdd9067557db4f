//! The two text forms of an event: its NDJSON line ([`write_json_line`], the one serialiser
//! behind `tapwire dissect`, the API, `since` replays and the Kafka sink) and its readable
//! table line ([`table_line`], for `tapwire dissect --format table` and `tapwire watch` on a
//! terminal).
//!
//! The table line is the time, the protocol, the peers, what the protocol's own part says
//! (its [`Family`]'s `summary` in `l7/`), the duration and the status. A new protocol of a known
//! family prints through that family's summary with no change here; the match on [`Family`] is
//! exhaustive, so a new family cannot be added without deciding its part. An exchange whose
//! fields are missing still prints the common part, never nothing.

use std::fmt::Write as _;

use crate::l7;
use crate::{Exchange, Family, Status};

/// Append the event's JSON object and a newline to `buf`.
pub fn write_json_line(ex: &Exchange, buf: &mut Vec<u8>) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *buf, ex)?;
    buf.push(b'\n');
    Ok(())
}

/// Append one readable line (with its newline): time of day (UTC), protocol, peers, the
/// protocol's summary, duration, status.
pub fn table_line(ex: &Exchange, s: &mut String) {
    let secs = ex.start_time_unix_nano / 1_000_000_000;
    let micros = (ex.start_time_unix_nano % 1_000_000_000) / 1000;
    let (h, m, sec) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let dur_ms = ex
        .end_time_unix_nano
        .saturating_sub(ex.start_time_unix_nano) as f64
        / 1e6;
    let _ = write!(
        s,
        "{h:02}:{m:02}:{sec:02}.{micros:06}  {:<5} {}:{} -> {}:{}  ",
        ex.protocol.as_str(),
        ex.client.address,
        ex.client.port,
        ex.server.address,
        ex.server.port
    );
    match ex.protocol.family() {
        Family::Http | Family::Rpc => l7::http::summary(ex, s),
        Family::Dns => l7::dns::summary(ex, s),
        Family::Db => l7::db::summary(ex, s),
        Family::Messaging => l7::messaging::summary(ex, s),
        Family::Tls => l7::tls::summary(ex, s),
        Family::Websocket => l7::websocket::summary(ex, s),
    }
    let status = match ex.status {
        Status::Ok => "ok",
        Status::Error => "error",
        Status::NoResponse => "no_response",
        Status::Incomplete => "incomplete",
    };
    let _ = writeln!(s, "  {dur_ms:.3}ms {status}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first event of one of the project's recorded fixtures.
    fn first(file: &str) -> Exchange {
        let path = format!(
            "{}/../pipeline/tests/golden/{file}.ndjson",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(text.lines().next().expect("an event")).expect("an Exchange")
    }

    fn line(ex: &Exchange) -> String {
        let mut s = String::new();
        table_line(ex, &mut s);
        s
    }

    #[test]
    fn each_protocol_says_what_was_asked_and_answered() {
        for (file, want) in [
            (
                "http1/nginx-keepalive-pipelining",
                "http  10.77.0.2:52716 -> 10.77.0.1:80  GET /index.html -> 200  0.140ms ok\n",
            ),
            (
                "dns/dnsmasq-records",
                "A www.example.test -> NOERROR (1 answers)  0.092ms ok\n",
            ),
            (
                "redis/redis-server-mixed",
                "AUTH ? -> simple_string  0.095ms ok\n",
            ),
            ("amqp/rabbitmq-pika", "connection.start   0.317ms ok\n"),
            ("kafka/tansu-confluent", "ApiVersions v3   2.378ms ok\n"),
            (
                "grpc/grpcio-bookshop",
                "POST /tapwire.test.Bookshop/GetBook -> 200 grpc tapwire.test.Bookshop/GetBook OK  1.288ms ok\n",
            ),
            (
                "graphql/strawberry-graphql-h1",
                "POST /graphql -> 200 graphql query AllBooks  3.352ms ok\n",
            ),
            (
                "postgresql/postgres-psql-psycopg",
                "STARTUP -> -  10.249ms ok\n",
            ),
            (
                "mysql/mariadb-cli-connector",
                "COM_CONNECT -> -  0.142ms ok\n",
            ),
            (
                "websocket/websockets-echo",
                "GET /chat -> 101  0.689ms ok\n",
            ),
            (
                "tls/nginx-tls",
                "shop.tapwire.test 1.3 TLS_AES_256_GCM_SHA384  2.971ms ok\n",
            ),
        ] {
            let got = line(&first(file));
            assert!(got.ends_with(want), "{file}: {got:?}");
        }
    }

    #[test]
    fn an_exchange_without_its_protocol_part_still_prints_the_common_part() {
        let mut ex = first("http1/nginx-keepalive-pipelining");
        ex.http = None;
        ex.url = None;
        assert!(
            line(&ex).ends_with("http  10.77.0.2:52716 -> 10.77.0.1:80    0.140ms ok\n"),
            "{:?}",
            line(&ex)
        );
    }

    #[test]
    fn every_protocol_prints_a_line() {
        for p in crate::Protocol::ALL {
            let ex = Exchange::new(
                p,
                crate::Transport::Udp,
                crate::Peer::new("10.0.0.1", 40000),
                crate::Peer::new("10.0.0.2", 53),
                1,
            );
            let got = line(&ex);
            let want = format!("{:<5} 10.0.0.1:40000 -> 10.0.0.2:53", p.as_str());
            assert!(got.contains(&want) && got.ends_with("ms ok\n"), "{got:?}");
        }
    }

    #[test]
    fn the_json_line_is_serde_json_s_with_a_newline() {
        let ex = first("dns/dnsmasq-records");
        let mut buf = Vec::new();
        write_json_line(&ex, &mut buf).expect("serialises");
        let mut want = serde_json::to_vec(&ex).expect("serialises");
        want.push(b'\n');
        assert_eq!(buf, want);
    }
}
