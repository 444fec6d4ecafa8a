"""RolloutWorkflow: a revised template reaches every running project on one version at once.

Each project moves by its own workflow's ``upgrade_template`` update, the same rule as a
project moved by hand and atomic in that project (a refused one is left exactly as it was),
sent by an activity that holds the Temporal client, with an update id made of the rollout's
id and the project's so that a retried call is one update. The projects come from the read
model in pages, in id order after a cursor; a few move at once. A run carries only counts,
the refusals and the cursor, and continues as new after ``per_run`` projects, so a rollout
over thousands of projects keeps short histories. Run again over the same versions, a
rollout finds only the projects still on ``from`` (those refused before, or registered
since) and moves nothing twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.core import CONFLICT
from workflows.procedure import ProcedureTemplate
from workflows.vocabulary import Vocabulary

PAGE_ACTIVITY = "rollout_page"
MOVE_ACTIVITY = "rollout_move_project"
PROJECTION_ACTIVITY = "project_rollout"

# What became of one project.
MOVED = "moved"
SKIPPED = "skipped"  # already on the new version or a newer one, or finished, when reached
REFUSED = "refused"
# The refusals a rollout lists with their reasons (about 200 bytes each); more are counted.
REFUSALS_LISTED = 2000
# The refusal recorded when a project could not be reached after every retry.
UNREACHABLE = "unreachable"

# The read model shows progress at most this often (and at every page and at the end).
PROGRESS_EVERY = timedelta(seconds=1)
LOCAL_TIMEOUT = timedelta(seconds=30)
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)
# A project's move waits for its workflow to record and project the upgrade: normally well
# under a second. The heartbeat lets a move whose worker died be tried again within seconds.
MOVE_TIMEOUT = timedelta(minutes=2)
MOVE_HEARTBEAT = timedelta(seconds=10)
# Enough for Temporal or the project's worker to come back; then the project is listed as
# unreachable and the rollout goes on (running it again tries it again).
MOVE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=30,
)


class RolloutStatus(Vocabulary):
    """Where a rollout stands."""

    RUNNING = "running", "実行中"
    COMPLETED = "completed", "完了"


@dataclass
class RolloutScope:
    """Which projects a rollout takes: running ones on ``template@from_version``, of one
    prefecture or one body when given."""

    template: str
    from_version: str
    prefecture: str | None = None
    lg_code: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.template}@{self.from_version}"


@dataclass
class PageRequest:
    scope: RolloutScope
    after: str  # a project id: the page starts after it ("" from the first)
    limit: int


@dataclass
class RolloutTarget:
    project_id: str
    workflow_id: str


@dataclass
class RolloutPage:
    projects: list[RolloutTarget]
    # Running projects in scope still on ``from`` after this page, when it was read.
    beyond: int


@dataclass
class RolloutMove:
    """One project's upgrade, as the move activity sends it."""

    project_id: str
    workflow_id: str
    template: ProcedureTemplate
    reason: str
    actor: str
    update_id: str
    request_id: str = ""
    # The version the project must still be on to be moved ("ID@FROM").
    expected: str = ""


@dataclass
class RolloutOutcome:
    project_id: str
    result: str  # MOVED | SKIPPED | REFUSED
    code: str = ""
    reason: str = ""
    japanese: str = ""


@dataclass
class RolloutRefusal:
    project_id: str
    code: str
    reason: str
    japanese: str = ""


@dataclass
class RolloutState:
    status: str = RolloutStatus.RUNNING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    moved: int = 0
    skipped: int = 0
    refused: list[RolloutRefusal] = field(default_factory=list)
    # Refusals past the first REFUSALS_LISTED: counted, not listed, so that what a new run
    # carries stays well under Temporal's payload limit however many are refused.
    refused_beyond: int = 0
    # Projects in scope not yet handled, as last counted.
    remaining: int = 0
    # The last project handed to a move: a new run lists the projects after it.
    cursor: str = ""
    runs: int = 1
    # Writes to the read model so far: an older write never overwrites a newer one.
    seq: int = 0


@dataclass
class RolloutOpening:
    """What a rollout is: the versions, the scope, who started it and why."""

    id: str
    template: str
    from_version: str
    to_version: str
    reason: str
    created_by: str  # the actor recorded in each project's audit trail
    owner: str  # who started it, as the API knows them ("token:ID", "person:ID")
    prefecture: str | None = None
    lg_code: str | None = None


@dataclass
class RolloutInput(RolloutOpening):
    # The version projects move to, loaded and validated by whoever starts the rollout.
    target: ProcedureTemplate | None = None
    # Identifies the request that started it: a repeat is that rollout, anything else a
    # conflict (see OpenRollout).
    creation_key: str = ""
    concurrency: int = 12
    page_size: int = 100
    # Projects one run handles before it continues as new.
    per_run: int = 500
    history_limit: int = 10_000
    request_id: str = ""
    state: RolloutState | None = None  # set only by continue-as-new


@dataclass
class RolloutRecord(RolloutOpening):
    """What the read model holds of a rollout."""

    state: RolloutState = field(default_factory=RolloutState)


@dataclass
class OpenRollout:
    """Sent with the start (Update-with-Start): answers once the rollout is in the read
    model, so a read right after the answer sees it."""

    creation_key: str


def update_id(rollout_id: str, project_id: str) -> str:
    """One update per project and rollout, however often its move is retried."""
    return f"rollout-{rollout_id}-{project_id}"


def workflow_id(rollout_id: str) -> str:
    return f"rollout-{rollout_id}"


@workflow.defn
class RolloutWorkflow:
    """Lists, moves a few at a time, counts, projects; continues as new when long."""

    @workflow.init
    def __init__(self, inp: RolloutInput) -> None:
        self._inp = inp
        self._s = inp.state if inp.state is not None else RolloutState()
        self._pending: list[RolloutTarget] = []
        self._listed_after = self._s.cursor
        self._beyond = 0
        self._exhausted = False
        self._running = 0
        self._done: list[RolloutOutcome] = []
        self._handled = 0  # in this run
        self._opened = False
        self._written_at: datetime | None = None

    @workflow.run
    async def run(self, inp: RolloutInput) -> RolloutState:
        s = self._s
        if s.started_at is None:
            s.started_at = workflow.now()
        await self._list()
        await self._project()
        self._opened = True
        while True:
            stopping = self._run_full()
            while not stopping and self._pending and self._running < inp.concurrency:
                self._start(self._pending.pop(0))
            if not stopping and not self._pending and not self._exhausted:
                await self._list()  # moves under way go on meanwhile
                continue
            if self._running == 0 and (stopping or not self._pending):
                break
            await workflow.wait_condition(lambda: bool(self._done))
            self._take()
            if self._written_at is None or workflow.now() - self._written_at >= PROGRESS_EVERY:
                await self._project()
        self._take()
        if self._pending or not self._exhausted:
            # Handlers must finish first, or an update in flight would be lost.
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._project()
            s.runs += 1
            workflow.continue_as_new(replace(inp, state=s))
        s.status = RolloutStatus.COMPLETED
        s.finished_at = workflow.now()
        s.remaining = 0
        await self._project()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return s

    @workflow.query
    def progress(self) -> RolloutState:
        return self._s

    @workflow.update
    async def open_rollout(self, req: OpenRollout) -> int:
        await workflow.wait_condition(lambda: self._opened)
        return self._s.seq

    @open_rollout.validator
    def _validate_open(self, req: OpenRollout) -> None:
        if req.creation_key != self._inp.creation_key:
            raise ApplicationError(
                f"rollout {self._inp.id} was started by another request",
                {
                    "code": "rollout_exists",
                    "params": {},
                    "japanese": "このロールアウトは別の依頼で開始されています",
                },
                type=CONFLICT,
                non_retryable=True,
            )

    # ---- the steps ------------------------------------------------------------------------

    def _run_full(self) -> bool:
        """Whether this run has done its share: the next run carries on from the cursor."""
        info = workflow.info()
        return (
            self._handled >= self._inp.per_run
            or info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._inp.history_limit
        )

    async def _list(self) -> None:
        inp = self._inp
        scope = RolloutScope(inp.template, inp.from_version, inp.prefecture, inp.lg_code)
        page: RolloutPage = await workflow.execute_local_activity(
            PAGE_ACTIVITY,
            PageRequest(scope, self._listed_after, inp.page_size),
            result_type=RolloutPage,
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )
        self._pending.extend(page.projects)
        if page.projects:
            self._listed_after = page.projects[-1].project_id
        self._beyond = page.beyond
        self._exhausted = not page.projects or page.beyond == 0
        self._count_remaining()

    def _start(self, target: RolloutTarget) -> None:
        self._running += 1
        self._handled += 1
        # Projects are started in id order: everything up to here is handled or under way.
        self._s.cursor = target.project_id
        asyncio.ensure_future(self._move(target))

    async def _move(self, target: RolloutTarget) -> None:
        inp = self._inp
        assert inp.target is not None
        move = RolloutMove(
            target.project_id,
            target.workflow_id,
            inp.target,
            inp.reason,
            inp.created_by,
            update_id(inp.id, target.project_id),
            inp.request_id,
            f"{inp.template}@{inp.from_version}",
        )
        try:
            outcome: RolloutOutcome = await workflow.execute_activity(
                MOVE_ACTIVITY,
                move,
                result_type=RolloutOutcome,
                start_to_close_timeout=MOVE_TIMEOUT,
                heartbeat_timeout=MOVE_HEARTBEAT,
                retry_policy=MOVE_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            said = str(cause) if cause is not None else str(err)
            outcome = RolloutOutcome(
                target.project_id,
                REFUSED,
                UNREACHABLE,
                f"the project could not be reached: {said}",
                "プロジェクトに到達できませんでした",
            )
        self._done.append(outcome)

    def _take(self) -> None:
        """Count the moves that have finished."""
        s = self._s
        done, self._done = self._done, []
        for outcome in done:
            self._running -= 1
            if outcome.result == MOVED:
                s.moved += 1
            elif outcome.result == SKIPPED:
                s.skipped += 1
            elif len(s.refused) >= REFUSALS_LISTED:
                s.refused_beyond += 1
            else:
                s.refused.append(
                    RolloutRefusal(
                        outcome.project_id, outcome.code, outcome.reason, outcome.japanese
                    )
                )
        self._count_remaining()

    def _count_remaining(self) -> None:
        self._s.remaining = len(self._pending) + self._running + self._beyond

    async def _project(self) -> None:
        s, inp = self._s, self._inp
        s.seq += 1
        s.updated_at = self._written_at = workflow.now()
        opening = RolloutOpening(
            inp.id,
            inp.template,
            inp.from_version,
            inp.to_version,
            inp.reason,
            inp.created_by,
            inp.owner,
            inp.prefecture,
            inp.lg_code,
        )
        await workflow.execute_local_activity(
            PROJECTION_ACTIVITY,
            RolloutRecord(**vars(opening), state=s),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )
