"""Vendors and tokens: the admin's resources."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlmodel import Session, col, select

from api.auth import TokenScopeError, create_token
from api.commands import require
from api.deps import CallerDep, Limit, Offset, SessionDep, paged
from api.errors import Problem, field_error
from api.schemas import (
    PROBLEM_RESPONSES,
    Page,
    TokenCreate,
    TokenCreated,
    VendorCreate,
    VendorPublic,
)
from readmodel import tables as t
from workflows.roles import Action, Scope, scope_of

router = APIRouter(prefix="/api/v1", tags=["admin"], responses=PROBLEM_RESPONSES)


def register_vendor(session: Session, vendor: VendorCreate) -> bool:
    """Store a vendor (the API and the command line both come here); False if taken."""
    if session.get(t.Vendor, vendor.id) is not None:
        return False
    session.add(t.Vendor(id=vendor.id, name=vendor.name, created_at=datetime.now(UTC)))
    session.commit()
    return True


@router.post("/vendors", status_code=201, response_model=VendorPublic)
def create_vendor(body: VendorCreate, caller: CallerDep, session: SessionDep) -> VendorPublic:
    require(caller, Action.VENDORS)
    if not register_vendor(session, body):
        raise Problem(409, f"vendor {body.id!r} already exists")
    return VendorPublic(id=body.id, name=body.name)


@router.get("/vendors", response_model=Page[VendorPublic])
def list_vendors(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[VendorPublic]:
    query = select(t.Vendor)
    if scope_of(caller.role) is Scope.VENDOR:  # a vendor sees itself only
        query = query.where(t.Vendor.id == caller.vendor_id)
    return paged(session, query, (col(t.Vendor.id),), limit, offset, VendorPublic.of)


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_api_token(body: TokenCreate, caller: CallerDep, session: SessionDep) -> TokenCreated:
    require(caller, Action.TOKENS)
    try:
        row, secret = create_token(
            session,
            role=body.role,
            name=body.name,
            lg_code=body.lg_code,
            prefecture=body.prefecture,
            vendor_id=body.vendor_id,
        )
    except TokenScopeError as exc:
        raise field_error(["body", exc.field], str(exc)) from exc
    assert row.id is not None
    return TokenCreated(
        token=secret,
        id=row.id,
        role=row.role,
        name=row.name,
        lg_code=row.lg_code,
        prefecture=row.prefecture,
        vendor_id=row.vendor_id,
    )
