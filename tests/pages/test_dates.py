"""Dates and times as municipal staff write and read them."""

from __future__ import annotations

from datetime import UTC, date, datetime

from api.web.pages import jst, wareki


def test_dates_are_written_in_the_japanese_era() -> None:
    assert wareki(date(2026, 3, 31)) == "令和8年3月31日"
    assert wareki(date(2019, 5, 1)) == "令和元年5月1日"
    assert wareki(date(2019, 4, 30)) == "平成31年4月30日"
    assert wareki(None) == ""


def test_times_are_shown_in_japan_time() -> None:
    # 17:49 UTC is 02:49 the next morning in Tokyo.
    assert jst(datetime(2026, 11, 30, 17, 49, tzinfo=UTC)) == "2026-12-01 02:49"
