"""What every brand-owned resource's use cases do alike, written once: find the caller's row
(or NotFound, the same for another brand's row as for a missing one), apply the fields a request
gives, and run a use case in a transaction of its own (the HTTP layer's one call per route).
The rules of a resource stay in its own service layer; these know nothing of HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .domain_errors import InvalidField, NotFound

if TYPE_CHECKING:
    from .auth import Principal
    from .service_container import ServiceContainer
    from .unit_of_work import UnitOfWork

T = TypeVar("T")
R = TypeVar("R")


def get_where(
    session: Session,
    model: type[T],
    what: str,
    *where: ColumnElement[bool],
    lock: bool = False,
    options: Iterable[Any] = (),
    error_code: str | None = None,
) -> T:
    """The one row of `model` matching `where`, or NotFound(what). `lock` takes a row lock on
    this table only (a joined load must not lock, nor fail on, the other side of an outer join)."""
    stmt = select(model).where(*where).options(*options)
    row = session.scalars(stmt.with_for_update(of=model) if lock else stmt).first()
    if row is None:
        raise NotFound(what, error_code)
    return row


def get_owned(
    session: Session,
    model: Any,
    brand_id: int,
    pk: int,
    what: str,
    *,
    lock: bool = False,
    options: Iterable[Any] = (),
    error_code: str | None = None,
) -> Any:
    """The brand's row `pk` of `model`, or NotFound(what)."""
    mine = (model.id == pk, model.brand_id == brand_id)
    return get_where(session, model, what, *mine, lock=lock, options=options, error_code=error_code)


def created_by(principal: Principal) -> dict[str, Any]:
    """Who created a row, as the rows a user creates record it (the brand's and the user's names
    are kept: the row outlives a token)."""
    return {
        "brand_name": principal.brand_name,
        "created_by_id": principal.user_id,
        "created_by_username": principal.username,
    }


def new_row(principal: Principal, now: datetime) -> dict[str, Any]:
    """The columns of a row a user creates now: its brand, its creator, its timestamps."""
    return {"brand_id": principal.brand_id, **created_by(principal), "created_at": now, "updated_at": now}


def update_fields(row: Any, fields: Mapping[str, Any], now: datetime) -> None:
    """Set each given field (the schema has already said which may be written) and the row's
    updated_at."""
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_at = now


def name_taken(session: Session, model: Any, brand_id: int, name: str, own_id: int | None) -> bool:
    """Another row of the brand has this name: the check that gives the readable error (the
    unique index still settles a race, `flush_unique`)."""
    stmt = select(model.id).where(model.brand_id == brand_id, model.name == name)
    return any(found != own_id for found in session.scalars(stmt))


def flush_unique(uow: UnitOfWork, field: str, message: str) -> None:
    """Flush the unit of work; a unique index's refusal (the same name committed concurrently)
    is InvalidField(field, message), and the failed transaction is rolled back."""
    try:
        uow.session.flush()
    except IntegrityError:
        uow.rollback()
        raise InvalidField(field, message) from None


def in_transaction(container: ServiceContainer, use_case: Callable[..., R], *args: Any) -> R:
    """`use_case(uow, *args)` in a unit of work of its own, committed when it returns (its events
    go out with it); what it returns is the answer."""
    with container.uow() as uow:
        result = use_case(uow, *args)
        uow.commit()
        return result


def in_session(container: ServiceContainer, query: Callable[..., R], *args: Any) -> R:
    """`query(session, *args)` on a session of its own: a read, nothing to commit."""
    with container.session_factory() as session:
        return query(session, *args)
