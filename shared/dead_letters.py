"""`python -m shared.dead_letters` (`make dead-letters`): what the consumers parked, and putting it
back once the cause is fixed.

A consumer parks an event only after it failed on a healthy database `max_deliveries` times (an
unreachable database is never a reason: see shared/events/bus.py). The event waits in
`<queue>.dead`; `list` shows it (id, type, body) and `replay` puts it back on the queue that
parked it, where its consumer applies it again (once: the event keeps its id, and the inbox
ignores an event it has applied already).

    python -m shared.dead_letters list                       # every queue with parked messages
    python -m shared.dead_letters list core.reports          # one queue's parked messages
    python -m shared.dead_letters replay core.reports        # all of them
    python -m shared.dead_letters replay core.reports --id 6f0c...   # some of them

Queue names are given without the deployment's prefix (AMQP_PREFIX, `taskhub.` by default); the
broker is AMQP_URL.

`taskhub_dead_letters{service,queue}` (an alert fires when anything is parked) is counted when a
service's /metrics is scraped (`dead_letter_figures`), for its consumers' queues.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from prometheus_client.metrics_core import Metric

from .events.bus import BusUnavailable, EventBus
from .prometheus_metrics import ScrapedFigures, scraped_gauge

SHOWN_BYTES = 300

DEAD_LETTERS = scraped_gauge(
    "taskhub_dead_letters",
    "Events a consumer parked in its queue's dead-letter queue (make dead-letters)",
    ("service", "queue"),
)


def dead_letter_figures(service: str, bus: EventBus, queues: list[str]) -> ScrapedFigures:
    """`taskhub_dead_letters` of `service`'s consumers' queues (names without the prefix), one
    passive declaration per queue. A broker that cannot tell leaves the figure out (unknown is not
    zero)."""

    def count() -> list[Metric]:
        family = DEAD_LETTERS.family()
        for queue in queues:
            family.add_metric([service, queue], bus.dead_letters(bus.prefix + queue))
        return [family]

    return ScrapedFigures(f"{service}'s dead letters", count)


def parked_queues(prefix: str) -> dict[str, int]:
    """{queue (without prefix): parked count} for every dead-letter queue of this bus prefix that
    holds messages, read with rabbitmqctl (AMQP cannot list queues)."""
    if shutil.which("rabbitmqctl") is None:
        raise SystemExit("listing every queue needs rabbitmqctl on this machine; name a queue instead")
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "messages"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    found = {}
    for line in listing.splitlines():
        name, _, count = line.strip().rpartition("\t")
        if name.startswith(prefix) and name.endswith(".dead") and count.isdigit() and int(count):
            found[name[len(prefix) : -len(".dead")]] = int(count)
    return found


def show(bus: EventBus, queue: str, limit: int) -> list[dict[str, object]]:
    letters = bus.dead_lettered(bus.prefix + queue, limit)
    return [
        {
            "message_id": letter.message_id,
            "routing_key": letter.routing_key,
            "body": letter.body[:SHOWN_BYTES].decode("utf-8", "replace"),
        }
        for letter in letters
    ]


def main(argv: list[str] | None = None, bus: EventBus | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.dead_letters", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="what is parked (all queues, or one)")
    listing.add_argument("queue", nargs="?")
    listing.add_argument("--limit", type=int, default=50)
    replaying = commands.add_parser("replay", help="put parked messages back on their queue")
    replaying.add_argument("queue")
    replaying.add_argument("--id", action="append", dest="ids", help="only this message id (repeatable)")
    args = parser.parse_args(argv)
    given = bus is not None
    if bus is None:
        if not os.environ.get("AMQP_URL"):
            parser.error("AMQP_URL is not set (`make run` keeps its dead letters in memory, not here)")
        from .events.rabbitmq_bus import RabbitMQBus

        bus = RabbitMQBus(os.environ["AMQP_URL"], prefix=os.environ.get("AMQP_PREFIX", "taskhub."))
    try:
        if args.command == "list" and args.queue is None:
            print(json.dumps(parked_queues(bus.prefix), indent=2, sort_keys=True))
        elif args.command == "list":
            print(json.dumps(show(bus, args.queue, args.limit), indent=2))
        else:
            count = bus.replay_dead_letters(bus.prefix + args.queue, args.ids)
            print(json.dumps({"queue": args.queue, "replayed": count}))
    except BusUnavailable as error:
        print(f"broker unavailable: {error}", file=sys.stderr)
        return 1
    finally:
        if not given:
            bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
