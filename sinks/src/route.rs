//! HTTP route templates: `/users/4711/orders/9f3c…` → `/users/{id}/orders/{id}`.
//!
//! A sniffer never sees the application's route table, so `http.route` is inferred from the
//! path: a segment becomes `{id}` when it is all digits, a UUID, hexadecimal with at least one
//! digit and 8 or more characters, or a long token (20 or more characters mixing letters and
//! digits, as base64 and random ids do). Everything else (words, `v2`, `api`) is kept. The query
//! is never part of a route.
//!
//! Limits: at most [`RouteConfig::max_per_server`] distinct templates per server
//! (`address:port`) and [`RouteConfig::max_servers`] servers; past either cap a new template
//! becomes [`OVERFLOW_ROUTE`], counted in [`Routes::overflowed`]. A path longer than
//! [`MAX_PATH`] bytes or with more than [`MAX_SEGMENTS`] segments is templated from its first
//! segments with `/{path}` at the end. Spans and metrics read the same templates, so a route
//! in a trace is a label value in Prometheus.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use rustc_hash::{FxHashMap, FxHashSet};

/// The template used when a server has too many distinct templates.
pub const OVERFLOW_ROUTE: &str = "/{path}";
/// Paths are read up to this many bytes.
pub const MAX_PATH: usize = 512;
/// Templates keep at most this many segments.
pub const MAX_SEGMENTS: usize = 16;

/// Caps of the template set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteConfig {
    pub max_per_server: usize,
    pub max_servers: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            max_per_server: 200,
            max_servers: 4096,
        }
    }
}

/// The templates seen so far, per server (shared by every sink of the agent).
#[derive(Debug, Default)]
pub struct Routes {
    cfg: RouteConfig,
    seen: Mutex<Seen>,
    /// Templates replaced by [`OVERFLOW_ROUTE`] because a cap was reached.
    pub overflowed: AtomicU64,
}

/// Templates by server address, then port: looked up with the exchange's own address and
/// port, so a known route costs no allocation (a shared template is handed out as an `Arc`).
#[derive(Debug, Default)]
struct Seen {
    by: FxHashMap<Box<str>, FxHashMap<u16, FxHashSet<Arc<str>>>>,
    /// Servers (address and port) in `by`.
    servers: usize,
}

/// [`OVERFLOW_ROUTE`], shared: an overflowing exchange (a client spraying paths) allocates
/// nothing.
static OVERFLOW: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(OVERFLOW_ROUTE));

thread_local! {
    /// Each thread's scratch buffer for a template being looked up.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Routes {
    pub fn new(cfg: RouteConfig) -> Routes {
        Routes {
            cfg,
            ..Routes::default()
        }
    }

    /// The route for `path` on the server at `address`:`port`, within the caps.
    pub fn route(&self, address: &str, port: u16, path: &str) -> Arc<str> {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut t) => self.route_in(address, port, path, &mut t),
            // Only reachable by re-entry (none): fall back to a buffer of its own.
            Err(_) => self.route_in(address, port, path, &mut String::new()),
        })
    }

    fn route_in(&self, address: &str, port: u16, path: &str, t: &mut String) -> Arc<str> {
        template_into(path, t);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Seen { by, servers } = &mut *seen;
        let known = by.get_mut(address).and_then(|ports| ports.get_mut(&port));
        let set = match known {
            Some(set) => set,
            None if *servers >= self.cfg.max_servers => return self.overflow(),
            None => {
                *servers += 1;
                by.entry(address.into())
                    .or_default()
                    .entry(port)
                    .or_default()
            }
        };
        if let Some(known) = set.get(t.as_str()) {
            return known.clone();
        }
        if set.len() >= self.cfg.max_per_server {
            return self.overflow();
        }
        let new: Arc<str> = Arc::from(t.as_str());
        set.insert(new.clone());
        new
    }

    fn overflow(&self) -> Arc<str> {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        OVERFLOW.clone()
    }
}

/// The template of one path, without caps, written into `out` (cleared first).
fn template_into(path: &str, out: &mut String) {
    out.clear();
    let mut p = path.split(['?', '#']).next().unwrap_or("");
    let byte_cut = p.len() > MAX_PATH;
    let mut cut = byte_cut;
    if byte_cut {
        let mut end = MAX_PATH;
        while !p.is_char_boundary(end) {
            end -= 1;
        }
        p = p.get(..end).unwrap_or_default();
    }
    if p.is_empty() {
        out.push('/');
        return;
    }
    for (i, seg) in p.split('/').enumerate() {
        if i == 0 {
            // Before the leading slash (empty for an origin-form path).
            if !seg.is_empty() {
                out.push_str(if is_id(seg) { "{id}" } else { seg });
            }
            continue;
        }
        if i > MAX_SEGMENTS {
            cut = true;
            break;
        }
        out.push('/');
        if is_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if cut {
        // Whatever a byte cut left of its last segment is not a route segment.
        if byte_cut && let Some(slash) = out.rfind('/') {
            out.truncate(slash);
        }
        out.push_str(OVERFLOW_ROUTE);
    }
}

/// Does this path segment look like an identifier rather than a route word?
pub fn is_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if b.len() >= 8 && digits > 0 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    b.len() >= 20
        && digits > 0
        && letters > 0
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.' | b'~'))
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(path: &str) -> String {
        let mut out = String::new();
        template_into(path, &mut out);
        out
    }

    #[test]
    fn identifiers_become_placeholders_and_words_stay() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("/users/4711", "/users/{id}"),
            ("/users/4711/orders/12?x=1", "/users/{id}/orders/{id}"),
            (
                "/o/123e4567-e89b-12d3-a456-426614174000/items",
                "/o/{id}/items",
            ),
            ("/blobs/9f86d081884c7d65", "/blobs/{id}"),
            ("/api/v2/health", "/api/v2/health"),
            ("/static/app.js", "/static/app.js"),
            ("/t/dGhpcyBpcyBhIHRva2VuMTIz", "/t/{id}"),
            ("/deadbeef", "/deadbeef"), // hex letters only: a word
            ("/graphql", "/graphql"),
            ("/a//b/", "/a//b/"),
            (
                "/helloworld.Greeter/SayHello",
                "/helloworld.Greeter/SayHello",
            ),
            ("*", "*"),
        ];
        for (path, want) in cases {
            assert_eq!(template(path), want, "{path}");
        }
    }

    #[test]
    fn long_paths_are_cut_with_a_marker() {
        let deep = "/a".repeat(40);
        let t = template(&deep);
        assert_eq!(t, format!("{}{OVERFLOW_ROUTE}", "/a".repeat(MAX_SEGMENTS)));
        let wide = format!("/{}", "é".repeat(400));
        assert_eq!(template(&wide), OVERFLOW_ROUTE);
    }

    #[test]
    fn each_server_keeps_a_bounded_set() {
        let r = Routes::new(RouteConfig {
            max_per_server: 2,
            max_servers: 2,
        });
        assert_eq!(&*r.route("s", 80, "/a/1"), "/a/{id}");
        assert_eq!(&*r.route("s", 80, "/b"), "/b");
        assert_eq!(
            &*r.route("s", 80, "/a/2"),
            "/a/{id}",
            "known templates stay"
        );
        assert_eq!(&*r.route("s", 80, "/c"), OVERFLOW_ROUTE);
        assert_eq!(
            &*r.route("t", 80, "/c"),
            "/c",
            "another server has its own set"
        );
        assert_eq!(&*r.route("u", 80, "/c"), OVERFLOW_ROUTE, "server cap");
        assert_eq!(
            &*r.route("t", 81, "/c"),
            OVERFLOW_ROUTE,
            "another port of a known address is another server"
        );
        assert_eq!(r.overflowed.load(Ordering::Relaxed), 3);
    }
}
