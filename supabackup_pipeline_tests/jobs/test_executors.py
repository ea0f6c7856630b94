"""Which executor each job's runs get: launched from the UI (default run config) or from the CLI."""

import dagster as dg
import pytest

from supabackup_pipeline.code_location import IN_PROCESS
from supabackup_pipeline.definitions import build_definitions

ROLLBACK_CONFIG = {"ops": {"verify_and_protect": {"config": {"confirm": "20261130T120000Z"}}}}


@pytest.fixture
def defs(tmp_path, monkeypatch):
    for name in ("SUPABASE_DB_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
        monkeypatch.setenv(name, "unused")  # the resources' settings are only resolved, never used
    return build_definitions(str(tmp_path / "backups"))


def execution(job: dg.JobDefinition, run_config: dict) -> dict:
    return dg.validate_run_config(job, run_config)["execution"]["multi_or_in_process_executor"]


@pytest.mark.parametrize("name, ops_config", [("backup_job", {}), ("rollback_job", ROLLBACK_CONFIG)])
def test_steps_of_ui_runs_are_forked_from_a_preloaded_server_and_the_cli_still_runs_them_in_process(defs, name, ops_config):
    """A UI run of backup_job or rollback_job (no execution config) starts each step by forking a
    server that imported the code location once (benchmarks/run_startup_benchmark.py), not anew; a
    user's own start method, and the CLI's in-process choice, are kept."""
    job = defs.resolve_job_def(name)
    assert execution(job, ops_config)["multiprocess"]["start_method"] == {"forkserver": {}}
    limited = {**ops_config, "execution": {"config": {"multiprocess": {"max_concurrent": 1}}}}
    assert execution(job, limited)["multiprocess"]["start_method"] == {"forkserver": {}}
    assert execution(job, limited)["multiprocess"]["max_concurrent"] == 1
    spawned = {**ops_config, "execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}
    assert execution(job, spawned)["multiprocess"]["start_method"] == {"spawn": {}}
    assert "in_process" in execution(job, {**ops_config, **IN_PROCESS})


@pytest.mark.parametrize("name", ["validate_backup_job", "delete_backup_job", "prune_job"])
def test_one_step_jobs_run_in_the_runs_own_process(defs, name):
    assert defs.resolve_job_def(name).executor_def is dg.in_process_executor
