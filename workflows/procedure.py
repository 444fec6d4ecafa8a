"""The procedure as data: stages, tasks, dependencies, gates and planned offsets.

A template is plain data, validated once when it is loaded. A project copies the whole
template into its workflow input at start, so it is pinned in the workflow history and a
later template change never alters a running project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The migration's five stages, then the DX plan's four steps (自治体DX全体手順書).
STAGES: tuple[str, ...] = (
    "current_state",
    "fit_gap",
    "procurement",
    "migration",
    "cutover",
    "dx_step0",
    "dx_step1",
    "dx_step2",
    "dx_step3",
)
OWNERS: tuple[str, ...] = ("municipality", "vendor", "approver")
# A migration is one body × one business under the legal deadline; a programme is one per
# body (its id the template's), with the target dates the body sets itself.
MIGRATION, PROGRAMME = "migration", "programme"
KINDS: tuple[str, ...] = (MIGRATION, PROGRAMME)

STAGE_NAMES_JA: dict[str, str] = {
    "current_state": "現状分析",
    "fit_gap": "Fit&Gap",
    "procurement": "ベンダ調達",
    "migration": "移行",
    "cutover": "本番移行",
    "dx_step0": "ステップ0 認識共有・機運醸成",
    "dx_step1": "ステップ1 全体方針の決定",
    "dx_step2": "ステップ2 推進体制の整備",
    "dx_step3": "ステップ3 DXの取組みの実行",
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
    kind: str = MIGRATION

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
    if template.kind not in KINDS:
        raise TemplateError(f"template {template.id}: kind must be one of {', '.join(KINDS)}")
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
            name=str(data["name"]),
            version=str(data["version"]),
            tasks=tasks,
            kind=str(data.get("kind", MIGRATION)),
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

# The DX plan's item ② (情報システムの標準化): not reported by hand, it follows the body's
# migration projects and is done when every one of them is live or not applicable.
STANDARDISATION_ITEM = "standardisation"
_STEP2 = ("dx_organisation", "dx_talent", "dx_planning", "dx_prefecture_collaboration")


def _priority(key: str, name: str, name_en: str) -> TaskSpec:
    # Step 3's priority items start once the organisation and the plan stand; due at the
    # plan's target date.
    return _t("dx_step3", key, name, name_en, "municipality", _STEP2, 0)


# A body's whole DX plan (自治体DX推進計画), from the structure of MIC's 自治体DX全体手順書:
# steps 0-3, step 2's four items, step 3's eight priority items. Who owns each item, the
# one decision point (the overall policy, decided by the body's leadership) and the offsets
# (months before the plan's target date) are this product's planning defaults, not MIC's.
DX_PLAN_TEMPLATE = validate_template(
    ProcedureTemplate(
        name="dx-plan",
        version="1.0",
        kind=PROGRAMME,
        tasks=[
            _t(
                "dx_step0",
                "dx_leadership_awareness",
                "首長・幹部の認識共有",
                "Leadership shares the aims",
                "municipality",
                (),
                -36,
            ),
            _t(
                "dx_step0",
                "dx_staff_momentum",
                "職員の機運醸成",
                "Build momentum among staff",
                "municipality",
                ("dx_leadership_awareness",),
                -34,
            ),
            _t(
                "dx_step1",
                "dx_policy_draft",
                "全体方針（ビジョン・工程表）の策定",
                "Draft the overall policy (vision and roadmap)",
                "municipality",
                ("dx_staff_momentum",),
                -32,
            ),
            _t(
                "dx_step1",
                "gate_dx_policy",
                "全体方針の決定",
                "Decide the overall policy",
                "approver",
                ("dx_policy_draft",),
                -31,
                gate=True,
            ),
            _t(
                "dx_step2",
                "dx_organisation",
                "組織体制の整備",
                "Set up the organisation",
                "municipality",
                ("gate_dx_policy",),
                -29,
            ),
            _t(
                "dx_step2",
                "dx_talent",
                "デジタル人材の確保・育成",
                "Secure and train digital talent",
                "municipality",
                ("gate_dx_policy",),
                -26,
            ),
            _t(
                "dx_step2",
                "dx_planning",
                "計画的な取組",
                "Plan the work",
                "municipality",
                ("gate_dx_policy",),
                -28,
            ),
            _t(
                "dx_step2",
                "dx_prefecture_collaboration",
                "都道府県と市区町村の連携による推進体制の整備",
                "Work together with the prefecture",
                "municipality",
                ("gate_dx_policy",),
                -26,
            ),
            _priority("dx_frontyard", "① フロントヤード改革", "Front-yard reform"),
            _priority(
                STANDARDISATION_ITEM,
                "② 情報システムの標準化",
                "Standardise the information systems",
            ),
            _priority("dx_commonisation", "③ 共通化等の推進", "Common use of systems"),
            _priority("dx_el_qr", "④ 公金収納におけるeL-QRの活用", "eL-QR for public payments"),
            _priority(
                "dx_my_number_card",
                "⑤ マイナンバーカードの取得支援・利用の推進",
                "My Number Card uptake and use",
            ),
            _priority("dx_security", "⑥ セキュリティ対策の徹底", "Thorough security"),
            _priority("dx_ai", "⑦ AIの利用推進", "Use of AI"),
            _priority("dx_telework", "⑧ テレワークの推進", "Telework"),
        ],
    )
)
# What people read as a programme's name (a migration's is its business's).
TEMPLATE_TITLES: dict[str, str] = {DX_PLAN_TEMPLATE.name: "自治体DX推進計画"}

BUILTIN_TEMPLATES: dict[str, ProcedureTemplate] = {
    DEFAULT_TEMPLATE.id: DEFAULT_TEMPLATE,
    DX_PLAN_TEMPLATE.id: DX_PLAN_TEMPLATE,
}
