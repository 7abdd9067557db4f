//! A real Kafka client (rdkafka) for the sink tests.
//!
//! - `tw-kafka create BROKERS TOPIC…`: create the topics (1 partition) with the admin API.
//! - `tw-kafka consume BROKERS IDLE_SECS TOPIC…`: read every topic from the beginning and
//!   print each message as a JSON line (`topic`, `partition`, `offset`, `key`, `headers`,
//!   `payload` parsed as JSON) until nothing has arrived for IDLE_SECS after the first
//!   message (waiting up to 20 s for that one: joining a group on a restarted broker takes
//!   a while).

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("create") if args.len() >= 3 => create(&args[1], &args[2..]),
        Some("consume") if args.len() >= 4 => {
            let idle: u64 = args[2].parse().expect("IDLE_SECS");
            consume(&args[1], Duration::from_secs(idle), &args[3..]);
        }
        _ => {
            eprintln!("usage: tw-kafka create BROKERS TOPIC… | consume BROKERS IDLE_SECS TOPIC…");
            std::process::exit(2);
        }
    }
}

fn create(brokers: &str, topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt
        .block_on(admin.create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics");
    for r in res {
        match r {
            Ok(t) => println!("created {t}"),
            Err((t, e)) => {
                eprintln!("tw-kafka: create {t}: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn consume(brokers: &str, idle: Duration, topics: &[String]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("tw-kafka-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).expect("subscribe");
    let start = Instant::now();
    let mut last: Option<Instant> = None;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while match last {
        None => start.elapsed() < Duration::from_secs(20),
        Some(t) => t.elapsed() < idle,
    } {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Some(Instant::now());
                let headers: serde_json::Map<String, Value> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    json!(x.value.map(|v| String::from_utf8_lossy(v).into_owned())),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let payload: Value = m
                    .payload()
                    .and_then(|p| serde_json::from_slice(p).ok())
                    .unwrap_or(Value::Null);
                let line = json!({
                    "topic": m.topic(),
                    "partition": m.partition(),
                    "offset": m.offset(),
                    "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    "headers": headers,
                    "payload": payload,
                });
                let _ = writeln!(out, "{line}");
            }
            Some(Err(e)) => eprintln!("tw-kafka: {e}"),
            None => {}
        }
    }
    let _ = out.flush();
}
