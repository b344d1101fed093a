"""`make run`: the whole platform in one process.

Every service's app behind one port with the route table (shared/routes.py: longest prefix wins,
no path rewriting), SQLite files in the data folder, the in-process bus, and every service's
background loops (relays, consumers, dispatcher), the worker and the scheduler on threads. Each
service is built from the `SERVICE` its `app.py` declares (shared.service_app.build_embedded).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from threading import Event as StopSignal
from typing import Any

from flask import Flask

from .background import Loop, start_loops
from .config import load_settings
from .embedded_secret import dev_secret
from .errors import ApiError
from .routes import SERVICES, STATIC_SITES, service_for_path
from .service_app import build_embedded, scraped_figures

log = logging.getLogger(__name__)


@dataclass
class EmbeddedService:
    name: str
    app: Flask
    loops: list[Loop]


class PrefixRouter:
    """A WSGI app that hands each request to the service the route table gives its path, or to
    the service whose docs or the static site it names."""

    def __init__(
        self, apps: dict[str, Flask], fallback: Flask, sites: dict[str, Flask] | None = None
    ) -> None:
        self.apps, self.fallback = apps, fallback
        # a static site also answers its bare prefix (/console), to redirect it to /console/
        self.others = [(f"/docs/{name}/", app) for name, app in apps.items()] + [
            (s.prefix.rstrip("/"), site) for s in STATIC_SITES if (site := (sites or {}).get(s.name))
        ]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        service = service_for_path(path)
        if service in self.apps:
            return self.apps[service](environ, start_response)
        for prefix, app in self.others:
            if path.startswith(prefix):
                return app(environ, start_response)
        return self.fallback(environ, start_response)


def load_service(name: str) -> EmbeddedService:
    app, loops = build_embedded(importlib.import_module(f"services.{name}.app").SERVICE, load_settings(name))
    return EmbeddedService(name, app, loops)


def build_platform(extra_loops: Iterable[Callable[[], list[Loop]]] = ()) -> tuple[PrefixRouter, list[Loop]]:
    os.environ.setdefault("JWT_SECRET", dev_secret())
    services = [load_service(name) for name in SERVICES]
    apps = {s.name: s.app for s in services}
    router = PrefixRouter(apps, _fallback_app(apps), _static_sites())
    loops = [loop for s in services for loop in s.loops]
    for factory in extra_loops:
        loops.extend(factory())
    return router, loops


def _static_sites() -> dict[str, Flask]:
    """The route table's static sites (the console) as apps, for this single-process mode."""
    from console import create_app as console_app

    return {site.name: console_app(site.prefix) for site in STATIC_SITES if site.name == "console"}


def _fallback_app(apps: dict[str, Flask]) -> Flask:
    """Answers what no service owns: /healthz, /readyz and /metrics for the whole process (every
    service's figures, those its app reads on scrape included), JSON 404s."""
    from .errors import register_error_handlers
    from .prometheus_metrics import render

    app = Flask("taskhub.embedded")
    register_error_handlers(app)
    scraped = [figures for service_app in apps.values() for figures in scraped_figures(service_app)]

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", "services": sorted(apps)}

    @app.get("/readyz")
    def readyz() -> Any:
        results = {}
        for name, service_app in apps.items():
            with service_app.test_client() as client:
                results[name] = client.get("/readyz").status_code == 200
        return {"status": "ok" if all(results.values()) else "unavailable", "services": results}, (
            200 if all(results.values()) else 503
        )

    @app.get("/metrics")
    def metrics() -> Any:
        payload, content_type = render(scraped)
        return app.response_class(payload, content_type=content_type)

    @app.route("/", defaults={"path": ""})
    @app.route("/<path:path>")
    def unknown(path: str) -> Any:
        raise ApiError(404, "NOT_FOUND", "No service serves this path.")

    return app


def main() -> None:
    from werkzeug.serving import run_simple

    port = int(os.environ.get("PORT", "8080"))
    router, loops = build_platform([importlib.import_module("services.worker.embedded").embedded_loops])
    stop = StopSignal()
    start_loops(loops, stop)
    log.info("taskhub embedded platform on port %s", port)
    try:
        run_simple("127.0.0.1", port, router, threaded=True, use_reloader=False)
    finally:
        stop.set()


if __name__ == "__main__":
    main()
