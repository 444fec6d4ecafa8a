"""Schemathesis against the running service's /openapi.json with a token of every role: valid
and invalid input on every operation, and sequences that follow the links it infers; never a
server error; every refusal is problem+json; every valid input's answer matches the schema.

The API and the worker run as the ``hyojunka api`` and ``hyojunka worker`` commands (real
processes, uvicorn, the dev server, SQLite), as a vendor's tool would meet them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import response_schema_conformance
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation
from sqlmodel import Session
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from benchmarks.harness import HYOJUNKA, free_port, until_ready
from readmodel import tables as t
from readmodel.db import make_engine, upgrade_schema
from workflows.reconcile import SCHEDULE_ID as RECONCILE_SCHEDULE
from workflows.survey import SCHEDULE_ID as SURVEY_SCHEDULE

LG_CODE = "131016"  # 千代田区
ROLES = {
    "admin": {},
    "pm": {"lg_code": LG_CODE},
    "approver": {"lg_code": LG_CODE},
    "prefecture": {"prefecture": LG_CODE[:2]},
    "vendor": {"vendor_id": "acme"},
    "observer": {},
}
# Cases per role and generation mode, spread over the operations; some operations have
# fewer distinct inputs than that, hence the smaller floor: six roles, over 1,000 in all.
CASES_PER_MODE = 120
AT_LEAST_PER_ROLE = 170
# Sequences of linked calls per role.
STATEFUL_SCENARIOS = 10


@dataclass
class Service:
    base: str
    tokens: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
async def schedules_removed(dev_env: WorkflowEnvironment) -> AsyncIterator[None]:
    """The worker registers the deployment's Schedules on the shared dev server for its own
    task queue; they must not outlive it."""
    yield
    for schedule in (SURVEY_SCHEDULE, RECONCILE_SCHEDULE):
        with contextlib.suppress(RPCError):
            await dev_env.client.get_schedule_handle(schedule).delete()


@pytest.fixture(scope="module")
def service(
    dev_env: WorkflowEnvironment,
    schedules_removed: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{root / 'readmodel.db'}"
    upgrade_schema(url)
    engine = make_engine(url)
    tokens = {}
    with Session(engine) as session:
        session.add(t.Vendor(id="acme", name="アクメ情報システム"))
        session.commit()
        for role, scope in ROLES.items():
            tokens[role] = create_token(session, role=role, name=f"fuzz-{role}", **scope)[1]
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "HYOJUNKA_DATA_DIR": str(root / "data"),
        "HYOJUNKA_DATABASE_URL": url,
        "HYOJUNKA_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HYOJUNKA_TASK_QUEUE": f"fuzz-{uuid.uuid4().hex}",
        "HYOJUNKA_API_PORT": str(port),
        "HYOJUNKA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HYOJUNKA_LOG_JSON": "true",
        # The fuzzer is one very busy caller per role: not what the limits are about.
        "HYOJUNKA_RATE_LIMIT_PER_TOKEN": "",
        "HYOJUNKA_RATE_LIMIT_PER_ADDRESS": "",
    }
    log = root / "service.log"
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("ab"))
        for command in ("worker", "api"):
            proc = subprocess.Popen([HYOJUNKA, command], env=env, stdout=out, stderr=out)
            stack.callback(proc.wait, 10)
            stack.callback(proc.terminate)
        base = f"http://127.0.0.1:{port}"
        until_ready(base, 60)
        # One project in the scope of every scoped token, so reads and writes reach the
        # workflow and not only the 404 of an unknown id.
        created = httpx.post(
            f"{base}/api/v1/projects",
            json={
                "lg_code": LG_CODE,
                "business": "resident_registry",
                "target_go_live": "2029-04-01",
                "vendor_id": "acme",
            },
            headers={"Authorization": f"Bearer {tokens['admin']}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        yield Service(base, tokens, log)


def _problem(response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Never a server error; every error is application/problem+json with the fields RFC 9457
    and API.md name."""
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), where
        body = response.json()
        assert {"type", "title", "status", "detail"} <= set(body), where
        assert body["status"] == response.status_code, where


def _fuzz(
    service: Service,
    operation: APIOperation,
    mode: GenerationMode,
    auth: dict[str, str],
    examples: int,
    cases: Counter[str],
    statuses: Counter[int],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        # The role's token, whatever the generator put in the security header.
        case.headers = {**(case.headers or {}), **auth}
        response = case.call(base_url=service.base, timeout=30)
        cases[mode.value] += 1
        statuses[response.status_code] += 1
        _problem(response, case)
        if mode is GenerationMode.POSITIVE:
            try:
                case.validate_response(response, checks=[response_schema_conformance])
            except FailureGroup as failures:
                raise AssertionError(str(failures)) from None

    try:
        fuzz()
    except Unsatisfiable:
        # No invalid input exists for an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE, operation.label


@pytest.mark.parametrize("role", list(ROLES))
def test_fuzz_every_operation_with_each_role(service: Service, role: str) -> None:
    schema = schemathesis.openapi.from_url(f"{service.base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    auth = {"Authorization": f"Bearer {service.tokens[role]}"}
    per_operation = -(-CASES_PER_MODE // len(operations))
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(service, operation, mode, auth, per_operation, cases, statuses)
    print(f"{role}: {dict(cases)} over {len(operations)} operations; statuses {dict(statuses)}")
    assert sum(cases.values()) >= AT_LEAST_PER_ROLE


@pytest.mark.heavy  # about 40 s more, on top of the 50 s of the cases above
@pytest.mark.parametrize("role", list(ROLES))
def test_fuzz_stateful_links_with_each_role(service: Service, role: str) -> None:
    """Sequences that follow the links schemathesis infers from the answers (a project's id
    from its creation into its tasks, gates, milestones; a procurement's into its members),
    so the later calls reach live workflows rather than unknown ids."""
    schema = schemathesis.openapi.from_url(f"{service.base}/openapi.json")
    inferred = schema.apply_stateful_inference(None)
    assert inferred.selected > 0
    auth = {"Authorization": f"Bearer {service.tokens[role]}"}
    steps: Counter[int] = Counter()

    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            case.headers = {**(case.headers or {}), **auth}
            return {"timeout": 30}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, *_: object, **__: object
        ) -> None:
            steps[response.status_code] += 1
            _problem(response, case)

    Scenario.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=8,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    print(f"{role} stateful: {sum(steps.values())} calls; statuses {dict(steps)}")
    assert sum(steps.values()) >= STATEFUL_SCENARIOS
