"""AMQP 0-9-1 client scenario for integration/record.sh (pika, a real client library).

Usage: amqp_client.py HOST USER PASSWORD
Declares, binds, publishes (with a W3C traceparent header), consumes with get and consume,
acks, nacks and rejects, triggers a channel.close 406 (exchange type mismatch) and a
basic.return (mandatory, unroutable), uses publisher confirms and a transaction.
"""

import sys

import pika

host, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
params = pika.ConnectionParameters(
    host=host, credentials=pika.PlainCredentials(user, password), heartbeat=0
)
conn = pika.BlockingConnection(params)
ch = conn.channel()

ch.exchange_declare("orders", exchange_type="direct")
ch.queue_declare("orders.new")
ch.queue_bind("orders.new", "orders", routing_key="new")
props = pika.BasicProperties(
    content_type="application/json",
    headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
)
for i in range(3):
    ch.basic_publish("orders", "new", b'{"order": %d}' % i, props)

method, _, _ = ch.basic_get("orders.new")
ch.basic_ack(method.delivery_tag)
method, _, _ = ch.basic_get("orders.new")
ch.basic_nack(method.delivery_tag, requeue=True)
method, _, _ = ch.basic_get("orders.new")
ch.basic_reject(method.delivery_tag, requeue=False)

# A consumer that takes one message.
got = []


def on_message(channel, method, properties, body):
    got.append(body)
    channel.basic_ack(method.delivery_tag)
    channel.stop_consuming()


tag = ch.basic_consume("orders.new", on_message)
ch.basic_publish("orders", "new", b'{"order": 99}', props)
ch.start_consuming()

# Publisher confirms and a mandatory message nobody can take (basic.return).
ch.confirm_delivery()
try:
    ch.basic_publish("orders", "nowhere", b"lost", mandatory=True)
except pika.exceptions.UnroutableError:
    pass

# A transaction on a second channel.
tx = conn.channel()
tx.tx_select()
tx.basic_publish("orders", "new", b'{"order": 100}')
tx.tx_commit()
tx.close()

# Redeclaring the exchange with another type: channel.close 406 PRECONDITION_FAILED.
bad = conn.channel()
try:
    bad.exchange_declare("orders", exchange_type="fanout")
except pika.exceptions.ChannelClosedByBroker:
    pass

ch.queue_delete("orders.new")
conn.close()
print("amqp_client: ok", file=sys.stderr)
