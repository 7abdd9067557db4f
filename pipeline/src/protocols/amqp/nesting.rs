//! A pre-scan of AMQP field tables, before `amq-protocol` parses them.
//!
//! `amq-protocol` parses a field table or array by recursion (table → value → array → value
//! → …), one level per nested container. A method frame of [`super::MAX_FRAME`] bytes can nest
//! some 26000 arrays (five bytes each), enough to overflow any thread's stack. So every frame
//! that carries a table is walked here first, without recursion (an explicit stack of
//! container ends), with exactly the grammar the crate accepts (RabbitMQ's type letters); a
//! table nested deeper than [`MAX_DEPTH`] or one that is not well formed is refused, and the
//! crate never sees it.
//!
//! Where the tables are: `connection.start` (after two version bytes), `connection.start-ok`
//! (first), `exchange.declare`, `exchange.bind`/`unbind`, `queue.declare`, `queue.bind`/`unbind`
//! and `basic.consume` (last, after their short strings and flag byte), and the `headers`
//! property of a content header.

/// Deepest nesting of tables and arrays decoded (the outer table is level 1). RabbitMQ's own
/// tables (`capabilities`, `x-death`) nest three levels.
pub const MAX_DEPTH: usize = 32;

/// Why a table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Not a field table (a length past the end, an unknown type letter, …).
    Malformed,
}

/// A cursor over one frame's payload.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, end: usize) -> Result<usize, TableError> {
        let start = self.pos;
        let next = start.checked_add(n).ok_or(TableError::Malformed)?;
        if next > end {
            return Err(TableError::Malformed);
        }
        self.pos = next;
        Ok(start)
    }
    fn u8(&mut self, end: usize) -> Result<u8, TableError> {
        let at = self.take(1, end)?;
        self.data.get(at).copied().ok_or(TableError::Malformed)
    }
    fn u32(&mut self, end: usize) -> Result<usize, TableError> {
        let at = self.take(4, end)?;
        crate::wire::be32(self.data, at)
            .map(|n| n as usize)
            .ok_or(TableError::Malformed)
    }
    fn short_str(&mut self, end: usize) -> Result<(), TableError> {
        let n = self.u8(end)? as usize;
        self.take(n, end).map(drop)
    }
}

/// Check the field table that starts at `at` in `payload`: well formed and at most
/// [`MAX_DEPTH`] deep. Never recurses.
pub fn check_table(payload: &[u8], at: usize) -> Result<(), TableError> {
    let mut c = Cursor {
        data: payload,
        pos: at,
    };
    let len = c.u32(payload.len())?;
    let end = c.pos.checked_add(len).ok_or(TableError::Malformed)?;
    if end > payload.len() {
        return Err(TableError::Malformed);
    }
    // Open containers: (where it ends, whether it is a table: entries have a name).
    let mut open: Vec<(usize, bool)> = vec![(end, true)];
    while let Some(&(end, table)) = open.last() {
        if c.pos == end {
            open.pop();
            continue;
        }
        if table {
            c.short_str(end)?;
        }
        let fixed = match c.u8(end)? {
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'D' => 5,
            b'V' => 0,
            b'S' | b'x' => {
                let n = c.u32(end)?;
                c.take(n, end)?;
                continue;
            }
            kind @ (b'A' | b'F') => {
                let n = c.u32(end)?;
                let inner = c.pos.checked_add(n).ok_or(TableError::Malformed)?;
                if inner > end {
                    return Err(TableError::Malformed);
                }
                if open.len() >= MAX_DEPTH {
                    return Err(TableError::TooDeep);
                }
                open.push((inner, kind == b'F'));
                continue;
            }
            _ => return Err(TableError::Malformed),
        };
        c.take(fixed, end)?;
    }
    Ok(())
}

/// Skip `n` short strings from `at`; where the next field starts.
fn after_short_strings(payload: &[u8], at: usize, n: usize) -> Result<usize, TableError> {
    let mut c = Cursor {
        data: payload,
        pos: at,
    };
    for _ in 0..n {
        c.short_str(payload.len())?;
    }
    Ok(c.pos)
}

/// Check the table a method frame carries, if its method has one (`payload` starts with the
/// class and method ids).
pub fn check_method(payload: &[u8], class: u16, method: u16) -> Result<(), TableError> {
    // Arguments start after the ids; `reserved-1` is a short (2 bytes) where present.
    let args = 4;
    let at = match (class, method) {
        (10, 10) => args + 2,                                       // connection.start
        (10, 11) => args,                                           // connection.start-ok
        (40, 10) => after_short_strings(payload, args + 2, 2)? + 1, // exchange.declare
        (40, 30) | (40, 40) => after_short_strings(payload, args + 2, 3)? + 1, // exchange.(un)bind
        (50, 10) => after_short_strings(payload, args + 2, 1)? + 1, // queue.declare
        (50, 20) => after_short_strings(payload, args + 2, 3)? + 1, // queue.bind
        (50, 50) => after_short_strings(payload, args + 2, 3)?,     // queue.unbind (no flags)
        (60, 20) => after_short_strings(payload, args + 2, 2)? + 1, // basic.consume
        _ => return Ok(()),
    };
    check_table(payload, at)
}

/// Check the `headers` table of a content header frame's properties, if it has one.
pub fn check_content_header(payload: &[u8]) -> Result<(), TableError> {
    // class (2), weight (2), body size (8), property flags (2).
    let Some(flags) = crate::wire::be16(payload, 12) else {
        return Ok(());
    };
    if flags & (1 << 13) == 0 {
        return Ok(());
    }
    let strings = usize::from(flags & (1 << 15) != 0) + usize::from(flags & (1 << 14) != 0);
    check_table(payload, after_short_strings(payload, 14, strings)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table holding one entry `k` whose value is `depth - 1` nested arrays.
    fn nested(depth: usize) -> Vec<u8> {
        let mut inner: Vec<u8> = Vec::new(); // an empty array's content
        for _ in 1..depth - 1 {
            let mut v = vec![b'A'];
            v.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            v.extend_from_slice(&inner);
            inner = v;
        }
        let mut entry = vec![1, b'k', b'A'];
        entry.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        entry.extend_from_slice(&inner);
        let mut table = (entry.len() as u32).to_be_bytes().to_vec();
        table.extend_from_slice(&entry);
        table
    }

    #[test]
    fn nesting_up_to_the_cap_passes_and_deeper_is_refused() {
        assert_eq!(check_table(&nested(MAX_DEPTH), 0), Ok(()));
        assert_eq!(
            check_table(&nested(MAX_DEPTH + 1), 0),
            Err(TableError::TooDeep)
        );
        // 26000 levels in about 128 KiB: refused without recursion.
        assert_eq!(check_table(&nested(26_000), 0), Err(TableError::TooDeep));
    }

    #[test]
    fn the_scan_accepts_what_the_crate_accepts() {
        // Every type letter, a nested table and an array.
        let mut entries = Vec::new();
        let mut push = |name: &[u8], kind: u8, value: &[u8]| {
            entries.push(name.len() as u8);
            entries.extend_from_slice(name);
            entries.push(kind);
            entries.extend_from_slice(value);
        };
        push(b"t", b't', &[1]);
        push(b"s", b's', &[0, 1]);
        push(b"I", b'I', &[0, 0, 0, 1]);
        push(b"l", b'l', &[0; 8]);
        push(b"D", b'D', &[0; 5]);
        push(b"S", b'S', &[0, 0, 0, 2, b'h', b'i']);
        push(b"V", b'V', &[]);
        push(b"F", b'F', &[0, 0, 0, 4, 1, b'x', b'b', 7]);
        push(b"A", b'A', &[0, 0, 0, 3, b'u', 0, 9]);
        let mut table = (entries.len() as u32).to_be_bytes().to_vec();
        table.extend_from_slice(&entries);
        assert_eq!(check_table(&table, 0), Ok(()));
        let parsed = amq_protocol::types::parsing::parse_field_table(&table[..]);
        assert!(parsed.is_ok(), "the crate agrees it is a table");
        // A length past the end, or an unknown letter, is not a table.
        let mut bad = table.clone();
        bad[3] += 1;
        assert_eq!(check_table(&bad, 0), Err(TableError::Malformed));
        let mut bad = table;
        bad[6] = b'?';
        assert_eq!(check_table(&bad, 0), Err(TableError::Malformed));
    }

    #[test]
    fn tables_are_found_in_methods_and_content_headers() {
        // queue.declare: ids, reserved, queue name, flags, then the table.
        let mut p = vec![0, 50, 0, 10, 0, 0, 2, b'q', b'1', 0];
        p.extend_from_slice(&nested(MAX_DEPTH + 1));
        assert_eq!(check_method(&p, 50, 10), Err(TableError::TooDeep));
        let mut ok = vec![0, 50, 0, 10, 0, 0, 2, b'q', b'1', 0];
        ok.extend_from_slice(&nested(3));
        assert_eq!(check_method(&ok, 50, 10), Ok(()));
        assert_eq!(
            check_method(&p, 60, 40),
            Ok(()),
            "basic.publish has no table"
        );
        // A content header with content-type and headers.
        let mut h = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0b1010_0000, 0];
        h.extend_from_slice(&[4, b'j', b's', b'o', b'n']);
        h.extend_from_slice(&nested(MAX_DEPTH + 1));
        assert_eq!(check_content_header(&h), Err(TableError::TooDeep));
    }
}
