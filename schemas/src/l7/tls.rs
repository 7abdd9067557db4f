//! TLS handshakes: the table summary of a `tls` exchange. Its fields live in `tls.*`
//! ([`crate::Tls`]), shared with the TLS plaintext source's `tls.established`.

/// `SNI version cipher ALPN [resumed]`, or the alert that ended it: `shop.example 1.3
/// TLS_AES_128_GCM_SHA256 h2`, `shop.example alert handshake_failure`.
pub fn summary(ex: &crate::Exchange, s: &mut String) {
    use std::fmt::Write as _;
    let Some(t) = &ex.tls else {
        return;
    };
    let sni = t
        .client
        .as_ref()
        .and_then(|c| c.server_name.as_deref())
        .unwrap_or("-");
    let _ = write!(s, "{sni}");
    if let Some(a) = &t.alert {
        let _ = write!(s, " alert {} ({})", a.description, a.sender);
    }
    if let Some(p) = &t.protocol {
        let _ = write!(s, " {}", p.version);
    }
    for part in [&t.cipher, &t.next_protocol].into_iter().flatten() {
        let _ = write!(s, " {part}");
    }
    if t.resumed == Some(true) {
        s.push_str(" resumed");
    }
}
