"""One message per audience and body for a wave of rungs.

On a working morning every late task of a body reaches its rung at 09:00 at once, in as
many projects. Each project hands its escalation notices (and its deadline notice: an
import of a body's late projects is such a wave) to a DigestWorkflow named by the body,
the audience and the hour: the first starts it (an abandoned child), the others signal it.
It collects them for a short window and delivers one message on the body's channels: one
notice as it is, several as one list. A notice that finds the digest gone starts the next
one.

Projects started under the fourth generation of rules hand their notices over in one local
activity (``hand_over_notices``): a signal-with-start of each notice's digest, or the start of
its own NotificationWorkflow, from the worker's client. One marker event in the project's
history instead of a child start (two events, and its answer a workflow task of its own)
and, when the digest was already gathering, a failed start and an external signal.

Projects started under the fifth generation of rules hand their notices to the digest of
their prefecture and hour instead (``prefecture_key``), which delivers them split by body,
audience and vendor as before: the same messages, but a wave or an import across a
prefecture's bodies signals one gathering workflow rather than starting one per body. A
new workflow per body and hour was most of what a late project's registration cost the
Temporal server. A turn's notices for one gathering go in one signal (``add_all``). When
its window ends, the gathering hands each message to a NotificationWorkflow of its own in one
local activity, so its history stays small however many bodies it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows import notification
from workflows.calendar import JST
from workflows.model import Notification

HAND_OVER_ACTIVITY = "hand_over_notices"
HAND_OVER_TIMEOUT = timedelta(seconds=30)
HAND_OVER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)


@dataclass
class HandOver:
    """A notice for the worker to hand over: to the digest named ``key`` (gathering for
    ``window_seconds``), or, without a key, to a NotificationWorkflow of its own."""

    note: Notification
    key: str | None = None
    window_seconds: float = 60.0
    # Set for a prefecture's gathering: the wave hour it splits its notices by.
    split_hour: str | None = None


@dataclass
class DigestInput:
    key: str
    window_seconds: float = 60.0
    first: list[Notification] = field(default_factory=list)
    # A prefecture's gathering (fifth generation): one message per body, audience and vendor
    # of this wave hour (``digest_key``); without it, the gathering is that message.
    split_hour: str | None = None


def digest_key(note: Notification, now_jst_hour: str) -> str:
    """The same body, the same people, the same wave: one message."""
    vendor = note.vendor_id if "vendor" in note.audience else ""
    return f"{note.lg_code}.{'+'.join(sorted(note.audience))}.{vendor}.{now_jst_hour}"


def prefecture_key(note: Notification, now_jst_hour: str) -> str:
    """The gathering of a prefecture's wave: every body's notices of that hour."""
    return f"{note.prefecture}.{now_jst_hour}"


def gathering_id(task_queue: str, key: str) -> str:
    """The workflow id of a prefecture's gathering: of the workers that serve its projects'
    queue, which deliver what it gathers."""
    return f"digest-{task_queue}-{key}"


def combine(key: str, notes: list[Notification]) -> Notification:
    """Several notices as one: a list of what is late, linked to the escalations page. Only
    escalations: ``escalation.digest``; with deadline notices among them: ``digest``."""
    if len(notes) == 1:
        return notes[0]
    first = notes[0]
    lines = "\n".join(f"・{n.subject}" for n in notes)
    # Each notice's subject names its body and system after its 【level】.
    systems = dict.fromkeys(n.subject.partition("】")[2].partition(":")[0] for n in notes)
    rungs_only = all(n.kind.startswith("escalation.") for n in notes)
    label = "エスカレーション" if rungs_only else "期限のお知らせ"
    subject = f"【{label} {len(notes)}件】{'、'.join(s for s in systems if s)}"
    data: dict[str, object] = {"notifications": [n.id for n in notes]}
    data["items"] = [n.data for n in notes]
    if not rungs_only:
        data["kinds"] = [n.kind for n in notes]
    return replace(
        first,
        id=f"digest.{key}.{len(notes)}.{notes[-1].id}",
        project_id="",
        kind="escalation.digest" if rungs_only else "digest",
        subject=subject,
        text=f"{subject}\n{lines}",
        data=data,
    )


@workflow.defn
class DigestWorkflow:
    def __init__(self) -> None:
        self._notes: list[Notification] = []

    @workflow.signal
    def add(self, note: Notification) -> None:
        if all(n.id != note.id for n in self._notes):
            self._notes.append(note)

    @workflow.signal
    def add_all(self, notes: list[Notification]) -> None:
        """A project's turn's notices at once (a notice held already is dropped)."""
        for note in notes:
            self.add(note)

    @workflow.run
    async def run(self, inp: DigestInput) -> list[str]:
        for note in inp.first:
            self.add(note)
        await workflow.sleep(timedelta(seconds=inp.window_seconds))  # the wave gathers
        sent: list[str] = []
        while self._notes:  # what came while the last one was delivered goes too
            notes, self._notes = self._notes, []
            if inp.split_hour is None:
                await notification.deliver(combine(inp.key, notes))
            else:
                await deliver_by_body(notes, inp.split_hour)
            sent += [n.id for n in notes]
        return sent


async def deliver_by_body(notes: list[Notification], hour: str) -> None:
    """A prefecture's gathered notices: one message per body, audience and vendor (in the
    order their first notices came), each handed in one local activity to a
    NotificationWorkflow of its own, which delivers it and retries its channels. Delivering
    them here would make the gathering wait on hundreds of channel lookups in one history."""
    groups: dict[str, list[Notification]] = {}
    for note in notes:
        groups.setdefault(digest_key(note, hour), []).append(note)
    await hand_over_all([HandOver(combine(key, group)) for key, group in groups.items()])


def wave_hour(now: datetime) -> str:
    return now.astimezone(JST).strftime("%Y%m%d%H")


async def hand_over(note: Notification, key: str, window_seconds: float) -> None:
    """From a project's workflow: start the digest with this notice, or add it to the one
    gathering; if that one has just gone, the notice goes on its own."""
    digest_id = f"digest-{key}"
    try:
        await workflow.start_child_workflow(
            DigestWorkflow.run,
            DigestInput(key, window_seconds, [note]),
            id=digest_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        return
    except WorkflowAlreadyStartedError:
        pass
    try:
        await workflow.get_external_workflow_handle(digest_id).signal(DigestWorkflow.add, note)
    except Exception:  # the digest closed between the two: this notice is sent alone
        await notification.send(note)


async def hand_over_all(items: list[HandOver]) -> None:
    """From a project's workflow: hand every notice of a turn over in one local activity.
    A retry repeats only what changes nothing: a digest drops a notice it holds, and a
    notice's own workflow is started once (its id is never reused)."""
    if items:
        await workflow.execute_local_activity(
            HAND_OVER_ACTIVITY,
            items,
            start_to_close_timeout=HAND_OVER_TIMEOUT,
            retry_policy=HAND_OVER_RETRY,
        )
