"""Typed custom search attributes, so operators can list migrations with the Temporal CLI and UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

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
