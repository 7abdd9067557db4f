//! SQL as the database dissectors report it: `db.query.text` with every literal replaced by
//! `?`, `db.operation.name` (the first keyword, upper case) and `db.collection.name` (the one
//! table a simple statement names).
//!
//! Hand-written: a single pass over the bytes that knows only what hides values (quoted
//! strings with their escapes, `E''` strings, dollar quotes, numbers, comments). A SQL parser
//! crate (`sqlparser`) rejects dialects and fragments it does not know, and would then show
//! nothing; this never fails and never shows a value. Bind parameters (`$1`, `?`) are kept:
//! they are not values. Comments are dropped (they can hold anything), whitespace runs become
//! one space, and the text is cut at [`MAX_TEXT`] bytes (ending in `…`).

/// Longest `db.query.text` kept, in bytes.
pub const MAX_TEXT: usize = 4096;

/// What a statement says, values hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub text: String,
    pub operation: Option<String>,
    pub collection: Option<String>,
}

/// Read `sql` (lossily decoded text of a query message).
pub fn summarize(sql: &str) -> Summary {
    let text = obfuscate(sql);
    let words: Vec<&str> = tokens(&text);
    let operation = words
        .iter()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .map(|w| w.to_ascii_uppercase());
    let collection = operation.as_deref().and_then(|op| collection(op, &words));
    Summary {
        text,
        operation,
        collection,
    }
}

/// The text with literals as `?`, comments dropped, whitespace collapsed, capped.
pub fn obfuscate(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len().min(MAX_TEXT));
    let mut i = 0;
    let push = |out: &mut String, s: &str| {
        if out.len() < MAX_TEXT {
            out.push_str(s);
        }
    };
    let space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') && out.len() < MAX_TEXT {
            out.push(' ');
        }
    };
    while i < b.len() {
        let c = b[i];
        let prev_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        match c {
            b'\'' => {
                i = skip_quoted(b, i + 1, b'\'', false);
                push(&mut out, "?");
            }
            b'E' | b'e' if !prev_word && b.get(i + 1) == Some(&b'\'') => {
                i = skip_quoted(b, i + 2, b'\'', true);
                push(&mut out, "?");
            }
            b'"' | b'`' => {
                // A quoted identifier: kept.
                let end = skip_quoted(b, i + 1, c, false);
                push(&mut out, &sql[i..end.min(b.len())]);
                i = end;
            }
            b'$' if !prev_word => match dollar_tag(b, i) {
                Some(tag_end) => {
                    let tag = &b[i..tag_end];
                    let body = tag_end;
                    let close = b[body..]
                        .windows(tag.len())
                        .position(|w| w == tag)
                        .map_or(b.len(), |p| body + p + tag.len());
                    push(&mut out, "?");
                    i = close;
                }
                None => {
                    // `$1`: a bind parameter.
                    let end = i + 1 + b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
                    push(&mut out, &sql[i..end]);
                    i = end;
                }
            },
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i += b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .unwrap_or(b.len() - i);
                space(&mut out);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = b[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(b.len(), |p| i + 2 + p + 2);
                space(&mut out);
            }
            b'0'..=b'9' if !prev_word => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.' || b[j] == b'_')
                {
                    j += 1;
                }
                push(&mut out, "?");
                i = j;
            }
            c if c.is_ascii_whitespace() => {
                space(&mut out);
                i += 1;
            }
            _ => {
                // One character (UTF-8 sequences whole).
                let len = sql[i..].chars().next().map_or(1, char::len_utf8);
                push(&mut out, &sql[i..i + len]);
                i += len;
            }
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if sql.len() > MAX_TEXT && out.len() >= MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Past a quoted run that started before `from` (after its opening `q`): a doubled quote is
/// one quote; with `backslash`, `\` escapes the next byte. Returns the index after the close.
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// A dollar-quote tag at `i` (`$$` or `$name$`): the index after it.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        if j == i + 1 && b[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

/// Words and single punctuation marks of obfuscated text.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < 64 {
        let c = b[i];
        if c == b' ' {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'"' || c == b'`' || c >= 0x80 {
            let start = i;
            while i < b.len() {
                let x = b[i];
                if x == b'"' || x == b'`' {
                    i = skip_quoted(b, i + 1, x, false);
                } else if x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x >= 0x80 {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(&text[start..i.min(b.len())]);
        } else {
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push(&text[i..i + len]);
            i += len;
        }
    }
    out
}

fn is(w: &str, kw: &str) -> bool {
    w.eq_ignore_ascii_case(kw)
}

/// A table name token: an identifier, possibly qualified or quoted, not a keyword or `?`.
fn table(w: &str) -> Option<String> {
    let first = w.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_' || first == '"' || first == '`') {
        return None;
    }
    const NOT: [&str; 8] = [
        "SELECT", "ONLY", "LATERAL", "IF", "WHERE", "VALUES", "SET", "(",
    ];
    if NOT.iter().any(|k| is(w, k)) {
        return None;
    }
    Some(w.to_string())
}

/// The one table a simple statement names, by operation.
fn collection(op: &str, w: &[&str]) -> Option<String> {
    let after = |kw: &str| -> Option<usize> { w.iter().position(|x| is(x, kw)).map(|p| p + 1) };
    let skip = |mut i: usize, words: &[&str]| {
        while w.get(i).is_some_and(|x| words.iter().any(|k| is(x, k))) {
            i += 1;
        }
        i
    };
    let at = match op {
        "SELECT" | "DELETE" => after("FROM")?,
        "INSERT" | "REPLACE" => after("INTO")?,
        "UPDATE" => skip(1, &["ONLY"]),
        "COPY" => 1,
        "TRUNCATE" => skip(1, &["TABLE", "ONLY"]),
        "CREATE" | "DROP" | "ALTER" => {
            let t = after("TABLE")?;
            skip(t, &["IF", "NOT", "EXISTS", "ONLY"])
        }
        _ => return None,
    };
    let name = table(w.get(at)?)?;
    // One table only: no join, no list, no subquery in its place.
    let rest = &w[at + 1..];
    if rest.first().is_some_and(|x| *x == "," || *x == "(") && op == "SELECT"
        || rest.iter().any(|x| is(x, "JOIN"))
    {
        return None;
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders_and_parameters_stay() {
        let s = summarize(
            "SELECT id, name FROM orders WHERE total > 10.5 AND note = 'it''s -- not a comment' -- trailing\n AND id = $1",
        );
        assert_eq!(
            s.text,
            "SELECT id, name FROM orders WHERE total > ? AND note = ? AND id = $1"
        );
        assert_eq!(s.operation.as_deref(), Some("SELECT"));
        assert_eq!(s.collection.as_deref(), Some("orders"));
        assert_eq!(
            obfuscate("INSERT INTO t VALUES (E'a\\'b', $$x'y$$, $tag$ $$ $tag$, x'ff', -3e5)"),
            "INSERT INTO t VALUES (?, ?, ?, x?, -?)"
        );
        assert_eq!(
            obfuscate("/* secret */ select \"col1\" from t2"),
            "select \"col1\" from t2"
        );
    }

    #[test]
    fn collections_of_simple_statements_only() {
        for (sql, op, coll) in [
            (
                "insert into public.orders (a) values (1)",
                "INSERT",
                Some("public.orders"),
            ),
            ("UPDATE ONLY stock SET n = n - 1", "UPDATE", Some("stock")),
            (
                "DELETE FROM \"Carts\" WHERE id = 4",
                "DELETE",
                Some("\"Carts\""),
            ),
            ("COPY orders FROM STDIN", "COPY", Some("orders")),
            (
                "CREATE TABLE IF NOT EXISTS books (id int)",
                "CREATE",
                Some("books"),
            ),
            ("DROP TABLE books", "DROP", Some("books")),
            ("SELECT * FROM a JOIN b ON a.id = b.id", "SELECT", None),
            ("SELECT * FROM a, b", "SELECT", None),
            ("SELECT 1", "SELECT", None),
            ("BEGIN", "BEGIN", None),
            ("  (SELECT 2)", "SELECT", None),
        ] {
            let s = summarize(sql);
            assert_eq!(s.operation.as_deref(), Some(op), "{sql}");
            assert_eq!(s.collection.as_deref(), coll, "{sql}");
        }
        assert_eq!(summarize("").operation, None);
    }

    #[test]
    fn long_and_broken_text_is_safe() {
        let long = format!(
            "SELECT '{}' FROM t WHERE a = {}",
            "x".repeat(10_000),
            "9".repeat(9000)
        );
        let s = summarize(&long);
        assert!(s.text.len() <= MAX_TEXT + 3);
        assert!(!s.text.contains('x') && !s.text.contains('9'));
        for broken in ["'unterminated", "$$never", "/* open", "E'\\", "\"x", "é'ü'"] {
            let t = obfuscate(broken);
            assert!(!t.contains("unterminated") && !t.contains("never"), "{t}");
        }
        let long_sql = "SELECT ".repeat(1000);
        assert!(obfuscate(&long_sql).ends_with('…'));
    }
}
