"""The app factory every service's `create_app` delegates to: one Flask app per service with the
same auth, errors, request ids, health/readiness/metrics endpoints and offline OpenAPI docs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import swagger_ui_bundle
from flask import Flask, Response, g, jsonify, request, send_from_directory

from . import hostile_input, request_context
from .api import Api, Blueprint
from .auth import TokenVerifier, authenticate_request, authorize_request
from .errors import ApiError
from .logs import configure_logging
from .prometheus_metrics import render
from .service_context import ServiceContext, readiness

JSON_METHODS = {"POST", "PUT", "PATCH"}


def build_app(
    ctx: ServiceContext,
    blueprints: Iterable[Blueprint],
    *,
    title: str,
    description: str = "",
    extensions: Iterable[Callable[[Flask], None]] = (),
) -> Flask:
    settings = ctx.settings
    configure_logging(settings.log_level, settings.log_json)
    app = Flask(f"taskhub.{settings.service}")
    hostile_input.init_app(app)
    docs = f"/docs/{settings.service}"
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

    api = Api(app)
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    for extension in extensions:
        extension(app)
    _operational_routes(app, ctx, docs)
    return app


def _operational_routes(app: Flask, ctx: ServiceContext, docs: str) -> None:
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
        payload, content_type = render()
        return Response(payload, content_type=content_type)

    @app.get(f"{docs}/ping")
    def ping() -> Any:
        """Liveness through the gateway (and the benchmark's trivial JSON endpoint)."""
        return {"pong": True, "service": ctx.service}

    @app.get(f"{docs}/static/<path:filename>")
    def swagger_assets(filename: str) -> Any:
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)


def service_context(app: Flask) -> ServiceContext:
    return app.extensions["taskhub"]
