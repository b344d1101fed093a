"""The scaffolding every service configures: a `ServiceApp` names the service, its composition
root and its blueprints; `create_service_app` builds its Flask app (the same auth, errors, request
ids, health/readiness/metrics endpoints and offline OpenAPI docs for all), and `build_embedded` its
app and background loops for `make run`. A service's `app.py` is its `ServiceApp` and a two-line
`create_app`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import swagger_ui_bundle
from flask import Flask, Response, g, jsonify, request, send_from_directory

from . import hostile_input, request_context
from .api import Api, Blueprint
from .auth import TokenVerifier, authenticate_request, authorize_request
from .background import Loop
from .config import Settings, env_bool, load_settings
from .errors import ApiError
from .events.bus import EventBus
from .logs import configure_logging
from .migrations import upgrade
from .prometheus_metrics import ScrapedFigures, render
from .routes import service_path
from .service_container import ServiceContainer
from .service_context import ServiceContext, readiness

JSON_METHODS = {"POST", "PUT", "PATCH"}
SCRAPED = "taskhub.scraped_figures"


class Bootstrap(Protocol):
    """A service's `container.bootstrap`: its composition root from settings (and a bus, shared
    by `make run`'s services or a test's own)."""

    def __call__(self, settings: Settings, bus: EventBus | None = None) -> ServiceContainer: ...


@dataclass(frozen=True)
class ServiceApp:
    """One service, as its `app.py` declares it."""

    name: str  # as in the route table (shared/routes.py) and the settings' <NAME>_DATABASE_URL
    bootstrap: Bootstrap
    blueprints: tuple[Blueprint, ...]  # their url_prefix is relative to the service's route
    title: str
    description: str
    # init_app(app) hooks run once the container is in app.extensions[name]
    extensions: tuple[Callable[[Flask], None], ...] = ()
    # loops `make run` hosts beside the container's background loops, on the same container
    embedded_loops: Callable[[Any], list[Loop]] | None = None  # given the container


def auto_migrate(settings: Settings) -> bool:
    """TASKHUB_AUTO_MIGRATE (default true): whether a process migrates its database on start.
    `make up` and Kubernetes turn it off and migrate once, before any process starts."""
    return env_bool(settings, "TASKHUB_AUTO_MIGRATE", True)


def create_service_app(
    service: ServiceApp, config: dict[str, Any] | None = None, container: ServiceContainer | None = None
) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    if container is None:
        container = service.bootstrap(load_settings(service.name, **(config or {})))
    if auto_migrate(container.ctx.settings):
        upgrade(service.name, container.ctx.engine)
    app = _base_app(container.ctx, title=service.title, description=service.description)
    app.extensions[service.name] = container
    api = Api(app)
    for blueprint in service.blueprints:
        api.register_blueprint(blueprint, url_prefix=service_path(service.name, blueprint.url_prefix))
    for extension in service.extensions:
        extension(app)
    app.extensions[SCRAPED] = container.scraped_figures()
    _operational_routes(app, container.ctx)
    return app


def scraped_figures(app: Flask) -> list[ScrapedFigures]:
    """The figures a service's app reads from its database and the broker on each /metrics scrape."""
    figures: list[ScrapedFigures] = app.extensions[SCRAPED]
    return figures


def build_embedded(service: ServiceApp, settings: Settings) -> tuple[Flask, list[Loop]]:
    """The service inside `make run`: its app and its background loops on one composition root
    (so that a change made through the app wakes the loops in the process: SQLite has no NOTIFY)."""
    container = service.bootstrap(settings)
    extra = service.embedded_loops(container) if service.embedded_loops else []
    return create_service_app(service, container=container), [*container.background_loops(), *extra]


def _docs_prefix(ctx: ServiceContext) -> str:
    return f"/docs/{ctx.service}"


def _base_app(ctx: ServiceContext, *, title: str, description: str) -> Flask:
    settings = ctx.settings
    configure_logging(settings.log_level, settings.log_json)
    app = Flask(f"taskhub.{settings.service}")
    hostile_input.init_app(app)
    docs = _docs_prefix(ctx)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE=title,
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=docs,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/",
        OPENAPI_SWAGGER_UI_URL=f"{docs}/static/",
        API_SPEC_OPTIONS={"info": {"description": description}},
    )
    app.extensions["taskhub"] = ctx
    request_context.init_app(app, settings.service)
    verifier = TokenVerifier(settings)
    app.extensions["taskhub.tokens"] = verifier

    @app.before_request
    def _guard() -> None:
        if (request.path + "/").startswith("/tasks/"):  # `/tasks` is answered as `/tasks/`
            g.principal = authenticate_request(verifier)
            authorize_request(g.principal)
        hostile_input.check_query_string()
        if request.method in JSON_METHODS and request.content_length:
            if not request.is_json:
                raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json.")
            hostile_input.parse_json_body()

    return app


def _operational_routes(app: Flask, ctx: ServiceContext) -> None:
    docs = _docs_prefix(ctx)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", "service": ctx.service}

    @app.get("/readyz")
    def readyz() -> Any:
        body = readiness(ctx)
        response = jsonify(body)
        response.status_code = 200 if body["status"] == "ok" else 503
        return response

    @app.get("/metrics")
    def metrics() -> Any:
        payload, content_type = render(scraped_figures(app))
        return Response(payload, content_type=content_type)

    @app.get(f"{docs}/ping")
    def ping() -> Any:
        """Liveness through the gateway (and the benchmark's trivial JSON endpoint)."""
        return {"pong": True, "service": ctx.service}

    @app.get(f"{docs}/static/<path:filename>")
    def swagger_assets(filename: str) -> Any:
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
