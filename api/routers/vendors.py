"""A vendor's load by month against the capacity it states (the vendors' report is in
reports.py; registering vendors in admin.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api import vendors
from api.deps import CallerDep, SessionDep
from api.schemas import (
    PROBLEM_RESPONSES,
    VendorCapacityIn,
    VendorCapacityPublic,
    VendorCapacityStated,
)

router = APIRouter(prefix="/api/v1/vendors", tags=["vendors"], responses=PROBLEM_RESPONSES)

Month = Annotated[
    str | None,
    Query(alias="from", pattern=r"^\d{4}-\d{2}$", description="YYYY-MM (default: this month)"),
]
Months = Annotated[int, Query(ge=1, le=vendors.MAX_MONTHS)]


@router.get("/{vendor_id}/capacity", response_model=VendorCapacityPublic)
def get_capacity(
    vendor_id: str,
    caller: CallerDep,
    session: SessionDep,
    start: Month = None,
    months: Months = 12,
) -> Response:
    """Per month: the vendor's go-lives (forecast, or done), its tasks due, done, open and
    overdue, over the projects the caller may see; whether its whole load is over what it
    states; and the projects going live in it."""
    answer = vendors.capacity(session, caller, vendor_id, vendors.parse_month(start), months)
    # Built from the database's own figures: dumped as it is, not validated again (a large
    # vendor's months list thousands of projects).
    return Response(answer.model_dump_json(), media_type="application/json")


@router.put("/{vendor_id}/capacity", response_model=VendorCapacityStated)
def put_capacity(
    vendor_id: str, body: VendorCapacityIn, caller: CallerDep, session: SessionDep
) -> VendorCapacityStated:
    """The vendor (or an admin) states the go-lives and tasks a month it can carry."""
    return vendors.set_capacity(session, caller, vendor_id, body)
