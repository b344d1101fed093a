"""Our layer over flask-smorest (as its maintainer's example does): every service imports Api,
Blueprint and Schema from here, so they all get the same errors, security docs and behaviour."""

from __future__ import annotations

from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Flask

from .errors import register_error_handlers


class ErrorSchema(ma.Schema):
    """The one error body of the platform."""

    detail = ma.fields.String(required=True)
    error_code = ma.fields.String(required=True)
    field_errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        register_error_handlers(self._app)

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.spec.components.security_scheme(
            "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        )
        self.spec.options["security"] = [{"bearerAuth": []}]


class Blueprint(flask_smorest.Blueprint):
    """Every route under /tasks/ documents the brand header and the shared error responses."""

    def route(self, rule: str, *, parameters: list[Any] | None = None, **options: Any) -> Any:
        brand = {"in": "header", "name": "X-Brand-ID", "required": True, "schema": {"type": "integer"}}
        return super().route(rule, parameters=[brand, *(parameters or [])], **options)

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        # one schema instance per route: given the class, webargs builds (and deep-copies the
        # fields of) a new schema on every request, a fifth of a small POST's CPU
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)


class Schema(ma.Schema):
    """Request bodies reject unknown keys (a typo must not pass silently)."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


class ReadSchema(ma.Schema):
    class Meta:
        ordered = True


class Timestamp(ma.fields.DateTime):
    """ISO 8601 in UTC with a Z, the platform's one timestamp format."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        from .events.envelope import iso

        return iso(value)
