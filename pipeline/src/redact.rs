//! Secrets out of every event, by name and by pattern.
//!
//! [`Redaction::apply`] runs on every exchange a [`crate::Pipeline`] produces, before anything
//! (NDJSON, the API, a `since` replay, OTLP, Kafka, RED labels) sees it, so one rule covers
//! every protocol and every output. What it replaces with `REDACTED` (the name stays, so a
//! reader still sees that the field was there):
//! - header values (HTTP/1, HTTP/2, gRPC metadata, both directions) whose lower-case name is
//!   in the exact list or contains one of the patterns (`*token*`, `*secret*`, `*password*`,
//!   `*api-key*`, …): [`DEFAULT_HEADERS`] and [`DEFAULT_HEADER_PATTERNS`];
//! - the userinfo of an absolute-form target (`http://user:pass@host/…` becomes
//!   `http://REDACTED@host/…`), in `url.path`;
//! - `url.query` values whose key (case-insensitive, percent-decoded) is one the OpenTelemetry
//!   conventions name for redaction (`AWSAccessKeyId`, `Signature`, `sig`, `X-Goog-Signature`)
//!   or a common token key ([`DEFAULT_QUERY_KEYS`]); GraphQL `variables` too, which the
//!   GraphQL fields never copy.
//!
//! The dissectors redact `authorization`, `cookie`, `proxy-authorization` and `set-cookie`
//! themselves as they read them; this is the second, configurable layer (`redact:` in the
//! agent's configuration adds names, patterns and query keys; the defaults always apply).

use schemas::{Exchange, HeaderMap};

/// What a redacted value becomes.
pub const REDACTED: &str = "REDACTED";

/// Header names always redacted.
pub const DEFAULT_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-amz-security-token",
    "x-tapwire-token",
    "x-csrf-token",
];

/// Substrings that make a header name secret.
pub const DEFAULT_HEADER_PATTERNS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "api-key",
    "apikey",
    "api_key",
    "credential",
    "signature",
    "session",
    "private-key",
    "auth-key",
];

/// Query keys whose values are redacted (compared without case).
pub const DEFAULT_QUERY_KEYS: &[&str] = &[
    // The OpenTelemetry conventions' list for `url.query`.
    "awsaccesskeyid",
    "signature",
    "sig",
    "x-goog-signature",
    // Cloud signed URLs.
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-credential",
    // Common token and credential keys.
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "code",
    "session",
    "sessionid",
    "auth",
    // GraphQL over HTTP GET: never copied.
    "variables",
];

/// The redaction rule: the defaults plus what the configuration adds.
///
/// Header names are checked against every exchange's every header, so the patterns are one
/// Aho-Corasick automaton (one pass over the name, whatever the number of patterns) and the
/// exact names a hash set: a loop of `contains` per pattern cost a third of `tapwire dissect`'s
/// time on HTTP traffic.
#[derive(Debug, Clone)]
pub struct Redaction {
    headers: rustc_hash::FxHashSet<String>,
    patterns: Vec<String>,
    matcher: Option<aho_corasick::AhoCorasick>,
    query_keys: Vec<String>,
}

impl PartialEq for Redaction {
    fn eq(&self, other: &Self) -> bool {
        self.headers == other.headers
            && self.patterns == other.patterns
            && self.query_keys == other.query_keys
    }
}

impl Eq for Redaction {}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::with(&[], &[])
    }
}

impl Redaction {
    /// The defaults plus `headers` (a name, or `*part*` for names containing `part`) and
    /// `query_keys`, all compared without case.
    pub fn with(headers: &[String], query_keys: &[String]) -> Redaction {
        let mut exact: rustc_hash::FxHashSet<String> =
            DEFAULT_HEADERS.iter().map(|s| s.to_string()).collect();
        let mut patterns: Vec<String> = DEFAULT_HEADER_PATTERNS
            .iter()
            .map(|s| s.to_string())
            .collect();
        for h in headers {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix('*').and_then(|p| p.strip_suffix('*')) {
                Some(part) if !part.is_empty() => patterns.push(part.to_string()),
                _ => {
                    exact.insert(h);
                }
            }
        }
        let mut keys: Vec<String> = DEFAULT_QUERY_KEYS.iter().map(|s| s.to_string()).collect();
        keys.extend(query_keys.iter().map(|k| k.to_ascii_lowercase()));
        Redaction {
            headers: exact,
            // Plain substrings, as many as the configuration holds (the agent caps them):
            // the automaton's own size limits are far beyond; were one reached, the patterns
            // are still checked one by one.
            matcher: aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&patterns)
                .ok(),
            patterns,
            query_keys: keys,
        }
    }

    /// The default rule, built once per process and shared.
    pub fn shared_default() -> std::sync::Arc<Redaction> {
        static DEFAULT: std::sync::LazyLock<std::sync::Arc<Redaction>> =
            std::sync::LazyLock::new(|| std::sync::Arc::new(Redaction::default()));
        std::sync::Arc::clone(&DEFAULT)
    }

    /// Whether a header (lower-case name) is secret. CORS headers (`access-control-*`) name
    /// other headers and policies, never hold a secret, and are exempt from the patterns
    /// (`access-control-allow-credentials: true`).
    pub fn header(&self, name: &str) -> bool {
        self.headers.contains(name)
            || (!name.starts_with("access-control-")
                && match &self.matcher {
                    Some(m) => m.is_match(name),
                    None => self.patterns.iter().any(|p| name.contains(p.as_str())),
                })
    }

    /// Whether a query key is secret.
    pub fn query_key(&self, key: &str) -> bool {
        let decoded: String = form_urlencoded::parse(format!("{key}=").as_bytes())
            .next()
            .map_or_else(|| key.to_string(), |(k, _)| k.into_owned());
        self.query_keys
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&decoded))
    }

    /// Redact one exchange in place.
    pub fn apply(&self, ex: &mut Exchange) {
        self.apply_with(ex, &mut Verdicts::default());
    }

    /// Redact one exchange in place, remembering header-name verdicts in `memo` (a
    /// pipeline keeps one: the same few dozen names come back in every exchange).
    pub fn apply_with(&self, ex: &mut Exchange, memo: &mut Verdicts) {
        if let Some(http) = ex.http.as_mut() {
            self.headers_in(&mut http.request.header, memo);
            if let Some(resp) = http.response.as_mut() {
                self.headers_in(&mut resp.header, memo);
            }
        }
        if let Some(url) = ex.url.as_mut() {
            if let Some(path) = url.path.as_mut()
                && let Some(clean) = without_userinfo(path)
            {
                *path = clean;
            }
            if let Some(q) = url.query.as_mut()
                && let Some(clean) = self.query(q)
            {
                *q = clean;
            }
        }
    }

    fn headers_in(&self, h: &mut HeaderMap, memo: &mut Verdicts) {
        for (name, value) in h.iter_mut() {
            if value != REDACTED && memo.header(self, name) {
                *value = REDACTED.to_string();
            }
        }
    }

    /// The query with secret values replaced, or `None` when nothing is secret.
    fn query(&self, q: &str) -> Option<String> {
        let secret = |pair: &str| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            pair.contains('=') && self.query_key(key)
        };
        if !q.split('&').any(secret) {
            return None;
        }
        let parts: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret(pair) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        Some(parts.join("&"))
    }
}

/// Header names remembered by [`Verdicts`]; past them, names are checked each time.
pub const MAX_REMEMBERED_NAMES: usize = 4096;

/// Header-name verdicts of one [`Redaction`], remembered (at most
/// [`MAX_REMEMBERED_NAMES`], each at most 64 bytes) so that a name seen before costs one
/// hash lookup instead of the pattern scan.
#[derive(Debug, Default)]
pub struct Verdicts {
    seen: rustc_hash::FxHashMap<Box<str>, bool>,
}

impl Verdicts {
    fn header(&mut self, rule: &Redaction, name: &str) -> bool {
        if let Some(&v) = self.seen.get(name) {
            return v;
        }
        let v = rule.header(name);
        if self.seen.len() < MAX_REMEMBERED_NAMES && name.len() <= 64 {
            self.seen.insert(name.into(), v);
        }
        v
    }

    /// Heap bytes held (for the pipeline's own accounting).
    pub fn held_bytes(&self) -> usize {
        self.seen.capacity() * (std::mem::size_of::<(Box<str>, bool)>() + 1)
            + self.seen.keys().map(|k| k.len()).sum::<usize>()
    }
}

/// An absolute-form target with its userinfo replaced, or `None` when it has none.
fn without_userinfo(target: &str) -> Option<String> {
    let (scheme, rest) = target.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some(format!("{scheme}://{REDACTED}{}", &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::l7::http::{Http, HttpRequest, HttpResponse, Url};
    use schemas::{Peer, Protocol, Transport};
    use std::borrow::Cow;

    fn exchange(headers: &[(&str, &str)], path: &str, query: Option<&str>) -> Exchange {
        let mut ex = Exchange::new(
            Protocol::Http,
            Transport::Tcp,
            Peer::new("10.0.0.1", 5000),
            Peer::new("10.0.0.2", 80),
            1,
        );
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.push(Cow::Owned(n.to_string()), v.to_string());
        }
        ex.http = Some(Box::new(Http {
            request: HttpRequest {
                header: h.clone(),
                ..Default::default()
            },
            response: Some(HttpResponse {
                header: h,
                ..Default::default()
            }),
        }));
        ex.url = Some(Box::new(Url {
            path: Some(path.into()),
            query: query.map(str::to_string),
            ..Default::default()
        }));
        ex
    }

    #[test]
    fn credential_like_headers_are_redacted_by_name_and_pattern() {
        let mut ex = exchange(
            &[
                ("x-api-key", "k1"),
                ("x-auth-token", "t1"),
                ("x-amz-security-token", "t2"),
                ("x-tapwire-token", "t3"),
                ("x-client-secret", "s1"),
                ("x-db-password", "p1"),
                ("content-type", "application/json"),
                ("user-agent", "curl/8"),
            ],
            "/",
            None,
        );
        Redaction::default().apply(&mut ex);
        let http = ex.http.unwrap();
        for h in [&http.request.header, &http.response.unwrap().header] {
            let secret: Vec<_> = h
                .iter()
                .filter(|(_, v)| *v == REDACTED)
                .map(|(n, _)| n)
                .collect();
            assert_eq!(secret.len(), 6, "{secret:?}");
            assert_eq!(h.first("content-type"), Some("application/json"));
            assert_eq!(h.first("user-agent"), Some("curl/8"));
        }
    }

    #[test]
    fn userinfo_and_signed_query_values_are_redacted() {
        let mut ex = exchange(
            &[],
            "http://alice:s3cret@proxy.example:8080/a/b",
            Some("X-Amz-Signature=abc&page=2&access_token=xyz&Sig=q&variables=%7B%22pw%22%7D&x=1"),
        );
        Redaction::default().apply(&mut ex);
        let url = ex.url.unwrap();
        assert_eq!(
            url.path.as_deref(),
            Some("http://REDACTED@proxy.example:8080/a/b")
        );
        assert_eq!(
            url.query.as_deref(),
            Some(
                "X-Amz-Signature=REDACTED&page=2&access_token=REDACTED&Sig=REDACTED&variables=REDACTED&x=1"
            )
        );
        // Nothing secret: untouched, not even copied.
        assert_eq!(Redaction::default().query("page=2&sort=asc"), None);
        assert_eq!(without_userinfo("/plain/path?x=a@b"), None);
        assert_eq!(without_userinfo("http://host/a@b"), None);
    }

    #[test]
    fn configured_names_patterns_and_keys_add_to_the_defaults() {
        let r = Redaction::with(
            &["X-Internal-Id".into(), "*tenant*".into()],
            &["ssn".into()],
        );
        assert!(r.header("x-internal-id"));
        assert!(r.header("x-tenant-name"));
        assert!(r.header("authorization"), "defaults stay");
        assert!(!r.header("accept"));
        assert!(!r.header("access-control-allow-credentials"));
        assert!(r.query_key("SSN"));
        assert!(r.query_key("sig"));
        assert!(
            r.query_key("%73ig"),
            "percent-encoded keys are decoded first"
        );
    }

    #[test]
    fn remembered_verdicts_are_the_rule_s_and_the_memo_is_capped() {
        let r = Redaction::with(&["*tenant*".into()], &[]);
        let mut memo = Verdicts::default();
        for name in [
            "x-tenant",
            "accept",
            "x-api-key",
            "host",
            "x-tenant",
            "accept",
        ] {
            assert_eq!(memo.header(&r, name), r.header(name), "{name}");
        }
        assert_eq!(memo.seen.len(), 4, "each name once");
        let long = format!("x-{}-token", "a".repeat(80));
        assert!(memo.header(&r, &long), "a long name is still checked");
        assert_eq!(memo.seen.len(), 4, "but not remembered");
        for i in 0..MAX_REMEMBERED_NAMES + 100 {
            memo.header(&r, &format!("x-h{i}"));
        }
        assert_eq!(memo.seen.len(), MAX_REMEMBERED_NAMES);
        assert!(
            memo.header(&r, "x-tenant-id-new"),
            "past the cap, names are checked"
        );
    }
}
