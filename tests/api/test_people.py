"""People over the API and the pages, with a real SMTP server (aiosmtpd) for their mail:
delegated invitations and what they refuse, the mailed link and its single use, the
sign-in page that says the same for every address, deactivation that stops a signed-in
browser and a personal token at once, and an audit trail that names the person."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import Session, func, select

from readmodel import tables as t
from tests.api.conftest import Api, ProjectCtx
from tests.api.test_projects import assert_problem
from tests.smtp import Mailbox, body_of, link_in

CSRF = re.compile(r'name="csrftoken" value="([^"]+)"')


def address(who: str) -> str:
    return f"{who}.{uuid.uuid4().hex[:8]}@example.lg.jp"


def people_count(api: Api) -> int:
    with Session(api.engine) as session:
        return int(session.exec(select(func.count()).select_from(t.Person)).one())


async def invite(api: Api, who: str, **body: object) -> httpx.Response:
    return await api.http.post("/api/v1/people", json=body, headers=api.auth(who))


class Browser:
    """A browser of its own on the app: its cookies, and the CSRF token of its last page."""

    def __init__(self, api: Api) -> None:
        self.http = httpx.AsyncClient(
            transport=api.http._transport, base_url="http://test", follow_redirects=False
        )
        self.csrf = ""

    async def get(self, path: str) -> httpx.Response:
        resp = await self.http.get(path)
        found = CSRF.search(resp.text)
        if found:
            self.csrf = found.group(1)
        return resp

    async def post(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(path, data={**(data or {}), "csrftoken": self.csrf})

    async def sign_in_with(self, link: str) -> httpx.Response:
        page = await self.get(link)
        assert page.status_code == 200 and "ログインする" in page.text
        return await self.post("/login/link", {"secret": link.rsplit("/", 1)[1]})

    async def aclose(self) -> None:
        await self.http.aclose()


async def test_who_may_invite_whom_and_every_refusal_changes_nothing(
    api: Api, project: ProjectCtx
) -> None:
    lg, pref = project.lg_code, project.lg_code[:2]
    other_pref = "47" if pref != "47" else "01"
    other_body = "011002" if pref != "01" else "131016"
    before = people_count(api)
    refusals = [
        # a pm: its own body's pm and approver colleagues only
        ("pm", {"role": "prefecture", "prefecture": pref}, 403),
        ("pm", {"role": "pm", "lg_code": other_body}, 403),
        ("pm", {"role": "admin"}, 403),
        # a prefecture: pm and approvers of its own bodies, and its own colleagues
        ("prefecture", {"role": "pm", "lg_code": other_body}, 403),
        ("prefecture", {"role": "prefecture", "prefecture": other_pref}, 403),
        ("prefecture", {"role": "vendor", "vendor_id": "acme"}, 403),
        # a vendor: its own colleagues only; an approver or observer: nobody
        ("vendor", {"role": "vendor", "vendor_id": "other"}, 403),
        ("approver", {"role": "approver", "lg_code": lg}, 403),
        ("observer", {"role": "observer"}, 403),
        # input that cannot be right
        ("admin", {"role": "pm"}, 422),  # a pm without its body
        ("admin", {"role": "pm", "lg_code": "999999"}, 422),
    ]
    for who, body, status in refusals:
        resp = await invite(api, who, name="試験 太郎", email=address("x"), **body)
        assert_problem(resp, status)
    malformed = await invite(api, "pm", name="試験", email="not-an-address", role="pm", lg_code=lg)
    assert_problem(malformed, 422)
    assert people_count(api) == before
    # What each may do, it does.
    allowed = [
        ("admin", {"role": "prefecture", "prefecture": pref}),
        ("prefecture", {"role": "pm", "lg_code": lg}),
        ("prefecture", {"role": "prefecture", "prefecture": pref}),
        ("pm", {"role": "approver", "lg_code": lg}),
        ("vendor", {"role": "vendor", "vendor_id": "acme"}),
    ]
    for n, (who, body) in enumerate(allowed):
        resp = await invite(api, who, name=f"招待 花子{n}", email=address("ok"), **body)
        assert resp.status_code == 201, (who, body, resp.text)
        assert resp.json()["active"] and resp.json()["notify"] == "each"
    # An address in use, whatever its case, is a conflict.
    taken = address("taken")
    first = await invite(api, "pm", name="一人目", email=taken, role="pm", lg_code=lg)
    assert first.status_code == 201
    again = await invite(api, "admin", name="二人目", email=taken.upper(), role="observer")
    assert_problem(again, 409)


async def test_twenty_invitations_of_one_address_at_once_make_one_person(
    api: Api, project: ProjectCtx
) -> None:
    email = address("race")
    answers = await asyncio.gather(
        *(
            invite(api, "pm", name=f"同時 {i}", email=email, role="pm", lg_code=project.lg_code)
            for i in range(20)
        )
    )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 19
    with Session(api.engine) as session:
        rows = session.exec(select(t.Person).where(t.Person.email_key == email)).all()
    assert len(rows) == 1


async def test_an_invited_person_signs_in_once_with_the_mailed_link(
    api: Api, project: ProjectCtx, mailbox: Mailbox
) -> None:
    email = address("pm")
    made = await invite(
        api, "pm", name="山田 一郎", email=email, role="pm", lg_code=project.lg_code
    )
    assert made.status_code == 201 and made.json()["invitation_sent"] is True
    (mail,) = await mailbox.wait_for(email)
    assert mail["Subject"] == "【hyojunka】システム標準化 移行管理への招待"
    assert "山田 一郎 様" in body_of(mail) and "7日間有効" in body_of(mail)
    assert mail["Message-ID"].startswith("<invitation.")
    link = link_in(mail)
    browser = Browser(api)
    try:
        # Opening the link (as a mail system's scanner does) uses nothing up.
        assert (await browser.get(link)).status_code == 200
        signed = await browser.sign_in_with(link)
        assert signed.status_code == 200 and "ログインしました" in signed.text
        me = await browser.get("/me")
        assert me.status_code == 200 and "山田 一郎" in me.text
        # Used once: refused the second time, in another browser too.
        other = Browser(api)
        refused = await other.sign_in_with(link)
        assert refused.status_code == 410 and "このリンクは使えません" in refused.text
        await other.aclose()
        # The person's own settings, over the page.
        saved = await browser.post("/me", {"name": "山田 一郎", "notify": "daily"})
        assert saved.status_code == 303
        with Session(api.engine) as session:
            row = session.exec(select(t.Person).where(t.Person.email_key == email)).one()
            assert row.notify == "daily" and row.last_sign_in is not None
    finally:
        await browser.aclose()


async def test_the_sign_in_page_says_the_same_for_any_address_and_mails_only_people(
    api: Api, project: ProjectCtx, mailbox: Mailbox
) -> None:
    known = address("known")
    made = await invite(api, "pm", name="佐藤", email=known, role="pm", lg_code=project.lg_code)
    assert made.status_code == 201
    await mailbox.wait_for(known)  # the invitation
    unknown = address("unknown")
    inactive = address("inactive")
    gone = await invite(
        api, "pm", name="退職者", email=inactive, role="pm", lg_code=project.lg_code
    )
    await api.http.delete(f"/api/v1/people/{gone.json()['id']}", headers=api.auth("pm"))
    answers = []
    for email in (known, unknown, inactive, known.upper()):
        browser = Browser(api)
        await browser.get("/login")
        resp = await browser.post("/login/email", {"email": email})
        page = CSRF.sub("", resp.text.split("<main>")[1])  # each browser's own token
        answers.append((resp.status_code, page))
        await browser.aclose()
    assert len({a for a in answers}) == 1 and answers[0][0] == 200
    assert "ログイン用のリンクをメールで送りました" in answers[0][1]
    # Two links to the known address (asked twice), none to the others.
    sent = await mailbox.wait_for(known, count=3)
    assert [m["Subject"] for m in sent[1:]] == ["【hyojunka】ログイン用リンク"] * 2
    await asyncio.sleep(0.5)
    assert mailbox.to(unknown) == [] and len(mailbox.to(inactive)) == 1  # its invitation only
    # A link past its 15 minutes is refused.
    link = link_in(sent[-1])
    with Session(api.engine) as session:
        for row in session.exec(select(t.SignInLink)).all():
            row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
            session.add(row)
        session.commit()
    browser = Browser(api)
    refused = await browser.sign_in_with(link)
    assert refused.status_code == 410
    await browser.aclose()


async def test_a_deactivated_person_is_refused_at_once_and_stays_in_the_trail(
    api: Api, project: ProjectCtx, mailbox: Mailbox
) -> None:
    email = address("leaver")
    made = await invite(
        api, "pm", name="鈴木 次郎", email=email, role="pm", lg_code=project.lg_code
    )
    (mail,) = await mailbox.wait_for(email)
    browser = Browser(api)
    try:
        assert (await browser.sign_in_with(link_in(mail))).status_code == 200
        # A personal token for the person's scripts, made on /me.
        await browser.get("/me")
        shown = await browser.post("/me/tokens", {"name": "集計スクリプト"})
        token = re.search(r'id="new-token">([^<]+)<', shown.text)
        assert token, shown.text
        mine = {"Authorization": f"Bearer {token.group(1)}"}
        # The person works: the audit trail names them, by token and by page alike.
        moved = await api.http.post(
            f"/api/v1/projects/{project.id}/tasks/setup_governance",
            json={"status": "in_progress"},
            headers=mine,
        )
        assert moved.status_code == 200, moved.text
        page = await browser.get(f"/projects/{project.id}")
        assert page.status_code == 200
        done = await browser.post(
            f"/projects/{project.id}/tasks/setup_governance", {"status": "done"}
        )
        assert done.status_code == 303
        trail = await api.http.get(
            f"/api/v1/projects/{project.id}/events", headers=api.auth("observer")
        )
        actors = [e["actor"] for e in trail.json()["items"] if e["kind"] == "task_updated"]
        assert actors[-2:] == ["pm:鈴木 次郎", "pm:鈴木 次郎"]
        # Deactivated by a colleague: the open browser and the token are refused next time.
        gone = await api.http.delete(f"/api/v1/people/{made.json()['id']}", headers=api.auth("pm"))
        assert gone.status_code == 204
        after = await browser.get(f"/projects/{project.id}")
        assert after.status_code == 303 and after.headers["location"] == "/login"
        refused = await api.http.get(f"/api/v1/projects/{project.id}", headers=mine)
        assert_problem(refused, 401)
        # Listed as inactive, never deleted; their name stays in the trail.
        listed = await api.http.get("/api/v1/people", params={"q": "鈴木"}, headers=api.auth("pm"))
        assert [p["active"] for p in listed.json()["items"]] == [False]
    finally:
        await browser.aclose()


async def test_each_sees_the_people_of_its_scope_only(api: Api, project: ProjectCtx) -> None:
    lg, pref = project.lg_code, project.lg_code[:2]
    tag = uuid.uuid4().hex[:6]
    await invite(
        api, "admin", name=f"県 {tag}", email=address("p"), role="prefecture", prefecture=pref
    )
    await invite(api, "pm", name=f"市 {tag}", email=address("m"), role="approver", lg_code=lg)
    await invite(
        api, "vendor", name=f"社 {tag}", email=address("v"), role="vendor", vendor_id="acme"
    )
    seen = {}
    for who in ("admin", "prefecture", "pm", "vendor", "pm_elsewhere"):
        resp = await api.http.get("/api/v1/people", params={"q": tag}, headers=api.auth(who))
        assert resp.status_code == 200, resp.text
        seen[who] = sorted(p["name"] for p in resp.json()["items"])
    assert seen["admin"] == sorted([f"県 {tag}", f"市 {tag}", f"社 {tag}"])
    assert seen["prefecture"] == sorted([f"県 {tag}", f"市 {tag}"])
    assert seen["pm"] == [f"市 {tag}"] and seen["vendor"] == [f"社 {tag}"]
    assert seen["pm_elsewhere"] == []
    assert_problem(await api.http.get("/api/v1/people", headers=api.auth("observer")), 403)
    # Someone outside one's scope cannot be deactivated, nor learnt of.
    vendor_person = (
        await api.http.get("/api/v1/people", params={"q": tag}, headers=api.auth("vendor"))
    ).json()["items"][0]
    hidden = await api.http.delete(f"/api/v1/people/{vendor_person['id']}", headers=api.auth("pm"))
    assert_problem(hidden, 404)


async def test_a_page_elsewhere_cannot_sign_a_browser_in_with_its_own_link(
    api: Api, project: ProjectCtx, mailbox: Mailbox
) -> None:
    """Login CSRF: an attacker's own link posted from another site (no cookie of ours) is
    refused and opens no session; so is a mail asked for that way."""
    email = address("attacker")
    await invite(api, "pm", name="攻撃 者", email=email, role="pm", lg_code=project.lg_code)
    (mail,) = await mailbox.wait_for(email)
    secret = link_in(mail).rsplit("/", 1)[1]
    bare = httpx.AsyncClient(transport=api.http._transport, base_url="http://test")
    try:
        for path, data in (("/login/link", {"secret": secret}), ("/login/email", {"email": email})):
            resp = await bare.post(path, data=data, headers={"Origin": "https://evil.example"})
            assert resp.status_code == 403, (path, resp.status_code)
            assert "hyojunka_session" not in resp.headers.get("set-cookie", "")
    finally:
        await bare.aclose()
    # The link is still good for its owner.
    browser = Browser(api)
    try:
        assert (await browser.sign_in_with(link_in(mail))).status_code == 200
    finally:
        await browser.aclose()


async def test_addresses_and_names_mail_cannot_carry_are_refused_and_change_nothing(
    api: Api, project: ProjectCtx
) -> None:
    before = people_count(api)
    for email in (
        "a,b@x.example.jp",
        "a<b>@x.example.jp",
        "a@b@x.example.jp",
        "ｔａｒｏ@example.jp",
    ):
        resp = await invite(
            api, "pm", name="宛先 不正", email=email, role="pm", lg_code=project.lg_code
        )
        assert_problem(resp, 422)
    for name in ("改行\nあり", "   "):
        resp = await invite(
            api, "pm", name=name, email=address("n"), role="pm", lg_code=project.lg_code
        )
        assert_problem(resp, 422)
    assert people_count(api) == before


async def test_a_namesake_in_the_same_body_is_refused_and_a_leaver_can_come_back(
    api: Api, project: ProjectCtx, mailbox: Mailbox
) -> None:
    lg = project.lg_code
    first = await invite(api, "pm", name="高橋 一", email=address("t1"), role="pm", lg_code=lg)
    assert first.status_code == 201
    namesake = await invite(
        api, "pm", name="高橋 一", email=address("t2"), role="approver", lg_code=lg
    )
    assert_problem(namesake, 409)
    other_body = "011002" if lg != "011002" else "012025"
    elsewhere = await invite(
        api, "admin", name="高橋 一", email=address("t3"), role="pm", lg_code=other_body
    )
    assert elsewhere.status_code == 201  # another body's 高橋 一 is another person
    # Deactivated, then invited again: the same person comes back, active.
    email = address("back")
    made = await invite(api, "pm", name="戻り 人", email=email, role="pm", lg_code=lg)
    gone = await api.http.delete(f"/api/v1/people/{made.json()['id']}", headers=api.auth("pm"))
    assert gone.status_code == 204
    again = await invite(api, "pm", name="戻り 人", email=email, role="approver", lg_code=lg)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == made.json()["id"]
    assert again.json()["active"] and again.json()["role"] == "approver"
    await mailbox.wait_for(email, count=2)  # a new invitation
