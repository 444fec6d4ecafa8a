"""The yardstick: a trivial Temporal workflow whose update only counts."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn
class CounterWorkflow:
    def __init__(self) -> None:
        self.count = 0
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return self.count

    @workflow.update
    def bump(self, by: int) -> int:
        self.count += by
        return self.count

    @workflow.signal
    def finish(self) -> None:
        self.done = True
