"""Every rollback's report, kept in BACKUP_PATH/.state/rollbacks/ (the CLI's and UI's audit trail)."""

from __future__ import annotations

import json

from supabackup_pipeline.core.files import make_private_dir, write_json
from supabackup_pipeline.core.snapshot import utc_now
from supabackup_pipeline.core.store import BackupStore


def record_rollback(store: BackupStore, report: dict) -> str | None:
    """Keep the report; returns why it could not be kept (a full disk), else None. By then the
    rollback is done, refused or failed: its outcome must not be hidden behind the report's."""
    folder = store.state_dir / "rollbacks"
    stamp = utc_now().replace(":", "").replace("-", "")[:15]
    try:
        write_json(make_private_dir(folder) / f"{stamp}-{report['backup_id']}-{report.get('run_id', 'local')[:8]}.json",
                   {**report, "recorded_at": utc_now()})
    except OSError as exc:
        return f"this rollback's report could not be kept in {folder} ({exc}); what it did is in this run's log"
    return None


def rollback_history(store: BackupStore, backup_id: str | None = None) -> list[dict]:
    folder = store.state_dir / "rollbacks"
    if not folder.is_dir():
        return []
    reports = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [r for r in reports if backup_id is None or r["backup_id"] == backup_id]
