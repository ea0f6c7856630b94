"""A refused backup run ends *canceled*, not failed, so it never paints a valid backup red.

Dagster 1.13 derives a partition's "failed" status from the partition's latest planned
materialization (ASSET_MATERIALIZATION_PLANNED, logged for every selected asset when the run is
*created*, before any step can refuse) that has no materialization after it and whose run ended
FAILURE; a planned check whose run failed shows "Execution failed". A run that ends CANCELED leaves
the partition's status as it was (its checks: skipped). So a step that refuses — the backup ID is
already published, or another backup or rollback holds the project — tags the run
`supabackup/refused` with the reason, reports the run canceling, and fails with that reason: the run
ends CANCELED ("Run was canceled. Failed steps: ...") and its failed step says why. Nothing is
faked (no materialization) and nothing is deleted (the run stays in the history).
"""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg

from supabackup_pipeline.core.errors import BackupExists, RunRefused
from supabackup_pipeline.core.project_lock import ProjectBusy
from supabackup_pipeline.core.staging import StagingHeld
from supabackup_pipeline.settings import Tag

REFUSALS = (BackupExists, ProjectBusy, StagingHeld)


def cancel_as_refused(instance: dg.DagsterInstance, run_id: str, reason: str) -> None:
    """Tag the run with the reason and report it canceling (once: several steps may refuse)."""
    instance.add_run_tags(run_id, {Tag.REFUSED: reason[:1000]})
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status not in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
        instance.report_run_canceling(run, message=f"refused: {reason}")


@contextmanager
def refusal_cancels_run(context: dg.OpExecutionContext):
    """Around a backup step's body: a refusal cancels the run (see above), then fails the step. A step
    of a run being canceled (an earlier step refused; in-process runs go on to the next step) refuses at
    once. The run's status decides, not the tag alone: a re-execution copies its parent's tags."""
    run = context.instance.get_run_by_id(context.run.run_id)  # fresh: its status and tags now
    if run is not None and run.status == dg.DagsterRunStatus.CANCELING:
        raise RunRefused(f"not started: this run is being canceled ({run.tags.get(Tag.REFUSED, 'terminated')})")
    try:
        yield
    except REFUSALS as exc:
        cancel_as_refused(context.instance, context.run.run_id, str(exc))
        raise
