"""Typed custom search attributes, so operators can list migrations with the Temporal CLI and UI."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

LG_CODE = SearchAttributeKey.for_keyword("HyojunkaLgCode")
PREFECTURE = SearchAttributeKey.for_keyword("HyojunkaPrefecture")
BUSINESS = SearchAttributeKey.for_keyword("HyojunkaBusiness")
STAGE = SearchAttributeKey.for_keyword("HyojunkaStage")
HEALTH = SearchAttributeKey.for_keyword("HyojunkaHealth")
VENDOR = SearchAttributeKey.for_keyword("HyojunkaVendor")
TARGET_GO_LIVE = SearchAttributeKey.for_datetime("HyojunkaTargetGoLive")

ALL = (LG_CODE, PREFECTURE, BUSINESS, STAGE, HEALTH, VENDOR, TARGET_GO_LIVE)


def dev_server_flags() -> list[str]:
    """``--search-attribute NAME=TYPE`` flags for ``temporal server start-dev``."""
    kinds = {"KEYWORD": "Keyword", "DATETIME": "Datetime"}
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags


def attributes_of(
    lg_code: str,
    prefecture: str,
    business: str,
    stage: str,
    health: str,
    vendor_id: str | None,
    target_go_live: date,
    tz: tzinfo | None,
) -> list[SearchAttributeUpdate[Any]]:
    """A project's search attributes, in the order the workflow has always set them."""
    target = datetime(target_go_live.year, target_go_live.month, target_go_live.day, tzinfo=tz)
    return [
        LG_CODE.value_set(lg_code),
        PREFECTURE.value_set(prefecture),
        BUSINESS.value_set(business),
        STAGE.value_set(stage),
        HEALTH.value_set(health),
        VENDOR.value_set(vendor_id or ""),
        TARGET_GO_LIVE.value_set(target),
    ]


def pairs_of(updates: list[SearchAttributeUpdate[Any]]) -> TypedSearchAttributes:
    """The same attributes as a workflow is started with them."""
    return TypedSearchAttributes(
        [SearchAttributePair(u.key, u.value) for u in updates]  # type: ignore[misc]
    )


def published_of(attrs: TypedSearchAttributes) -> tuple[Any, ...] | None:
    """What a run was started with, in the shape the workflow compares before it publishes
    (lg_code, prefecture, business, stage, health, vendor or None, target date); None unless
    every attribute was set."""
    values = [attrs.get(key) for key in ALL]
    if any(v is None for v in values):
        return None
    *head, vendor, target = values
    assert isinstance(target, datetime)
    return (*head, vendor or None, target.date())
