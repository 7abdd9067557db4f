//! The layering ARCHITECTURE.md describes, checked over the sources' `use` lines and paths:
//! no file-level import cycle in any crate, the pipeline's layers point one way (decode ←
//! dissect framework ← flow, protocols; the framework and the flow table name no protocol,
//! no protocol names the registry), and the sinks crate depends on no other workspace crate
//! than `schemas`.
//!
//! Text only, like `rustc` would not be: a path in code (`crate::a::b`, `super::c`) is an
//! edge to the deepest module file it names; comments and `#[cfg(test)]` modules are left
//! out. Good enough to fail when a cycle or a backward arrow appears.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every non-test `.rs` file of `src`, by module path.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let rel = p.strip_prefix(src).expect("under src");
            let name = rel.to_string_lossy();
            if !name.ends_with(".rs") || name.ends_with("tests.rs") || name.contains("tests/") {
                continue;
            }
            let mut parts: Module = name[..name.len() - 3]
                .split('/')
                .map(str::to_string)
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts, p);
        }
    }
    out
}

/// The source without comments and without `#[cfg(test)] mod … { … }` blocks.
fn code(text: &str) -> String {
    let mut kept = String::new();
    for line in text.lines() {
        let l = match line.find("//") {
            // A `//` inside a string literal (a URL) is rare in paths' lines; cut anyway.
            Some(i) => &line[..i],
            None => line,
        };
        kept.push_str(l);
        kept.push('\n');
    }
    let mut out = String::new();
    let mut rest = kept.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let t = after.trim_start();
        let is_mod_block = (t.starts_with("mod ") || t.starts_with("pub mod "))
            && t.find('{')
                .is_some_and(|b| t.find(';').is_none_or(|s| b < s));
        if !is_mod_block {
            rest = after;
            continue;
        }
        let open = after.find('{').expect("checked");
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Paths starting with `crate`, `super` or `self`, with one level of `{…}` expanded.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let starts = [&b"crate::"[..], b"super::", b"self::"]
            .iter()
            .any(|p| bytes[i..].starts_with(p));
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !(starts && boundary) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < code.len() {
            let c = bytes[j];
            if c.is_ascii_alphanumeric() || c == b'_' || c == b':' {
                j += 1;
            } else {
                break;
            }
        }
        let head = code[i..j].trim_end_matches(':').to_string();
        if bytes[..j].ends_with(b"::") && bytes.get(j) == Some(&b'{') {
            let close = code[j..].find('}').map_or(code.len(), |k| j + k);
            for part in code[j + 1..close].split(',') {
                let part: String = part.chars().filter(|c| !c.is_whitespace()).collect();
                let first = part.split("::{").next().unwrap_or("").to_string();
                if !first.is_empty() {
                    out.push(format!("{head}::{first}"));
                }
            }
            i = close;
        } else {
            out.push(head);
            i = j;
        }
    }
    out
}

/// The module file a path names, seen from `here`.
fn resolve(files: &BTreeMap<Module, PathBuf>, here: &Module, path: &str) -> Option<Module> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base = here.clone();
    match segs.first() {
        Some(&"crate") => {
            base.clear();
            segs.remove(0);
        }
        Some(&"super") | Some(&"self") => {
            while let Some(&s) = segs.first() {
                match s {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                segs.remove(0);
            }
        }
        _ => return None,
    }
    (0..=segs.len()).rev().find_map(|k| {
        let mut cand = base.clone();
        cand.extend(segs[..k].iter().map(|s| s.to_string()));
        files.contains_key(&cand).then_some(cand)
    })
}

/// Edges between the files of one crate.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let files = modules(src);
    let mut g = BTreeMap::new();
    for (m, p) in &files {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mut to = BTreeSet::new();
        for path in paths(&code(&text)) {
            if let Some(t) = resolve(&files, m, &path)
                && &t != m
                && !t.is_empty()
            {
                to.insert(t);
            }
        }
        g.insert(m.clone(), to);
    }
    g
}

/// Strongly connected components with more than one file.
fn cycles(g: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
    // Kosaraju, iteratively: the graphs are small.
    let reach = |from: &Module, edges: &dyn Fn(&Module) -> Vec<Module>| {
        let mut seen = BTreeSet::from([from.clone()]);
        let mut stack = vec![from.clone()];
        while let Some(v) = stack.pop() {
            for w in edges(&v) {
                if seen.insert(w.clone()) {
                    stack.push(w);
                }
            }
        }
        seen
    };
    let fwd = |v: &Module| {
        g.get(v)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    };
    let back = |v: &Module| {
        g.iter()
            .filter(|(_, to)| to.contains(v))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for v in g.keys() {
        if done.contains(v) {
            continue;
        }
        let both: BTreeSet<Module> = reach(v, &fwd)
            .intersection(&reach(v, &back))
            .cloned()
            .collect();
        done.extend(both.iter().cloned());
        if both.len() > 1 {
            out.push(both.iter().map(|m| m.join("/")).collect());
        }
    }
    out
}

const CRATES: &[&str] = &[
    "schemas",
    "pipeline",
    "sinks",
    "tls",
    "agent",
    "integration",
    "bench",
];

#[test]
fn no_crate_has_an_import_cycle() {
    let mut found = Vec::new();
    for c in CRATES {
        for cycle in cycles(&graph(&root().join(c).join("src"))) {
            found.push(format!("{c}/src: {}", cycle.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "file-level import cycles:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_pipeline_layers_point_one_way() {
    let g = graph(&root().join("pipeline/src"));
    let top = |m: &Module| m.first().cloned().unwrap_or_default();
    // What each layer may name, besides itself and the leaves (redact).
    let allowed: &[(&str, &[&str])] = &[
        ("decode", &["wire"]),
        ("dissect", &["redact", "wire"]),
        ("flow", &["decode", "dissect", "wire"]),
        ("protocols", &["dissect", "redact", "wire"]),
        ("source", &["decode"]),
        ("redact", &[]),
        ("wire", &[]),
    ];
    let mut wrong = Vec::new();
    for (from, to) in &g {
        let layer = top(from);
        let Some((_, ok)) = allowed.iter().find(|(l, _)| *l == layer) else {
            continue; // lib.rs wires everything
        };
        for t in to {
            let tl = top(t);
            if tl != layer && !ok.contains(&tl.as_str()) {
                wrong.push(format!("{} -> {}", from.join("/"), t.join("/")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "backward or sideways arrows:\n{}",
        wrong.join("\n")
    );

    // Only the registry (protocols/mod.rs) names the protocols' entries; no protocol
    // names the registry.
    let registry: Module = vec!["protocols".into()];
    for (from, to) in &g {
        if top(from) == "protocols" && from != &registry {
            assert!(
                !to.contains(&registry),
                "{} imports the registry",
                from.join("/")
            );
        }
    }
    for (m, p) in modules(&root().join("pipeline/src")) {
        let text = code(&std::fs::read_to_string(&p).expect("readable"));
        if m != registry {
            assert!(
                !text.contains("::ENTRY,") && !text.contains("REGISTRY: &"),
                "{} lists protocol entries; only protocols/mod.rs does",
                p.display()
            );
        }
    }
}

#[test]
fn sinks_depend_on_schemas_only() {
    let manifest = std::fs::read_to_string(root().join("sinks/Cargo.toml")).expect("manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [dependencies] table");
    for own in ["pipeline", "tapwire-pipeline", "agent", "tapwire-agent"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(own)),
            "sinks depends on {own}"
        );
    }
    assert!(deps.contains("schemas"), "sinks use the event schema");
}

#[test]
fn the_checker_sees_a_cycle() {
    let dir = std::env::temp_dir().join(format!("tw-layers-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).expect("temp dir");
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").expect("write");
    std::fs::write(src.join("a/mod.rs"), "use crate::b::B;\n// use crate::c;\n").expect("write");
    std::fs::write(
        src.join("b.rs"),
        "use super::a::{self, X};\n#[cfg(test)]\nmod tests {\n use crate::c;\n}\n",
    )
    .expect("write");
    let found = cycles(&graph(&src));
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(found, vec![vec!["a".to_string(), "b".to_string()]]);
}

/// Generated code matches its generator (Kafka error codes, from the vendored crate).
#[test]
fn generated_kafka_error_readers_are_current() {
    let out = std::process::Command::new("python3")
        .arg(root().join("scripts/gen-kafka-errors.py"))
        .arg("--check")
        .output()
        .expect("python3 runs (installed by .ci/run)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
