//! What `watch` and `pcap` share: a GET to the agent's API with the bearer token, and one
//! line saying why when it fails (the agent's own reason for a refusal).

use crate::cli::AgentArgs;

/// GET `path` with `query` (pairs whose value is `None` are left out). Errors are the one
/// line to print.
pub fn get(
    agent: &AgentArgs,
    path: &str,
    query: &[(&str, Option<&str>)],
) -> Result<ureq::http::Response<ureq::Body>, String> {
    let url = format!("{}{path}", agent.url.trim_end_matches('/'));
    let mut req = ureq::get(&url).config().http_status_as_error(false).build();
    for (k, v) in query {
        if let Some(v) = v {
            req = req.query(*k, *v);
        }
    }
    if let Some(t) = &agent.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    match req.call() {
        Ok(r) if r.status().is_success() => Ok(r),
        Ok(mut r) => {
            let why = r.body_mut().read_to_string().unwrap_or_default();
            Err(format!("{url}: {}", why.trim()))
        }
        Err(e) => Err(format!("cannot reach {url}: {e}")),
    }
}
