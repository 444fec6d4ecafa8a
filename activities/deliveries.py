"""What every delivery attempt leaves behind, webhook or mail: a metric and a row."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity

from readmodel import tables as t
from workflows.model import Delivery


def record_attempt(
    engine: Engine,
    d: Delivery,
    attempt: int,
    outcome: str,
    status: int | None,
    error: str | None,
    recipient: str | None = None,
) -> None:
    """One delivery attempt, counted and written to ``delivery_attempt`` (webhooks and mail
    alike; a mail's names its recipient). Blocking: run it on a thread."""
    activity.metric_meter().create_counter(
        "hyojunka_notification_attempts", "Notification delivery attempts, by outcome"
    ).add(1, {"outcome": outcome, "kind": d.channel.kind})
    with Session(engine) as session:
        session.add(
            t.DeliveryAttempt(
                delivery_id=d.delivery_id,
                notification_id=d.notification.id,
                project_id=d.notification.project_id,
                channel_id=d.channel.id,
                attempt=attempt,
                at=datetime.now(UTC),
                outcome=outcome,
                status_code=status,
                error=error,
                recipient=recipient,
            )
        )
        session.commit()
