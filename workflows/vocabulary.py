"""Every vocabulary of a migration, each one enum whose members carry their Japanese label.

The values are the codes of the wire format and of stored data (API.md), so they never
change; pages and messages show ``member.label``. Docstrings of the enums the API uses
appear in its OpenAPI document, so they speak to its readers. Pure: workflow code may import it.
Because the members are ``str``, ``TaskStatus.DONE == "done"`` and either may be passed
where a code is expected.
"""

from __future__ import annotations

import enum
from typing import Self


class Vocabulary(enum.StrEnum):
    """A code with its Japanese label, declared together: ``DONE = "done", "完了済み"``."""

    label: str

    # The label defaults only so that a lookup by code, ``TaskStatus("done")``, type-checks.
    def __new__(cls, value: str, label: str = "") -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member


class TaskStatus(Vocabulary):
    """A task's status: the four MIC's monthly survey counts."""

    NOT_STARTED = "not_started", "未着手"
    IN_PROGRESS = "in_progress", "作業中"
    DONE = "done", "完了済み"
    NOT_APPLICABLE = "not_applicable", "対象外"


class Owner(Vocabulary):
    """Whose work a task is: gates, and only gates, are the approver's."""

    MUNICIPALITY = "municipality", "団体"
    VENDOR = "vendor", "ベンダ"
    APPROVER = "approver", "承認者"


class Role(Vocabulary):
    """Who a token speaks for; each role's scope and rights are in the role table."""

    ADMIN = "admin", "管理者"
    OBSERVER = "observer", "閲覧者"
    PREFECTURE = "prefecture", "都道府県"
    PM = "pm", "担当者"
    APPROVER = "approver", "承認者"
    VENDOR = "vendor", "ベンダ"


class Stage(Vocabulary):
    """A project's stage; tasks belong to every stage but ``COMPLETED``."""

    CURRENT_STATE = "current_state", "現状分析"
    FIT_GAP = "fit_gap", "Fit&Gap"
    PROCUREMENT = "procurement", "ベンダ調達"
    MIGRATION = "migration", "移行"
    CUTOVER = "cutover", "本番移行"
    DX_STEP0 = "dx_step0", "ステップ0 認識共有・機運醸成"
    DX_STEP1 = "dx_step1", "ステップ1 全体方針の決定"
    DX_STEP2 = "dx_step2", "ステップ2 推進体制の整備"
    DX_STEP3 = "dx_step3", "ステップ3 DXの取組みの実行"
    COMPLETED = "completed", "完了"


class Health(Vocabulary):
    ON_TRACK = "on_track", "順調"
    AT_RISK = "at_risk", "要注意"
    OVERDUE = "overdue", "期限超過"
    COMPLETED = "completed", "完了"


class Ground(Vocabulary):
    """The four grounds of the extended track (特定移行支援システム)."""

    MAINFRAME = "mainframe", "メインフレーム"
    CUSTOM_BUILT = "custom_built", "個別開発"
    NO_PRODUCT = "no_product", "標準準拠製品なし"
    VENDOR_SHORTAGE = "vendor_shortage", "事業者のリソースひっ迫"


class EscalationLevel(Vocabulary):
    """The rungs of the ladder, in the order they fire. ``notice`` heads the message that
    tells the rung's audience (「【期限を過ぎています】…」)."""

    notice: str

    def __new__(cls, value: str, label: str = "", notice: str = "") -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        member.notice = notice
        return member

    REMINDER = "reminder", "期限前通知", "期限が近づいています"
    OVERDUE = "overdue", "期限超過", "期限を過ぎています"
    APPROVER = "approver", "承認者へ", "期限超過（承認者へ）"
    PREFECTURE = "prefecture", "都道府県へ", "期限超過（都道府県へ）"


class EscalationStatus(Vocabulary):
    OPEN = "open", "未確認"
    ACKNOWLEDGED = "acknowledged", "確認済み"
    RESOLVED = "resolved", "解消済み"


class GateOutcome(Vocabulary):
    APPROVE = "approve", "承認"
    REJECT = "reject", "差戻し"


class EventKind(Vocabulary):
    """What an entry of a project's audit trail records."""

    PROJECT_CREATED = "project_created", "プロジェクト登録"
    TASK_UPDATED = "task_updated", "タスク更新"
    MILESTONE_REPORTED = "milestone_reported", "進捗報告"
    GATE_DECIDED = "gate_decided", "ゲート判定"
    REPLANNED = "replanned", "計画変更"
    EXTENDED_TRACK_DECLARED = "extended_track_declared", "移行期限の延長申告"
    DEADLINE_EXCEEDED = "deadline_exceeded", "移行期限超過"
    ESCALATION_RAISED = "escalation_raised", "エスカレーション発生"
    ESCALATION_ACKNOWLEDGED = "escalation_acknowledged", "エスカレーション確認"
    ESCALATION_RESOLVED = "escalation_resolved", "エスカレーション解消"
    PROJECT_COMPLETED = "project_completed", "プロジェクト完了"
    VENDOR_ASSIGNED = "vendor_assigned", "ベンダー割当"
    PROCUREMENT_JOINED = "procurement_joined", "共同調達に参加"
    PROCUREMENT_LEFT = "procurement_left", "共同調達から離脱"
    PROCUREMENT_COMPLETED = "procurement_completed", "共同調達でベンダ決定"
    PROCUREMENT_STEPS_DONE = "procurement_steps_done", "共同調達で実施済みの作業を完了"
    TEMPLATE_UPGRADED = "template_upgraded", "手順書の更新"
    # A joint procurement's own trail.
    PROCUREMENT_CREATED = "procurement_created", "共同調達の開始"
    MEMBER_JOINED = "member_joined", "参加団体の追加"
    MEMBER_LEFT = "member_left", "参加団体の離脱"
    MEMBER_UNREACHABLE = "member_unreachable", "参加団体に決定を反映できず"


class ProcurementStatus(Vocabulary):
    """Where a joint procurement stands."""

    OPEN = "open", "調達中"
    SELECTED = "selected", "ベンダ決定"


VOCABULARIES: tuple[type[Vocabulary], ...] = (
    TaskStatus,
    Owner,
    Role,
    Stage,
    Health,
    Ground,
    EscalationLevel,
    EscalationStatus,
    ProcurementStatus,
    GateOutcome,
    EventKind,
)
