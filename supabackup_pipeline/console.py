"""What the CLI prints for people: one line per phase while a run works, aligned tables, sizes
like 1.2 MB. Machines get `--json` instead; `--verbose` gives Dagster's own event log."""

from __future__ import annotations

import logging
import sys

import dagster as dg

PHASE_EVENTS = {"STEP_START"}  # the Dagster events shown as a phase line (others only with --verbose)


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
            line = f"  {meta.get('orig_message', record.getMessage())}"
        else:
            return
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


@dg.logger(description="One line per phase on stderr (the CLI's default; --verbose uses Dagster's console logger).")
def phase_logger(_init_context) -> logging.Logger:
    log = logging.Logger("supabackup.phases", level=logging.INFO)
    log.addHandler(PhaseHandler())
    return log
