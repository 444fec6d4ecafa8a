"""The mail benchmark at a small size: every person who chose each gets exactly one message
per digest of their audience, the daily readers one round-up, nobody with none anything (no
timing is asserted)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from benchmarks.mail import run_mail_wave


async def test_mail_wave_gives_each_person_one_message_per_digest(
    dev_env: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> None:
    result = await run_mail_wave(
        dev_env, engine, bodies=5, people=40, notices=60, window=3, data_dir=tmp_path
    )
    assert result.problems == []
    # 5 bodies x 4 audiences; every pm and approver of a body (and the vendor's and the
    # prefecture's people) hears some, so messages go out and round-ups too.
    assert result.digests == 20
    assert result.messages_expected > 0
    assert result.messages_received == result.messages_expected
    assert result.daily_received == result.daily_expected > 0
