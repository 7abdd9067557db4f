//! WebSocket messages (`websocket.*`; the conventions have no names for them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `websocket.message.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebsocketMessage {
    /// Payload bytes of the whole message (every fragment), as sent (compressed when
    /// `compressed`).
    pub size: u64,
}

/// `websocket.close.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebsocketClose {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `websocket.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Websocket {
    /// Who sent the message: `client` or `server`.
    pub direction: String,
    /// `text`, `binary`, `close`, `ping`, `pong`.
    pub opcode: String,
    pub message: WebsocketMessage,
    /// The message is compressed (`permessage-deflate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<WebsocketClose>,
}

/// The table line's part: `client text 12 B`, `server close 1000 (bye)`.
pub fn summary(ex: &crate::Exchange, s: &mut String) {
    use std::fmt::Write as _;
    let Some(w) = &ex.websocket else {
        return;
    };
    let _ = write!(s, "{} {} {} B", w.direction, w.opcode, w.message.size);
    if w.compressed == Some(true) {
        s.push_str(" compressed");
    }
    if let Some(c) = &w.close {
        if let Some(code) = c.code {
            let _ = write!(s, " {code}");
        }
        if let Some(r) = &c.reason {
            let _ = write!(s, " ({r})");
        }
    }
}
