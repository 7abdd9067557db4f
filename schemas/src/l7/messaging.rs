//! Messaging fields (`messaging.*`, shared by Kafka and RabbitMQ) and AMQP's own (`amqp.*`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::db::Named;

/// `messaging.message.body.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageBody {
    /// Body size in bytes (as announced by the content header).
    pub size: u64,
}

/// `messaging.message.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<MessageBody>,
}

/// `messaging.rabbitmq.destination.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RabbitDestination {
    pub routing_key: String,
}

/// `messaging.rabbitmq.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rabbitmq {
    pub destination: RabbitDestination,
    /// The exchange the message was published to, when the destination names something else:
    /// a `basic.get`'s destination is the queue asked, its message's exchange is here
    /// (`messaging.rabbitmq.exchange.name`: tapwire's, the conventions have no name for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Named>,
}

/// `messaging.client.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Client {
    pub id: String,
}

/// `messaging.consumer.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Consumer {
    pub group: Named,
}

/// `messaging.batch.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Batch {
    /// Records in the request's (Produce) or response's (Fetch) record batches.
    pub message_count: u64,
}

/// `messaging.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Messaging {
    /// `rabbitmq` or `kafka`.
    pub system: String,
    /// The operation (`basic.publish`, `queue.declare`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Named>,
    /// The exchange (publish, deliver, return, get-ok) or queue (`queue.*`, `basic.consume`,
    /// `basic.get`) the operation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<Rabbitmq>,
    /// The client id a Kafka request carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Client>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Consumer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
}

/// Records and bytes one topic carried in a Produce request or a Fetch response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TopicStats {
    pub topic: String,
    pub records: u64,
    /// Record-batch bytes as sent (compressed batches count compressed).
    pub bytes: u64,
}

/// `kafka.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Kafka {
    pub api_key: i16,
    /// `Produce`, `Fetch`, `Metadata`, … (`ApiKey<n>` for keys tapwire does not know).
    pub api_name: String,
    pub api_version: i16,
    pub correlation_id: i32,
    /// Every topic the request names, in order, without repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// The first non-zero error code at any level of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i16>,
    /// Per-topic records and bytes (Produce requests, Fetch responses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topic_stats: Vec<TopicStats>,
}

/// `amqp.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Amqp {
    /// Channel number of the method.
    pub channel: u16,
    /// Reply code of the `connection.close` / `channel.close` that answered (or is) the
    /// method, when it is not 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_text: Option<String>,
    /// Content type of the message's content header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// The table line's part of a messaging exchange: Kafka API, version and topics (and error
/// code), or the AMQP method and destination (and reply code).
pub fn summary(ex: &crate::Exchange, s: &mut String) {
    use std::fmt::Write as _;
    if let Some(k) = &ex.kafka {
        let _ = write!(
            s,
            "{} v{} {}",
            k.api_name,
            k.api_version,
            k.topics.join(",")
        );
        if let Some(code) = k.error_code {
            let _ = write!(s, " -> error {code}");
        }
    } else if let Some(m) = &ex.messaging {
        let op = m.operation.as_ref().map(|o| o.name.as_str()).unwrap_or("?");
        let dest = m
            .destination
            .as_ref()
            .map(|d| d.name.as_str())
            .unwrap_or("");
        let _ = write!(s, "{op} {dest}");
        if let Some(code) = ex.amqp.as_ref().and_then(|a| a.reply_code) {
            let _ = write!(s, " -> {code}");
        }
    }
}
