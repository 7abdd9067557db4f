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
