"""People: accounts for persons (API tokens stay for machines), who may invite whom, and
their ways in (a mailed single-use link, or the body's own identity provider).

A person holds one role and its scope, exactly as a token does, so the role table decides
what they see and do; `Caller.person_id` says the caller is a person. Deactivating ends
their page sessions and revokes their personal tokens in the same transaction, so the
next request is refused. Nobody is ever created by signing in.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any

import structlog
from sqlalchemy import func
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from api.auth import Caller, TokenScopeError, check_token_scope, create_token, hash_token
from api.errors import HTTPProblem, field_error
from api.queries import paged
from api.schemas import (
    Page,
    PersonalTokenCreate,
    PersonCreate,
    PersonInvited,
    PersonPublic,
    PersonUpdate,
    TokenCreated,
)
from readmodel import tables as t
from readmodel.registry import registry
from runtime.mail import MailConfigError, MailError, MailSender, message_id
from runtime.settings import Settings
from workflows import roles
from workflows.roles import Scope
from workflows.vocabulary import Role

log = structlog.get_logger(__name__)

NOTIFY = ("each", "daily", "none")
SIGN_IN, INVITATION = "sign_in", "invitation"
LINK_PREFIX = "lnk_"


class PersonProblem(HTTPProblem):
    """A person who may not do what was asked (signing in after deactivation, say)."""


def email_key(email: str) -> str:
    """How addresses are compared: without surrounding space, case-insensitively."""
    return email.strip().lower()


def well_formed_email(email: str) -> bool:
    """An address mail can be sent to: ASCII, one @, a local part, a dotted domain, no spaces
    or control characters, and one the mail library writes as it is (deliverability is the
    mail server's to judge)."""
    value = email.strip()
    if not value.isascii():
        return False  # a full-width ｔａｒｏ@… typed by mistake, say
    try:
        parsed = Address(addr_spec=value)
    except (ValueError, HeaderParseError, IndexError):
        return False
    if parsed.addr_spec != value:
        return False
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or ".." in domain:
        return False
    if len(value) > 254 or any(c.isspace() or ord(c) < 32 for c in value):
        return False
    return all(part for part in domain.split("."))


def person_by_email(session: Session, email: str) -> t.Person | None:
    """The person holding ``email``, active or not (compared case-insensitively)."""
    return session.exec(select(t.Person).where(t.Person.email_key == email_key(email))).first()


def person_for_sign_in(session: Session, email: str) -> t.Person | None:
    """The active person an identity provider's verified address, or a mailed link's,
    signs in; None for an unknown or deactivated address (no account is ever made)."""
    person = person_by_email(session, email)
    return person if person is not None and person.active else None


def open_person_session(session: Session, person_id: int, hours: float) -> str:
    """A new page session for an active person: the secret for the browser's cookie (only
    its hash is stored). Records the sign-in."""
    person = session.get(t.Person, person_id)
    if person is None or not person.active:
        raise PersonProblem(403, "this person may not sign in")
    secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        t.PageSession(
            id=hash_token(secret),
            person_id=person_id,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    person.last_sign_in = now
    session.add(person)
    session.commit()
    return secret


# ---- mailed links ------------------------------------------------------------------------


def _link_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def make_link(session: Session, person_id: int, purpose: str, valid: timedelta) -> str:
    """A single-use link's secret for ``person_id`` (only its hash is stored)."""
    secret = LINK_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        t.SignInLink(
            id=_link_hash(secret),
            person_id=person_id,
            purpose=purpose,
            created_at=now,
            expires_at=now + valid,
        )
    )
    session.commit()
    return secret


def use_link(session: Session, secret: str) -> t.Person | None:
    """The active person a link signs in, using it up; None for a link unknown, used,
    expired, or of a person since deactivated. One use only, even when two browsers
    present it at once: the row is marked used by a conditional update."""
    now = datetime.now(UTC)
    link = session.get(t.SignInLink, _link_hash(secret))
    if link is None or link.used_at is not None or link.expires_at is None:
        return None
    expires = link.expires_at if link.expires_at.tzinfo else link.expires_at.replace(tzinfo=UTC)
    if expires <= now:
        return None
    taken = session.execute(
        sa_update(t.SignInLink)
        .where(col(t.SignInLink.id) == link.id, col(t.SignInLink.used_at).is_(None))
        .values(used_at=now)
    )
    session.commit()
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    person = session.get(t.Person, link.person_id)
    return person if person is not None and person.active else None


# ---- who may invite whom -------------------------------------------------------------------


def scope_problem(session: Session, role: str, given: dict[str, str | None]) -> str | None:
    """Why a role's scope is wrong (None: it fits), as for tokens: a pm or approver names
    an lg_code, a prefecture its two digits, a vendor a known vendor; nothing else."""
    try:
        check_token_scope(
            session, role, given.get("lg_code"), given.get("prefecture"), given.get("vendor_id")
        )
    except TokenScopeError as exc:
        return str(exc)
    return None


def may_grant(inviter: Caller, role: str, scope: dict[str, str | None]) -> bool:
    """The programme's delegated administration: an admin invites anyone; a prefecture
    the pm and approver staff of its own bodies and its own prefecture colleagues; a
    body's pm its pm and approver colleagues; a vendor its own vendor's colleagues."""
    who = inviter.role
    if who == Role.ADMIN:
        return True
    if who == Role.PREFECTURE:
        if role in (Role.PM, Role.APPROVER):
            body = registry().get(scope.get("lg_code") or "")
            return body is not None and body.prefecture_code == inviter.prefecture
        return role == Role.PREFECTURE and scope.get("prefecture") == inviter.prefecture
    if who == Role.PM:
        return role in (Role.PM, Role.APPROVER) and scope.get("lg_code") == inviter.lg_code
    if who == Role.VENDOR:
        return role == Role.VENDOR and scope.get("vendor_id") == inviter.vendor_id
    return False


def sees_person(caller: Caller, person: t.Person) -> bool:
    """Whom a caller may list: admin (and observer) all; a prefecture its own people and
    its bodies'; a pm or approver its body's; a vendor its vendor's."""
    scope = roles.scope_of(caller.role)
    if scope is Scope.ALL:
        return True
    if scope is Scope.PREFECTURE:
        return person.prefecture == caller.prefecture or (
            person.lg_code is not None and person.lg_code[:2] == caller.prefecture
        )
    if scope is Scope.LG_CODE:
        return person.lg_code == caller.lg_code
    return person.vendor_id is not None and person.vendor_id == caller.vendor_id


def visible_people(caller: Caller) -> Any:
    """``sees_person`` as a query condition."""
    scope = roles.scope_of(caller.role)
    if scope is Scope.ALL:
        return True
    if scope is Scope.PREFECTURE:
        return or_(
            col(t.Person.prefecture) == caller.prefecture,
            func.substr(col(t.Person.lg_code), 1, 2) == caller.prefecture,
        )
    if scope is Scope.LG_CODE:
        return col(t.Person.lg_code) == caller.lg_code
    return col(t.Person.vendor_id) == caller.vendor_id


def deactivate(session: Session, person: t.Person, now: datetime | None = None) -> None:
    """The person stops at once: inactive, page sessions ended, personal tokens revoked,
    in one transaction; the row stays for the audit trail."""
    now = now or datetime.now(UTC)
    person.active = False
    person.deactivated_at = person.deactivated_at or now
    session.add(person)
    session.execute(
        sa_update(t.PageSession)
        .where(col(t.PageSession.person_id) == person.id, col(t.PageSession.ended_at).is_(None))
        .values(ended_at=now)
    )
    session.execute(
        sa_update(t.ApiToken)
        .where(col(t.ApiToken.person_id) == person.id, col(t.ApiToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    session.commit()


# ---- the commands (REST and pages alike) ---------------------------------------------------

LISTS_PEOPLE = frozenset({Role.ADMIN, Role.PREFECTURE, Role.PM, Role.VENDOR})


def list_people(
    session: Session,
    caller: Caller,
    limit: int,
    offset: int,
    role: str | None = None,
    lg_code: str | None = None,
    q: str | None = None,
) -> Page[PersonPublic]:
    """The people the caller may see (API.md: admin all, a prefecture its own and its
    bodies', a pm its body's, a vendor its vendor's), by name."""
    if caller.role not in LISTS_PEOPLE:
        raise HTTPProblem(403, f"a {caller.role} does not list people")
    query = select(t.Person).where(visible_people(caller))
    if role:
        query = query.where(t.Person.role == role)
    if lg_code:
        query = query.where(t.Person.lg_code == lg_code)
    if q:
        like = f"%{q.strip().lower()}%"
        query = query.where(
            or_(func.lower(col(t.Person.name)).like(like), col(t.Person.email_key).like(like))
        )
    return paged(
        session, query, (col(t.Person.name), col(t.Person.id)), limit, offset, PersonPublic.of
    )


def _scope_of(body: PersonCreate) -> dict[str, str | None]:
    return {"lg_code": body.lg_code, "prefecture": body.prefecture, "vendor_id": body.vendor_id}


def add_person(
    session: Session, caller: Caller, body: PersonCreate, *, check_grant: bool = True
) -> t.Person:
    """A new person (an invitation, or the operator's ``hyojunka person add``): 403 for a
    role or scope the caller may not grant, 422 for a scope that does not fit the role or a
    malformed address, 409 for an address in use. Nothing is stored on a refusal."""
    scope = _scope_of(body)
    if check_grant and not may_grant(caller, body.role, scope):
        raise HTTPProblem(403, f"a {caller.role} may not invite a {body.role} of this scope")
    problem = scope_problem(session, body.role, scope)
    if problem is not None:
        field = next((f for f in ("lg_code", "prefecture", "vendor_id") if f in problem), "role")
        raise field_error(["body", field], problem)
    if not well_formed_email(body.email):
        raise field_error(["body", "email"], "email: not a valid e-mail address")
    rule = roles.scope_of(body.role)
    fields: dict[str, Any] = {
        "name": body.name.strip(),
        "email": body.email.strip(),
        "role": str(body.role),
        "lg_code": body.lg_code if rule is Scope.LG_CODE else None,
        "prefecture": body.prefecture if rule is Scope.PREFECTURE else None,
        "vendor_id": body.vendor_id if rule is Scope.VENDOR else None,
    }
    earlier = person_by_email(session, body.email)
    if earlier is not None and earlier.active:
        raise HTTPProblem(409, "this e-mail address is already in use")
    _name_free(session, fields, None if earlier is None else earlier.id)
    if earlier is not None:
        # Someone deactivated coming back (a transfer back, say): the same row, made active
        # again with the role and scope of this invitation; the audit trail keeps its id.
        person = earlier
        for name, value in fields.items():
            setattr(person, name, value)
        person.active, person.deactivated_at, person.notify = True, None, "each"
        person.created_by = caller.actor
    else:
        person = t.Person(
            **fields,
            email_key=email_key(body.email),
            active=True,
            notify="each",
            created_by=caller.actor,
            created_at=datetime.now(UTC),
        )
    session.add(person)
    try:
        session.commit()
    except IntegrityError as exc:  # the same address invited at the same moment
        session.rollback()
        raise HTTPProblem(409, "this e-mail address is already in use") from exc
    session.refresh(person)
    return person


def _name_free(session: Session, fields: dict[str, Any], person_id: int | None) -> None:
    """No two active people of one body, prefecture or vendor share a name: the audit trail
    records a person's actions as ``{role}:{name}``, so a namesake could pass for them."""
    same = select(t.Person.id).where(
        func.lower(col(t.Person.name)) == str(fields["name"]).lower(),
        col(t.Person.active).is_(True),
        col(t.Person.lg_code) == fields["lg_code"]
        if fields["lg_code"]
        else col(t.Person.lg_code).is_(None),
        col(t.Person.prefecture) == fields["prefecture"]
        if fields["prefecture"]
        else col(t.Person.prefecture).is_(None),
        col(t.Person.vendor_id) == fields["vendor_id"]
        if fields["vendor_id"]
        else col(t.Person.vendor_id).is_(None),
    )
    if person_id is not None:
        same = same.where(col(t.Person.id) != person_id)
    if session.exec(same).first() is not None:
        raise HTTPProblem(
            409,
            "someone of this name is already here: add what tells them apart (a section)",
            japanese="同じ所属に同じ氏名の方がいます。所属課などを添えて区別してください",
        )


def _visible_person(session: Session, caller: Caller, person_id: int) -> t.Person:
    person = session.get(t.Person, person_id)
    if person is None or caller.role not in LISTS_PEOPLE or not sees_person(caller, person):
        raise HTTPProblem(404, f"no person {person_id}")
    return person


def remove_person(session: Session, caller: Caller, person_id: int) -> t.Person:
    """Deactivate (never delete): whoever may invite that person may."""
    person = _visible_person(session, caller, person_id)
    scope = {
        "lg_code": person.lg_code,
        "prefecture": person.prefecture,
        "vendor_id": person.vendor_id,
    }
    if not may_grant(caller, person.role, scope):
        raise HTTPProblem(403, f"a {caller.role} may not deactivate a {person.role}")
    deactivate(session, person)
    return person


def invitation_target(session: Session, caller: Caller, person_id: int) -> t.Person:
    """A person whose invitation may be sent again by this caller: active, and theirs to
    invite."""
    person = _visible_person(session, caller, person_id)
    scope = {
        "lg_code": person.lg_code,
        "prefecture": person.prefecture,
        "vendor_id": person.vendor_id,
    }
    if not may_grant(caller, person.role, scope):
        raise HTTPProblem(403, f"a {caller.role} may not invite a {person.role}")
    if not person.active:
        raise HTTPProblem(409, "this person has been deactivated")
    return person


def me(session: Session, caller: Caller) -> t.Person:
    if caller.person_id is None:
        raise HTTPProblem(403, "only a person (signed in, or with a personal token) has /me")
    person = session.get(t.Person, caller.person_id)
    if person is None or not person.active:
        raise HTTPProblem(401, "this person is no longer active")
    return person


def update_me(session: Session, caller: Caller, body: PersonUpdate) -> t.Person:
    person = me(session, caller)
    if body.name is not None:
        scope = {"lg_code": person.lg_code, "prefecture": person.prefecture}
        _name_free(session, {"name": body.name, **scope, "vendor_id": person.vendor_id}, person.id)
        person.name = body.name.strip()
    if body.notify is not None:
        person.notify = body.notify
    session.add(person)
    session.commit()
    session.refresh(person)
    return person


def personal_tokens(session: Session, caller: Caller) -> list[t.ApiToken]:
    person = me(session, caller)
    query = (
        select(t.ApiToken)
        .where(t.ApiToken.person_id == person.id)
        .order_by(col(t.ApiToken.id).desc())
    )
    return list(session.exec(query).all())


def make_personal_token(
    session: Session, caller: Caller, body: PersonalTokenCreate
) -> TokenCreated:
    """A token for the person's own scripts: their role and scope, dying with them."""
    person = me(session, caller)
    try:
        row, secret = create_token(
            session,
            role=person.role,
            name=body.name,
            lg_code=person.lg_code,
            prefecture=person.prefecture,
            vendor_id=person.vendor_id,
            expires_on=body.expires_on,
        )
    except TokenScopeError as exc:
        raise field_error(["body", exc.field], str(exc)) from exc
    row.person_id = person.id
    session.add(row)
    session.commit()
    session.refresh(row)
    return TokenCreated.of(row, token=secret)


def revoke_personal_token(session: Session, caller: Caller, token_id: int) -> None:
    person = me(session, caller)
    row = session.get(t.ApiToken, token_id)
    if row is None or row.person_id != person.id:
        raise HTTPProblem(404, f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(row)
        session.commit()


# ---- mail: invitations and sign-in links ---------------------------------------------------


def link_mail(settings: Settings, person: t.Person, secret: str, purpose: str) -> tuple[str, str]:
    """The Japanese subject and body of a mailed link."""
    url = f"{settings.public_url.rstrip('/')}/login/link/{secret}"
    if purpose == INVITATION:
        days = int(settings.invitation_link_days)
        subject = "【hyojunka】システム標準化 移行管理への招待"
        lead = (
            f"{person.name} 様\n\n"
            "地方公共団体情報システム標準化の移行管理（hyojunka）に招待されました。\n"
            f"次のリンクからログインしてください（{days}日間有効、1回限り）。\n"
        )
    else:
        minutes = int(settings.sign_in_link_minutes)
        subject = "【hyojunka】ログイン用リンク"
        lead = (
            f"{person.name} 様\n\n"
            f"次のリンクからログインしてください（{minutes}分間有効、1回限り）。\n"
        )
    body = (
        f"{lead}\n{url}\n\n"
        "このメールに心当たりがない場合は、リンクを開かずに破棄してください。\n"
        "（このメールは送信専用です）\n"
    )
    return subject, body


def issue_link(session: Session, person: t.Person, purpose: str, settings: Settings) -> str:
    """A new link for ``person``, who is left loaded and apart from the session (the mail is
    written after the session has closed)."""
    valid = (
        timedelta(days=settings.invitation_link_days)
        if purpose == INVITATION
        else timedelta(minutes=settings.sign_in_link_minutes)
    )
    assert person.id is not None
    secret = make_link(session, person.id, purpose, valid)
    session.refresh(person)
    session.expunge(person)
    return secret


async def send_link(settings: Settings, person: t.Person, secret: str, purpose: str) -> bool:
    """Mail a link; whether it went (a failure is logged, never shown to an anonymous
    asker: the sign-in page answers the same whatever happens)."""
    subject, body = link_mail(settings, person, secret, purpose)
    stable_id = message_id(f"{purpose}.{hash_token(secret)[:32]}", settings.public_url)
    try:
        await MailSender.from_settings(settings).send(
            person.email, subject, body, stable_id, to_name=person.name
        )
    except (MailError, MailConfigError) as exc:
        log.warning("link mail failed", purpose=purpose, person_id=person.id, error=str(exc))
        return False
    if settings.smtp_url.get_secret_value() == "":
        # The embedded default: no mail server, so the console says where to go.
        log.info("sign-in link", person=person.name, purpose=purpose, url=body.split("\n\n")[1])
    return True


def invited(person: t.Person, sent: bool) -> PersonInvited:
    return PersonInvited.of(person, invitation_sent=sent)
