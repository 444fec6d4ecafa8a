"""Joint procurements' side effects: the read model, and updates to member projects."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.projection import upsert
from readmodel import tables as t
from workflows.procurement import (
    MEMBER_ACTIVITY,
    MEMBER_CLOSED,
    PROJECTION_ACTIVITY,
    MemberCall,
    ProcurementState,
)


def _plain(value: Any) -> Any:
    """A value as a JSON column holds it (dates and times as ISO text)."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def write_procurement(session: Session, s: ProcurementState) -> None:
    """The procurement row and its members, as the workflow holds them (never older)."""
    row = session.get(t.Procurement, s.id)
    if row is not None and row.seq > s.seq:
        return
    upsert(
        session,
        t.Procurement,
        [
            {
                "id": s.id,
                "workflow_id": f"procurement-{s.id}",
                "name": s.name,
                "lead_lg_code": s.lead_lg_code,
                "lead_name": s.lead_name,
                "prefecture": s.prefecture,
                "business": s.business,
                "business_name": s.business_name,
                "status": s.status,
                "vendor_id": s.vendor_id,
                "tasks": [_plain(asdict(x)) for x in s.tasks.values()],
                "events": [_plain(asdict(e)) for e in s.journal],
                "seq": s.seq,
                "created_at": s.created_at,
                "updated_at": s.updated_at,
            }
        ],
    )
    session.execute(
        delete(t.ProcurementMember).where(t.ProcurementMember.procurement_id == s.id)  # type: ignore[arg-type]
    )
    members = [(w, "member") for w in s.members] + [(w, "left") for w in s.left]
    upsert(
        session,
        t.ProcurementMember,
        [
            {"procurement_id": s.id, "project_id": w.removeprefix("migration-"), "status": st}
            for w, st in members
        ],
    )
    session.commit()


class ProcurementActivities:
    def __init__(self, client: Client, engine: Engine) -> None:
        self._client = client
        self._engine = engine

    @activity.defn(name=PROJECTION_ACTIVITY)
    async def project_procurement(self, state: ProcurementState) -> None:
        def write() -> None:
            with Session(self._engine) as session:
                write_procurement(session, state)

        await asyncio.to_thread(write)

    @activity.defn(name=MEMBER_ACTIVITY)
    async def procurement_member_update(self, call: MemberCall) -> None:
        """Send one update to a member project; its refusal comes back as the same
        non-retryable error, so the procurement refuses for the same reason."""
        handle = self._client.get_workflow_handle(call.workflow_id)
        try:
            await handle.execute_update(call.update, call.arg, id=call.update_id)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # The member's workflow has closed (or never ran): retrying cannot reach it.
            raise ApplicationError(
                f"project {call.workflow_id.removeprefix('migration-')} is closed",
                {
                    "code": "member_closed",
                    "params": {},
                    "japanese": "参加プロジェクトは終了しています",
                },
                type=MEMBER_CLOSED,
                non_retryable=True,
            ) from None
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise ApplicationError(
                    cause.message, *cause.details, type=cause.type, non_retryable=True
                ) from None
            raise
