"""What every service refuses before a view runs, each with a clear 400 (docs/limits.md).

- JSON bodies: NaN/Infinity (not JSON, and PostgreSQL's JSONB refuses them), integers beyond
  64 bits and numbers that overflow a double, nesting deeper than MAX_JSON_DEPTH, lone UTF-16 surrogates and NUL
  characters (neither can be stored as UTF-8 text).
- Query strings: NUL characters.
- Integers anywhere in a request schema: outside a signed 64-bit range (the columns' range);
  dates: outside years MIN_YEAR..MAX_YEAR (date arithmetic near year 1 or 9999 overflows).

Each check costs nothing on an ordinary body: the depth walk and the string walk only run when a
cheap test on the raw text says they could find something.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import marshmallow as ma
from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

from .errors import ApiError

MAX_JSON_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MIN_YEAR, MAX_YEAR = 1000, 9000

# a number that may not fit: 19 digits or more, or a three-digit exponent
_BIG_NUMBER = re.compile(r"[0-9]{19}|[eE][+-]?[0-9]{3}")
# a \u escape of a surrogate half or of NUL: only then can the parsed body hold one
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")


class RejectedJson(ValueError):
    """A body that parses but that we refuse; the message is the client's `detail`."""


def _refuse_constant(name: str) -> Any:
    raise RejectedJson(f"{name} is not a JSON number.")


def _int64(text: str) -> int:
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise RejectedJson(f"The number {text[:40]} does not fit a 64-bit integer.")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise RejectedJson(f"The number {text[:40]} is too large.")
    return value


def _walk(value: Any, depth: int = 1) -> Iterator[tuple[Any, int]]:
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        yield item, level
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
            stack.extend((k, level + 1) for k in item)
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)


def check_parsed(text: str, value: Any) -> None:
    """Depth, surrogates and NUL of a parsed body (`text` is its source)."""
    openers = text.count("{") + text.count("[")
    suspect = _SUSPECT_ESCAPE.search(text) is not None
    if openers <= MAX_JSON_DEPTH and not suspect:
        return
    for item, level in _walk(value):
        if level > MAX_JSON_DEPTH and isinstance(item, (dict, list)):
            raise RejectedJson(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
        if suspect and isinstance(item, str):
            if "\x00" in item:
                raise RejectedJson("Strings may not contain NUL characters.")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise RejectedJson("Strings may not contain lone UTF-16 surrogates.") from None


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing what cannot be stored or sent back as valid JSON."""

    sort_keys = False  # keep the schemas' field order

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        text = s.decode("utf-8") if isinstance(s, bytes) else s
        if _BIG_NUMBER.search(text):  # only then are the per-number checks worth their cost
            kwargs.update(parse_float=_finite_float, parse_int=_int64)
        try:
            value = json.loads(text, parse_constant=_refuse_constant, **kwargs)
        except RecursionError:
            raise RejectedJson(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.") from None
        check_parsed(text, value)
        return value


def parse_json_body() -> None:
    """Parse (and cache) the body of a JSON request, or answer 400 saying why not."""
    try:
        request.get_json(cache=True)
    except BadRequest as error:  # Flask's BadRequest wraps werkzeug's, which wraps the decoder's
        # (a body over the size limit is werkzeug's 413, which passes through)
        reason: BaseException | None = error
        while reason is not None and not isinstance(reason, RejectedJson):
            reason = reason.__cause__ or reason.__context__
        detail = str(reason) if reason is not None else "The request body is not valid JSON."
        raise ApiError(400, "MALFORMED_JSON", detail) from None


def check_query_string() -> None:
    for name, value in request.args.items(multi=True):
        if "\x00" in value or "\x00" in name:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "Query parameters may not contain NUL characters.",
                field_errors={name.replace("\x00", ""): ["May not contain NUL characters."]},
            )


class Int64Converter(IntegerConverter):
    """`<int:task_pk>` matches only ids a BIGINT column can hold: beyond that the URL is a 404."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002
        kwargs.setdefault("max", INT64_MAX)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Before any blueprint registers its routes (they bind the `int` converter)."""
    app.json = StrictJSONProvider(app)
    app.url_map.converters["int"] = Int64Converter
    # `/tasks` is answered as `/tasks/` and `//tasks/` is a 404: werkzeug's redirects for these
    # are HTML pages (with an http:// Location even behind TLS) that no error handler sees.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False


# ---- request schemas: the same bounds on every field of every schema a route parses


def _in_year_range(value: dt.date) -> bool:
    return MIN_YEAR <= value.year <= MAX_YEAR


def harden_field(field: ma.fields.Field) -> None:
    if getattr(field, "_taskhub_hardened", False):
        return
    field._taskhub_hardened = True  # type: ignore[attr-defined]
    if isinstance(field, ma.fields.Integer):
        field.validators.append(ma.validate.Range(min=INT64_MIN, max=INT64_MAX))
    elif isinstance(field, (ma.fields.DateTime, ma.fields.Date)):
        field.validators.append(_YearRange())
    elif isinstance(field, ma.fields.Nested) and isinstance(field.schema, ma.Schema):
        harden_schema(field.schema)
    elif isinstance(field, ma.fields.List) and field.inner is not None:
        harden_field(field.inner)
    elif isinstance(field, ma.fields.Dict) and field.value_field is not None:
        harden_field(field.value_field)


class _YearRange(ma.validate.Validator):
    error = f"Give a date between the years {MIN_YEAR} and {MAX_YEAR}."

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dt.date) and not _in_year_range(value):
            raise ma.ValidationError(self.error)
        return value


def harden_schema(schema: ma.Schema | type[ma.Schema]) -> ma.Schema:
    """An instance of `schema` whose integer and date fields carry the platform's bounds."""
    instance = schema() if isinstance(schema, type) else schema
    for field in instance.fields.values():
        harden_field(field)
    return instance
