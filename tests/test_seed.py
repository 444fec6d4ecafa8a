"""The national data set's vendors: concentrated as the market is, the same from the same seed."""

from __future__ import annotations

from collections import Counter
from datetime import date

from cli.seed import NATIONAL_VENDORS, regional_vendors, seed_projects, seed_vendors
from readmodel.registry import registry

TODAY = date(2026, 4, 15)


def test_seed_vendors_concentrated_as_the_market_is() -> None:
    projects = seed_projects(2026, TODAY)
    served = Counter(p.vendor_id for p in projects if p.vendor_id is not None)
    total = sum(served.values())
    top5 = [v for v, _ in served.most_common(5)]
    assert set(top5) == {v for v, *_ in NATIONAL_VENDORS}
    assert 0.70 <= sum(served[v] for v in top5) / total <= 0.82
    assert served[top5[0]] > 1.5 * served[top5[1]]  # Zipf-like, not five equals
    known = dict(seed_vendors())
    assert set(served) <= set(known)
    prefectures = {b.prefecture_code for b in registry().bodies if b.is_prefecture}
    assert len(prefectures) == 47
    for code in prefectures:
        regional = [v for v, _ in regional_vendors(code)]
        assert 3 <= len(regional) <= 6
        # Each serves a few of its prefecture's bodies' projects, and only theirs.
        mine = [p for p in projects if p.vendor_id in regional]
        assert mine and all(p.lg_code[:2] == code for p in mine)
        assert all(served[v] < served[top5[-1]] for v in regional)
    assert all(v.isascii() and known[v].endswith("株式会社") for v in known)


def test_seed_vendors_the_same_from_the_same_seed() -> None:
    first = [(p.project_id, p.vendor_id) for p in seed_projects(7, TODAY, limit=300)]
    assert first == [(p.project_id, p.vendor_id) for p in seed_projects(7, TODAY, limit=300)]
    assert first != [(p.project_id, p.vendor_id) for p in seed_projects(8, TODAY, limit=300)]
