"""A creation Temporal does not answer within the deadline: 503 with Retry-After, and no
error left behind for the logs ("Future exception was never retrieved")."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import httpx
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from api.main import create_app
from readmodel.db import make_engine
from runtime.settings import Settings
from tests.api.conftest import TARGET, fresh_project


async def test_a_creation_past_the_deadline_is_503_and_leaves_no_unretrieved_error(
    dev_env: WorkflowEnvironment, database_url: str
) -> None:
    # No worker serves this queue: the creation's first update is never answered.
    settings = Settings(
        task_queue=f"nobody-{uuid.uuid4().hex}",
        database_url=database_url,
        temporal_call_timeout=0.5,
    )
    engine = make_engine(database_url)
    with Session(engine) as session:
        _, secret = create_token(session, role="admin", name="admin")
    app = create_app(settings, client=dev_env.client, engine=engine)
    loop = asyncio.get_running_loop()
    left: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: left.append(context))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                answers = await asyncio.gather(
                    *(
                        http.post(
                            "/api/v1/projects",
                            json={
                                "lg_code": code,
                                "business": business,
                                "target_go_live": TARGET.isoformat(),
                            },
                            headers={"Authorization": f"Bearer {secret}"},
                        )
                        for code, business in (fresh_project() for _ in range(5))
                    )
                )
        gc.collect()
        await asyncio.sleep(0.1)  # the loop reports what the collector found
    finally:
        loop.set_exception_handler(previous)
        engine.dispose()
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["Retry-After"]) >= 1
    assert [c["message"] for c in left] == []
