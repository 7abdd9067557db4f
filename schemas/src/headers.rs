//! Header fields of a message: `http.request.header.<name>` / `http.response.header.<name>`.
//!
//! Kept as a flat list sorted by name (values of one name in order of appearance) rather than
//! a map of vectors: one allocation per value instead of four per field, on the path every
//! HTTP exchange takes. Names are lower case; common names are `'static` and not copied.
//! Serialises as the contract's JSON object `{"name": ["value", …]}`, names in order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Header fields by lower-case name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    fields: Vec<(Cow<'static, str>, String)>,
}

impl HeaderMap {
    pub fn new() -> Self {
        HeaderMap::default()
    }

    /// Room for `n` fields (a parser that knows the count allocates the list once).
    pub fn with_capacity(n: usize) -> Self {
        HeaderMap {
            fields: Vec::with_capacity(n),
        }
    }

    /// Add a field (`name` must be lower case); later values of a name follow earlier ones.
    pub fn push(&mut self, name: Cow<'static, str>, value: String) {
        let at = self
            .fields
            .partition_point(|(n, _)| n.as_ref() <= name.as_ref());
        self.fields.insert(at, (name, value));
    }

    /// The values of one name, in order of appearance.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let start = self.fields.partition_point(|(n, _)| n.as_ref() < name);
        self.fields[start..]
            .iter()
            .take_while(move |(n, _)| n.as_ref() == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of one name.
    pub fn first<'a>(&'a self, name: &str) -> Option<&'a str> {
        let start = self.fields.partition_point(|(n, _)| n.as_ref() < name);
        self.fields
            .get(start)
            .filter(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v.as_str())
    }

    /// Number of fields (not names).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }

    /// Heap bytes this map holds (its list, owned names, value capacities), for memory
    /// budgets.
    pub fn heap_bytes(&self) -> usize {
        self.fields.capacity() * std::mem::size_of::<(Cow<'static, str>, String)>()
            + self
                .fields
                .iter()
                .map(|(n, v)| {
                    let name = match n {
                        Cow::Owned(o) => o.capacity(),
                        Cow::Borrowed(_) => 0,
                    };
                    name + v.capacity()
                })
                .sum::<usize>()
    }

    /// Fields in name order, values writable (names are not: the order depends on them).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut String)> {
        self.fields.iter_mut().map(|(n, v)| (&**n, v))
    }

    /// Groups of equal names.
    fn groups(&self) -> impl Iterator<Item = &[(Cow<'static, str>, String)]> {
        self.fields.chunk_by(|a, b| a.0 == b.0)
    }
}

struct Values<'a>(&'a [(Cow<'static, str>, String)]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (_, v) in self.0 {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl Serialize for HeaderMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.groups().count()))?;
        for g in self.groups() {
            map.serialize_entry(g[0].0.as_ref(), &Values(g))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for HeaderMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Vec<String>>::deserialize(d)?;
        let mut h = HeaderMap::new();
        for (name, values) in raw {
            for v in values {
                h.push(Cow::Owned(name.to_ascii_lowercase()), v);
            }
        }
        Ok(h)
    }
}

impl JsonSchema for HeaderMap {
    fn schema_name() -> Cow<'static, str> {
        "HeaderMap".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut s = BTreeMap::<String, Vec<String>>::json_schema(generator);
        s.insert(
            "description".into(),
            "Header fields by lower-case name; each name's values in order of appearance.".into(),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_sorted_and_in_order_of_appearance() {
        let mut h = HeaderMap::new();
        h.push("via".into(), "b".into());
        h.push("accept".into(), "x".into());
        h.push("via".into(), "c".into());
        h.push(Cow::Owned("x-custom".into()), "1".into());
        assert_eq!(h.get_all("via").collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(h.first("accept"), Some("x"));
        assert_eq!(h.first("nope"), None);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"accept":["x"],"via":["b","c"],"x-custom":["1"]}"#);
        let back: HeaderMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }
}
