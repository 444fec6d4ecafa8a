"""Bearer tokens and the role table of API.md: who may see which projects and do what."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

from readmodel import tables as t
from readmodel.registry import lg_code_problem
from workflows import roles
from workflows.calendar import jst_today
from workflows.roles import ROLE_TABLE, ROLES, Action, Scope

# What each role may write, besides reading what its scope shows (workflows/roles.py).
WRITES: dict[str, frozenset[Action]] = {role: rule.writes for role, rule in ROLE_TABLE.items()}
# The token field, and the project column, that bounds what a scoped role sees.
_SCOPE_FIELD: dict[Scope, str] = {
    Scope.PREFECTURE: "prefecture",
    Scope.LG_CODE: "lg_code",
    Scope.VENDOR: "vendor_id",
}
TOKEN_PREFIX = "hyj_"


@dataclass(frozen=True)
class Caller:
    token_id: int
    name: str
    role: str
    lg_code: str | None = None
    prefecture: str | None = None
    vendor_id: str | None = None
    # A person (signed in to the pages, or by a personal token): their actions are theirs.
    person_id: int | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"

    def may(self, action: str) -> bool:
        return roles.may(self.role, action)

    def acts_for(self, owner: str) -> bool:
        """Whether this caller works on tasks that ``owner`` owns."""
        return owner in roles.acts_for(self.role)

    def _limit(self) -> tuple[str, str | None] | None:
        """The column that bounds what this caller sees and its value; None sees all."""
        scope = roles.scope_of(self.role)
        if scope is Scope.ALL:
            return None
        column = _SCOPE_FIELD[scope]
        return (column, getattr(self, column))

    @property
    def sees_all(self) -> bool:
        """Whether this caller's scope is every project (an admin, a national observer)."""
        return self._limit() is None

    def sees(self, row: Any) -> bool:
        """Whether a project (or a row carrying its scope columns) is visible."""
        limit = self._limit()
        return limit is None or (limit[1] is not None and getattr(row, limit[0]) == limit[1])

    def scope(self, query: SelectOfScalar[Any], on: Any = t.Project) -> SelectOfScalar[Any]:
        """Restrict a query to what this caller may see, by the scope columns of ``on``
        (projects, or escalations, which carry the same lg_code, prefecture and vendor_id)."""
        limit = self._limit()
        return query if limit is None else query.where(getattr(on, limit[0]) == limit[1])


def hash_token(secret: str) -> str:
    # Tokens are 256-bit random secrets, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenScopeError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_token_scope(
    session: Session, role: str, lg_code: str | None, prefecture: str | None, vendor_id: str | None
) -> None:
    """Each role carries exactly the scope API.md gives it."""
    if role not in ROLES:
        raise TokenScopeError("role", f"role must be one of {', '.join(ROLES)}")
    scope = roles.scope_of(role)
    if scope is Scope.LG_CODE:
        if not lg_code:
            raise TokenScopeError("lg_code", f"a {role} token needs an lg_code")
        problem = lg_code_problem(lg_code)
        if problem:
            raise TokenScopeError("lg_code", f"lg_code {problem}")
    if scope is Scope.PREFECTURE:
        if (
            not prefecture
            or len(prefecture) != 2
            or not (prefecture.isascii() and prefecture.isdigit())
            or not (1 <= int(prefecture) <= 47)
        ):
            raise TokenScopeError("prefecture", "a prefecture token needs a prefecture 01-47")
    if scope is Scope.VENDOR:
        if not vendor_id:
            raise TokenScopeError("vendor_id", "a vendor token needs a vendor_id")
        if session.get(t.Vendor, vendor_id) is None:
            raise TokenScopeError("vendor_id", f"unknown vendor {vendor_id!r}")


def create_token(
    session: Session,
    *,
    role: str,
    name: str,
    lg_code: str | None = None,
    prefecture: str | None = None,
    vendor_id: str | None = None,
    expires_on: date | None = None,
) -> tuple[t.ApiToken, str]:
    """Store a new token's hash and return the secret, which is shown once and never again."""
    check_token_scope(session, role, lg_code, prefecture, vendor_id)
    if expires_on is not None and expires_on < jst_today(datetime.now(UTC)):
        raise TokenScopeError("expires_on", "expires_on must not be in the past")
    scope = roles.scope_of(role)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = t.ApiToken(
        name=name,
        role=str(role),  # the plain code, also when given a Role
        lg_code=lg_code if scope is Scope.LG_CODE else None,
        prefecture=prefecture if scope is Scope.PREFECTURE else None,
        vendor_id=vendor_id if scope is Scope.VENDOR else None,
        token_hash=hash_token(secret),
        created_at=datetime.now(UTC),
        expires_on=expires_on,
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return row, secret


_TOKENS = t.ApiToken.__table__  # type: ignore[attr-defined]
_PEOPLE = t.Person.__table__  # type: ignore[attr-defined]
# Every request asks this: one indexed lookup of the few columns a Caller needs (with the
# person a personal token belongs to: it dies with them, and acts in their name).
_CALLER_QUERY = (
    sa_select(
        _TOKENS.c.id,
        _TOKENS.c.name,
        _TOKENS.c.role,
        _TOKENS.c.lg_code,
        _TOKENS.c.prefecture,
        _TOKENS.c.vendor_id,
        _TOKENS.c.revoked_at,
        _TOKENS.c.expires_on,
        _TOKENS.c.last_used_at,
        _TOKENS.c.person_id,
        _PEOPLE.c.name.label("person_name"),
        _PEOPLE.c.active.label("person_active"),
    )
    .select_from(_TOKENS.outerjoin(_PEOPLE, _PEOPLE.c.id == _TOKENS.c.person_id))
    .where(_TOKENS.c.token_hash == bindparam("token_hash"))
)
# Last use is kept to the minute: one small write a minute per token, not one per request.
_TOUCH = (
    sa_update(_TOKENS)
    .where(_TOKENS.c.id == bindparam("token_id"))
    .values(last_used_at=bindparam("now"))
)
USE_RESOLUTION = timedelta(minutes=1)


def caller_for(session: Session, secret: str) -> Caller | None:
    """Who presents ``secret``: nobody if it is unknown, revoked or expired."""
    row = session.execute(_CALLER_QUERY, {"token_hash": hash_token(secret)}).first()
    return _valid(session, row)


def _valid(session: Session, row: Any) -> Caller | None:
    if row is None or row.revoked_at is not None or row.id is None:
        return None
    if row.person_id is not None and not row.person_active:
        return None  # a deactivated person's tokens die with them
    now = datetime.now(UTC)
    if row.expires_on is not None and row.expires_on < jst_today(now):
        return None
    last = row.last_used_at
    if last is None or now - (last if last.tzinfo else last.replace(tzinfo=UTC)) > USE_RESOLUTION:
        session.execute(_TOUCH, {"token_id": row.id, "now": now})
        session.commit()
    name = row.person_name if row.person_id is not None else row.name
    return Caller(row.id, name, row.role, row.lg_code, row.prefecture, row.vendor_id, row.person_id)


def caller_by_id(session: Session, token_id: int) -> Caller | None:
    """Who token ``token_id`` speaks for, if it is still valid: what a calendar feed it
    created may show."""
    query = (
        sa_select(*_CALLER_QUERY.selected_columns)
        .select_from(_TOKENS.outerjoin(_PEOPLE, _PEOPLE.c.id == _TOKENS.c.person_id))
        .where(_TOKENS.c.id == token_id)
    )
    return _valid(session, session.execute(query).first())


_PERSON_QUERY = sa_select(
    _PEOPLE.c.id,
    _PEOPLE.c.name,
    _PEOPLE.c.role,
    _PEOPLE.c.lg_code,
    _PEOPLE.c.prefecture,
    _PEOPLE.c.vendor_id,
).where(_PEOPLE.c.active.is_(True))


def _person_caller(row: Any) -> Caller | None:
    if row is None:
        return None
    return Caller(0, row.name, row.role, row.lg_code, row.prefecture, row.vendor_id, row.id)


def caller_of_person(session: Session, person_id: int) -> Caller | None:
    """Who an active person is, as a caller (what a calendar feed they made may show)."""
    return _person_caller(session.execute(_PERSON_QUERY.where(_PEOPLE.c.id == person_id)).first())


# ---- browser sessions ------------------------------------------------------------------

PAGE_COOKIE = "hyojunka_session"

_SESSIONS = t.PageSession.__table__  # type: ignore[attr-defined]
_OPEN_SESSION = (
    _SESSIONS.c.id == bindparam("session_hash"),
    _SESSIONS.c.ended_at.is_(None),
    _SESSIONS.c.expires_at > bindparam("now"),
)
# A browser's caller: the token's columns, through a session that is still open ...
_SESSION_QUERY = (
    sa_select(*_CALLER_QUERY.selected_columns)
    .select_from(
        _TOKENS.join(_SESSIONS, _SESSIONS.c.token_id == _TOKENS.c.id).outerjoin(
            _PEOPLE, _PEOPLE.c.id == _TOKENS.c.person_id
        )
    )
    .where(*_OPEN_SESSION)
)
# ... or the person's, through an open session of theirs, while they are active.
_PERSON_SESSION_QUERY = _PERSON_QUERY.select_from(
    _PEOPLE.join(_SESSIONS, _SESSIONS.c.person_id == _PEOPLE.c.id)
).where(*_OPEN_SESSION)


def open_page_session(session: Session, token: str, hours: float) -> str | None:
    """Sign a browser in with an API token: a new session's secret for its cookie, or None
    if the token is not valid. The token itself never goes into the cookie."""
    caller = caller_for(session, token)
    if caller is None:
        return None
    secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        t.PageSession(
            id=hash_token(secret),
            token_id=caller.token_id,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    session.commit()
    return secret


def caller_for_page(session: Session, secret: str) -> Caller | None:
    """Who a browser's cookie signs in: nobody once the session has ended or expired, or
    its token was revoked or expired."""
    params = {"session_hash": hash_token(secret), "now": datetime.now(UTC)}
    row = session.execute(_SESSION_QUERY, params).first()
    if row is not None:
        return _valid(session, row)
    return _person_caller(session.execute(_PERSON_SESSION_QUERY, params).first())


def end_page_session(session: Session, secret: str) -> None:
    row = session.get(t.PageSession, hash_token(secret))
    if row is not None and row.ended_at is None:
        row.ended_at = datetime.now(UTC)
        session.add(row)
        session.commit()
