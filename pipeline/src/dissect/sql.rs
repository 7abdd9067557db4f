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
    // Built as bytes, every slice of the input taken with `get`: no index can fall outside
    // the text or inside a character (the result is read back lossily).
    let mut out: Vec<u8> = Vec::with_capacity(sql.len().min(MAX_TEXT));
    let mut i = 0;
    let push = |out: &mut Vec<u8>, s: &[u8]| {
        if out.len() < MAX_TEXT {
            out.extend_from_slice(s);
        }
    };
    let space = |out: &mut Vec<u8>| {
        if !out.is_empty() && out.last() != Some(&b' ') && out.len() < MAX_TEXT {
            out.push(b' ');
        }
    };
    let word = |x: Option<&u8>| x.is_some_and(|x| x.is_ascii_alphanumeric() || *x == b'_');
    while let Some(&c) = b.get(i) {
        let prev_word = i > 0 && word(b.get(i - 1));
        match c {
            b'\'' => {
                i = skip_quoted(b, i + 1, b'\'', false);
                push(&mut out, b"?");
            }
            b'E' | b'e' if !prev_word && b.get(i + 1) == Some(&b'\'') => {
                i = skip_quoted(b, i + 2, b'\'', true);
                push(&mut out, b"?");
            }
            b'"' | b'`' => {
                // A quoted identifier: kept.
                let end = skip_quoted(b, i + 1, c, false);
                push(&mut out, b.get(i..end).unwrap_or_default());
                i = end;
            }
            b'$' if !prev_word => match dollar_tag(b, i) {
                Some(tag_end) => {
                    let tag = b.get(i..tag_end).unwrap_or_default();
                    let body = b.get(tag_end..).unwrap_or_default();
                    let close = body
                        .windows(tag.len().max(1))
                        .position(|w| w == tag)
                        .map_or(b.len(), |p| tag_end + p + tag.len());
                    push(&mut out, b"?");
                    i = close.max(i + 1);
                }
                None => {
                    // `$1`: a bind parameter.
                    let digits = b
                        .get(i + 1..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|d| d.is_ascii_digit())
                        .count();
                    push(&mut out, b.get(i..i + 1 + digits).unwrap_or_default());
                    i += 1 + digits;
                }
            },
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let rest = b.get(i..).unwrap_or_default();
                i += rest.iter().position(|&x| x == b'\n').unwrap_or(rest.len());
                space(&mut out);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = b
                    .get(i + 2..)
                    .unwrap_or_default()
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(b.len(), |p| i + 2 + p + 2);
                space(&mut out);
            }
            b'0'..=b'9' if !prev_word => {
                i += b
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == b'.' || **x == b'_')
                    .count();
                push(&mut out, b"?");
            }
            c if c.is_ascii_whitespace() => {
                space(&mut out);
                i += 1;
            }
            _ => {
                // A byte of anything else (a character's bytes are copied one after another).
                push(&mut out, &[c]);
                i += 1;
            }
        }
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    let cut = sql.len() > MAX_TEXT && out.len() >= MAX_TEXT;
    if cut {
        // Back to the start of the character at the cap.
        let mut at = MAX_TEXT;
        while at > 0 && out.get(at).is_some_and(|x| x & 0xc0 == 0x80) {
            at -= 1;
        }
        out.truncate(at);
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if cut {
        text.push('…');
    }
    text
}

/// Past a quoted run that started before `from` (after its opening `q`): a doubled quote is
/// one quote; with `backslash`, `\` escapes the next byte. Returns the index after the close.
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    while let Some(&c) = b.get(i) {
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == q {
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
    while let Some(&c) = b
        .get(j)
        .filter(|c| c.is_ascii_alphanumeric() || **c == b'_')
    {
        if j == i + 1 && c.is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

/// Words and single punctuation marks of obfuscated text (taken with `get`: a piece that
/// would not be whole characters is left out).
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if out.len() >= 64 {
            break;
        }
        let start = i;
        if c == b' ' {
            i += 1;
            continue;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'"' || c == b'`' || c >= 0x80 {
            while let Some(&x) = b.get(i) {
                if x == b'"' || x == b'`' {
                    i = skip_quoted(b, i + 1, x, false);
                } else if x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x >= 0x80 {
                    i += 1;
                } else {
                    break;
                }
            }
        } else {
            i += text
                .get(i..)
                .and_then(|t| t.chars().next())
                .map_or(1, char::len_utf8);
        }
        if let Some(t) = text.get(start..i.min(b.len())) {
            out.push(t);
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
    let rest = w.get(at + 1..).unwrap_or_default();
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
    fn any_text_is_read_without_a_panic() {
        let base = "SELECT 'é\\'', E'ü\\'' , $tag$ ß $tag$, \"ç\" /* ö */ -- ä\n FROM t WHERE a = $1 ∞ 3.5e2".as_bytes();
        for m in crate::dissect::testkit::mutations(base, 5000, 0x5e1) {
            let text = String::from_utf8_lossy(&m);
            let s = summarize(&text);
            assert!(s.text.len() <= MAX_TEXT + 3);
        }
        for cut in 0..base.len() {
            let _ = summarize(&String::from_utf8_lossy(&base[..cut]));
        }
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
