from datetime import datetime, timezone

import pytest

from supabackup_pipeline.core.backup_id import InvalidBackupId, new_backup_id, unique_backup_id, validate_backup_id
from supabackup_pipeline.core.store import BackupStore


def test_new_ids_are_sortable_utc_timestamps():
    early = new_backup_id(datetime(2026, 11, 27, 17, 43, 2, tzinfo=timezone.utc))
    late = new_backup_id(datetime(2026, 11, 27, 17, 43, 3, tzinfo=timezone.utc))
    assert early == "20261127T174302Z"
    assert sorted([late, early]) == [early, late]
    assert validate_backup_id(early) == early


def test_two_backups_in_the_same_second_get_distinct_ids():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    first = unique_backup_id(set(), now)
    second = unique_backup_id({first}, now)
    assert second != first and second.startswith(first + "-")
    assert validate_backup_id(second) == second


@pytest.mark.parametrize("bad", [
    "", "latest", "../x", "20261127T174302Z/../../etc", "20261127T174302Z/", "/20261127T174302Z",
    "20261327T174302Z", "20261127T256002Z", "20261127t174302z", "20261127T174302Z-XYZW", " 20261127T174302Z",
    "20261127T174302Z\n", None, 20261127,
])
def test_malformed_ids_are_rejected_with_a_message_naming_them(bad):
    with pytest.raises(InvalidBackupId, match="invalid backup ID"):
        validate_backup_id(bad)


def test_store_paths_never_leave_the_backup_folder(tmp_path):
    store = BackupStore(tmp_path)
    with pytest.raises(InvalidBackupId):
        store.published("../outside")
    with pytest.raises(InvalidBackupId):
        store.start("..")
    assert list(tmp_path.iterdir()) == []
