"""Our layer over flask-smorest (as its maintainer's example does): every service imports Api,
Blueprint and Schema from here, so they all get the same errors, security docs and behaviour.

The documents say what the services really answer: every `/tasks/` operation lists 400 (brand
header, validation: `VALIDATION_ERROR`, never flask-smorest's default 422), 401, 403 and 429 (the
gateway's rate limit); 404 where the path names an object or the list pages; 413 and 415 where
there is a body; a view adds what only it answers (`@blp.error(409, ...)`).
"""

from __future__ import annotations

from typing import Any

import flask_smorest
import marshmallow as ma
from apispec import BasePlugin
from flask import Flask, Request
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request

from .errors import register_error_handlers
from .hostile_input import INT64_MAX, INT64_MIN, harden_schema, parse_json_body

OPERATION_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


class ErrorSchema(ma.Schema):
    """The one error body of the platform (extra keys such as `current_status` may join it)."""

    class Meta:
        unknown = ma.INCLUDE

    detail = ma.fields.String(required=True)
    error_code = ma.fields.String(required=True)
    field_errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


SHARED_ERRORS = {
    400: "Malformed request: missing or non-integer X-Brand-ID (BRAND_REQUIRED), a parameter or body "
    "field that fails validation (VALIDATION_ERROR, with field_errors) or a body that is not JSON "
    "(MALFORMED_JSON).",
    401: "Missing, invalid or expired token (AUTHENTICATION_FAILED, TOKEN_EXPIRED).",
    403: "The token does not grant this brand (BRAND_ACCESS_DENIED) or a role strong enough "
    "(PERMISSION_DENIED).",
    429: "Too many requests for this client or brand (RATE_LIMITED, with Retry-After).",
}
NOT_FOUND = "No such object in this brand, or a page past the end (NOT_FOUND)."
BODY_ERRORS = {
    413: "Request body over the configured limit (PAYLOAD_TOO_LARGE).",
    415: "The body is not application/json (UNSUPPORTED_MEDIA_TYPE).",
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": "Error"}}}


class ErrorResponsesPlugin(BasePlugin):
    """Adds the statuses every operation of a kind answers, once for every service."""

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            if method not in OPERATION_METHODS or not (path or "").startswith("/tasks/"):
                continue
            responses = operation.setdefault("responses", {})
            for code in [c for c in responses if str(c) == "422"]:
                del responses[code]  # webargs' default: our services answer 400
            wanted = dict(SHARED_ERRORS)
            params = operation.get("parameters", [])
            if "{" in (path or "") or any(p.get("name") == "page" for p in params if isinstance(p, dict)):
                wanted[404] = NOT_FOUND
            if "requestBody" in operation:
                wanted.update(BODY_ERRORS)
            present = {str(code) for code in responses}
            for code, description in wanted.items():
                if str(code) not in present:
                    responses[code] = _error_response(description)


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
        plugin = ErrorResponsesPlugin()
        plugin.init_spec(self.spec)
        self.spec.plugins.append(plugin)


class JsonOnceParser(FlaskParser):
    """webargs reads the body Flask already parsed (once, with the strict provider of
    shared.hostile_input) instead of parsing it again with the standard library's lenient json."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req) or not req.get_data(cache=True):
            return webargs_core.missing
        parse_json_body()
        return req.get_json(cache=True)


class Blueprint(flask_smorest.Blueprint):
    """Every route under /tasks/ documents the brand header and the shared error responses."""

    ARGUMENTS_PARSER = JsonOnceParser()

    def route(self, rule: str, *, parameters: list[Any] | None = None, **options: Any) -> Any:
        brand = {
            "in": "header",
            "name": "X-Brand-ID",
            "required": True,
            "schema": {"type": "integer", "format": "int64", "minimum": INT64_MIN, "maximum": INT64_MAX},
        }
        return super().route(rule, parameters=[brand, *(parameters or [])], **options)

    def arguments(self, schema: Any, **kwargs: Any) -> Any:
        """Request schemas get the platform's bounds; their failures are 400 VALIDATION_ERROR.
        (One schema instance per route: given the class, webargs would build and deep-copy a
        new schema on every request.)"""
        kwargs.setdefault("error_status_code", 400)
        return super().arguments(harden_schema(schema), **kwargs)

    def answers(self, schema: Any, status: int = 200, description: str = "OK") -> Any:
        """Document the body a view builds itself (it is sent as built, not dumped again)."""
        return self.alt_response(status, schema=schema, description=description, success=True)

    def error(self, status: int, description: str) -> Any:
        """Document an error status this view answers beyond the shared ones (409, 422...)."""
        return self.alt_response(status, schema=ErrorSchema, description=description)


class Schema(ma.Schema):
    """Request bodies reject unknown keys (a typo must not pass silently)."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


class RefusesReadOnly(Schema):
    """A body naming a field the server sets (`read_only_fields`) is refused, field by field,
    rather than silently ignored."""

    read_only_fields: tuple[str, ...] = ()

    @ma.pre_load
    def reject_read_only(self, data: Any, **_: object) -> Any:
        if isinstance(data, dict):
            errors = {k: ["This field is read-only."] for k in data if k in self.read_only_fields}
            if errors:
                raise ma.ValidationError(errors)
        return data


class ReadSchema(ma.Schema):
    class Meta:
        ordered = True


def brand_of(row: Any) -> dict[str, Any]:
    """The `brand` object of a row that keeps its brand's id and name."""
    return {"id": row.brand_id, "name": row.brand_name}


def creator_of(row: Any) -> dict[str, Any]:
    """The `created_by` object of a row that keeps its creator's id and username."""
    return {"id": row.created_by_id, "username": row.created_by_username}


class Timestamp(ma.fields.DateTime):
    """ISO 8601 in UTC with a Z, the platform's one timestamp format."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        from .events.envelope import iso

        return iso(value)


__all__ = [
    "Api",
    "Blueprint",
    "ErrorSchema",
    "ReadSchema",
    "RefusesReadOnly",
    "Schema",
    "Timestamp",
    "brand_of",
    "creator_of",
]
