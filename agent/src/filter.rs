//! Event filters: CEL expressions (the `cel` crate) over the event's field names, as in the
//! event contract: `protocol == "http" && http.response.status_code >= 500`,
//! `dns.question.name.endsWith(".svc.cluster.local")`, `status != "ok"`,
//! `server.k8s.namespace.name == "shop"` (with Kubernetes enrichment on).
//!
//! Each top-level field of the event is a variable (`protocol`, `status`, `http`, `url`,
//! `dns`, `rpc`, `graphql`, `db`, `messaging`, `kafka`, `amqp`, `client`, `server`, …). A
//! field the event does not have makes the expression fail to evaluate, which counts as no
//! match: `http.request.method == "GET"` simply never matches a DNS event. Use `has(...)` to
//! test for presence explicitly. A filter that does not compile is refused with one line.
//!
//! Limits. A filter comes from anyone who may call the API, and both the crate's parser and
//! its evaluator recurse over the expression, so a compiled filter is bounded: at most
//! [`MAX_LEN`] bytes of source, [`MAX_NODES`] expression nodes, [`MAX_DEPTH`] levels of
//! nesting and [`MAX_COMPREHENSIONS`] nested `all`/`exists`/`map`/`filter` macros (so an
//! evaluation costs at most a few list lengths multiplied together). Parsing runs on its own
//! thread with a [`COMPILE_STACK`] stack, which a filter of [`MAX_LEN`] bytes cannot exhaust;
//! the bound is then checked without recursion. Evaluation is timed by the caller
//! ([`Filter::matches_within`]): the subscription whose filter overruns its budget is ended.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cel::common::ast::{EntryExpr, Expr};
use cel::{Context, Env, IdedExpr, Program, Value};
use schemas::Exchange;

/// Longest filter source accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Most expression nodes (after macro expansion) in a filter.
pub const MAX_NODES: usize = 1000;
/// Deepest nesting of expression nodes.
pub const MAX_DEPTH: usize = 40;
/// Most comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`) nested in one
/// another.
pub const MAX_COMPREHENSIONS: usize = 2;
/// Stack of the thread that parses a filter.
pub const COMPILE_STACK: usize = 256 << 20;

/// Why a filter expression was refused.
#[derive(Debug, thiserror::Error)]
#[error("bad filter {expr:?}: {message}")]
pub struct FilterError {
    pub expr: String,
    pub message: String,
}

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

/// A compiled filter.
pub struct Filter {
    program: Program,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Filter")
    }
}

/// An event's variables, built once and shared by every filter that looks at it.
pub struct Bindings {
    ctx: Context<'static, 'static>,
}

impl Bindings {
    pub fn of(ex: &Exchange) -> Bindings {
        let mut ctx = Context::with_env(env());
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(ex) {
            for (k, v) in fields {
                if let Ok(v) = cel::to_value(v) {
                    ctx.add_variable_from_value(k, v);
                }
            }
        }
        Bindings { ctx }
    }
}

/// A filter's evaluation took longer than its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow(pub Duration);

/// Which cap an expression exceeds, if any (nodes, depth, nested comprehensions), walked
/// with an explicit stack.
fn over_cap(root: &IdedExpr) -> Option<String> {
    let mut nodes = 0usize;
    // (node, depth, comprehensions around and including it)
    let mut todo: Vec<(&IdedExpr, usize, usize)> = vec![(root, 1, 0)];
    while let Some((e, depth, comps)) = todo.pop() {
        nodes += 1;
        if nodes > MAX_NODES {
            return Some(format!(
                "more than {MAX_NODES} expression nodes (the node cap)"
            ));
        }
        if depth > MAX_DEPTH {
            return Some(format!(
                "nested deeper than {MAX_DEPTH} levels (the depth cap)"
            ));
        }
        let d = depth + 1;
        match &e.expr {
            Expr::Call(c) => {
                todo.extend(c.target.iter().map(|t| (&**t, d, comps)));
                todo.extend(c.args.iter().map(|a| (a, d, comps)));
            }
            Expr::Comprehension(c) => {
                let inner = comps + 1;
                if inner > MAX_COMPREHENSIONS {
                    return Some(format!(
                        "more than {MAX_COMPREHENSIONS} nested all/exists/map/filter macros (the comprehension cap)"
                    ));
                }
                todo.push((&c.iter_range, d, comps));
                for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    todo.push((part, d, inner));
                }
            }
            Expr::List(l) => todo.extend(l.elements.iter().map(|x| (x, d, comps))),
            Expr::Map(cel::common::ast::MapExpr { entries })
            | Expr::Struct(cel::common::ast::StructExpr { entries, .. }) => {
                for entry in entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            todo.push((&me.key, d, comps));
                            todo.push((&me.value, d, comps));
                        }
                        EntryExpr::StructField(f) => todo.push((&f.value, d, comps)),
                    }
                }
            }
            Expr::Select(s) => todo.push((&s.operand, d, comps)),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    None
}

/// Parse and check `source` (on the thread that calls it).
fn compile_here(source: &str) -> Result<Program, String> {
    let program = env().compile(source).map_err(|e| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })?;
    match over_cap(program.expression()) {
        // The refused program is dropped here too, on the big stack (dropping recurses).
        Some(cap) => Err(cap),
        None => Ok(program),
    }
}

impl Filter {
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        let refuse = |message: String| FilterError {
            expr: source.chars().take(80).collect(),
            message,
        };
        if source.len() > MAX_LEN {
            return Err(refuse(format!(
                "{} bytes, over the filter length cap of {MAX_LEN}",
                source.len()
            )));
        }
        let owned = source.to_string();
        let program = std::thread::Builder::new()
            .name("tapwire-filter-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn(move || compile_here(&owned))
            .map_err(|e| refuse(format!("cannot start the compiler thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err("the compiler failed".to_string()))
            .map_err(refuse)?;
        Ok(Filter { program })
    }

    /// Whether the event matches, or [`TooSlow`] when evaluating took longer than `budget`
    /// (the answer is then not used).
    pub fn matches_within(&self, b: &Bindings, budget: Duration) -> Result<bool, TooSlow> {
        let t = Instant::now();
        let m = self.matches(b);
        let took = t.elapsed();
        if took > budget {
            return Err(TooSlow(took));
        }
        Ok(m)
    }

    pub fn matches(&self, b: &Bindings) -> bool {
        matches!(self.program.execute(&b.ctx), Ok(Value::Bool(true)))
    }

    pub fn matches_event(&self, ex: &Exchange) -> bool {
        self.matches(&Bindings::of(ex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::l7::http::{Http, HttpRequest, HttpResponse};
    use schemas::{Peer, Protocol, Status, Transport};

    fn http(method: &str, code: u16) -> Exchange {
        let mut ex = Exchange::new(
            Protocol::Http,
            Transport::Tcp,
            Peer::new("10.0.0.1", 5000),
            Peer::new("10.0.0.2", 80),
            1,
        );
        ex.http = Some(Box::new(Http {
            request: HttpRequest {
                method: Some(method.into()),
                ..Default::default()
            },
            response: Some(HttpResponse {
                status_code: Some(code),
                ..Default::default()
            }),
        }));
        ex.status = if code >= 400 {
            Status::Error
        } else {
            Status::Ok
        };
        ex
    }

    #[test]
    fn field_names_as_in_the_contract() {
        let f =
            Filter::compile(r#"protocol == "http" && http.response.status_code >= 500"#).unwrap();
        assert!(f.matches_event(&http("GET", 503)));
        assert!(!f.matches_event(&http("GET", 200)));
        let g = Filter::compile(r#"status != "ok" && server.port == 80"#).unwrap();
        assert!(g.matches_event(&http("POST", 404)));
        let h = Filter::compile(r#"http.request.method in ["PUT", "POST"]"#).unwrap();
        assert!(h.matches_event(&http("POST", 200)));
        assert!(!h.matches_event(&http("GET", 200)));
    }

    /// The second wave's fields, on the project's recorded fixtures' events.
    #[test]
    fn new_protocols_fields_filter() {
        let events = |file: &str| -> Vec<schemas::Exchange> {
            let path = format!(
                "{}/../pipeline/tests/golden/{file}.ndjson",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .lines()
                .map(|l| serde_json::from_str(l).expect("an Exchange"))
                .collect()
        };
        for (file, filter, want) in [
            (
                "tls/nginx-tls",
                r#"protocol == "tls" && tls.client.server_name == "shop.tapwire.test" && tls.protocol.version == "1.3""#,
                3,
            ),
            (
                "tls/nginx-tls",
                r#"tls.alert.description == "protocol_version""#,
                1,
            ),
            (
                "postgresql/postgres-psql-psycopg",
                r#"db.system.name == "postgresql" && db.response.status_code == "42P01""#,
                1,
            ),
            (
                "postgresql/postgres-psql-psycopg",
                r#"db.collection.name == "books" && db.response.returned_rows > 0"#,
                5,
            ),
            (
                "mysql/mariadb-cli-connector",
                r#"db.system.name == "mariadb" && mysql.error.sqlstate == "42S02""#,
                2,
            ),
            (
                "websocket/websockets-echo",
                r#"websocket.opcode == "close" && websocket.close.code == 1011"#,
                2,
            ),
        ] {
            let f = Filter::compile(filter).unwrap();
            let n = events(file).iter().filter(|e| f.matches_event(e)).count();
            assert_eq!(n, want, "{file}: {filter}");
        }
    }

    #[test]
    fn kubernetes_names_are_filter_fields() {
        use schemas::k8s::{K8s, Name, Pod, Resolution};
        let mut ex = http("GET", 200);
        let mut k = K8s::bare(Resolution::Resolved);
        k.namespace = Name::of("shop");
        k.deployment = Name::of("web");
        k.pod = Some(Pod {
            name: "web-1".into(),
            uid: "u".into(),
            label: [("app.kubernetes.io/name".to_string(), "web".to_string())].into(),
        });
        ex.server.k8s = Some(std::sync::Arc::new(k));
        ex.client.k8s = Some(std::sync::Arc::new(K8s::bare(Resolution::Unknown)));
        let f = Filter::compile(r#"server.k8s.namespace.name == "shop""#).unwrap();
        assert!(f.matches_event(&ex));
        assert!(!f.matches_event(&http("GET", 200)), "no names: no match");
        let g = Filter::compile(
            r#"server.k8s.pod.label["app.kubernetes.io/name"] == "web" && client.k8s.resolution == "unknown""#,
        )
        .unwrap();
        assert!(g.matches_event(&ex));
        let h = Filter::compile(r#"server.k8s.deployment.name == "api""#).unwrap();
        assert!(!h.matches_event(&ex));
    }

    #[test]
    fn an_absent_field_is_no_match_and_bad_syntax_is_refused() {
        let f = Filter::compile(r#"dns.question.name == "x""#).unwrap();
        assert!(!f.matches_event(&http("GET", 200)));
        let e = Filter::compile("http.request.method ==")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("bad filter \"http.request.method ==\""),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        assert!(
            !Filter::compile("1 + 1")
                .unwrap()
                .matches_event(&http("GET", 200)),
            "not a bool"
        );
    }

    #[test]
    fn hostile_filters_are_refused_by_a_named_cap_never_a_crash() {
        let too_long = format!("1{} == 0", "+1".repeat(MAX_LEN));
        let e = Filter::compile(&too_long).unwrap_err().to_string();
        assert!(e.contains("filter length cap of 4096"), "{e}");
        // Within the length cap, each shape the parser or evaluator recurses on.
        let chain = format!("1{} == 0", "+1".repeat(MAX_LEN / 2 - 8));
        let unary = format!("{}true", "!".repeat(MAX_LEN - 8));
        let negs = format!("{}1 == 1", "-".repeat(MAX_LEN - 8));
        let selects = format!("a{} == 1", ".b".repeat(MAX_LEN / 2 - 8));
        let parens = format!("{}1{} == 1", "(".repeat(1500), ")".repeat(1500));
        let lists = format!("{}1{} == 1", "[".repeat(1500), "]".repeat(1500));
        // The parser folds runs of `!` and `-` (no depth left): they compile or not, and
        // evaluate, without crashing.
        for f in [&unary, &negs] {
            if let Ok(f) = Filter::compile(f) {
                f.matches_event(&http("GET", 200));
            }
        }
        for f in [&chain, &selects, &parens, &lists] {
            let e = Filter::compile(f)
                .map(|_| panic!("compiled: {}", &f[..40]))
                .unwrap_err()
                .to_string();
            assert_eq!(e.lines().count(), 1, "{e}");
            assert!(e.len() < 300, "the message does not echo 4 KB: {e}");
        }
        let e = Filter::compile(&chain).unwrap_err().to_string();
        assert!(e.contains("cap"), "{e}");
        let nested = "http.request.header.all(k, [1].all(x, [2].exists(y, y == x)))".to_string();
        let e = Filter::compile(&nested).unwrap_err().to_string();
        assert!(e.contains("comprehension cap"), "{e}");
        // The parser balances chains of `&&`: 200 of them are shallow, and fine.
        let ands = vec!["status == \"ok\""; 200].join(" && ");
        assert!(
            Filter::compile(&ands)
                .unwrap()
                .matches_event(&http("GET", 200))
        );
        // Two levels of macros and ordinary filters still compile.
        Filter::compile("[1, 2].all(x, [3].exists(y, y > x))").unwrap();
        Filter::compile(r#"protocol == "http" && http.response.status_code >= 500"#).unwrap();
    }

    #[test]
    fn an_evaluation_over_its_budget_is_reported() {
        let f = Filter::compile(r#"status == "ok""#).unwrap();
        let b = Bindings::of(&http("GET", 200));
        assert_eq!(f.matches_within(&b, Duration::from_secs(5)), Ok(true));
        assert!(f.matches_within(&b, Duration::ZERO).is_err());
    }
}
