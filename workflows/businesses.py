"""The 20 business systems in scope of standardisation (DOMAIN.md): the one list of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Business:
    slug: str
    name: str
    ministry: str


BUSINESSES: tuple[Business, ...] = (
    Business("resident_registry", "住民基本台帳", "総務省"),
    Business("family_register_annex", "戸籍の附票", "総務省"),
    Business("seal_registration", "印鑑登録", "総務省"),
    Business("electoral_roll", "選挙人名簿管理", "総務省"),
    Business("fixed_asset_tax", "固定資産税", "総務省"),
    Business("individual_resident_tax", "個人住民税", "総務省"),
    Business("corporate_resident_tax", "法人住民税", "総務省"),
    Business("light_vehicle_tax", "軽自動車税", "総務省"),
    Business("family_register", "戸籍", "法務省"),
    Business("school_enrollment", "就学", "文部科学省"),
    Business("national_health_insurance", "国民健康保険", "厚生労働省"),
    Business("national_pension", "国民年金", "厚生労働省"),
    Business("disability_welfare", "障害者福祉", "厚生労働省"),
    Business("late_stage_elderly_medical", "後期高齢者医療", "厚生労働省"),
    Business("long_term_care_insurance", "介護保険", "厚生労働省"),
    Business("public_assistance", "生活保護", "厚生労働省"),
    Business("health_management", "健康管理", "厚生労働省"),
    Business("child_allowance", "児童手当", "こども家庭庁"),
    Business("child_rearing_allowance", "児童扶養手当", "こども家庭庁"),
    Business("child_and_childcare_support", "子ども・子育て支援", "こども家庭庁"),
)

BY_SLUG: dict[str, Business] = {b.slug: b for b in BUSINESSES}

# Prefectures run these two themselves, so a prefecture can own a migration project.
PREFECTURE_BUSINESSES: frozenset[str] = frozenset({"child_rearing_allowance", "public_assistance"})
