//! HPACK (RFC 7541) decoding for a passive observer, including what it cannot know.
//!
//! Written here rather than taken from a crate: `loona-hpack` (the crate of the field)
//! decodes only when it has seen every header block of the connection. A sniffer often has
//! not (capture started mid-connection, or a gap hit a header block); the crate then fails
//! and its table no longer matches the peer's. This decoder instead tracks which dynamic
//! table entries it knows. The Huffman code table is `httlib-huffman`'s copy of RFC 7541
//! Appendix B; the decoding tree over it is built here once.
//!
//! # The pickup and loss rule
//!
//! The dynamic table is a list of entries, newest first; index `62 + k` is the `k`-th newest.
//! A new entry is always added at the front and eviction always removes the oldest, so the
//! entries inserted since the decoder started watching are exactly the newest ones, in
//! order, whatever happened before. The decoder therefore keeps:
//! - `entries`: the entries it saw inserted (name and value, or only the value when the name
//!   came from an entry it did not know);
//! - `unknown_tail`: whether older entries it never saw may exist behind them (true when
//!   capture started mid-connection, after a lost header block, or when its own memory cap
//!   dropped entries the peer still holds).
//!
//! A reference to an index within `entries` is exact. A reference past them is *unknown*
//! when `unknown_tail` is set (the field is reported as [`Field::Unknown`], never guessed)
//! and a protocol error otherwise. A lost or undecodable header block makes every entry
//! unknown (the entries it inserted shift the indices by an unknown amount): `entries` is
//! cleared and `unknown_tail` set. Trust comes back as soon as the table is provably
//! complete again: a dynamic table size update to 0, an entry larger than the table, an
//! eviction of an entry the decoder knows (the peer evicts older ones first), or known
//! entries filling the table so that no unknown entry (at least 32 bytes) still fits.
//! Static-table fields and literals are always certain.
//!
//! The table's maximum size follows the encoder's dynamic table size updates (§6.3), starting
//! at 4096: a peer's `SETTINGS_HEADER_TABLE_SIZE` only bounds what the encoder may choose, and
//! the encoder announces its choice in a header block, which is what the decoder acts on.
//!
//! Limits: [`TRACK_CAP`] bytes of dynamic table per direction (older entries are dropped and
//! treated as unknown; an entry larger than the cap keeps its place in the table but not its
//! bytes, so references to it are unknown), integers up to 2^28, strings no longer than their
//! header block. A decoded header list is at most [`MAX_HEADER_LIST`] bytes (RFC 9113 §6.5.2
//! sizes, as `SETTINGS_MAX_HEADER_LIST_SIZE` counts them): fields past it are
//! [`Field::OverCap`] and never copied, so a block of one-byte references to a large entry
//! costs nothing.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::OnceLock;

/// Most dynamic-table bytes (RFC 7541 §4.1 sizes) tracked per direction.
pub const TRACK_CAP: usize = 64 * 1024;
/// Most dynamic-table entries tracked per direction (each is at least 32 bytes of the
/// table's size, so a table within [`TRACK_CAP`] holds fewer).
pub const MAX_ENTRIES: usize = TRACK_CAP / 32;
/// Most decoded bytes of one header list (name + value + 32 per field).
pub const MAX_HEADER_LIST: usize = 64 * 1024;
/// Largest dynamic table size update taken (16 MiB; peers use 4 KiB to 64 KiB): a larger
/// one is a decoding error, and the table is then untrusted.
pub const MAX_TABLE_SIZE: usize = 16 << 20;
/// The dynamic table size every connection starts with (RFC 7540 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why a header block could not be decoded (the table is then untrusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer too large")]
    Integer,
    #[error("invalid Huffman string")]
    Huffman,
    #[error("index 0 or past a complete table")]
    BadIndex,
    #[error("dynamic table size update above MAX_TABLE_SIZE or mid-block")]
    BadSizeUpdate,
}

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Known {
        name: Cow<'static, str>,
        value: String,
    },
    /// The field refers to a dynamic-table entry the decoder does not know (or its name).
    Unknown,
    /// The field is past the block's [`MAX_HEADER_LIST`] bytes: left out, not copied.
    OverCap,
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None`: the name came from an entry the decoder did not know, or the entry is too
    /// large to keep.
    name: Option<Cow<'static, str>>,
    /// `None`: too large to keep ([`TRACK_CAP`]).
    value: Option<String>,
    /// RFC 7541 §4.1 size; a lower bound when not `exact`.
    size: usize,
    exact: bool,
}

/// A name in one of the tables, borrowed until a field is admitted.
enum Name<'a> {
    Static(&'static str),
    Table(&'a Cow<'static, str>),
}

impl Name<'_> {
    fn as_str(&self) -> &str {
        match self {
            Name::Static(n) => n,
            Name::Table(n) => n,
        }
    }
    fn to_cow(&self) -> Cow<'static, str> {
        match self {
            Name::Static(n) => Cow::Borrowed(n),
            Name::Table(n) => (*n).clone(),
        }
    }
}

impl Entry {
    /// Bytes this entry keeps in memory.
    fn kept(&self) -> usize {
        self.value
            .as_ref()
            .map_or(0, |v| v.len() + self.name.as_ref().map_or(0, |n| n.len()))
    }
}

/// Decoder state for one direction of one connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    entries: VecDeque<Entry>,
    size: usize,
    /// Bytes the entries keep (at most [`TRACK_CAP`]).
    kept: usize,
    /// The table's maximum size, when known.
    max_size: Option<usize>,
    /// Older entries the decoder never saw may exist behind `entries`.
    unknown_tail: bool,
    /// Entries whose name is unknown (their sizes are lower bounds).
    inexact: usize,
}

impl Decoder {
    /// A decoder that has seen the connection from its start.
    pub fn new() -> Self {
        Decoder {
            entries: VecDeque::new(),
            size: 0,
            kept: 0,
            max_size: Some(DEFAULT_TABLE_SIZE),
            unknown_tail: false,
            inexact: 0,
        }
    }

    /// A decoder joining a connection already running (nothing known about its table).
    pub fn mid_connection() -> Self {
        let mut d = Decoder::new();
        d.lose();
        d
    }

    /// Header blocks were lost: every entry is unknown from now on.
    pub fn lose(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.kept = 0;
        self.inexact = 0;
        self.max_size = None;
        self.unknown_tail = true;
    }

    /// Heap bytes held: the kept entries' bytes and the table's slots.
    pub fn heap_bytes(&self) -> usize {
        self.kept + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    /// Whether every entry of the peer's table is known.
    pub fn trusted(&self) -> bool {
        !self.unknown_tail
    }

    /// Decode one complete header block, calling `field` for each field in order. On error
    /// the fields already passed are certain, the rest of the block is lost, and the table
    /// becomes untrusted.
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(Field)) -> Result<(), HpackError> {
        let r = self.decode_inner(block, &mut field);
        if r.is_err() {
            self.lose();
        }
        r
    }

    fn decode_inner(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(Field),
    ) -> Result<(), HpackError> {
        let mut pos = 0;
        let mut fields_seen = false;
        // Decoded header-list bytes so far: a field is copied out only within the cap.
        let mut list = 0usize;
        let mut admit = |name: &str, value: &str| {
            let size = name.len() + value.len() + 32;
            if list + size > MAX_HEADER_LIST {
                return false;
            }
            list += size;
            true
        };
        while pos < block.len() {
            let b = block[pos];
            if b & 0x80 != 0 {
                // Indexed field (§6.1).
                let idx = integer(block, &mut pos, 7)?;
                field(match self.lookup(idx)? {
                    Some((name, value)) if admit(name.as_str(), value) => Field::Known {
                        name: name.to_cow(),
                        value: value.to_string(),
                    },
                    Some(_) => Field::OverCap,
                    None => Field::Unknown,
                });
                fields_seen = true;
            } else if b & 0xc0 == 0x40 {
                // Literal with incremental indexing (§6.2.1).
                let (name, value) = self.literal(block, &mut pos, 6)?;
                let f = match &name {
                    Some(n) if admit(n, &value) => Field::Known {
                        name: n.clone(),
                        value: value.clone(),
                    },
                    Some(_) => Field::OverCap,
                    None => Field::Unknown,
                };
                self.insert(name, value);
                field(f);
                fields_seen = true;
            } else if b & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): only at the start of a block.
                let m = integer(block, &mut pos, 5)?;
                if fields_seen || m > MAX_TABLE_SIZE {
                    return Err(HpackError::BadSizeUpdate);
                }
                self.resize(m);
            } else {
                // Literal without indexing / never indexed (§6.2.2, §6.2.3).
                let (name, value) = self.literal(block, &mut pos, 4)?;
                field(match name {
                    Some(n) if admit(&n, &value) => Field::Known { name: n, value },
                    Some(_) => Field::OverCap,
                    None => Field::Unknown,
                });
                fields_seen = true;
            }
        }
        Ok(())
    }

    /// The entry at `idx`: its name and value when known, `None` when not (never copied).
    fn lookup(&self, idx: usize) -> Result<Option<(Name<'_>, &str)>, HpackError> {
        if idx == 0 {
            return Err(HpackError::BadIndex);
        }
        if let Some(&(n, v)) = STATIC_TABLE.get(idx - 1) {
            return Ok(Some((Name::Static(n), v)));
        }
        let k = idx - STATIC_TABLE.len() - 1;
        match self.entries.get(k) {
            Some(Entry {
                name: Some(name),
                value: Some(value),
                ..
            }) => Ok(Some((Name::Table(name), value))),
            Some(_) => Ok(None),
            None if self.unknown_tail => Ok(None),
            None => Err(HpackError::BadIndex),
        }
    }

    /// The name at `idx` (for a literal with an indexed name), `None` when not known.
    fn lookup_name(&self, idx: usize) -> Result<Option<Cow<'static, str>>, HpackError> {
        if idx == 0 {
            return Err(HpackError::BadIndex);
        }
        if let Some((n, _)) = STATIC_TABLE.get(idx - 1) {
            return Ok(Some(Cow::Borrowed(n)));
        }
        let k = idx - STATIC_TABLE.len() - 1;
        match self.entries.get(k) {
            Some(e) => Ok(e.name.clone()),
            None if self.unknown_tail => Ok(None),
            None => Err(HpackError::BadIndex),
        }
    }

    /// A literal representation: (name if known, value).
    fn literal(
        &self,
        block: &[u8],
        pos: &mut usize,
        prefix: u8,
    ) -> Result<(Option<Cow<'static, str>>, String), HpackError> {
        let idx = integer(block, pos, prefix)?;
        let name = if idx == 0 {
            let raw = string(block, pos)?;
            Some(crate::dissect::http_fields::header_name_bytes(&raw))
        } else {
            self.lookup_name(idx)?
        };
        let value = string(block, pos)?;
        let value = match String::from_utf8(value) {
            Ok(v) => v,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok((name, value))
    }

    fn insert(&mut self, name: Option<Cow<'static, str>>, value: String) {
        let size = name.as_ref().map_or(0, |n| n.len()) + value.len() + 32;
        if let Some(max) = self.max_size
            && size > max
        {
            // §4.4: an entry larger than the table empties it; the table is now known.
            self.clear_known();
            return;
        }
        let limit = self.max_size.unwrap_or(usize::MAX);
        while self.size + size > limit && self.pop_oldest() {
            // The peer evicted this entry too, and everything older before it.
            self.unknown_tail = false;
        }
        let exact = name.is_some();
        // Too large to keep: it holds its place (indices stay right) but not its bytes.
        let keep = size <= TRACK_CAP;
        let stored = if keep { size - 32 } else { 0 };
        while (self.kept + stored > TRACK_CAP || self.entries.len() >= MAX_ENTRIES)
            && self.pop_oldest()
        {
            // The peer still holds what we drop here.
            self.unknown_tail = true;
        }
        if !exact {
            self.inexact += 1;
        }
        self.size += size;
        self.kept += stored;
        let entry = if keep {
            Entry {
                name,
                value: Some(value),
                size,
                exact,
            }
        } else {
            Entry {
                name: None,
                value: None,
                size,
                exact,
            }
        };
        self.entries.push_front(entry);
        self.check_full();
    }

    fn resize(&mut self, max: usize) {
        if max == 0 {
            self.clear_known();
            self.max_size = Some(0);
            return;
        }
        self.max_size = Some(max);
        while self.size > max && self.pop_oldest() {
            self.unknown_tail = false;
        }
        self.check_full();
    }

    /// Known entries leave no room for an unknown one: the table is complete.
    fn check_full(&mut self) {
        if let Some(max) = self.max_size
            && self.inexact == 0
            && self.size + 32 > max
        {
            self.unknown_tail = false;
        }
    }

    fn clear_known(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.kept = 0;
        self.inexact = 0;
        self.unknown_tail = false;
    }

    fn pop_oldest(&mut self) -> bool {
        match self.entries.pop_back() {
            Some(e) => {
                self.size -= e.size;
                self.kept -= e.kept();
                if !e.exact {
                    self.inexact -= 1;
                }
                true
            }
            None => false,
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// An HPACK integer with an `n`-bit prefix (§5.1).
fn integer(block: &[u8], pos: &mut usize, n: u8) -> Result<usize, HpackError> {
    let first = *block.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let max = (1usize << n) - 1;
    let mut v = usize::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        v += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        if shift > 21 {
            return Err(HpackError::Integer);
        }
    }
}

/// An HPACK string literal (§5.2), Huffman-decoded when flagged.
fn string(block: &[u8], pos: &mut usize) -> Result<Vec<u8>, HpackError> {
    let huffman = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = block.get(*pos..end).ok_or(HpackError::Truncated)?;
    *pos = end;
    if huffman {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// A node of the Huffman decoding tree: children by bit (0: none, as the root is never a
/// child); a leaf holds its symbol.
#[derive(Clone, Copy)]
enum Node {
    Branch([u16; 2]),
    Leaf(u16),
}

const EOS: u16 = 256;

fn huffman_tree() -> &'static [Node] {
    static TREE: OnceLock<Vec<Node>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut nodes = vec![Node::Branch([0, 0])];
        for (sym, &(len, code)) in httlib_huffman::encoder::table::ENCODE_TABLE
            .iter()
            .enumerate()
        {
            let mut at = 0usize;
            for i in (0..len).rev() {
                let bit = ((code >> i) & 1) as usize;
                let next = match nodes[at] {
                    Node::Branch(ch) if ch[bit] != 0 => ch[bit] as usize,
                    _ => {
                        nodes.push(if i == 0 {
                            Node::Leaf(sym as u16)
                        } else {
                            Node::Branch([0, 0])
                        });
                        let id = nodes.len() - 1;
                        if let Node::Branch(ch) = &mut nodes[at] {
                            ch[bit] = id as u16;
                        }
                        id
                    }
                };
                at = next;
            }
        }
        nodes
    })
}

/// Decode a Huffman-coded string (§5.2): EOS inside, or padding longer than 7 bits or not
/// all ones, is an error.
pub fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, HpackError> {
    let tree = huffman_tree();
    let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
    let mut at = 0usize;
    // Bits read since the last symbol, and whether all were ones (valid padding).
    let mut pending_bits = 0u32;
    let mut all_ones = true;
    for &byte in raw {
        for i in (0..8).rev() {
            let bit = ((byte >> i) & 1) as usize;
            pending_bits += 1;
            all_ones &= bit == 1;
            at = match tree[at] {
                Node::Branch(ch) if ch[bit] != 0 => ch[bit] as usize,
                _ => return Err(HpackError::Huffman),
            };
            if let Node::Leaf(sym) = tree[at] {
                if sym == EOS {
                    return Err(HpackError::Huffman);
                }
                out.push(sym as u8);
                at = 0;
                pending_bits = 0;
                all_ones = true;
            }
        }
    }
    if pending_bits > 7 || !all_ones {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

/// RFC 7541 Appendix A.
pub static STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut v = Vec::new();
        d.decode(block, |f| match f {
            Field::Known { name, value } => v.push((name.into_owned(), value)),
            Field::Unknown => v.push(("?".into(), "?".into())),
            Field::OverCap => v.push(("!".into(), "!".into())),
        })
        .unwrap();
        v
    }

    /// A literal with incremental indexing and a new name (not Huffman-coded).
    fn insert_literal(name: &str, value_len: usize) -> Vec<u8> {
        let mut b = vec![0x40];
        let int = |out: &mut Vec<u8>, n: usize| {
            // 7-bit prefix integer, H bit clear.
            if n < 127 {
                out.push(n as u8);
            } else {
                out.push(127);
                let mut n = n - 127;
                while n >= 128 {
                    out.push((n % 128 + 128) as u8);
                    n /= 128;
                }
                out.push(n as u8);
            }
        };
        int(&mut b, name.len());
        b.extend_from_slice(name.as_bytes());
        int(&mut b, value_len);
        b.extend(std::iter::repeat_n(b'v', value_len));
        b
    }

    #[test]
    fn references_to_a_large_entry_are_never_copied_past_the_list_cap() {
        let mut d = Decoder::new();
        // A size update to a large table, one 60 KB entry, then a block of 100000 one-byte
        // references to it (index 62).
        let mut first = vec![0x3f, 0xe1, 0xff, 0x03]; // size update to 65536
        first.extend(insert_literal("x-big", 60_000));
        let mut copied = 0usize;
        let mut over = 0usize;
        let mut count = |f: Field| match f {
            Field::Known { value, .. } => copied += value.len(),
            Field::OverCap => over += 1,
            Field::Unknown => {}
        };
        d.decode(&first, &mut count).unwrap();
        let refs = vec![0x80 | 62; 100_000];
        d.decode(&refs, &mut count).unwrap();
        assert!(copied <= 2 * MAX_HEADER_LIST, "copied {copied} bytes");
        assert!(over >= 99_999, "the rest are over the cap: {over}");
    }

    #[test]
    fn size_updates_are_bounded() {
        let mut d = Decoder::new();
        // 2^24 + 1: over MAX_TABLE_SIZE.
        let over = [0x3f, 0xe2, 0xff, 0xff, 0x07];
        assert_eq!(d.decode(&over, |_| {}), Err(HpackError::BadSizeUpdate));
        assert!(!d.trusted(), "the table is unknown after a refused update");
        let mut d = Decoder::new();
        assert_eq!(
            d.decode(&[0x3f, 0xe1, 0x1f], |_| {}),
            Ok(()),
            "4096 is fine"
        );
    }

    #[test]
    fn an_entry_over_the_tracking_cap_keeps_its_place_but_not_its_bytes() {
        let mut d = Decoder::new();
        let mut block = vec![0x3f, 0xe1, 0xff, 0x3f]; // size update to 1 MiB
        block.extend(insert_literal("x-huge", TRACK_CAP + 10));
        block.extend(insert_literal("x-small", 3));
        d.decode(&block, |_| {}).unwrap();
        assert!(d.kept <= TRACK_CAP, "kept {}", d.kept);
        // Index 62 is the small one, 63 the huge one (unknown: its bytes were not kept).
        assert_eq!(
            fields(&mut d, &[0x80 | 62, 0x80 | 63]),
            pairs(&[("x-small", "vvv"), ("?", "?")])
        );
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// RFC 7541 C.3: requests without Huffman coding, one decoder for all three.
    #[test]
    fn rfc7541_c3_requests() {
        let mut d = Decoder::new();
        let c31 = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        let base = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(fields(&mut d, &c31), pairs(&base));
        assert_eq!(d.size, 57);
        let c32 = hex("8286 84be 5808 6e6f 2d63 6163 6865");
        let mut want = base.to_vec();
        want.push(("cache-control", "no-cache"));
        assert_eq!(fields(&mut d, &c32), pairs(&want));
        assert_eq!(d.size, 110);
        let c33 = hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        assert_eq!(
            fields(&mut d, &c33),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(d.size, 164);
        assert!(d.trusted());
    }

    /// RFC 7541 C.4: the same requests with Huffman coding.
    #[test]
    fn rfc7541_c4_huffman_requests() {
        let mut d = Decoder::new();
        let c41 = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        assert_eq!(fields(&mut d, &c41)[3].1, "www.example.com");
        let c42 = hex("8286 84be 5886 a8eb 1064 9cbf");
        assert_eq!(
            fields(&mut d, &c42)[4],
            ("cache-control".into(), "no-cache".into())
        );
        let c43 = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        assert_eq!(
            fields(&mut d, &c43)[4],
            ("custom-key".into(), "custom-value".into())
        );
        assert_eq!(d.size, 164);
    }

    /// RFC 7541 C.5: responses with a 256-byte table, evictions included.
    #[test]
    fn rfc7541_c5_responses_with_eviction() {
        let mut d = Decoder::new();
        d.resize(256);
        let c51 = hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230
             3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65
             7861 6d70 6c65 2e63 6f6d",
        );
        let f = fields(&mut d, &c51);
        assert_eq!(f[0], (":status".into(), "302".into()));
        assert_eq!(f[3].1, "https://www.example.com");
        assert_eq!(d.size, 222);
        let c52 = hex("4803 3330 37c1 c0bf");
        let f = fields(&mut d, &c52);
        assert_eq!(f[0], (":status".into(), "307".into()));
        assert_eq!(f[1], ("cache-control".into(), "private".into()));
        assert_eq!(d.size, 222);
        assert_eq!(d.entries.len(), 4);
    }

    /// The static table matches loona-hpack's, index by index.
    #[test]
    fn static_table_matches_loona() {
        let mut loona = loona_hpack::Decoder::new();
        for i in 1..=61u8 {
            let got = loona.decode(&[0x80 | i]).unwrap();
            let (n, v) = STATIC_TABLE[usize::from(i) - 1];
            assert_eq!(
                got,
                vec![(n.as_bytes().to_vec(), v.as_bytes().to_vec())],
                "index {i}"
            );
        }
    }

    /// Differential: blocks from loona's encoder decode identically here, across a
    /// sequence that grows and evicts the table.
    #[test]
    fn agrees_with_loona_across_evictions() {
        let mut enc = loona_hpack::Encoder::new();
        let mut dec = Decoder::new();
        let mut reference = loona_hpack::Decoder::new();
        for i in 0..300u32 {
            let v = format!("value-{}-{}", i % 37, "x".repeat((i % 50) as usize));
            let hdrs: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"GET"),
                (b":path", v.as_bytes()),
                (b"x-seq", v.as_bytes()),
                (b"user-agent", b"tapwire-test"),
            ];
            let block = enc.encode(hdrs);
            let want: Vec<(String, String)> = reference
                .decode(&block)
                .unwrap()
                .into_iter()
                .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                .collect();
            assert_eq!(fields(&mut dec, &block), want, "block {i}");
        }
    }

    /// Joining mid-connection: fields from entries inserted earlier are unknown, never
    /// guessed; entries inserted since are exact; a size update to 0 restores trust.
    #[test]
    fn mid_connection_pickup_never_guesses() {
        let mut enc = loona_hpack::Encoder::new();
        let mut full = Decoder::new();
        let first = enc.encode(vec![(&b"x-a"[..], &b"one"[..]), (b"x-b", b"two")]);
        let second = enc.encode(vec![(&b"x-a"[..], &b"one"[..]), (b"x-c", b"three")]);
        let third = enc.encode(vec![(&b"x-c"[..], &b"three"[..]), (b"x-a", b"one")]);
        fields(&mut full, &first);
        // A decoder that missed `first`.
        let mut late = Decoder::mid_connection();
        let got = fields(&mut late, &second);
        let want = fields(&mut full, &second);
        assert_eq!(
            got[0],
            ("?".into(), "?".into()),
            "x-a was inserted before pickup"
        );
        assert_eq!(got[1], want[1], "x-c is a literal seen after pickup");
        let got = fields(&mut late, &third);
        assert_eq!(got[0], ("x-c".into(), "three".into()));
        assert_eq!(got[1], ("?".into(), "?".into()));
        assert!(!late.trusted());
        // A size update to 0 empties the table: everything after is known.
        late.decode(&[0x20], |_| {}).unwrap();
        assert!(late.trusted());
    }

    /// A lost block makes every entry unknown; new entries are trusted again.
    #[test]
    fn loss_forgets_and_recovers() {
        let mut d = Decoder::new();
        fields(
            &mut d,
            &hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
        );
        assert_eq!(fields(&mut d, &[0xbe])[0].0, "custom-key");
        d.lose();
        assert_eq!(fields(&mut d, &[0xbe]), vec![("?".into(), "?".into())]);
        fields(&mut d, &hex("4003 782d 7a02 6869"));
        assert_eq!(fields(&mut d, &[0xbe]), vec![("x-z".into(), "hi".into())]);
    }

    /// Known entries that fill a table of known size leave no room for unknown ones.
    #[test]
    fn full_table_restores_trust() {
        let mut d = Decoder::mid_connection();
        d.decode(&[0x3f, 0x21], |_| {}).unwrap(); // size update to 64
        assert!(!d.trusted());
        fields(&mut d, &hex("4003 782d 7a02 6869")); // 3 + 2 + 32 = 37 bytes, 27 left
        assert!(d.trusted(), "no entry of 32 bytes or more fits next to it");
        assert_eq!(fields(&mut d, &[0xbe]), vec![("x-z".into(), "hi".into())]);
        assert_eq!(
            d.decode(&[0xbf], |_| {}),
            Err(HpackError::BadIndex),
            "past a complete table"
        );
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let mut d = Decoder::new();
        assert_eq!(d.decode(&[0x80], |_| {}), Err(HpackError::BadIndex));
        let mut d = Decoder::new();
        assert_eq!(d.decode(&[0xbe], |_| {}), Err(HpackError::BadIndex));
        assert!(!d.trusted());
        let mut d = Decoder::new();
        assert_eq!(
            d.decode(&[0x40, 0x05, b'a'], |_| {}),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            Decoder::new().decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], |_| {}),
            Err(HpackError::Integer)
        );
        assert_eq!(
            huffman_decode(&[0x00]),
            Err(HpackError::Huffman),
            "padding of zeros"
        );
        assert_eq!(
            huffman_decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(HpackError::Huffman)
        );
        assert_eq!(
            huffman_decode(&hex("f1e3c2e5f23a6ba0ab90f4ff")).unwrap(),
            b"www.example.com"
        );
        assert_eq!(
            Decoder::new().decode(&[0x82, 0x20], |_| {}),
            Err(HpackError::BadSizeUpdate)
        );
    }
}
