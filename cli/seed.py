"""A realistic national data set for demos and benchmarks, as an import file.

Every local body of the national list × the businesses it runs (a prefecture its two), with
varied progress: some projects complete, most under way, some late (open tasks past due),
some on the extended track (特定移行支援システム, with grounds in MIC's proportions). The
same seed gives the same file; each project's progress depends only on the seed and its own
id, so a smaller scale is a subset of a larger one.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session, col, select

from api import commands
from api.commands import OPERATOR, Context
from api.schemas import ExtendedTrackIn, VendorCreate
from readmodel import tables as t
from readmodel.registry import LocalBody, registry
from workflows.businesses import BUSINESSES, PREFECTURE_BUSINESSES
from workflows.model import EXTENDED_TRACK_LIMIT
from workflows.procedure import DEFAULT_TEMPLATE
from workflows.vocabulary import Ground

# The vendors of the seeded projects, concentrated as the market is: five national vendors
# carry about three quarters of the projects (Zipf-like: the first twice the second), and each
# prefecture has a handful of regional ones sharing the rest. Each with the capacity it states
# (go-lives and vendor tasks a month; None: not stated).
NATIONAL_SHARE = 0.76
NATIONAL_VENDORS: tuple[tuple[str, str, int | None, int | None], ...] = (
    ("seed-fujimi", "富士見システムズ株式会社", 420, 2600),
    ("seed-sakura", "さくら情報サービス株式会社", 210, 1300),
    ("seed-yamato", "大和行政システム株式会社", 150, 900),
    ("seed-minato", "みなと計算センター株式会社", 110, None),
    ("seed-aozora", "あおぞらソリューションズ株式会社", None, None),
)
_REGIONAL_KINDS = (
    "情報システム",
    "電算",
    "計算センター",
    "データサービス",
    "ソフトウェア",
    "システムズ",
)


def _zipf(n: int) -> list[float]:
    return [1 / (k + 1) for k in range(n)]


@functools.cache
def regional_vendors(prefecture_code: str) -> tuple[tuple[str, str], ...]:
    """A prefecture's regional vendors (three to six, by its code): ids and Japanese names."""
    count = 3 + int(prefecture_code) % 4
    name = _prefecture_names()[prefecture_code].removesuffix("都").removesuffix("府")
    name = name.removesuffix("県") if name != "北海道" else name
    return tuple(
        (f"seed-r{prefecture_code}-{k + 1}", f"{name}{_REGIONAL_KINDS[k]}株式会社")
        for k in range(count)
    )


@functools.cache
def _prefecture_names() -> dict[str, str]:
    return {b.prefecture_code: b.prefecture_name for b in registry().bodies if b.is_prefecture}


def vendor_for(lg_code: str, rng: random.Random) -> str:
    """A national vendor (most projects, by Zipf weights) or one of the body's prefecture's
    regional vendors."""
    if rng.random() < NATIONAL_SHARE:
        return rng.choices(NATIONAL_VENDORS, _zipf(len(NATIONAL_VENDORS)))[0][0]
    regional = regional_vendors(lg_code[:2])
    return rng.choices(regional, _zipf(len(regional)))[0][0]


def seed_vendors() -> list[tuple[str, str]]:
    """Every vendor the seed may assign: the national ones and every prefecture's."""
    out = [(v, name) for v, name, _, _ in NATIONAL_VENDORS]
    for code in sorted(_prefecture_names()):
        out.extend(regional_vendors(code))
    return out


# The extended track's grounds as MIC counted them at the end of July 2025 (DOMAIN.md).
GROUND_WEIGHTS: dict[Ground, int] = {
    Ground.MAINFRAME: 45,
    Ground.CUSTOM_BUILT: 196,
    Ground.NO_PRODUCT: 184,
    Ground.VENDOR_SHORTAGE: 3345,
}
EXTENDED_REASON = "特定移行支援システム（シード）"
TASK_KEYS = [spec.key for spec in DEFAULT_TEMPLATE.tasks]
HEADER = ["lg_code", "business", "target_go_live", "vendor_id", "switching_vendor", *TASK_KEYS]
# Tasks a body may report as not applying to it (never a gate).
MAY_NOT_APPLY = {"interface_inventory", "pia", "training"}


@dataclass
class SeedProject:
    """One row of the seed file, and the extended track to declare after import, if any."""

    lg_code: str
    business: str
    target_go_live: date
    vendor_id: str | None
    switching_vendor: bool
    cells: dict[str, str]
    extended_ground: Ground | None = None

    @property
    def project_id(self) -> str:
        return f"{self.lg_code}-{self.business}"

    def csv_row(self) -> list[str]:
        return [
            self.lg_code,
            self.business,
            self.target_go_live.isoformat(),
            self.vendor_id or "",
            "true" if self.switching_vendor else "false",
            *(self.cells.get(k, "") for k in TASK_KEYS),
        ]


def _businesses(body: LocalBody) -> list[str]:
    """A prefecture runs its two; a municipality all twenty (about 34,900 projects in all,
    MIC counts about 34,600 systems)."""
    if body.is_prefecture:
        return sorted(PREFECTURE_BUSINESSES)
    return [b.slug for b in BUSINESSES]


def national_pairs(seed: int, lg_codes: set[str] | None = None) -> list[tuple[str, str]]:
    """Every (body, business) of the national list (or of ``lg_codes``), bodies in a seeded
    order so that a scaled-down set keeps whole bodies from every part of the country."""
    bodies = sorted(
        (b for b in registry()._by_code.values() if lg_codes is None or b.lg_code in lg_codes),
        key=lambda b: b.lg_code,
    )
    random.Random(seed).shuffle(bodies)
    return [(b.lg_code, s) for b in bodies for s in _businesses(b)]


def _rng(seed: int, project_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{project_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _future(today: date, rng: random.Random, low: int, high: int) -> date:
    return min(today + timedelta(days=rng.randint(low, high)), EXTENDED_TRACK_LIMIT)


def seed_project(lg_code: str, business: str, seed: int, today: date) -> SeedProject:
    """One project's row: its kind (complete, under way, late, extended track) and a
    progress the handbook allows (nothing done before its prerequisites, dates in order)."""
    rng = _rng(seed, f"{lg_code}-{business}")
    kind = rng.choices(["complete", "under_way", "late", "extended"], [12, 58, 20, 10])[0]
    switching = rng.random() < 0.3
    n = len(TASK_KEYS)
    ground: Ground | None = None
    if kind == "complete":
        done = n
        target = _future(today, rng, 20, 120)
    elif kind == "late":
        done = rng.randint(0, n - 8)
        target = _future(today, rng, 15, 90)  # the open tasks' due dates have passed
    elif kind == "extended":
        done = rng.randint(0, n // 2)
        target = _future(today, rng, 400, (EXTENDED_TRACK_LIMIT - today).days)
        ground = rng.choices(list(GROUND_WEIGHTS), list(GROUND_WEIGHTS.values()))[0]
    else:
        done = rng.randint(3, n - 3)
        target = _future(today, rng, 90, 540)
    vendor = None if done < 12 and rng.random() < 0.15 else vendor_for(lg_code, rng)
    if vendor is None:
        done = min(done, 14)  # vendor tasks wait for a vendor
    cells: dict[str, str] = {}
    on = today - timedelta(days=rng.randint(300, 900))
    for spec in DEFAULT_TEMPLATE.tasks[:done]:
        if spec.switching_vendor_only and not switching:
            continue  # does not apply: the template says so itself
        on = min(on + timedelta(days=rng.randint(0, 40)), today - timedelta(days=1))
        if spec.key in MAY_NOT_APPLY and rng.random() < 0.05:
            cells[spec.key] = "not_applicable"
        else:
            cells[spec.key] = f"done:{on.isoformat()}"
    # Work under way just past the frontier: tasks whose prerequisites are all complete.
    complete = set(cells)
    if not switching:
        complete |= {s.key for s in DEFAULT_TEMPLATE.tasks if s.switching_vendor_only}
    for spec in DEFAULT_TEMPLATE.tasks[done:]:
        if spec.switching_vendor_only and not switching:
            continue
        ready = all(d in complete for d in spec.depends_on)
        if ready and not spec.gate and (vendor or spec.owner != "vendor") and rng.random() < 0.6:
            cells[spec.key] = "in_progress"
    return SeedProject(lg_code, business, target, vendor, switching, cells, ground)


def seed_projects(
    seed: int,
    today: date,
    scale: float = 1.0,
    limit: int | None = None,
    lg_codes: set[str] | None = None,
) -> list[SeedProject]:
    """The national set (or that of ``lg_codes``), or the first ``scale`` of it (or ``limit``
    projects)."""
    pairs = national_pairs(seed, lg_codes)
    count = round(len(pairs) * scale) if limit is None else limit
    return [seed_project(c, b, seed, today) for c, b in pairs[: max(0, count)]]


def seed_csv(projects: list[SeedProject]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(p.csv_row() for p in projects)
    return out.getvalue().encode()


# ---- into a running service (the import path, then the extended-track declarations) ----


def register_vendors(session: Session, projects: list[SeedProject] | None = None) -> int:
    """The seed's vendors (those ``projects`` use, or every one) not yet registered, each
    national one with the capacity it states unless one is stated already; how many were
    added."""
    used = None if projects is None else {p.vendor_id for p in projects}
    added = 0
    for vendor_id, name in seed_vendors():
        if used is not None and vendor_id not in used:
            continue
        if session.get(t.Vendor, vendor_id) is None:
            commands.register_vendor(session, OPERATOR, VendorCreate(id=vendor_id, name=name))
            added += 1
    for vendor_id, _, go_lives, tasks in NATIONAL_VENDORS:
        known = session.get(t.Vendor, vendor_id) is not None
        if known and session.get(t.VendorCapacity, vendor_id) is None:
            capacity = t.VendorCapacity(
                vendor_id=vendor_id,
                go_lives_per_month=go_lives,
                tasks_per_month=tasks,
                updated_at=datetime.now(UTC),
                updated_by=OPERATOR.actor,
            )
            session.add(capacity)
    session.commit()
    return added


def _undeclared(session: Session, ids: list[str]) -> list[str]:
    rows = session.exec(
        select(t.Project.id, t.Project.extended_track).where(col(t.Project.id).in_(ids))
    )
    return [pid for pid, track in rows if track is None]


async def declare_extended_tracks(
    ctx: Context, projects: list[SeedProject], on_done: Callable[[], None] | None = None
) -> int:
    """Declare the extended track of the seeded projects meant for it that have not declared
    it yet (so a second seed changes nothing); ``import_concurrency`` at a time."""
    meant = {p.project_id: p for p in projects if p.extended_ground is not None}
    todo = await ctx.db.run(_undeclared, list(meant))
    slots = asyncio.Semaphore(max(1, ctx.settings.import_concurrency))

    async def declare(pid: str) -> None:
        p = meant[pid]
        assert p.extended_ground is not None
        body = ExtendedTrackIn(
            ground=p.extended_ground, planned_go_live=p.target_go_live, reason=EXTENDED_REASON
        )
        async with slots:
            await commands.declare_extended_track(ctx, OPERATOR, pid, body)
        if on_done is not None:
            on_done()

    async with asyncio.TaskGroup() as group:
        for pid in todo:
            group.create_task(declare(pid))
    return len(todo)
