"""benchmarks.load's summary of repeated runs: each figure's median, lowest and highest."""

from __future__ import annotations

from benchmarks.load import summary


def test_repeated_runs_are_summed_up_by_their_median_and_range() -> None:
    runs = [
        {"creation throughput (x raw, target >= 0.5)": x, "failed requests": 0.0}
        for x in (0.41, 0.52, 0.47)
    ]
    lines = summary(runs).splitlines()
    assert lines[0] == "over 3 runs: median (lowest - highest)"
    assert lines[1].split()[-4:] == ["0.47", "(0.41", "-", "0.52)"]
    assert lines[2].split()[-4:] == ["0.00", "(0.00", "-", "0.00)"]
