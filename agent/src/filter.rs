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

use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program, Value};
use schemas::Exchange;

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

impl Filter {
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        let program = env().compile(source).map_err(|e| FilterError {
            expr: source.to_string(),
            message: e
                .to_string()
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        })?;
        Ok(Filter { program })
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
        ex.http = Some(Http {
            request: HttpRequest {
                method: Some(method.into()),
                ..Default::default()
            },
            response: Some(HttpResponse {
                status_code: Some(code),
                ..Default::default()
            }),
        });
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
}
