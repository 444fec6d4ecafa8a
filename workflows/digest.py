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
activity (a local activity for gatherings started before ``GATHERING_RULES``), so its history
stays small however many bodies it serves, and then stays a while, dropping any notice it has
taken that a retried project hands over again.

Projects started under the sixth generation hand a turn's notices over in the local activity
that writes the turn to the read model (``project_migration``), once the write is applied:
one marker, and one activation round trip of the worker, for both.
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
from workflows.model import HandOver, Notification

HAND_OVER_ACTIVITY = "hand_over_notices"
HAND_OVER_TIMEOUT = timedelta(seconds=30)
HAND_OVER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)


@dataclass
class DigestInput:
    key: str
    window_seconds: float = 60.0
    first: list[Notification] = field(default_factory=list)
    # A prefecture's gathering (fifth generation): one message per body, audience and vendor
    # of this wave hour (``digest_key``); without it, the gathering is that message.
    split_hour: str | None = None
    # The rules the gathering was started under (see GATHERING_RULES); 0 for gatherings
    # started before they were recorded, which is what their inputs decode to.
    rules: int = 0


# 1: a gathering hands its messages on by an activity, not a local activity, and stays a
# while after, dropping every notice it has taken. A local activity acts before its workflow
# task is committed: when that task failed (its worker killed, or a notice arriving as it
# completed), the retry composed the messages again with the notices come meanwhile, under
# other ids, and the pm heard the same notices twice. An activity acts only once its messages
# are in the history. And a project whose own task was retried hands its notices over again:
# to a gathering that had closed, that started another one, which sent them again.
GATHERING_RULES = 1


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
    @workflow.init
    def __init__(self, inp: DigestInput) -> None:
        self._notes: list[Notification] = []
        # Every notice taken (first rules): one handed over again is dropped even after its
        # message has gone. Gatherings started before drop only one they still hold.
        self._taken: set[str] | None = set() if inp.rules >= 1 else None

    @workflow.signal
    def add(self, note: Notification) -> None:
        if self._taken is None:
            if all(n.id != note.id for n in self._notes):
                self._notes.append(note)
        elif note.id not in self._taken:
            self._taken.add(note.id)
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
        window = timedelta(seconds=inp.window_seconds)
        await workflow.sleep(window)  # the wave gathers
        sent: list[str] = []
        while self._notes:  # what came while the last one was delivered goes too
            notes, self._notes = self._notes, []
            if inp.split_hour is None:
                await notification.deliver(combine(inp.key, notes))
            else:
                await deliver_by_body(notes, inp.split_hour, inp.rules)
            sent += [n.id for n in notes]
            if inp.rules >= 1 and not self._notes and await self._more_come(window):
                await workflow.sleep(window)  # they gather as in a gathering of their own
        return sent

    async def _more_come(self, window: timedelta) -> bool:
        """Whether new notices come in the moments after the messages went (first rules).
        A project whose workflow task was retried (its worker killed just after it handed its
        notices over) hands them over again: found here, they are dropped; found after the
        gathering closed, they would start another gathering, and be sent again."""
        try:
            await workflow.wait_condition(lambda: bool(self._notes), timeout=_settle(window))
        except TimeoutError:
            return False
        return True


def _settle(window: timedelta) -> timedelta:
    """How long a gathering stays after its messages went: the window, at most a minute
    (a retried workflow task comes back within seconds of its worker's restart)."""
    return min(window, timedelta(minutes=1))


async def deliver_by_body(notes: list[Notification], hour: str, rules: int = 0) -> None:
    """A prefecture's gathered notices: one message per body, audience and vendor (in the
    order their first notices came), each handed in one activity to a NotificationWorkflow
    of its own, which delivers it and retries its channels. Delivering them here would make
    the gathering wait on hundreds of channel lookups in one history."""
    groups: dict[str, list[Notification]] = {}
    for note in notes:
        groups.setdefault(digest_key(note, hour), []).append(note)
    messages = [HandOver(combine(key, group)) for key, group in groups.items()]
    if rules < 1:
        await hand_over_all(messages)  # as gatherings started before recorded it
        return
    await workflow.execute_activity(
        HAND_OVER_ACTIVITY,
        messages,
        start_to_close_timeout=HAND_OVER_TIMEOUT,
        retry_policy=HAND_OVER_RETRY,
    )


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
