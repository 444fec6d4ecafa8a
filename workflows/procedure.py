"""The procedure as data: stages, tasks, dependencies, gates and planned offsets.

A template is plain data, validated once when it is loaded. A project copies the whole
template into its workflow input at start, so it is pinned in the workflow history and a
later template change never alters a running project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STAGES: tuple[str, ...] = ("current_state", "fit_gap", "procurement", "migration", "cutover")
OWNERS: tuple[str, ...] = ("municipality", "vendor", "approver")

STAGE_NAMES_JA: dict[str, str] = {
    "current_state": "現状分析",
    "fit_gap": "Fit&Gap",
    "procurement": "ベンダ調達",
    "migration": "移行",
    "cutover": "本番移行",
    "completed": "完了",
}


class TemplateError(ValueError):
    """A procedure template that cannot be used; the message names the offending item."""


@dataclass(frozen=True)
class TaskSpec:
    key: str
    name: str
    name_en: str
    stage: str
    owner: str
    depends_on: list[str] = field(default_factory=list)
    gate: bool = False
    switching_vendor_only: bool = False
    due_offset_months: float = 0.0


@dataclass(frozen=True)
class ProcedureTemplate:
    name: str
    version: str
    tasks: list[TaskSpec]

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def task(self, key: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.key == key:
                return spec
        raise KeyError(key)


def validate_template(template: ProcedureTemplate) -> ProcedureTemplate:
    """Refuse a template with a duplicate key, unknown stage/owner/dependency, or a cycle."""
    if not template.name or not template.version:
        raise TemplateError("template needs a name and a version")
    if not template.tasks:
        raise TemplateError(f"template {template.id} has no tasks")
    seen: set[str] = set()
    for spec in template.tasks:
        if not spec.key:
            raise TemplateError("a task has an empty key")
        if spec.key in seen:
            raise TemplateError(f"duplicate task key: {spec.key}")
        seen.add(spec.key)
        if spec.stage not in STAGES:
            raise TemplateError(f"task {spec.key}: unknown stage {spec.stage!r}")
        if spec.owner not in OWNERS:
            raise TemplateError(f"task {spec.key}: unknown owner {spec.owner!r}")
        if spec.gate != (spec.owner == "approver"):
            raise TemplateError(f"task {spec.key}: gates and only gates are owned by the approver")
    for spec in template.tasks:
        for dep in spec.depends_on:
            if dep not in seen:
                raise TemplateError(f"task {spec.key}: unknown dependency {dep!r}")
            if dep == spec.key:
                raise TemplateError(f"task {spec.key} depends on itself")
    _refuse_cycles(template)
    return template


def _refuse_cycles(template: ProcedureTemplate) -> None:
    deps = {spec.key: list(spec.depends_on) for spec in template.tasks}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = path[path.index(key) :] + [key]
            raise TemplateError("dependency cycle: " + " -> ".join(cycle))
        state[key] = 1
        for dep in deps[key]:
            visit(dep, path + [key])
        state[key] = 2

    for key in deps:
        visit(key, [])


def template_from_dict(data: dict[str, Any]) -> ProcedureTemplate:
    """Build and validate a template from its JSON form (as an operator would supply it)."""
    try:
        tasks = [
            TaskSpec(
                key=str(t["key"]),
                name=str(t["name"]),
                name_en=str(t.get("name_en", t["name"])),
                stage=str(t["stage"]),
                owner=str(t["owner"]),
                depends_on=[str(d) for d in t.get("depends_on", [])],
                gate=bool(t.get("gate", False)),
                switching_vendor_only=bool(t.get("switching_vendor_only", False)),
                due_offset_months=float(t.get("due_offset_months", 0.0)),
            )
            for t in data["tasks"]
        ]
        template = ProcedureTemplate(
            name=str(data["name"]), version=str(data["version"]), tasks=tasks
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TemplateError(f"malformed template: {exc!r}") from exc
    return validate_template(template)


def _t(
    stage: str,
    key: str,
    name: str,
    name_en: str,
    owner: str,
    depends_on: tuple[str, ...],
    due: float,
    *,
    gate: bool = False,
    switching_vendor_only: bool = False,
) -> TaskSpec:
    return TaskSpec(
        key=key,
        name=name,
        name_en=name_en,
        stage=stage,
        owner=owner,
        depends_on=list(depends_on),
        gate=gate,
        switching_vendor_only=switching_vendor_only,
        due_offset_months=due,
    )


# MIC handbook v1.0 items in five stages, plus the cutover items real projects need.
# Offsets are months before (negative) or after go-live: our planning defaults.
DEFAULT_TEMPLATE = validate_template(
    ProcedureTemplate(
        name="mic-handbook",
        version="1.0",
        tasks=[
            _t(
                "current_state",
                "setup_governance",
                "推進体制の立ち上げ",
                "Set up governance",
                "municipality",
                (),
                -24,
            ),
            _t(
                "current_state",
                "current_system_survey",
                "現行システム環境の基礎調査",
                "Survey current systems",
                "municipality",
                ("setup_governance",),
                -21,
            ),
            _t(
                "current_state",
                "interface_inventory",
                "連携一覧の作成",
                "List interfaces",
                "municipality",
                ("setup_governance",),
                -21,
            ),
            _t(
                "fit_gap",
                "fit_gap_analysis",
                "Fit&Gap分析",
                "Fit & gap analysis",
                "municipality",
                ("current_system_survey",),
                -19,
            ),
            _t(
                "fit_gap",
                "spec_mapping",
                "標準仕様書対応表への記載",
                "Fill in the standard-spec correspondence table",
                "municipality",
                ("fit_gap_analysis",),
                -18,
            ),
            _t(
                "fit_gap",
                "migration_plan",
                "移行計画作成",
                "Write the migration plan",
                "municipality",
                ("spec_mapping", "interface_inventory"),
                -17,
            ),
            _t(
                "fit_gap",
                "gate_migration_plan",
                "移行計画承認",
                "Approve the migration plan",
                "approver",
                ("migration_plan",),
                -16,
                gate=True,
            ),
            _t(
                "procurement",
                "rfi_preparation",
                "RFI資料の作成",
                "Prepare the RFI",
                "municipality",
                ("gate_migration_plan",),
                -16,
            ),
            _t(
                "procurement",
                "rfi",
                "RFIの実施",
                "Run the RFI",
                "municipality",
                ("rfi_preparation",),
                -15,
            ),
            _t(
                "procurement",
                "rfi_analysis",
                "RFI結果分析",
                "Analyse RFI results",
                "municipality",
                ("rfi",),
                -14,
            ),
            _t(
                "procurement",
                "budget_request",
                "予算要求",
                "Request the budget",
                "municipality",
                ("rfi_analysis",),
                -13,
            ),
            _t(
                "procurement",
                "rfp",
                "RFP",
                "Request for proposals",
                "municipality",
                ("budget_request",),
                -12,
                switching_vendor_only=True,
            ),
            _t(
                "procurement",
                "vendor_selection",
                "ベンダ選定・決定",
                "Select the vendor",
                "approver",
                ("rfp",),
                -11,
                gate=True,
            ),
            _t(
                "procurement",
                "contract",
                "契約・移行計画の詳細化",
                "Contract and detailed migration plan",
                "municipality",
                ("vendor_selection",),
                -10,
            ),
            _t(
                "procurement",
                "pia",
                "特定個人情報保護評価",
                "Privacy impact assessment",
                "municipality",
                ("contract",),
                -8,
            ),
            _t(
                "migration",
                "system_setup",
                "システム移行時の設定",
                "Configure the new system",
                "vendor",
                ("contract",),
                -6,
            ),
            _t(
                "migration",
                "data_migration",
                "データ移行",
                "Migrate data",
                "vendor",
                ("system_setup",),
                -3,
            ),
            _t("migration", "testing", "テスト", "Testing", "vendor", ("data_migration",), -2),
            _t("migration", "training", "研修", "Training", "municipality", ("system_setup",), -1),
            _t(
                "cutover",
                "go_no_go",
                "本番移行判定",
                "Go/no-go decision",
                "approver",
                ("testing", "training", "pia"),
                -0.5,
                gate=True,
            ),
            _t("cutover", "cutover", "本番移行", "Cutover", "vendor", ("go_no_go",), 0),
            _t(
                "cutover",
                "post_go_live_review",
                "稼働後確認",
                "Post-go-live review",
                "municipality",
                ("cutover",),
                1,
            ),
            _t(
                "cutover",
                "decommission",
                "旧システム停止・データ消去",
                "Decommission the old system and erase its data",
                "vendor",
                ("post_go_live_review",),
                3,
            ),
        ],
    )
)

BUILTIN_TEMPLATES: dict[str, ProcedureTemplate] = {DEFAULT_TEMPLATE.id: DEFAULT_TEMPLATE}
