"""Configuration refused at load: procedure templates and notification channels."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from readmodel.registry import check_digit, lg_code_problem, registry
from runtime.settings import Settings
from workflows.procedure import DEFAULT_TEMPLATE, TemplateError, template_from_dict


def _template(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "t", "version": "1", "tasks": tasks}


def _task(key: str, deps: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "key": key,
        "name": key,
        "stage": "fit_gap",
        "owner": "municipality",
        "depends_on": deps or [],
        **kw,
    }


@pytest.mark.parametrize(
    ("tasks", "named"),
    [
        ([_task("a", ["ghost"])], "ghost"),
        ([_task("a", ["b"]), _task("b", ["c"]), _task("c", ["a"])], "a -> b -> c -> a"),
        ([_task("a"), _task("a")], "duplicate task key: a"),
        ([_task("a", owner="consultant")], "consultant"),
        ([_task("a", stage="planning")], "planning"),
        ([_task("a", gate=True)], "gates and only gates"),
    ],
)
def test_bad_templates_are_refused_with_the_offender_named(
    tasks: list[dict[str, Any]], named: str
) -> None:
    with pytest.raises(TemplateError, match=named.replace(">", ".")):
        template_from_dict(_template(tasks))


def test_default_template_is_the_handbook_in_five_stages() -> None:
    keys = [t.key for t in DEFAULT_TEMPLATE.tasks]
    assert len(keys) == 23 and keys[0] == "setup_governance" and keys[-1] == "decommission"
    assert [t.key for t in DEFAULT_TEMPLATE.tasks if t.gate] == [
        "gate_migration_plan",
        "vendor_selection",
        "go_no_go",
    ]
    assert [t.key for t in DEFAULT_TEMPLATE.tasks if t.switching_vendor_only] == ["rfp"]
    again = template_from_dict(
        json.loads(
            json.dumps(
                {
                    "name": "copy",
                    "version": "2",
                    "tasks": [t.__dict__ for t in DEFAULT_TEMPLATE.tasks],
                }
            )
        )
    )
    assert [t.key for t in again.tasks] == keys


def test_channels_must_be_http_urls() -> None:
    ok = [{"id": "hook", "kind": "webhook", "url": "https://example.lg.jp/hook"}]
    assert Settings(channels=json.dumps(ok)).channels
    for bad in (
        [{"id": "hook", "kind": "webhook", "url": "ftp://example.lg.jp/hook"}],
        [{"id": "hook", "kind": "webhook", "url": "file:///etc/passwd"}],
        [{"id": "hook", "kind": "pager", "url": "https://example.lg.jp"}],
        {"id": "hook"},
    ):
        with pytest.raises(ValidationError):
            Settings(channels=json.dumps(bad))


def test_production_refuses_the_default_database() -> None:
    with pytest.raises(ValidationError):
        Settings(environment="production")


def test_lg_codes_by_check_digit_and_registry() -> None:
    assert check_digit("13101") == 6 and check_digit("01100") == 2 and check_digit("13000") == 1
    assert lg_code_problem("131016") is None
    assert lg_code_problem("131017") == "check digit does not match"
    assert lg_code_problem("481001") == "prefecture part must be 01-47"
    assert len(registry()) == 1788
    assert all(lg_code_problem(code) is None for code in registry()._by_code)
