"""An outside consumer of taskhub's events: another team's service that wants to know when tasks
finish. It needs nothing from this repository but pika (`pip install pika`).

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F python docs/examples/outside_consumer.py

It declares its OWN durable queue (named for the consumer, never one of taskhub's), binds it to
`task.*` on the events exchange, and acknowledges each message only after handling it, so nothing
is lost while it is stopped or restarting: the broker keeps the queue's messages meanwhile.
Delivery is at least once: a real consumer stores `event_id`s it has applied and skips repeats.
The contract of every event: docs/asyncapi.yaml and docs/events/<type>.json.
"""

import json
import os

import pika

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PREFIX = os.environ.get("AMQP_PREFIX", "taskhub.")
EXCHANGE = PREFIX + "events"
QUEUE = os.environ.get("QUEUE", "reporting.task-completions")


def handle(channel, method, properties, body):
    event = json.loads(body)
    data = event["data"]
    if event["event_type"] == "task.completed":
        print(
            f"completed {data['task_id']} (brand {event['brand_id']}): {json.dumps(data.get('result_data'))}"
        )
    elif event["event_type"] == "task.failed" and not data.get("will_retry"):
        print(f"failed    {data['task_id']} (brand {event['brand_id']}): {data.get('error_message')}")
    channel.basic_ack(method.delivery_tag)  # after the work is done, never before


def main():
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    # The same declaration taskhub makes (durable topic exchange): declaring it here is harmless
    # and lets this consumer start before the platform has published anything.
    channel.exchange_declare(EXCHANGE, "topic", durable=True)
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, EXCHANGE, routing_key="task.*")
    channel.basic_qos(prefetch_count=50)
    channel.basic_consume(QUEUE, handle)
    print(f"waiting for task events on {QUEUE} (bound to {EXCHANGE} task.*); Ctrl-C to stop")
    try:
        channel.start_consuming()
    except KeyboardInterrupt:
        channel.stop_consuming()
    connection.close()


if __name__ == "__main__":
    main()
