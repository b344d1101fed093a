"""A percentile per task type, the one aggregate that differs per backend: PostgreSQL's
percentile_cont; on SQLite, which has none, the same interpolated value read with an ordered
offset query per type, so both backends answer the same number."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from ..models import MetricsRecord as M


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
