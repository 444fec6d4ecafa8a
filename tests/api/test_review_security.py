"""Security properties a user (or an attacker) would notice: secrets kept out of logs and
metrics, what errors do not reveal, exports that cannot run formulas, forms whose input is
bounded."""

from __future__ import annotations

import logging

import pytest
import structlog

from runtime.logs import redact_path, redacting_access_log
from tests.api.conftest import Api, ProjectCtx


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
