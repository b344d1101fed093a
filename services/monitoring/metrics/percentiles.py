"""The SQL that differs per backend: the UTC day of a timestamp, and a percentile per task type
(PostgreSQL's percentile_cont; on SQLite, which has none, the same interpolated value read with an
ordered offset query per type, so both backends answer the same number)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import String

from ..models import MetricsRecord as M


class utc_day(FunctionElement[str]):  # noqa: N801 - used like a SQL function
    """`utc_day(ts)` -> 'YYYY-MM-DD' (UTC) on PostgreSQL and SQLite."""

    type = String()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day, "postgresql")
def _utc_day_pg(element: Any, compiler: Any, **kw: Any) -> str:
    (moment,) = list(element.clauses)
    return f"to_char(({compiler.process(moment, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(utc_day)
def _utc_day_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    (moment,) = list(element.clauses)
    return f"substr({compiler.process(moment, **kw)}, 1, 10)"  # stored as 'YYYY-MM-DD HH:MM:SS' in UTC


def percentile_by_type(
    session: Session, value: ColumnElement[Any], where: Sequence[ColumnElement[bool]], fraction: float
) -> dict[str, float]:
    """{task_type: the `fraction` percentile of `value`} over the rows matching `where`, linearly
    interpolated between the two nearest ranks (percentile_cont's definition)."""
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            select(M.task_type, func.percentile_cont(fraction).within_group(value))
            .where(*where)
            .group_by(M.task_type)
        ).all()
        return {task_type: float(result) for task_type, result in rows if result is not None}
    counts = session.execute(select(M.task_type, func.count()).where(*where).group_by(M.task_type)).all()
    out = {}
    for task_type, count in counts:
        position = fraction * (count - 1)
        lower = math.floor(position)
        pair = session.scalars(
            select(value).where(*where, M.task_type == task_type).order_by(value).limit(2).offset(lower)
        ).all()
        if not pair:
            continue
        upper = pair[1] if len(pair) > 1 else pair[0]
        out[task_type] = float(pair[0]) + (float(upper) - float(pair[0])) * (position - lower)
    return out
