//! `schemas/event.schema.json` must match the types. Regenerate with
//! `TAPWIRE_BLESS=1 cargo test -p tapwire-schemas`.

#[test]
fn checked_in_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/event.schema.json");
    let generated = schemas::json_schema();
    if std::env::var_os("TAPWIRE_BLESS").is_some() {
        std::fs::write(path, &generated).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "schemas/event.schema.json is stale: run TAPWIRE_BLESS=1 cargo test -p tapwire-schemas"
    );
}

#[test]
fn event_nests_on_dots() {
    use schemas::*;
    let mut e = Exchange::new(
        Protocol::Http,
        Transport::Tcp,
        Peer::new("10.0.0.1", 40000),
        Peer::new("10.0.0.2", 80),
        1,
    );
    e.http = Some(Box::new(schemas::l7::http::Http {
        response: Some(schemas::l7::http::HttpResponse {
            status_code: Some(200),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["http"]["response"]["status_code"], 200);
    assert_eq!(v["network"]["transport"], "tcp");
    assert_eq!(v["client"]["port"], 40000);
    assert!(v.get("dns").is_none());
    assert!(v.get("tapwire").is_none());
}
