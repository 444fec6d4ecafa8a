"""Security properties a user (or an attacker) would notice: secrets kept out of logs and
metrics, what errors do not reveal, exports that cannot run formulas, forms whose input is
bounded."""

from __future__ import annotations

import csv
import html
import io
import logging
import re
from dataclasses import asdict
from ipaddress import ip_address

import httpx
import openpyxl
import pytest
import structlog
from sqlmodel import Session

from api.auth import PAGE_COOKIE, open_page_session
from api.web.pages import CSRF_COOKIE
from readmodel import outbound
from readmodel.outbound import IPAddress
from runtime.logs import redact_path, redacting_access_log
from tests.api.conftest import Api, ProjectCtx, fresh_project
from tests.api.test_projects import assert_problem
from tests.api.test_work import counts
from workflows.procedure import DEFAULT_TEMPLATE


async def test_calendar_feed_secrets_stay_out_of_logs_and_metrics(
    api: Api, project: ProjectCtx, caplog: pytest.LogCaptureFixture
) -> None:
    made = await api.http.post(
        "/api/v1/calendar",
        json={"kind": "project", "target": project.id},
        headers=api.auth("observer"),
    )
    assert made.status_code == 201, made.text
    path = made.json()["url"].removeprefix("http://127.0.0.1:8000")
    secret = path.rsplit("/", 1)[1].removesuffix(".ics")
    assert secret.startswith("cal_")
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        assert (await api.http.get(path)).status_code == 200
        # A wrong address (a typo of a real one, say) is just as secret.
        assert (await api.http.get(path.replace("cal_", "cal_x"))).status_code == 404
    requests = [e for e in logs if e["event"] == "request"]
    assert len(requests) == 2
    assert {e["path"] for e in requests} == {"/api/v1/calendar/{feed}.ics"}
    assert secret not in repr(logs)
    # (httpx, the test's own client, logs the address it asked for: not the service's log.)
    served = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert secret[4:] not in repr(served)
    metrics = (await api.http.get("/metrics")).text
    assert secret[4:] not in metrics


def test_access_log_lines_of_a_feed_carry_no_secret() -> None:
    """uvicorn's access log, when it is on, names the path: it is redacted there too."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5000", "GET", "/api/v1/calendar/cal_s3cr3t-value.ics?x=1", "1.1", 200),
        None,
    )
    assert redacting_access_log().filter(record)
    assert "s3cr3t" not in record.getMessage()
    assert "/api/v1/calendar/{feed}.ics" in record.getMessage()
    assert redact_path("/api/v1/projects/131016-x") == "/api/v1/projects/131016-x"


async def test_exports_hold_names_as_text_never_as_formulas(api: Api) -> None:
    """A name an admin stored (a template's task) that looks like a formula stays text in
    the CSV and Excel downloads; the figures stay numbers."""
    evil = '=HYPERLINK("http://evil.example/","詳細")'
    tasks = [asdict(spec) for spec in DEFAULT_TEMPLATE.tasks]
    tasks[0]["name"] = evil
    tasks[1]["name"] = "@SUM(1+1)"
    stored = await api.http.post(
        "/api/v1/templates",
        json={"id": "formula-handbook", "version": "1", "name": "-手順書", "tasks": tasks},
        headers=api.auth("admin"),
    )
    assert stored.status_code == 201, stored.text
    lg_code, business = fresh_project()
    made = await api.create(lg_code, business, template="formula-handbook@1")
    assert made.status_code == 201, made.text
    params = {"group_by": "task", "lg_code": lg_code}

    csv_answer = await api.http.get(
        "/api/v1/reports/progress", params={**params, "format": "csv"}, headers=api.auth("admin")
    )
    assert csv_answer.status_code == 200
    rows = {
        r["group"]: r for r in csv.DictReader(io.StringIO(csv_answer.content.decode("utf-8-sig")))
    }
    assert rows[tasks[0]["key"]]["name"] == "'" + evil
    assert rows[tasks[1]["key"]]["name"] == "'@SUM(1+1)"
    assert rows[tasks[2]["key"]]["name"] == tasks[2]["name"]  # an ordinary name as it is
    assert rows[tasks[0]["key"]]["steps"] == "1"

    xlsx_answer = await api.http.get(
        "/api/v1/reports/progress", params={**params, "format": "xlsx"}, headers=api.auth("admin")
    )
    assert xlsx_answer.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx_answer.content)).active
    header = [c.value for c in sheet[1]]
    cells = {r[0].value: dict(zip(header, r, strict=True)) for r in sheet.iter_rows(min_row=2)}
    name = cells[tasks[0]["key"]]["name"]
    assert name.data_type == "s" and name.value == "'" + evil
    assert cells[tasks[1]["key"]]["name"].value == "'@SUM(1+1)"
    steps = cells[tasks[0]["key"]]["steps"]
    assert steps.data_type == "n" and steps.value == 1


async def test_a_refused_webhook_name_does_not_say_where_it_resolves(
    api: Api, project: ProjectCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channel validation is no map of the internal network: a name that resolves to private
    addresses is refused without naming them."""
    private = {
        "hooks.intranet.example.jp": [ip_address("10.20.30.40")],
        "mixed.example.jp": [ip_address("203.0.114.9"), ip_address("fd00::1:2")],
    }

    def resolve(host: str, port: int) -> list[IPAddress]:
        return private[host.rstrip(".")]

    monkeypatch.setattr(outbound, "resolve", resolve)
    for host, addresses in private.items():
        body = {"id": "c1", "kind": "webhook", "url": f"https://{host}/hook"}
        resp = await api.http.post(
            "/api/v1/channels", json={**body, "lg_code": project.lg_code}, headers=api.auth("pm")
        )
        problem = assert_problem(resp, 422)
        assert problem["errors"][0]["loc"] == ["body", "url"]
        assert host in problem["detail"] and "not a public address" in problem["detail"]
        for addr in addresses:
            assert str(addr) not in resp.text
        assert "private" not in resp.text and "unique local" not in resp.text
    assert (await api.http.get("/api/v1/channels", headers=api.auth("pm"))).json()["total"] == 0


def _before(key: str) -> set[str]:
    """Every task ``key`` waits on, directly or not."""
    specs = {s.key: s for s in DEFAULT_TEMPLATE.tasks}
    found: set[str] = set()
    todo = list(specs[key].depends_on)
    while todo:
        k = todo.pop()
        if k not in found:
            found.add(k)
            todo.extend(specs[k].depends_on)
    return found


async def signed_in(api: Api, who: str, page: str) -> str:
    """The API's client signed in to the pages as ``who``: the CSRF token ``page``'s forms
    carry."""
    with Session(api.engine) as session:
        secret = open_page_session(session, api.tokens[who], 1.0)
    assert secret
    api.http.cookies.set(PAGE_COOKIE, secret)
    answer = await api.http.get(page)
    assert answer.status_code == 200, answer.text
    found = re.search(r'name="csrftoken" value="([^"]+)"', answer.text)
    assert found
    return html.unescape(found.group(1))


async def test_a_page_milestone_with_an_overlong_key_is_refused_in_japanese(api: Api) -> None:
    lg_code, business = fresh_project()
    done = {k: {"status": "done"} for k in [*_before("contract"), "contract"]}
    made = await api.create(lg_code, business, progress=done, switching_vendor=True)
    assert made.status_code == 201, made.text
    project_id = made.json()["id"]
    token = await signed_in(api, "vendor", f"/projects/{project_id}")
    before = counts(api, project_id)
    form = {"csrftoken": token, "task_key": "system_setup", "status": "in_progress"}
    sent = await api.http.post(
        f"/projects/{project_id}/milestones", data={**form, "idempotency_key": "k" * 201}
    )
    assert sent.status_code == 303
    shown = await api.http.get(sent.headers["location"])
    assert "200文字" in shown.text
    assert counts(api, project_id) == before
    project = await api.http.get(f"/api/v1/projects/{project_id}", headers=api.auth("vendor"))
    status = {x["key"]: x["status"] for x in project.json()["tasks"]}
    assert status["system_setup"] == "not_started"
    # A key the API would take is taken from the page too.
    sent = await api.http.post(
        f"/projects/{project_id}/milestones", data={**form, "idempotency_key": "k" * 200}
    )
    assert sent.status_code == 303 and "err=" not in sent.headers["location"]
    assert counts(api, project_id) != before


async def test_a_channel_id_in_use_by_another_body_is_not_described(
    api: Api, project: ProjectCtx
) -> None:
    ours = {"id": "hooks-1", "kind": "slack", "url": "https://hooks.example.jp/T1"}
    made = await api.http.post(
        "/api/v1/channels", json={**ours, "lg_code": project.lg_code}, headers=api.auth("pm")
    )
    assert made.status_code == 201, made.text
    elsewhere = "011002" if project.lg_code != "011002" else "012025"
    theirs = await api.http.post(
        "/api/v1/channels",
        json={**ours, "url": "https://hooks.example.jp/T2", "lg_code": elsewhere},
        headers=api.auth("pm_elsewhere"),
    )
    again = await api.http.post(
        "/api/v1/channels", json={**ours, "lg_code": project.lg_code}, headers=api.auth("pm")
    )
    assert assert_problem(theirs, 409)["detail"] == assert_problem(again, 409)["detail"]
    assert project.lg_code not in theirs.text and "T1" not in theirs.text
    assert_problem(
        await api.http.delete("/api/v1/channels/hooks-1", headers=api.auth("pm_elsewhere")), 404
    )
    listed = await api.http.get("/api/v1/channels", headers=api.auth("pm"))
    assert [c["url"] for c in listed.json()["items"]] == [ours["url"]]


async def test_a_csrf_token_of_one_session_is_refused_in_another(api: Api) -> None:
    """The pages' CSRF token is bound to the page session: one taken from another session
    (an attacker's own, say, planted with its cookie in a victim's browser) is refused."""
    api.token("observer_b", "observer")
    first = await signed_in(api, "observer", "/reports")
    first_cookie = api.http.cookies.get(CSRF_COOKIE)
    transport = api.http._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as other:
        with Session(api.engine) as session:
            secret = open_page_session(session, api.tokens["observer_b"], 1.0)
        assert secret
        other.cookies.set(PAGE_COOKIE, secret)
        assert (await other.get("/reports")).status_code == 200
        # The first session's token, with its cookie, sent from the second session.
        other.cookies.clear()
        other.cookies.set(PAGE_COOKIE, secret)
        other.cookies.set(CSRF_COOKIE, first_cookie)
        refused = await other.post("/logout", data={"csrftoken": first})
        assert refused.status_code == 403
        assert "<html" in refused.text
        other.cookies.clear()
        other.cookies.set(PAGE_COOKIE, secret)
        assert (await other.get("/reports")).status_code == 200  # still signed in
        # Its own token works.
        page = await other.get("/reports")
        own = html.unescape(re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1))
        assert own != first
        signed_out = await other.post("/logout", data={"csrftoken": own})
        assert signed_out.status_code == 303
        assert (await other.get("/reports")).status_code == 303  # to the sign-in page
    # The first session is untouched and its own token still works.
    assert (await api.http.post("/logout", data={"csrftoken": first})).status_code == 303
