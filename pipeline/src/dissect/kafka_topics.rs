//! Kafka topic ids → names (KIP-516), for the Kafka dissector (`protocols::kafka`): Fetch v13
//! and later, and other topic-id APIs, name topics by a UUID only; Metadata responses give the
//! names. A client asks for metadata on one connection and fetches on another (from the
//! partition leader), so the table is shared by every connection and every worker of a
//! pipeline configuration (the flow layer's `FlowConfig` holds it behind an `Arc`), never
//! kept in one flow.
//!
//! Limits: at most [`MAX_TOPIC_IDS`] ids (then new ones are not remembered: `learn` says so
//! and the Kafka dissector counts `kafka.topic_ids_full`); a lookup before the Metadata that
//! names the id finds nothing (the topic stays unnamed).

use std::collections::HashMap;
use std::sync::Mutex;

/// Topic ids remembered.
pub const MAX_TOPIC_IDS: usize = 16384;

/// The shared table.
#[derive(Debug, Default)]
pub struct TopicIds {
    names: Mutex<HashMap<[u8; 16], String>>,
}

impl TopicIds {
    /// Remember `id`'s name (a nil id is not an id); false when the table is full.
    pub fn learn(&self, id: &[u8; 16], name: &str) -> bool {
        if *id == [0; 16] || name.is_empty() {
            return true;
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() >= MAX_TOPIC_IDS && !names.contains_key(id) {
            return false;
        }
        if names.get(id).map(String::as_str) != Some(name) {
            names.insert(*id, name.to_string());
        }
        true
    }

    /// The name of `id`, if a Metadata response gave it.
    pub fn name(&self, id: &[u8; 16]) -> Option<String> {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_names_and_stays_bounded() {
        let t = TopicIds::default();
        assert!(t.learn(&[1; 16], "orders"));
        assert!(t.learn(&[0; 16], "nil"));
        assert_eq!(t.name(&[1; 16]).as_deref(), Some("orders"));
        assert_eq!(t.name(&[0; 16]), None);
        let refused = (0..MAX_TOPIC_IDS + 10)
            .filter(|i| {
                let mut id = [9u8; 16];
                id[..8].copy_from_slice(&(*i as u64).to_be_bytes());
                !t.learn(&id, "t")
            })
            .count();
        assert_eq!(refused, 11, "the first id was remembered before");
    }
}
