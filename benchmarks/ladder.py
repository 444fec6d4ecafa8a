"""Wall time and timers of a project left untouched for its whole plan, under time skipping.

    .venv/bin/python -m benchmarks.ladder

A fresh time-skipping server; a project whose first reminder is three weeks out; the clock
skipped past its last rung (about 27 months). Prints the wall time, the escalations raised,
and from the workflow's history the timers started and the most pending at once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from tests.workflows.helpers import (
    describe,
    future_target,
    new_input,
    own_worker,
    start,
    timer_profile,
)
from workflows.ladder import LEVELS, rung_instant


async def main() -> None:
    async with own_worker("bench") as (env, queue):
        handle = await start(env.client, queue, new_input(await future_target(env, 24)))
        snap = await describe(handle)
        rungs = [
            rung_instant(task.due_date, level, snap.state.ladder)
            for task in snap.state.tasks.values()
            if task.due_date is not None
            for level in LEVELS
        ]
        began_virtual = await env.get_current_time()
        span = max(rungs) - began_virtual + timedelta(days=1)
        began = time.perf_counter()
        await env.sleep(span)
        wall = time.perf_counter() - began
        snap = await describe(handle)
        started, peak = await timer_profile(handle)
    print(f"virtual span            {span.days} days ({span.days / 365.25:.2f} years)")
    print(f"wall time               {wall:.2f} s")
    print(f"escalations raised      {len(snap.state.escalations)} (expected {len(rungs)})")
    print(f"distinct rung instants  {len(set(rungs))}")
    print(f"timers started          {started}")
    print(f"timers pending at once  {peak} at most")


if __name__ == "__main__":
    asyncio.run(main())
