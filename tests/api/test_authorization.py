"""The authorisation matrix of API.md, run against the live app: every caller below, in and
out of scope, on each kind of route, gets exactly the status the contract promises.

Writes are sent with input the rules refuse once the caller is let in (a blocked task, a
gate not awaiting, a past date), so an allowed caller gets 409 or 422, never a change, and
one not allowed gets 403 (in scope) or 404 (out of scope); no token, a revoked one or an
expired one gets 401. Nothing here changes the project.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select

from readmodel import tables as t
from tests.api.conftest import Api, ProjectCtx
from tests.api.test_work import counts

# Who asks, named by their relation to the project (body A in prefecture PA, vendor acme).
CALLERS = (
    "admin",
    "observer",
    "pm_here",
    "pm_elsewhere",
    "approver_here",
    "approver_elsewhere",
    "pref_here",
    "pref_elsewhere",
    "vendor_here",
    "vendor_elsewhere",
    "nobody",
    "revoked",
    "expired",
)
UNAUTHENTICATED = {"nobody": 401, "revoked": 401, "expired": 401}
OUT_OF_SCOPE = {
    "pm_elsewhere": 404,
    "approver_elsewhere": 404,
    "pref_elsewhere": 404,
    "vendor_elsewhere": 404,
}


IN_SCOPE = ("admin", "observer", "pm_here", "approver_here", "pref_here", "vendor_here")


def _row(**given: int) -> dict[str, int]:
    return {**OUT_OF_SCOPE, **UNAUTHENTICATED, **given}


# route -> caller -> status. Every cell is from API.md's role table.
MATRIX: dict[str, dict[str, int]] = {
    # Every role reads what its scope shows.
    "read the project": _row(**{c: 200 for c in IN_SCOPE}),
    "read its audit trail": _row(**{c: 200 for c in IN_SCOPE}),
    "change a municipality task": _row(
        admin=409,  # let in, then refused by the rules: the task is blocked
        observer=403,
        pm_here=409,
        approver_here=403,
        pref_here=403,
        vendor_here=403,  # not its task
    ),
    "report a milestone": _row(
        admin=409,
        observer=403,
        pm_here=403,
        approver_here=403,
        pref_here=403,
        vendor_here=409,  # its task, not reached yet
    ),
    "decide a gate": _row(
        admin=403,  # four eyes: an admin decides nothing
        observer=403,
        pm_here=403,
        approver_here=409,  # not awaiting a decision
        pref_here=403,
        vendor_here=403,
    ),
    "replan": _row(
        admin=422,  # a date in the past
        observer=403,
        pm_here=422,
        approver_here=403,
        pref_here=403,
        vendor_here=403,
    ),
    "assign the vendor": _row(
        admin=409,  # already the vendor
        observer=403,
        pm_here=409,
        approver_here=403,
        pref_here=403,
        vendor_here=403,
    ),
    "list tokens": {
        **UNAUTHENTICATED,
        **{c: 403 for c in CALLERS if c not in UNAUTHENTICATED},
        "admin": 200,
    },
}


def _request(project: ProjectCtx, route: str) -> tuple[str, str, dict | None, dict[str, str]]:
    base = f"/api/v1/projects/{project.id}"
    return {
        "read the project": ("GET", base, None, {}),
        "read its audit trail": ("GET", f"{base}/events", None, {}),
        "change a municipality task": (
            "POST",
            f"{base}/tasks/fit_gap_analysis",
            {"status": "done"},
            {},
        ),
        "report a milestone": (
            "POST",
            f"{base}/milestones",
            {"task_key": "system_setup", "status": "done"},
            {"Idempotency-Key": "matrix"},
        ),
        "decide a gate": (
            "POST",
            f"{base}/gates/gate_migration_plan/decision",
            {"outcome": "approve"},
            {},
        ),
        "replan": ("POST", f"{base}/replan", {"target_go_live": "2020-01-01", "reason": "x"}, {}),
        "assign the vendor": ("POST", f"{base}/vendor", {"vendor_id": "acme", "reason": "x"}, {}),
        "list tokens": ("GET", "/api/v1/tokens", None, {}),
    }[route]


def _tokens(api: Api, project: ProjectCtx) -> None:
    here, elsewhere = project.lg_code, "011002" if project.lg_code != "011002" else "012025"
    api.token("pm_here", "pm", lg_code=here)
    api.token("pm_elsewhere", "pm", lg_code=elsewhere)
    api.token("approver_here", "approver", lg_code=here)
    api.token("approver_elsewhere", "approver", lg_code=elsewhere)
    api.token("pref_here", "prefecture", prefecture=here[:2])
    api.token("pref_elsewhere", "prefecture", prefecture="47" if here[:2] != "47" else "46")
    api.tokens["vendor_here"] = api.tokens["vendor"]
    api.tokens["vendor_elsewhere"] = api.tokens["other_vendor"]
    api.token("revoked", "observer")
    api.token("expired", "observer")
    with Session(api.engine) as session:
        for name, change in (("revoked", "revoked_at"), ("expired", "expires_on")):
            row = session.exec(select(t.ApiToken).where(t.ApiToken.name == name)).one()
            if change == "revoked_at":
                row.revoked_at = datetime.now(UTC)
            else:
                row.expires_on = date.today() - timedelta(days=2)
            session.add(row)
        session.commit()


def _headers(api: Api, caller: str) -> dict[str, str]:
    return {} if caller == "nobody" else api.auth(caller)


@pytest.fixture
async def matrix_project(api: Api, project: ProjectCtx) -> ProjectCtx:
    _tokens(api, project)
    return project


async def test_every_caller_gets_what_api_md_promises(api: Api, matrix_project: ProjectCtx) -> None:
    project = matrix_project
    before = counts(api, project.id)
    wrong: list[str] = []
    cells = 0
    for route, expected in MATRIX.items():
        method, url, body, extra = _request(project, route)
        for caller in CALLERS:
            resp: httpx.Response = await api.http.request(
                method, url, json=body, headers={**_headers(api, caller), **extra}
            )
            cells += 1
            want = expected[caller]
            if resp.status_code != want:
                wrong.append(f"{route} as {caller}: {resp.status_code}, want {want}")
            elif want >= 400:
                assert resp.headers["content-type"].startswith("application/problem+json")
    assert not wrong, "\n".join(wrong)
    assert cells == len(MATRIX) * len(CALLERS)
    assert counts(api, project.id) == before  # nothing any of them sent changed anything
