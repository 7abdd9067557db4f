//! Client fingerprints of a ClientHello: JA3 (Salesforce, 2017) and JA4 (FoxIO's `JA4` part
//! of JA4+). Hand-written: both are a few joins and a hash over fields the ClientHello already
//! gave; no crate computes them from `tls-parser`'s types.
//!
//! GREASE values (RFC 8701: `0x?a?a` with both bytes equal) are left out of both, as their
//! definitions say.

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// What the fingerprints read from a ClientHello, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// The ClientHello's legacy version field.
    pub version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types, in order.
    pub extensions: Vec<u16>,
    /// Supported groups (elliptic curves), point formats, signature algorithms, supported
    /// versions, in order.
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub signature_algorithms: Vec<u16>,
    pub versions: Vec<u16>,
    /// The first ALPN protocol offered.
    pub first_alpn: Option<Vec<u8>>,
    pub has_sni: bool,
}

/// RFC 8701's reserved values.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn join<T: ToString>(v: impl Iterator<Item = T>, sep: &str) -> String {
    v.map(|x| x.to_string()).collect::<Vec<_>>().join(sep)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JA3 string: `version,ciphers,extensions,groups,point formats`, decimal, `-` joined.
pub fn ja3_string(h: &Hello) -> String {
    let keep = |v: &&u16| !is_grease(**v);
    format!(
        "{},{},{},{},{}",
        h.version,
        join(h.ciphers.iter().filter(keep), "-"),
        join(h.extensions.iter().filter(keep), "-"),
        join(h.groups.iter().filter(keep), "-"),
        join(h.point_formats.iter(), "-"),
    )
}

/// JA3: the MD5 of [`ja3_string`], lower-case hex.
pub fn ja3(h: &Hello) -> String {
    hex(&Md5::digest(ja3_string(h).as_bytes()))
}

/// The first 12 hex digits of SHA-256 of `s`, or twelve zeros for an empty list.
fn hash12(s: &str, empty: bool) -> String {
    if empty {
        return "000000000000".into();
    }
    let mut h = hex(&Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

/// The version part of JA4: the highest supported version, else the legacy field.
fn version_code(h: &Hello) -> &'static str {
    let v = h
        .versions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .max()
        .unwrap_or(h.version);
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The ALPN part of JA4: first and last character of the first protocol offered when both
/// are alphanumeric, else the first and last hex digit of its bytes; `00` without ALPN.
fn alpn_code(h: &Hello) -> String {
    let p = h.first_alpn.as_deref().unwrap_or_default();
    let (Some(&first), Some(&last)) = (p.first(), p.last()) else {
        return "00".into();
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        format!("{}{}", first as char, last as char)
    } else {
        // The first and last hex digits: of the first byte's high nibble, the last's low one.
        let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
        format!("{}{}", digit(first >> 4), digit(last & 0xf))
    }
}

/// JA4 from its raw parts: `a`, the sorted cipher list and the sorted extension list with
/// the signature algorithms (the `JA4_r` form, which [`ja4`] hashes).
pub fn ja4_from_raw(a: &str, ciphers: &str, extensions: &str, sigalgs: &str) -> String {
    let c = hash12(ciphers, ciphers.is_empty());
    let e = if sigalgs.is_empty() {
        hash12(extensions, extensions.is_empty())
    } else {
        hash12(&format!("{extensions}_{sigalgs}"), extensions.is_empty())
    };
    format!("{a}_{c}_{e}")
}

/// JA4 (TLS over TCP).
pub fn ja4(h: &Hello) -> String {
    let ciphers: Vec<u16> = h
        .ciphers
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .collect();
    let exts: Vec<u16> = h
        .extensions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .collect();
    let a = format!(
        "t{}{}{:02}{:02}{}",
        version_code(h),
        if h.has_sni { 'd' } else { 'i' },
        ciphers.len().min(99),
        exts.len().min(99),
        alpn_code(h)
    );
    let mut sorted_ciphers = ciphers;
    sorted_ciphers.sort_unstable();
    // The extension hash leaves out SNI and ALPN (they are in `a`).
    let mut sorted_exts: Vec<u16> = exts
        .into_iter()
        .filter(|e| *e != 0x0000 && *e != 0x0010)
        .collect();
    sorted_exts.sort_unstable();
    let four = |v: &u16| format!("{v:04x}");
    ja4_from_raw(
        &a,
        &join(sorted_ciphers.iter().map(four), ","),
        &join(sorted_exts.iter().map(four), ","),
        &join(
            h.signature_algorithms
                .iter()
                .filter(|v| !is_grease(**v))
                .map(four),
            ",",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_the_rfc_8701_ones() {
        for g in [0x0a0a, 0x1a1a, 0xfafa] {
            assert!(is_grease(g));
        }
        for n in [0x0a1a, 0x000a, 0x1301, 0xc02b] {
            assert!(!is_grease(n));
        }
    }

    #[test]
    fn ja4_hashes_match_published_raw_forms() {
        // Two published JA4 / JA4_r pairs (Chrome to a Google host, and a TLS 1.3 client with
        // ten ciphers), hashed here from their raw forms.
        assert_eq!(
            ja4_from_raw(
                "t13d1516h2",
                "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9",
                "0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01",
                "0403,0804,0401,0503,0805,0501,0806,0601",
            ),
            "t13d1516h2_8daaf6152771_d8a2da3f94cd"
        );
        assert_eq!(
            ja4_from_raw(
                "t13d1011h2",
                "00ff,1301,1302,1303,c02b,c02c,c02f,c030,cca8,cca9",
                "0005,000a,000b,000d,0017,0023,002b,002d,0033",
                "0503,0403,0807,0806,0805,0804,0601,0501,0401",
            ),
            "t13d1011h2_61a7ad8aa9b6_3fcd1a44f3e3"
        );
    }

    #[test]
    fn ja4_a_counts_and_codes() {
        let h = Hello {
            version: 0x0303,
            ciphers: vec![0x1a1a, 0x1301, 0x1302],
            extensions: vec![0x2a2a, 0x0000, 0x0010, 0x002b],
            versions: vec![0x3a3a, 0x0304, 0x0303],
            first_alpn: Some(b"http/1.1".to_vec()),
            has_sni: true,
            ..Hello::default()
        };
        assert!(ja4(&h).starts_with("t13d0203h1_"), "{}", ja4(&h));
        let bare = Hello {
            version: 0x0301,
            ..Hello::default()
        };
        assert_eq!(ja4(&bare), "t10i000000_000000000000_000000000000");
        let odd = Hello {
            first_alpn: Some(vec![0xab, b'x', 0xcd]),
            ..bare
        };
        assert!(ja4(&odd).starts_with("t10i0000ad_"));
    }

    #[test]
    fn ja3_string_drops_grease_and_keeps_order() {
        let h = Hello {
            version: 771,
            ciphers: vec![0x0a0a, 4865, 4866],
            extensions: vec![0x1a1a, 0, 23, 65281],
            groups: vec![0x2a2a, 29, 23],
            point_formats: vec![0],
            ..Hello::default()
        };
        assert_eq!(ja3_string(&h), "771,4865-4866,0-23-65281,29-23,0");
        assert_eq!(ja3(&h).len(), 32);
    }
}
