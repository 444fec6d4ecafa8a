"""Delivery of notifications: generic JSON webhooks and Slack-compatible hooks over httpx, and
mail to the people of a notice's audience (activities/mail.py).

Every attempt is written to ``delivery_attempt`` with its outcome (for mail, one row per
recipient). A failed attempt raises so
Temporal retries it with backoff; the delivery id stays the same on every attempt so a
receiver can drop repeats.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deliveries import record_attempt
from activities.mail import MAIL_CHANNEL_ID, MAIL_KIND, NoticeMail, anyone_wants
from readmodel import tables as t
from readmodel.outbound import RefusedAddress
from runtime.mail import MailSender
from workflows.model import Channel, Delivery, Notification
from workflows.notification import DELIVER_ACTIVITY, RESOLVE_ACTIVITY
from workflows.procurement import PROCUREMENT_PREFIX

log = structlog.get_logger(__name__)

DELIVERY_HEADER = "X-Hyojunka-Delivery"


def webhook_body(d: Delivery, link: str) -> dict[str, Any]:
    n = d.notification
    return {
        "delivery_id": d.delivery_id,
        "notification_id": n.id,
        "kind": n.kind,
        "project_id": n.project_id,
        "lg_code": n.lg_code,
        "prefecture": n.prefecture,
        "audience": n.audience,
        "subject": n.subject,
        "text": n.text,
        "data": n.data,
        "link": link,
    }


def slack_body(d: Delivery, link: str) -> dict[str, Any]:
    n = d.notification
    return {"text": f"{n.text}\n<{link}|プロジェクトを開く>"}


def notice_link(public_url: str, project_id: str) -> str:
    """The page that acts on a notice: its project's, its joint procurement's (whose
    notices are about ``procurement:ID``), or, for a digest spanning projects, the
    escalations page."""
    if project_id.startswith(PROCUREMENT_PREFIX):
        return f"{public_url}/procurements/{project_id.removeprefix(PROCUREMENT_PREFIX)}"
    if project_id:
        return f"{public_url}/projects/{project_id}"
    return f"{public_url}/escalations"


class NotificationActivities:
    """One shared httpx client, the mail sender and the read-model engine, all built by the
    worker. The client is to be activities.outbound's, which sends only to allowed addresses;
    without a mail sender no notice goes by mail."""

    def __init__(
        self,
        engine: Engine,
        http: httpx.AsyncClient,
        channels: list[Channel],
        public_url: str,
        mail: MailSender | None = None,
    ) -> None:
        self._engine = engine
        self._http = http
        self._channels = channels
        self._public_url = public_url.rstrip("/")
        self._mail = NoticeMail(engine, mail, public_url) if mail is not None else None

    @activity.defn(name=RESOLVE_ACTIVITY)
    async def resolve_channels(self, note: Notification) -> list[Channel]:
        """The channels that should hear ``note``, by id and kind only: an address (a Slack
        hook's is its secret) never enters a workflow's history, where anyone with the
        Temporal UI could read it; the delivery looks it up when it sends.

        Mail is one channel for the whole audience, named only when someone of it wants mail
        now: a body without people costs no activity, and the people themselves (addresses
        included) are looked up by the delivery as it sends."""
        found = list(self._channels) + await asyncio.to_thread(self._body_channels, note.lg_code)
        if self._mail is not None and await asyncio.to_thread(anyone_wants, self._engine, note):
            found.append(Channel(id=MAIL_CHANNEL_ID, kind=MAIL_KIND, url="", lg_code=note.lg_code))
        return [replace(ch, url="") for ch in found]

    def _body_channels(self, lg_code: str) -> list[Channel]:
        with Session(self._engine) as session:
            rows = session.exec(
                select(t.NotificationChannel).where(t.NotificationChannel.lg_code == lg_code)
            ).all()
        return [Channel(id=r.id, kind=r.kind, url=r.url, lg_code=r.lg_code) for r in rows]

    def _address_of(self, channel: Channel) -> str | None:
        """Where a channel sends now (None: it has been removed since the notice was made)."""
        for configured in self._channels:
            if configured.id == channel.id and channel.lg_code is None:
                return configured.url
        with Session(self._engine) as session:
            row = session.get(t.NotificationChannel, channel.id)
        return row.url if row is not None else None

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_notification(self, d: Delivery) -> int:
        info = activity.info()
        link = notice_link(self._public_url, d.notification.project_id)
        if d.channel.kind == MAIL_KIND:
            if self._mail is None:
                raise ApplicationError(
                    f"delivery {d.delivery_id}: this worker sends no mail",
                    type="MailNotConfigured",
                    non_retryable=True,
                )
            return await self._mail.deliver(d, info.attempt, link)
        body = slack_body(d, link) if d.channel.kind == "slack" else webhook_body(d, link)
        url = await asyncio.to_thread(self._address_of, d.channel)
        if url is None:
            await asyncio.to_thread(self._record, d, info.attempt, "failed", None, "removed")
            log.info("notification delivery", delivery_id=d.delivery_id, outcome="removed")
            raise ApplicationError(
                f"delivery {d.delivery_id}: channel {d.channel.id} was removed",
                type="ChannelRemoved",
                non_retryable=True,
            )
        status: int | None = None
        error: str | None = None
        detail: str | None = None
        refused = False
        try:
            resp = await self._http.post(url, json=body, headers={DELIVERY_HEADER: d.delivery_id})
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except RefusedAddress as exc:
            refused, error, detail = True, "refused: not a public address", str(exc)
        except httpx.HTTPError as exc:
            # Only the kind of failure is recorded for the API: the message (errno text,
            # addresses) is for the operator's log.
            error, detail = type(exc).__name__, str(exc)
        outcome = "delivered" if error is None else "failed"
        await asyncio.to_thread(self._record, d, info.attempt, outcome, status, error)
        log.info(
            "notification delivery",
            delivery_id=d.delivery_id,
            channel=d.channel.id,
            attempt=info.attempt,
            outcome=outcome,
            status_code=status,
            error=error,
            detail=detail,
        )
        if error is not None:
            # An address the policy refuses stays refused until the channel changes.
            raise ApplicationError(
                f"delivery {d.delivery_id} failed: {error}",
                type="OutboundRefused" if refused else None,
                non_retryable=refused,
            )
        return status or 0

    def _record(
        self, d: Delivery, attempt: int, outcome: str, status: int | None, error: str | None
    ) -> None:
        record_attempt(self._engine, d, attempt, outcome, status, error)
