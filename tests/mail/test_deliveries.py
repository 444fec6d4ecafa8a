"""Who sees to whom a mail went: a mail's recipient is a person's address, shown by
``GET /api/v1/deliveries`` only to the admin and the pm of the project's body, as the status
code and the error are; and no webhook channel may take the mail channel's id."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from readmodel import tables as t
from tests.api.conftest import RECEIVER_HOST, Api, ProjectCtx
from tests.api.test_projects import assert_problem


def _mail_attempts(api: Api, project: ProjectCtx) -> None:
    note = f"{project.id}.deadline.2026-03-31"
    with Session(api.engine) as session:
        for attempt, recipient, outcome, status, error in (
            (1, "taro@example.jp", "failed", None, "SMTPConnectError"),
            (2, "taro@example.jp", "delivered", None, None),
            (1, "hanako@example.jp", "failed", 550, "recipient refused (550)"),
        ):
            session.add(
                t.DeliveryAttempt(
                    delivery_id=f"{note}/mail",
                    notification_id=note,
                    project_id=project.id,
                    channel_id="mail",
                    at=datetime.now(UTC),
                    attempt=attempt,
                    outcome=outcome,
                    status_code=status,
                    error=error,
                    recipient=recipient,
                )
            )
        session.commit()


async def test_a_mails_recipient_only_to_admin_and_the_bodys_pm(
    api: Api, project: ProjectCtx
) -> None:
    _mail_attempts(api, project)

    async def seen(who: str) -> list[tuple[object, ...]]:
        resp = await api.http.get(
            "/api/v1/deliveries", params={"project_id": project.id}, headers=api.auth(who)
        )
        assert resp.status_code == 200, resp.text
        return [
            (i["channel_id"], i["recipient"], i["status_code"], i["error"], i["redacted"])
            for i in resp.json()["items"]
        ]

    for who in ("admin", "pm"):
        assert await seen(who) == [
            ("mail", "taro@example.jp", None, "SMTPConnectError", False),
            ("mail", "taro@example.jp", None, None, False),
            ("mail", "hanako@example.jp", 550, "recipient refused (550)", False),
        ], who
    for who in ("observer", "prefecture", "approver", "vendor"):
        assert await seen(who) == [("mail", None, None, None, True)] * 3, who


async def test_no_channel_may_take_the_mail_channels_id(api: Api, project: ProjectCtx) -> None:
    resp = await api.http.post(
        "/api/v1/channels",
        json={
            "id": "mail",
            "kind": "webhook",
            "lg_code": project.lg_code,
            "url": f"http://{RECEIVER_HOST}:8080/hook",
        },
        headers=api.auth("pm"),
    )
    assert "already in use" in assert_problem(resp, 409)["detail"]
