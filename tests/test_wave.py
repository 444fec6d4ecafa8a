"""The 09:00 wave benchmark at 20 projects: every rung of the wave reaches the read model and
every notice goes out through its prefecture's gathering, one message per body and audience
(no timing is asserted)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from benchmarks.wave import run_wave, wave_inputs
from runtime.settings import Settings


async def test_wave_records_every_rung_and_sends_one_message_per_body(
    clock_env: WorkflowEnvironment, engine: Engine
) -> None:
    # A short gathering window keeps the test short; the wave's work is the same.
    settings = Settings(notification_digest_seconds=2)
    result = await run_wave(clock_env, engine, settings, 20, give_up=120)
    bodies = {inp.lg_code for inp in wave_inputs(20, result.rung_instant.date())}

    assert result.complete
    assert result.rungs_seen == result.rungs_expected == 20
    # Every project's reminder goes to its body's PM: its prefecture's gathering takes them
    # all and hands one message per body to a workflow of its own, which delivers it.
    prefectures = {code[:2] for code in bodies}
    assert result.digests_expected == result.digests_done == len(prefectures)
    assert result.notices_sent == 20
    assert result.notifications_started == len(bodies)
    assert result.notifications_open == 0
    assert result.rungs_drained is not None and result.digests_done_after is not None
