"""The nightly reconciliation: every project's read model compared with its workflow.

Projections converge on their own (a write that does not start from what the read model
holds rewrites everything), but rows changed by hand, a restore from an old backup or a
bug would stay wrong until the project next moves, which may be months. A Temporal
Schedule starts ReconcileWorkflow every night; its activity reads each project's truth
from its workflow, repairs the rows that differ and counts them in a metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

RECONCILE_ACTIVITY = "reconcile_read_model"
SCHEDULE_ID = "read-model-reconciliation"
# Sorted in the metric and the result: a repaired project's differing tables.
DRIFT_METRIC = "hyojunka_read_model_drift"


@dataclass
class ReconcileInput:
    # Projects read from Temporal at once: enough to finish the country in a night, few
    # enough that the workers' own projections are not held up.
    concurrency: int = 8
    # Each night checks one project in ``share``, so each is checked once a week: a query
    # of every project every night was most of a project's billed actions on Temporal Cloud
    # (benchmarks/billing.py), for drift that projections repair on their own at the next
    # change. 1: every project every night.
    share: int = 7


@dataclass
class ReconcileResult:
    checked: int = 0
    repaired: int = 0
    failed: int = 0  # projects that could not be read (logged); the next night tries again
    skipped: int = 0  # projects left for another night (ReconcileInput.share)
    # Each repaired project with the tables that differed (the first hundred).
    drift: dict[str, list[str]] = field(default_factory=dict)
    # Page sessions deleted: signed out or expired more than a month before.
    sessions_pruned: int = 0


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileResult:
        # One long activity that heartbeats as it goes, so a worker that dies midway is
        # noticed within minutes and the run retried (repairing is idempotent).
        result: ReconcileResult = await workflow.execute_activity(
            RECONCILE_ACTIVITY,
            inp,
            result_type=ReconcileResult,
            start_to_close_timeout=timedelta(hours=6),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
        workflow.logger.info(
            "read model reconciled: %d checked, %d repaired", result.checked, result.repaired
        )
        return result
