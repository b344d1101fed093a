"""A service's background process: `python -m shared.run_service <service> background`.

Its outbox relay, its event consumers and its periodic jobs (whatever `background_loops()` of the
service's composition root returns), until SIGTERM. `make up` runs one per service beside the
gunicorn web process; Kubernetes runs it as the service's `-background` Deployment. Migrations are
not run here: they run once before (the `migrate` step / Job), never by several processes at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging

from .background import run_until_signalled
from .config import load_settings
from .logs import configure_logging
from .prometheus_metrics import serve_metrics
from .routes import SERVICES

log = logging.getLogger(__name__)


def run_background(service: str) -> None:
    settings = load_settings(service)
    configure_logging(settings.log_level, settings.log_json)
    # Kubernetes: a background pod shares no metrics folder with the web pods, so it serves its own
    # /metrics (TASKHUB_METRICS_PORT), with this process's figures only (the figures read on scrape,
    # queue depths and dead letters, are the web pods'); `make up` leaves it unset, the web process
    # shows its figures
    serve_metrics(settings)
    container = importlib.import_module(f"services.{service}.container").bootstrap(settings)
    loops = container.background_loops()
    log.info("background process started", extra={"service": service, "loops": [x.name for x in loops]})
    try:
        run_until_signalled(loops)
    finally:
        container.ctx.dispose()
    log.info("background process stopped", extra={"service": service})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("role", choices=["background"])
    args = parser.parse_args()
    run_background(args.service)


if __name__ == "__main__":
    main()
