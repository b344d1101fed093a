"""A per-brand quota of active tasks on `POST /tasks/` (docs/limits.md).

Off unless TASKHUB_MAX_ACTIVE_TASKS_PER_BRAND is set to a positive number: then a brand that
already has that many tasks not yet finished (pending, running, paused, retrying) is answered
429 RATE_LIMITED with Retry-After. Unset, it reads one setting and queries nothing, so the
default create path pays nothing for it. The count is bounded (it stops at the limit) and is
answered from the (brand_id, status, created_at) index. It is a soft limit: requests racing
each other may overshoot it by their number, never by more.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import task_states as st
from shared.config import Settings, env_int
from shared.domain_errors import QuotaExceeded

from ..models import Task

SETTING = "TASKHUB_MAX_ACTIVE_TASKS_PER_BRAND"
RETRY_AFTER_SETTING = "TASKHUB_QUOTA_RETRY_AFTER_SECONDS"


def check_active_tasks(
    session: Session, settings: Settings, brand_id: int, idempotency_key: str | None, creating: int = 1
) -> None:
    """`creating`: how many tasks the request creates (a bulk create counts them all)."""
    limit = env_int(settings, SETTING, 0)
    if limit <= 0:
        return
    active = select(Task.id).where(Task.brand_id == brand_id, Task.status.in_(st.ACTIVE)).limit(limit)
    if (
        session.execute(select(func.count()).select_from(active.subquery())).scalar_one() + creating - 1
        < limit
    ):
        return
    if idempotency_key and _repeat(session, brand_id, idempotency_key):
        return  # a repeat creates nothing: it answers with the first task
    seconds = env_int(settings, RETRY_AFTER_SETTING, 30)
    raise QuotaExceeded(
        f"This brand already has {limit} unfinished tasks, its quota; retry when some have finished.",
        retry_after=seconds,
        active_tasks_limit=limit,
    )


def _repeat(session: Session, brand_id: int, key: str) -> bool:
    found = select(Task.id).where(Task.brand_id == brand_id, Task.idempotency_key == key).limit(1)
    return session.scalar(found) is not None
