"""Who sees how a delivery fared: the outcome to every reader of the project, the status code
and the error only to the admin and the pm of its local body (they tell what answers where)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from readmodel import tables as t
from tests.api.conftest import RECEIVER_HOST, Api, ProjectCtx
from tests.api.test_projects import assert_problem


def _attempts(api: Api, project: ProjectCtx) -> None:
    note = f"{project.id}.note"
    common = {
        "delivery_id": f"{note}/hook",
        "notification_id": note,
        "project_id": project.id,
        "channel_id": "hook",
        "at": datetime.now(UTC),
    }
    with Session(api.engine) as session:
        for attempt, outcome, status, error in (
            (1, "failed", None, "ConnectError"),
            (2, "failed", 503, "HTTP 503"),
            (3, "delivered", 200, None),
        ):
            session.add(
                t.DeliveryAttempt(
                    **common, attempt=attempt, outcome=outcome, status_code=status, error=error
                )
            )
        session.commit()


async def _deliveries(api: Api, who: str, project: ProjectCtx) -> list[dict]:
    resp = await api.http.get(
        "/api/v1/deliveries", params={"project_id": project.id}, headers=api.auth(who)
    )
    assert resp.status_code == 200, resp.text
    items: list[dict] = resp.json()["items"]
    return items


async def test_delivery_details_only_to_admin_and_the_bodys_pm(
    api: Api, project: ProjectCtx
) -> None:
    _attempts(api, project)
    for who in ("admin", "pm"):
        items = await _deliveries(api, who, project)
        assert [(i["outcome"], i["status_code"], i["error"], i["redacted"]) for i in items] == [
            ("failed", None, "ConnectError", False),
            ("failed", 503, "HTTP 503", False),
            ("delivered", 200, None, False),
        ], who
    for who in ("observer", "prefecture", "approver", "vendor"):
        items = await _deliveries(api, who, project)
        assert [(i["outcome"], i["status_code"], i["error"], i["redacted"]) for i in items] == [
            ("failed", None, None, True),
            ("failed", None, None, True),
            ("delivered", None, None, True),
        ], who
    for who in ("pm_elsewhere", "other_vendor"):
        assert await _deliveries(api, who, project) == [], who


async def test_a_closed_network_receiver_can_be_configured_when_allowed(
    api: Api, project: ProjectCtx
) -> None:
    """The api fixture allows RECEIVER_HOST alone: its neighbour on loopback stays refused."""
    body = {"id": "lgwan", "kind": "webhook", "lg_code": project.lg_code}
    made = await api.http.post(
        "/api/v1/channels",
        json={**body, "url": f"http://{RECEIVER_HOST}:8080/hook"},
        headers=api.auth("pm"),
    )
    assert made.status_code == 201, made.text
    refused = await api.http.post(
        "/api/v1/channels",
        json={**body, "id": "lgwan2", "url": "http://127.0.0.3:8080/hook"},
        headers=api.auth("pm"),
    )
    assert_problem(refused, 422)
