"""The list machinery, declared once: query-argument schemas (choice lists, range suffixes, dates,
search, whitelisted ordering), their translation into SQL, and the page envelope
`{"count", "count_is_exact", "next", "previous", "results"}` with full links as the client sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
from flask import request
from marshmallow.schema import SchemaMeta
from sqlalchemy import ColumnElement, Select, func, literal, or_, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from .domain_errors import NotFound

RANGE_SUFFIXES = ("gt", "gte", "lt", "lte")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
# The deepest row a page may start after: an OFFSET makes the database walk every row before it,
# so deeper pages are reached by narrowing the list (e.g. `created_before`), docs/limits.md.
MAX_OFFSET = 10_000


class CommaList(ma.fields.Field):
    """`?status=pending,running` -> ["pending", "running"], each checked against `choices`."""

    def __init__(self, choices: Sequence[str] | None = None, **kwargs: Any) -> None:
        self.choices = tuple(choices) if choices else None
        super().__init__(**kwargs)
        if self.choices:
            self.metadata.setdefault(  # type: ignore[attr-defined]
                "description", "Comma list of: " + ", ".join(self.choices)
            )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        items = [part.strip() for part in str(value).split(",") if part.strip()]
        if not items:
            raise ma.ValidationError("Give at least one value.")
        if self.choices:
            unknown = [i for i in items if i not in self.choices]
            if unknown:
                raise ma.ValidationError(f"Unknown choice(s) {unknown}; allowed: {list(self.choices)}.")
        return items


class Ordering(ma.fields.Field):
    """`?ordering=-priority,created_at` -> [("priority", True), ("created_at", False)]."""

    def __init__(self, allowed: Sequence[str], **kwargs: Any) -> None:
        self.allowed = tuple(allowed)
        super().__init__(**kwargs)
        self.metadata.setdefault(  # type: ignore[attr-defined]
            "description", "Comma list, '-' for descending. Fields: " + ", ".join(self.allowed)
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[tuple[str, bool]]:
        out = []
        for part in (p.strip() for p in str(value).split(",") if p.strip()):
            name = part.lstrip("-")
            if name not in self.allowed:
                raise ma.ValidationError(f"Cannot order by {name!r}; allowed: {list(self.allowed)}.")
            out.append((name, part.startswith("-")))
        return out


class FlexibleBoolean(ma.fields.Boolean):
    truthy = {"true", "1", "yes", "True", "TRUE", 1}
    falsy = {"false", "0", "no", "False", "FALSE", 0}


class _ListArgsMeta(SchemaMeta):
    """Adds `<name>__gt/__gte/__lt/__lte` for every entry of a schema's `range_filters`."""

    @classmethod
    def get_declared_fields(mcs, klass, cls_fields, inherited_fields, dict_cls=dict):  # noqa: N804
        fields = super().get_declared_fields(klass, cls_fields, inherited_fields, dict_cls)
        for name, field_factory in getattr(klass, "range_filters", {}).items():
            for suffix in RANGE_SUFFIXES:
                fields.setdefault(f"{name}__{suffix}", field_factory())
        return fields


class QueryArgs(ma.Schema):
    """Query-string arguments: unknown parameters are ignored (docs/api.md §0), never refused."""

    class Meta:
        unknown = ma.EXCLUDE


class ListArgs(QueryArgs, metaclass=_ListArgsMeta):
    """Arguments every list accepts. Subclasses add filters and set `ordering`'s allowed fields."""

    range_filters: Mapping[str, Callable[[], ma.fields.Field]] = {}

    page = ma.fields.Integer(
        load_default=1,
        validate=ma.validate.Range(min=1, max=MAX_OFFSET + 1),
        metadata={"description": f"From 1; (page - 1) × page_size may not exceed {MAX_OFFSET}."},
    )
    page_size = ma.fields.Integer(
        load_default=DEFAULT_PAGE_SIZE, validate=ma.validate.Range(min=1, max=MAX_PAGE_SIZE)
    )
    created_after = ma.fields.AwareDateTime(default_timezone=None)
    created_before = ma.fields.AwareDateTime()
    updated_after = ma.fields.AwareDateTime()
    search = ma.fields.String(validate=ma.validate.Length(max=200))

    @ma.validates_schema
    def _bounded_offset(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        offset = (data.get("page", 1) - 1) * data.get("page_size", DEFAULT_PAGE_SIZE)
        if offset > MAX_OFFSET:
            raise ma.ValidationError(
                f"Pages may start at most {MAX_OFFSET} rows deep; narrow the list with filters "
                "(created_before, ranges) to reach older rows.",
                "page",
            )


Filter = Callable[[Any], ColumnElement[bool]]


def timestamp_filters(created: Any, updated: Any | None = None) -> dict[str, Filter]:
    """ListArgs's own `created_after` / `created_before` / `updated_after` on a model's columns;
    a row that is never updated (an alert event) passes its creation time for both."""
    updated = created if updated is None else updated
    return {
        "created_after": lambda v: created >= v,
        "created_before": lambda v: created <= v,
        "updated_after": lambda v: updated >= v,
    }


def column_filters(args: type[ma.Schema], model: Any) -> dict[str, Filter]:
    """The filters a list's argument schema declares on the model's own columns, each named as
    its column, so that a filter is declared once (in the schema): a `CommaList` selects IN the
    values, a boolean IS the value. Filters of any other shape are written after these in the
    same map (where one has a derived filter's name, it replaces it)."""
    columns = sa_inspect(model).column_attrs.keys()
    filters: dict[str, Filter] = {}
    for name, field in args._declared_fields.items():
        if name not in columns:
            continue
        if isinstance(field, CommaList):
            filters[name] = _in(getattr(model, name))
        elif isinstance(field, ma.fields.Boolean):
            filters[name] = _is(getattr(model, name))
    return filters


def _in(column: Any) -> Filter:
    return lambda v: column.in_(v)


def _is(column: Any) -> Filter:
    return lambda v: column.is_(v)


def ordering_columns(args: type[ma.Schema], model: Any, **other_columns: Any) -> dict[str, Any]:
    """The columns the schema's `ordering` field allows, so that they are named once (in the
    schema): each is the model's column of that name unless given here (`priority=Task.priority_rank`)."""
    allowed = args._declared_fields["ordering"].allowed  # type: ignore[attr-defined]
    return {name: other_columns[name] if name in other_columns else getattr(model, name) for name in allowed}


def range_filters(column: Any) -> dict[str, Filter]:
    return {
        "gt": lambda v: column > v,
        "gte": lambda v: column >= v,
        "lt": lambda v: column < v,
        "lte": lambda v: column <= v,
    }


def apply_filters(
    stmt: Select[Any],
    args: Mapping[str, Any],
    filters: Mapping[str, Filter],
    ranges: Mapping[str, Any] | None = None,
) -> Select[Any]:
    """Each parsed argument with an entry in `filters` adds its WHERE clause; `name__gte`-style
    arguments compare the column `ranges[name]`. Pagination, ordering and search are not filters."""
    ranges = ranges or {}
    for name, value in args.items():
        if value is None or name in ("page", "page_size", "ordering", "search"):
            continue
        if name in filters:
            stmt = stmt.where(filters[name](value))
            continue
        base, _, op = name.rpartition("__")
        if base in ranges and op in RANGE_SUFFIXES:
            stmt = stmt.where(range_filters(ranges[base])[op](value))
    return stmt


def search_clause(text: str, *columns: Any) -> ColumnElement[bool]:
    """Case-insensitive "contains": `%` and `_` in the text are literal characters, never
    wildcards (`?search=%` matched everything)."""
    needle = text.lower()
    return or_(*(func.lower(c).contains(needle, autoescape=True) for c in columns))


def apply_ordering(
    stmt: Select[Any],
    ordering: list[tuple[str, bool]] | None,
    columns: Mapping[str, Any],
    default: list[tuple[str, bool]],
    tiebreak: Any,
) -> Select[Any]:
    """ORDER BY the requested fields, then `tiebreak` (ending with a unique column) so that pages
    stay stable when values repeat; tiebreakers follow the first field's direction."""
    chosen = ordering or default
    tiebreak = tiebreak if isinstance(tiebreak, (list, tuple)) else (tiebreak,)
    clauses = [columns[name].desc() if descending else columns[name].asc() for name, descending in chosen]
    used = {columns[name] for name, _ in chosen}
    descending = chosen[0][1]
    clauses += [c.desc() if descending else c.asc() for c in tiebreak if c not in used]
    return stmt.order_by(*clauses)


@dataclass(frozen=True)
class Listing:
    """What a list route's query arguments select, declared once beside the route: its `filters`
    (and `ranges` for `name__gte`-style arguments), the columns `search` looks in, the columns
    `ordering` may name, the order when none is asked for and the unique `tiebreak`."""

    filters: Mapping[str, Filter]
    ordering: Mapping[str, Any]
    tiebreak: Any
    default_ordering: tuple[tuple[str, bool], ...] = (("created_at", True),)
    search: tuple[Any, ...] = ()
    ranges: Mapping[str, Any] | None = None

    def select(self, stmt: Select[Any], args: Mapping[str, Any]) -> Select[Any]:
        """`stmt` (the rows the caller may see) narrowed by filters and search, in order."""
        stmt = apply_filters(stmt, args, self.filters, self.ranges)
        if self.search and args.get("search"):
            stmt = stmt.where(search_clause(args["search"], *self.search))
        default = list(self.default_ordering)
        return apply_ordering(stmt, args.get("ordering"), self.ordering, default, self.tiebreak)


def public_url(page: int | None) -> str | None:
    """This request's URL as the client sees it (X-Forwarded-*), with `page` replaced."""
    if page is None:
        return None
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    prefix = request.headers.get("X-Forwarded-Prefix", "").rstrip("/")
    params = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
    params.append(("page", str(page)))
    return f"{proto}://{host}{prefix}{request.path}?{urlencode(params)}"


# Counting (docs/api.md §0: `count` is exact, or the page says `"count_is_exact": false`).
# Up to SMALL rows one bounded count answers (the cost of every list before counts were exact).
# Beyond, on PostgreSQL, the planner's estimate decides (an EXPLAIN, well under a millisecond): a
# list it expects to hold at most TRY_EXACT_UP_TO rows is counted exactly within COUNT_BUDGET_MS
# (statement_timeout on that one statement); a larger one, or one the database cannot count in
# time, answers the estimate flagged as such. Counting 800,000 of a brand's rows exactly takes
# ~50 ms even as a parallel index-only scan, more than a list call's whole budget (bench: p99 under
# 30 ms at 1,000,000 rows); docs/limits.md has the figures. SQLite (one machine, small data)
# always counts exactly.
SMALL = 1_000
TRY_EXACT_UP_TO = 150_000
COUNT_BUDGET_MS = 15


def count_rows(session: Session, stmt: Select[Any]) -> tuple[int, bool]:
    """(count, exact) of the rows `stmt` selects."""
    base = stmt.order_by(None)
    # most lists are small: one bounded count answers them, in one round trip
    bounded = base.with_only_columns(literal(1)).limit(SMALL + 1).subquery()
    counted = int(session.execute(select(func.count()).select_from(bounded)).scalar_one())
    if counted <= SMALL:
        return counted, True
    full = select(func.count()).select_from(base.subquery())
    if session.get_bind().dialect.name != "postgresql":
        return int(session.execute(full).scalar_one()), True
    estimate = _planner_rows(session, base)
    if estimate <= TRY_EXACT_UP_TO:
        exact = _count_within_budget(session, full)
        if exact is not None:
            return exact, True
    return estimate, False


def _planner_rows(session: Session, stmt: Select[Any]) -> int:
    # bound parameters, never literals pasted into the SQL (a value such as ":x" is not a
    # parameter marker, and nothing a client sent is ever SQL text)
    compiled = stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    plan = (
        session.connection()
        .exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
        .scalar_one()
    )
    return int(plan[0]["Plan"]["Plan Rows"])


def _count_within_budget(session: Session, count: Select[Any]) -> int | None:
    """The exact count, or None when PostgreSQL needs more than COUNT_BUDGET_MS for it."""
    savepoint = session.begin_nested()
    try:
        session.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(COUNT_BUDGET_MS)}
        )
        value = int(session.execute(count).scalar_one())
    except OperationalError as error:  # psycopg's QueryCanceled: the budget ran out
        if getattr(error.orig, "sqlstate", None) != "57014":
            raise
        savepoint.rollback()  # also restores the transaction's statement_timeout
        return None
    savepoint.rollback()  # nothing to keep: it only read, and this restores statement_timeout
    return value


def paginate(
    session: Session,
    stmt: Select[Any],
    args: Mapping[str, Any],
    *,
    scalars: bool = True,
) -> dict[str, Any]:
    """One page of `stmt`; `results` holds the rows, dumped by the route's page schema."""
    page, size = args.get("page", 1), args.get("page_size", DEFAULT_PAGE_SIZE)
    query = stmt.limit(size).offset((page - 1) * size)
    rows = list(session.scalars(query) if scalars else session.execute(query))
    if page > 1 and not rows:
        raise NotFound("Page")
    seen = (page - 1) * size + len(rows)
    count, exact = count_rows(session, stmt) if page > 1 or len(rows) == size else (seen, True)
    if not exact:  # an estimate is never below what this very page shows
        count = max(count, seen + (1 if len(rows) == size else 0))
    return {
        "count": count,
        "count_is_exact": exact,
        "next": public_url(page + 1) if page * size < count else None,
        "previous": public_url(page - 1) if page > 1 else None,
        "results": rows,
    }


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """The OpenAPI shape of a page of `item_schema` (documentation; the body is built by paginate)."""
    return type(
        name,
        (ma.Schema,),
        {
            "count": ma.fields.Integer(
                metadata={
                    "description": "The number of matching rows (exact unless count_is_exact is false)."
                }
            ),
            "count_is_exact": ma.fields.Boolean(
                metadata={
                    "description": "false when the list is too large to count within the budget: "
                    "`count` is then PostgreSQL's estimate (docs/limits.md)."
                }
            ),
            "next": ma.fields.String(allow_none=True),
            "previous": ma.fields.String(allow_none=True),
            "results": ma.fields.List(ma.fields.Nested(item_schema)),
        },
    )


__all__ = [
    "CommaList",
    "FlexibleBoolean",
    "ListArgs",
    "Ordering",
    "QueryArgs",
    "apply_filters",
    "apply_ordering",
    "column_filters",
    "paginate",
    "page_schema",
    "search_clause",
    "timestamp_filters",
]
