"""The national benchmark at a tiny scale: it seeds the embedded default through the import
path and prints every figure it promises (no timing is asserted: the machine decides those)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

from cli.seed import HEADER, seed_csv, seed_projects
from workflows.calendar import jst_today


def test_seed_is_deterministic_and_a_smaller_scale_is_a_subset() -> None:
    today = jst_today(datetime.now(UTC))
    small = seed_projects(7, today, limit=40)
    again = seed_projects(7, today, limit=40)
    larger = seed_projects(7, today, limit=120)
    assert seed_csv(small) == seed_csv(again)
    assert seed_csv(larger).startswith(seed_csv(small))
    assert seed_csv(seed_projects(8, today, limit=40)) != seed_csv(small)
    # Whole bodies: every business of a body before the next body.
    bodies = [p.lg_code for p in larger]
    assert bodies == sorted(bodies, key=bodies.index)
    cells = [c for p in larger for c in p.cells.values()]
    assert any(c.startswith("done:") for c in cells)
    assert "in_progress" in cells
    assert any(p.extended_ground for p in larger)
    assert len(seed_csv(small).decode().splitlines()[0].split(",")) == len(HEADER)


def test_the_whole_country_is_every_body_and_its_businesses() -> None:
    projects = seed_projects(7, jst_today(datetime.now(UTC)))
    assert len(projects) == 1741 * 20 + 47 * 2
    assert len({p.project_id for p in projects}) == len(projects)


def test_national_benchmark_runs_at_a_tiny_scale() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.national",
            "--limit",
            "30",
            "--samples",
            "3",
            "--wave",
            "10",
            "--wave-digest-seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = out.stdout
    assert "created 30 existing 0 refused 0" in report, report
    for line in (
        "raw Temporal start+update",
        "GET /api/v1/projects?prefecture=",
        "group_by=prefecture",
        "group_by=lg_code",
        "group_by=business",
        "group_by=task",
        "GET /api/v1/projects/{id}",
        "GET /projects/{id} (page, signed in)",
        "worker",
        "09:00 wave (10 simultaneous rungs",
    ):
        assert line in report, (line, report)
    wave = report.split("09:00 wave", 1)[1]
    # Every rung of the wave reached the read model and every message went out.
    assert re.search(r"rungs in the read model\s+10/10", wave), wave
    assert "not reached" not in wave, wave
