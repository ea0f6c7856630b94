"""What the CLI prints for people: one line per phase while a run works, aligned tables, sizes
like 1.2 MB. Machines get `--json` instead; `--verbose` gives Dagster's own event log."""

from __future__ import annotations

import logging
import sys

import dagster as dg

PHASE_EVENTS = {"STEP_START"}  # the Dagster events shown as a phase line (others only with --verbose)
ENGINE_CHATTER = ("Dependencies for step",)  # Dagster's own messages, shown only with --verbose


def human_size(size: int | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, as `ls -h --si` and most UIs)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def render_table(headers: list[str], rows: list[list[object]], right: set[int] = frozenset()) -> str:
    """An aligned plain-text table; columns whose index is in `right` are right-aligned."""
    cells = [[str(c) for c in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def join_names(names) -> str:
    """['database', 'users'] -> 'database, users' (never a Python repr)."""
    return ", ".join(str(n) for n in names) if names else "-"


class PhaseHandler(logging.Handler):
    """Writes one short line per step start and per message the code logs; drops Dagster's debug events."""

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is not None:
            if event.event_type_value not in PHASE_EVENTS:
                return
            line = f"▸ {event.step_key}"
        elif record.levelno >= logging.INFO:
            message = meta.get("orig_message", record.getMessage())
            if message.startswith(ENGINE_CHATTER):
                return
            line = f"  {message}"
        else:
            return
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


@dg.logger(description="One line per phase on stderr (the CLI's default; --verbose uses Dagster's console logger).")
def phase_logger(_init_context) -> logging.Logger:
    log = logging.Logger("supabackup.phases", level=logging.DEBUG)  # the handler picks what to show
    log.addHandler(PhaseHandler())
    return log


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("changed" if value else "same")


def render_table_plan(tables: list[dict]) -> str:
    """The database part of a rollback plan: one row per table (rows now -> after, content, drift)."""
    rows = [[t["table"], "-" if t.get("rows_now") is None else t["rows_now"], t.get("rows_after"),
             "dropped" if not t.get("exists", True) else _yes_no(t.get("content_changed")),
             "; ".join(t.get("drift") or []) or "-"] for t in tables]
    return render_table(["TABLE", "ROWS NOW", "ROWS AFTER", "CONTENT", "SCHEMA DRIFT"], rows, right={1, 2})


def render_schema_changes(changes: list[dict]) -> list[str]:
    """`schema_changes` of a database plan ({kind, name, action, detail?}), one line each."""
    return [f"  {c.get('action', '?'):<8} {c.get('kind', '?')} {c.get('name', '?')}"
            + (f"  ({c['detail']})" if c.get("detail") else "") for c in changes]


def render_database_plan(database: dict) -> list[str]:
    lines = [f"Database: {len(database.get('tables') or [])} table(s)"]
    if database.get("tables"):
        lines += ["  " + line for line in render_table_plan(database["tables"]).splitlines()]
    changes = database.get("schema_changes") or []
    lines += ["Schema changes:", *render_schema_changes(changes)] if changes else []
    notes = (database.get("schema") or {}).get("notes") or []
    lines += ["Notes:", *(f"  {note}" for note in notes)] if notes else []
    if database.get("new_tables"):
        action = "dropped" if database.get("drop_new_tables") else "left alone"
        lines.append(f"Tables created since the backup ({action}): {join_names(database['new_tables'])}")
    if database.get("extension_tables"):
        lines.append(f"Left to their extension (in this backup, not restored): {join_names(database['extension_tables'])}")
    if database.get("emptied_auth_tables"):
        lines.append(f"Emptied (everyone is signed out): {join_names(database['emptied_auth_tables'])}")
    users = database.get("users") or {}
    if users:
        lines.append("Users: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in users.items()))
    return lines


def render_storage_plan(storage: dict, limit: int = 20) -> list[str]:
    from supabackup_pipeline.core.storage_restore import StorageRestorePlan

    return StorageRestorePlan.from_dict(storage).describe(limit=limit).splitlines()


def render_outcome(report: dict) -> list[str]:
    """What a real rollback did: tables restored and how they were validated, storage transfers."""
    lines = []
    tables = (report.get("database") or {}).get("tables") or []
    if tables:
        checks = sorted({t.get("validated_by") or "?" for t in tables})
        lines.append(f"Restored {len(tables)} table(s), {sum(t.get('rows', 0) for t in tables)} rows;"
                     f" post-validated by {join_names(checks)}")
    storage = report.get("storage") or {}
    if storage:
        lines.append(f"Storage: {storage.get('uploaded', 0)} object(s) uploaded ({human_size(storage.get('uploaded_bytes'))}),"
                     f" {storage.get('deleted', 0)} deleted, {storage.get('buckets_created', 0)} bucket(s) created")
    return lines


def render_rollback(report: dict) -> str:
    """A rollback's (or dry run's) report for people: outcome, plan, safety backup, timings."""
    dry = report.get("dry_run")
    status = report.get("status", "?")
    head = f"Rollback to {report.get('backup_id')}: {status}" + (" (dry run: nothing was changed)" if dry else "")
    lines = [head]
    plan = report.get("plan") or {}
    if plan.get("database"):
        lines += render_database_plan(plan["database"])
    if plan.get("storage"):
        lines += render_storage_plan(plan["storage"])
    lines += render_outcome(report)
    if report.get("safety_backup"):
        lines.append(f"Safety backup {report['safety_backup']} (undo with `supabackup rollback {report['safety_backup']}`)")
    if report.get("steps"):
        lines.append("Took: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in report["steps"].items()))
    return "\n".join(lines)
