"""`python -m services.worker --queues critical,high,normal,low --concurrency 4 --name w1`

Serves /metrics on TASKHUB_METRICS_PORT when set. Runs until SIGTERM/SIGINT, then stops taking work, lets running attempts finish within
TASKHUB_SHUTDOWN_GRACE_SECONDS, hands back the rest and exits 0 (a Kubernetes rolling update)."""

from __future__ import annotations

import argparse
import signal
import sys
from threading import Event as StopSignal

from shared.config import ConfigError, load_settings
from shared.logs import configure_logging
from shared.prometheus_metrics import serve_metrics
from shared.service_context import make_bus

from .config import worker_config
from .runtime import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--queues", help="comma list among critical,high,normal,low (default: all)")
    parser.add_argument("--concurrency", type=int, help="child processes, one attempt each (default 4)")
    parser.add_argument("--name", help="worker name, unique in the fleet (default: host-pid)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings("worker")
        config = worker_config(settings, name=args.name, queues=args.queues, concurrency=args.concurrency)
        configure_logging(settings.log_level, settings.log_json)
        serve_metrics(settings)  # TASKHUB_METRICS_PORT: /metrics for Prometheus
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    stop = StopSignal()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bus = make_bus(settings)
    try:
        Worker(config, bus).run(stop)
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
