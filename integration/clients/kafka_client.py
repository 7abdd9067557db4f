"""Kafka client scenario for integration/record.sh (confluent-kafka: a current librdkafka).

Usage: kafka_client.py BOOTSTRAP
Creates a topic, produces with acks=all (with a traceparent header) and with acks=0,
consumes in a group with commits, and leaves the group.
"""

import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
common = {"bootstrap.servers": bootstrap, "client.id": "tapwire-recorder", "api.version.request": True}

admin = AdminClient(common)
for f in admin.create_topics([NewTopic("orders", num_partitions=1, replication_factor=1)]).values():
    try:
        f.result(10)
    except Exception as e:  # already exists on a re-run
        print("create_topics:", e, file=sys.stderr)

p = Producer({**common, "acks": "all", "linger.ms": 5})
for i in range(5):
    p.produce(
        "orders",
        key=b"k%d" % i,
        value=b'{"order": %d}' % i,
        headers=[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    )
p.flush(10)

fire = Producer({**common, "client.id": "tapwire-fire-and-forget", "acks": "0"})
for i in range(2):
    fire.produce("orders", value=b"fire %d" % i)
fire.flush(10)

c = Consumer(
    {
        **common,
        "group.id": "billing",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    }
)
c.subscribe(["orders"])
got = 0
deadline = time.time() + 20
while got < 7 and time.time() < deadline:
    m = c.poll(0.5)
    if m is None or m.error():
        continue
    got += 1
    c.commit(message=m, asynchronous=False)
c.close()
print("kafka_client: consumed", got, file=sys.stderr)
