"""The one route table: URL prefix -> service. The nginx config, the Kubernetes ingress and the
single-process router are all generated from it, blueprints are mounted under their service's
prefix (`service_path`) and the clients between services derive their URLs from it: no other file
spells these prefixes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    prefix: str
    service: str
    default_port: int  # the port `make up` gives the service (gateway upstream)


ROUTES: tuple[Route, ...] = (
    Route("/tasks/monitoring/", "monitoring", 8102),
    Route("/tasks/persistent-jobs/", "persistence", 8103),
    Route("/tasks/scheduled/", "scheduling", 8104),
    Route("/tasks/", "core", 8101),
)

SERVICES: tuple[str, ...] = tuple(sorted(route.service for route in ROUTES))


@dataclass(frozen=True)
class StaticSite:
    """A prefix the gateway answers from files, with no service behind it."""

    prefix: str
    name: str
    directory: str  # in the repository; the gateway image copies it to /usr/share/taskhub/<name>


# The operator console (console/): a single-page app that calls the routes above.
CONSOLE = StaticSite("/console/", "console", "console/static")
STATIC_SITES: tuple[StaticSite, ...] = (CONSOLE,)


def service_for_path(path: str) -> str | None:
    """Longest prefix wins, as in the gateway."""
    best: Route | None = None
    for route in ROUTES:
        if path.startswith(route.prefix) and (best is None or len(route.prefix) > len(best.prefix)):
            best = route
    return best.service if best else None


def route_of(service: str) -> Route:
    return next(r for r in ROUTES if r.service == service)


def service_path(service: str, relative: str | None = "") -> str:
    """The public path of `relative` in `service`'s API: a blueprint declared at "/cron-jobs" is
    mounted at service_path("scheduling", "/cron-jobs") == "/tasks/scheduled/cron-jobs"."""
    return route_of(service).prefix.rstrip("/") + (relative or "")
