"""CLI runs as runs of the code location's jobs, executed in the CLI's own process.

The UI lists a job's runs by the run tag `.dagster/repository=__repository__@<location>`, the
Overview timeline groups runs by their `repositoryOrigin`, and a run-status sensor reacts to the
runs of its own code location: all three read the run's *remote job origin*. A run made with
`execute_in_process` has none, so the CLI creates its runs with the origin of the code location
`workspace.yaml` loads (the one `dagster dev` serves, under the same location name) and then
executes them here with the in-process executor, so its output and Ctrl-C stay the CLI's.
Dagster has no public call that executes an existing run; `execute_run` (what `dagster job
execute` uses after creating its run) is that call. `failure_of` reads such a run's failure back as
one line for the CLI (and for a rollback whose safety backup failed).
"""

from __future__ import annotations

import dagster as dg

from supabackup_pipeline.settings import workspace_file

DEFINITIONS_MODULE = "supabackup_pipeline.definitions"
REPOSITORY_NAME = "__repository__"  # the one repository a Definitions object makes
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}  # run config: steps run in this process
# The executor of the light one-step jobs (validate, delete, prune): a step process of the
# multiprocess executor would only add its start-up (imports, ~2 s on 2 cores) to every run. The
# backup's database and Storage steps run in parallel, and the rollback's restore step holds the
# project pool (see rollback_job): both keep a process per step, STEP_PROCESSES.
ONE_STEP_AFTER_ANOTHER = dg.in_process_executor


def _forked_from_preloaded(config: dict) -> dict:
    """Dagster's default executor, whose step processes are forked from a server that has imported
    the code location once per run (`forkserver`), not each started anew (`spawn`, the default:
    every step paid the imports). Run config may still choose `in_process` (the CLI does) or
    another start method."""
    if "multiprocess" not in config:
        return config
    return {"multiprocess": {"start_method": {"forkserver": {}}, **(config["multiprocess"] or {})}}


# Measured by benchmarks/run_startup_benchmark.py on a tiny project: a backup run 8.3 → 5.2 s,
# a rollback run 5.3 → 2.7 s.
STEP_PROCESSES = dg.multi_or_in_process_executor.configured(
    _forked_from_preloaded, config_schema=dg.multi_or_in_process_executor.config_schema.as_field())


def location_origin():
    """The code location that loads our definitions, as the workspace file names it; without a
    workspace file, the one `dagster dev -m supabackup_pipeline.definitions` serves."""
    from dagster._core.workspace.load import location_origin_from_module_name, location_origins_from_yaml_paths

    path = workspace_file()
    for origin in location_origins_from_yaml_paths([str(path)]) if path else []:
        target = getattr(origin, "loadable_target_origin", None)
        if target is not None and target.module_name == DEFINITIONS_MODULE:
            return origin
    return location_origin_from_module_name(DEFINITIONS_MODULE, None, None)


def _origins(job_name: str):
    """(remote job origin, python origin) of one job of the code location."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

    remote = RemoteJobOrigin(RemoteRepositoryOrigin(location_origin(), REPOSITORY_NAME), job_name)
    python = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs").get_reconstructable_job(job_name)
    return remote, python.get_python_origin()


def execute_location_run(instance: dg.DagsterInstance, job: dg.JobDefinition, run_config: dict, tags: dict,
                         asset_selection: list[dg.AssetKey] | None = None) -> dg.ExecutionResult:
    """Create a run of `job` with the code location's origin, then execute it in this process."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import execute_run

    remote, python = _origins(job.name)
    run = instance.create_run_for_job(
        job_def=job, run_config={**run_config, **_in_process(job)}, tags={**job.run_tags, **tags},
        asset_selection=frozenset(asset_selection) if asset_selection else None,
        remote_job_origin=remote, job_code_origin=python,
    )
    return execute_run(InMemoryJob(job), run, instance)


def _in_process(job: dg.JobDefinition) -> dict:
    """Run config choosing the in-process side of Dagster's default executor; nothing for a job that
    has only that one (ONE_STEP_AFTER_ANOTHER)."""
    return IN_PROCESS if job.executor_def.name == dg.multi_or_in_process_executor.name else {}


def interrupted(result: dg.ExecutionResult) -> bool:
    """Whether Ctrl-C ended the run: Dagster turns it into a failed step, which the caller should
    turn back into KeyboardInterrupt (the CLI then says "interrupted")."""
    for event in result.all_events:
        error = event.step_failure_data.error if event.is_step_failure and event.step_failure_data else None
        while error is not None:
            if error.cls_name == "DagsterExecutionInterruptedError":
                return True
            error = error.cause
    return False


def failure_of(result: dg.ExecutionResult) -> tuple[str, str]:
    """(class name, `step: message`) of the error that failed the run, unwrapped to ours."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):  # unwrap to ours
                error = error.cause
            cls_name = error.cls_name or ""
            return cls_name, f"{event.step_key}: {explain(cls_name, _without_class_path(cls_name, error.message))}"
    for event in result.all_events:
        if event.event_type_value in ("RUN_FAILURE", "PIPELINE_FAILURE") and event.message:
            return "", event.message
    return "", "the run failed (see the run's logs in the Dagster UI)"


def failure_message(result: dg.ExecutionResult) -> str:
    return failure_of(result)[1]


def _without_class_path(cls_name: str, message: str) -> str:
    """`supabackup_pipeline.core.errors.DiskFull: text` → `text`: our errors (and Dagster's `Failure`,
    which carries our description) say what happened without their class's module path."""
    message = message.strip()
    head, sep, text = message.partition(f"{cls_name}: ")
    ours = head.startswith("supabackup_pipeline.") or (cls_name == "Failure" and head.startswith("dagster."))
    return text if sep and ours and head.endswith(".") else message


def explain(cls_name: str, message: str) -> str:
    """A failure's message, naming the setting at fault when the cause is one."""
    lowered = message.lower()
    if cls_name == "StorageApiError" and ("jwt" in lowered or "(status 403)" in lowered
                                          or "(status 401)" in lowered or "unauthorized" in lowered):
        return ("Storage refused the service role key: check SUPABASE_SERVICE_ROLE_KEY (and that SUPABASE_URL is"
                f" this project's API URL); Storage said: {message}")
    return message
