"""The vendor's desk: its late work, and a CSV of milestones fed like the bulk API, with each
refused line said in Japanese; another vendor's desk is not found."""

from __future__ import annotations

from sqlmodel import Session, col, select

from readmodel import tables as t
from tests.api.conftest import Api
from tests.api.test_bulk_feed import _projects
from tests.api.test_people import CSRF, Browser


async def _desk(api: Api, who: str) -> Browser:
    browser = Browser(api)
    resp = await browser.http.post("/login", data={"token": api.tokens[who], "csrftoken": ""})
    if resp.status_code != 303:  # the sign-in form's own CSRF token first
        await browser.get("/login")
        resp = await browser.post("/login", {"token": api.tokens[who]})
    assert resp.status_code == 303, resp.text[:300]
    return browser


async def test_a_csv_upload_feeds_milestones_and_says_each_refused_line_in_japanese(
    api: Api,
) -> None:
    projects = await _projects(api, 3)
    (others,) = await _projects(api, 1, vendor="other")
    rows = ["project_id,task_key,status,percent,note,idempotency_key"]
    for pid in projects:
        rows.append(f"{pid},system_setup,in_progress,40,環境構築中,desk-{pid}-1")
        rows.append(f"{pid},system_setup,done,,,desk-{pid}-2")
    rows.append(f"{others},system_setup,in_progress,10,,desk-other")  # line 8: not ours
    rows.append(f"{projects[0]},training,done,,,desk-training")  # line 9: the body's task
    rows.append(f"{projects[1]},system_setup,in_progress,150,,desk-pct")  # line 10
    csv_bytes = ("\ufeff" + "\n".join(rows) + "\n").encode("utf-8")  # with a BOM
    browser = await _desk(api, "vendor")
    try:
        page = await browser.get("/vendors/acme")
        assert page.status_code == 200 and "アクメ情報システム" in page.text
        token = CSRF.search(page.text)
        assert token
        sent = await browser.http.post(
            "/vendors/acme/milestones",
            data={"csrftoken": token.group(1)},
            files={"file": ("milestones.csv", csv_bytes, "text/csv")},
        )
        assert sent.status_code == 200, sent.text[:500]
        assert "6行を受け付けました" in sent.text and "3行は受け付けられませんでした" in sent.text
        table = sent.text[sent.text.index('id="refused"') :]
        assert "<td>8</td>" in table and "<td>9</td>" in table and "<td>10</td>" in table
        assert "見つかりません" in table and "担当ではない" in table and "入力内容" in table
        with Session(api.engine) as session:
            keys = session.exec(
                select(t.Milestone.idempotency_key).where(
                    col(t.Milestone.project_id).in_(projects + [others])
                )
            ).all()
        assert len(keys) == 6 and all(k.startswith("desk-") for k in keys)
        # The same file again: all accepted as duplicates, nothing recorded twice.
        token = CSRF.search(sent.text)
        assert token
        again = await browser.http.post(
            "/vendors/acme/milestones",
            data={"csrftoken": token.group(1)},
            files={"file": ("milestones.csv", csv_bytes, "text/csv")},
        )
        assert "うち重複6行" in again.text
        # Not a CSV of ours: refused whole, in Japanese.
        token = CSRF.search(again.text)
        assert token
        bad = await browser.http.post(
            "/vendors/acme/milestones",
            data={"csrftoken": token.group(1)},
            files={"file": ("x.csv", b"a,b\n1,2\n", "text/csv")},
        )
        assert bad.status_code == 422 and "見出し行に" in bad.text
        # A form without this browser's CSRF token is refused, and feeds nothing.
        forged = await browser.http.post(
            "/vendors/acme/milestones",
            data={"csrftoken": "forged"},
            files={"file": ("m.csv", csv_bytes.replace(b"desk-", b"forged-"), "text/csv")},
        )
        assert forged.status_code == 403
        with Session(api.engine) as session:
            forged_rows = session.exec(
                select(t.Milestone).where(col(t.Milestone.idempotency_key).like("forged-%"))
            ).all()
        assert forged_rows == []
        # Another vendor's desk is not found.
        assert (await browser.get("/vendors/other")).status_code == 404
    finally:
        await browser.aclose()


async def test_what_the_desk_cannot_read_is_said_in_japanese_not_a_server_error(
    api: Api,
) -> None:
    browser = await _desk(api, "vendor")
    try:
        page = await browser.get("/vendors/acme")
        token = CSRF.search(page.text)
        assert token
        long_field = b"project_id,task_key,status,percent,note,idempotency_key\n" + (
            b'"' + b"x" * 140_000 + b'",system_setup,in_progress,,,k\n'
        )
        sent = await browser.http.post(
            "/vendors/acme/milestones",
            data={"csrftoken": token.group(1)},
            files={"file": ("long.csv", long_field, "text/csv")},
        )
        assert sent.status_code == 422 and "CSVとして読めない" in sent.text
        token = CSRF.search(sent.text)
        assert token
        odd = await browser.post("/vendors/acme/capacity", {"go_lives_per_month": "²"})
        assert odd.status_code == 303 and "err=" in odd.headers["location"]
        for late in ("9999-12", "2300-01"):
            resp = await browser.get(f"/vendors/acme?from={late}")
            assert resp.status_code == 422
            api_resp = await api.http.get(
                "/api/v1/vendors/acme/capacity", params={"from": late}, headers=api.auth("vendor")
            )
            assert api_resp.status_code == 422
    finally:
        await browser.aclose()
