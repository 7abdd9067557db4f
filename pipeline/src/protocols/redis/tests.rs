use super::*;
use crate::dissect::testkit::{self, Driver};

fn driver() -> Driver<RedisDissector> {
    Driver::new(RedisDissector::new(), testkit::meta(Transport::Tcp, 6379))
}

const S: Direction = Direction::ToServer;
const C: Direction = Direction::ToClient;

/// (operation, query text, status, response type, error prefix)
fn view(e: &Exchange) -> (String, String, Status, String, String) {
    let db = e.db.as_ref().unwrap();
    (
        db.operation
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_default(),
        db.query
            .as_ref()
            .map(|q| q.text.clone())
            .unwrap_or_default(),
        e.status,
        e.redis
            .as_ref()
            .and_then(|r| r.response.as_ref())
            .map(|r| r.rtype.clone())
            .unwrap_or_default(),
        db.response
            .as_ref()
            .and_then(|r| r.status_code.clone())
            .unwrap_or_default(),
    )
}

fn v(op: &str, q: &str, st: Status, t: &str, e: &str) -> (String, String, Status, String, String) {
    (op.into(), q.into(), st, t.into(), e.into())
}

#[test]
fn pipelined_commands_pair_in_order_at_every_feed_size() {
    // SET with a value, GET, a wrong-type error, and an inline PING; values never shown.
    let reqs =
        b"*3\r\n$3\r\nSET\r\n$4\r\nuser\r\n$6\r\nsecret\r\n*2\r\n$3\r\nget\r\n$4\r\nuser\r\n\
*2\r\n$5\r\nLPUSH\r\n$4\r\nuser\r\nPING\r\n";
    let resps = b"+OK\r\n$6\r\nsecret\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+PONG\r\n";
    for step in [1, 2, 5, 100] {
        let mut d = driver();
        d.send(S, reqs, step);
        d.send(C, resps, step);
        let (out, _, _) = d.close();
        let got: Vec<_> = out.iter().map(view).collect();
        assert_eq!(
            got,
            vec![
                v("SET", "SET ? ?", Status::Ok, "simple_string", ""),
                v("GET", "GET ?", Status::Ok, "bulk_string", ""),
                v("LPUSH", "LPUSH ?", Status::Error, "error", "WRONGTYPE"),
                v("PING", "PING", Status::Ok, "simple_string", ""),
            ],
            "step {step}"
        );
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("secret"));
    }
}

#[test]
fn detects_resp_and_inline_requests() {
    let d = |b: &[u8], hinted| detect(b, Transport::Tcp, hinted);
    assert_eq!(d(b"*3\r\n$3\r\nSET\r\n", false), Detection::FromClient);
    assert_eq!(d(b"PING\r\n", false), Detection::FromClient);
    assert_eq!(d(b"*", false), Detection::NeedMore);
    // Weaker evidence only on a Redis port: unknown inline words, and replies first.
    assert_eq!(d(b"FAKE COMMAND\r\n", true), Detection::FromClient);
    assert_eq!(d(b"FAKE COMMAND\r\n", false), Detection::No);
    assert_eq!(d(b"+OK\r\n", true), Detection::FromServer);
    assert_eq!(d(b"+OK\r\n", false), Detection::No);
    let found = crate::dissect::detect::detect(
        crate::protocols::REGISTRY,
        b"*3\r\n$3\r\nSET\r\n$4\r\ntest\r\n$2\r\nhi\r\n",
        Transport::Tcp,
        (64356, 6379),
    );
    assert!(
        matches!(found, crate::dissect::detect::Detected::Found(e, Detection::FromClient) if e.protocol == Protocol::Redis)
    );
    // HTTP keeps its requests off a Redis port.
    let found = crate::dissect::detect::detect(
        crate::protocols::REGISTRY,
        b"GET / HTTP/1.1\r\n\r\n",
        Transport::Tcp,
        (40000, 80),
    );
    assert!(
        matches!(found, crate::dissect::detect::Detected::Found(e, _) if e.protocol == Protocol::Http)
    );
}

#[test]
fn hostile_lengths_and_depth_end_the_flow_without_panic() {
    for bad in [
        &b"*2\r\n%9223372036854775807\r\n"[..],
        b"$99999999999999999999\r\n",
        b"*1\r\n$-7\r\n",
        b"*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n*3\r\n",
    ] {
        let mut d = driver();
        let _ = d.try_send(C, bad, 3);
        let _ = d.try_send(S, bad, 1);
        let _ = d.close();
    }
    // A line longer than the cap is refused rather than buffered.
    let mut d = driver();
    let mut long = b"+".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
    assert!(!d.try_send(C, &long, 4096));
}

#[test]
fn gap_inside_a_bulk_keeps_pairing() {
    let mut d = driver();
    d.send(
        S,
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n",
        100,
    );
    d.send(C, b"$10\r\n0123", 100);
    d.gap(C, 4);
    d.send(C, b"89\r\n+PONG\r\n", 100);
    let (out, _, _) = d.close();
    let got: Vec<_> = out.iter().map(view).collect();
    assert_eq!(
        got,
        vec![
            v("GET", "GET ?", Status::Incomplete, "bulk_string", ""),
            v("PING", "PING", Status::Ok, "simple_string", ""),
        ]
    );
}

#[test]
fn multi_exec_pairs_every_command_with_its_queued_reply() {
    let mut d = driver();
    let reqs = b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*1\r\n$4\r\nEXEC\r\n";
    let resps = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n";
    d.send(S, reqs, 7);
    d.send(C, resps, 3);
    let got: Vec<_> = d.close().0.iter().map(view).collect();
    assert_eq!(
        got,
        vec![
            v("MULTI", "MULTI", Status::Ok, "simple_string", ""),
            v("SET", "SET ? ?", Status::Ok, "simple_string", ""),
            v("INCR", "INCR ?", Status::Ok, "simple_string", ""),
            v("EXEC", "EXEC", Status::Ok, "array", ""),
        ]
    );
}

#[test]
fn resp3_push_after_subscribe_is_one_way() {
    let mut d = driver();
    d.send(S, b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n", 100);
    d.send(
        C,
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        5
    );
    let got: Vec<_> = d.close().0.iter().map(view).collect();
    assert_eq!(
        got,
        vec![
            v("SUBSCRIBE", "SUBSCRIBE ?", Status::Ok, "push", ""),
            v("MESSAGE", "", Status::Ok, "push", ""),
        ]
    );
}
