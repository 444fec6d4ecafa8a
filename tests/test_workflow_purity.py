"""Workflow code runs without Temporal's sandbox (see worker/runner.py), so what the sandbox
guarded is checked here: nothing under workflows/ imports a module that does I/O, reads the
clock or the environment, or draws random numbers. A new import must be added to ALLOWED on
purpose, after checking that it is deterministic."""

from __future__ import annotations

import ast
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
ALLOWED = {
    "__future__",
    "asyncio",  # the workflow's own deterministic event loop
    "calendar",
    "collections.abc",
    "copy",  # start_attributes works on a copy of a project's input
    "dataclasses",
    "datetime",  # types and arithmetic only: the clock is workflow.now() (checked below)
    "enum",  # the vocabularies: codes with their labels
    "functools",
    "jpholiday",  # a holiday table, pinned in pyproject.toml
    "pydantic",  # payloads.py: type adapters, no I/O
    "re",  # template versions split into their parts
    "temporalio",
    "temporalio.api.common.v1",
    "temporalio.common",
    "temporalio.contrib.pydantic",
    "temporalio.converter",
    "temporalio.exceptions",
    "temporalio.workflow",
    "typing",
    "zlib",  # crc32 of a project id: the minute past midnight it looks at its forecast
}
# (time.time() needs the time module, which the import check refuses.)
FORBIDDEN_CALLS = {"now", "utcnow", "today", "random", "uuid4", "getenv", "open"}


def _modules() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.py"))


def test_workflow_modules_import_nothing_that_does_io() -> None:
    offending = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] != "workflows" and name not in ALLOWED:
                    offending.append(f"{path.name}: import {name}")
    assert offending == []


def test_workflow_modules_never_read_the_clock_or_the_environment() -> None:
    offending = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                is_workflow_api = isinstance(owner, ast.Name) and owner.id == "workflow"
                if node.func.attr in FORBIDDEN_CALLS and not is_workflow_api:
                    offending.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in FORBIDDEN_CALLS:
                    offending.append(f"{path.name}:{node.lineno} {node.func.id}()")
    assert offending == []
