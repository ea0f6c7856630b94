"""Claiming a staging folder when several processes try at the same moment.

Dagster's multiprocess executor starts a run's steps (database_dump, storage_mirror) together, and
each claims the backup ID's staging folder as its first act; CI once saw one of them fail on the
other's half-written owner file. Two runs of one ID (Materialize clicked twice) claim at once too.
"""

import multiprocessing
import traceback

from supabackup_pipeline.core.staging import StagingHeld
from supabackup_pipeline.core.store import BackupStore

FORK = multiprocessing.get_context("fork")
ROUNDS = 25
HELD, FAILED = 3, 1  # a step's exit codes besides 0


def _step(root, backup_id, barrier) -> None:
    """One step process: wait for the others, then claim, as a step's `store.start` does."""
    barrier.wait()
    try:
        BackupStore(root).start(backup_id)
    except StagingHeld:
        raise SystemExit(HELD)
    except BaseException:
        traceback.print_exc()
        raise SystemExit(FAILED)


def _run(root, backup_id, barrier, steps: int) -> None:
    """One run worker: its steps are its children, so they share it as the folder's holder."""
    children = [FORK.Process(target=_step, args=(root, backup_id, barrier)) for _ in range(steps)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    codes = {child.exitcode for child in children}
    raise SystemExit(FAILED if FAILED in codes or len(codes) > 1 else codes.pop())


def _race(root, backup_id, runs: int, steps: int) -> list[int]:
    """Start `runs` run workers of `steps` steps each, all claiming at once; their exit codes."""
    barrier = FORK.Barrier(runs * steps, timeout=30)
    workers = [FORK.Process(target=_run, args=(root, backup_id, barrier, steps)) for _ in range(runs)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return sorted(worker.exitcode for worker in workers)


def test_the_steps_of_one_run_claim_its_folder_at_the_same_moment(tmp_path):
    for round_ in range(ROUNDS):
        backup_id = f"20261130T12{round_:02d}00Z"
        assert _race(tmp_path, backup_id, runs=1, steps=3) == [0], f"round {round_}"
        assert BackupStore(tmp_path).staging(backup_id).is_dir()


def test_of_two_runs_claiming_one_id_at_the_same_moment_exactly_one_holds_it(tmp_path):
    for round_ in range(ROUNDS):
        backup_id = f"20261130T13{round_:02d}00Z"
        assert _race(tmp_path, backup_id, runs=2, steps=2) == [0, HELD], f"round {round_}"
    assert not list((tmp_path / ".staging").glob("*.tmp"))  # no owner file left half-written
