"""Vendors and tokens: the admin's resources."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlmodel import col, select

from api import commands, queries
from api.deps import CallerDep, Limit, Offset, RowId, SessionDep
from api.queries import paged
from api.schemas import (
    PROBLEM_RESPONSES,
    Page,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    VendorCreate,
    VendorPublic,
)
from readmodel import tables as t
from workflows.roles import Scope, scope_of

router = APIRouter(prefix="/api/v1", tags=["admin"], responses=PROBLEM_RESPONSES)


@router.post("/vendors", status_code=201, response_model=VendorPublic)
def create_vendor(body: VendorCreate, caller: CallerDep, session: SessionDep) -> VendorPublic:
    return commands.register_vendor(session, caller, body)


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
    return commands.issue_token(session, caller, body)


@router.get("/tokens", response_model=Page[TokenPublic])
def list_tokens(
    caller: CallerDep,
    session: SessionDep,
    revoked: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TokenPublic]:
    """Every token with its scope, expiry and last use; never a secret."""
    return queries.tokens(session, caller, limit, offset, revoked)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: RowId, caller: CallerDep, session: SessionDep) -> Response:
    commands.revoke_token(session, caller, token_id)
    return Response(status_code=204)
