"""Typed custom search attributes, so operators can list migrations with the Temporal CLI and UI."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from workflows.model import ProjectSnapshot

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


def published(snap: ProjectSnapshot) -> tuple[Any, ...]:
    """What a project publishes: (lg_code, prefecture, business, stage, health, vendor or
    None, target date); the workflow upserts when it changes."""
    s = snap.state
    return (s.lg_code, s.prefecture, s.business, snap.stage, snap.health, s.vendor_id) + (
        s.target_go_live,
    )


def attributes_of(values: tuple[Any, ...], tz: tzinfo | None) -> list[SearchAttributeUpdate[Any]]:
    """A project's search attributes from ``published``, in the order the workflow has
    always set them."""
    lg_code, prefecture, business, stage, health, vendor_id, target_go_live = values
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
    """What a run was started with, in the shape of ``published``; None unless every
    attribute was set."""
    values = [attrs.get(key) for key in ALL]
    if any(v is None for v in values):
        return None
    *head, vendor, target = values
    assert isinstance(target, datetime)
    return (*head, vendor or None, target.date())
