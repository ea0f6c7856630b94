"""`supabackup`: the command line. Every operation runs the project's Dagster jobs in-process
against the instance at DAGSTER_HOME, so every CLI run shows in the UI's run history too.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from supabackup_pipeline.core.errors import SupabackupError, UsageError

DEFAULT_DAGSTER_HOME = Path.home() / ".supabackup" / "dagster_home"
COMPONENTS = ("database", "users", "storage")
GOOD_STATUSES = ("valid", "complete")  # complete: written, integrity checks not run


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, or a persistent default (~/.supabackup/dagster_home) so runs are kept."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch(exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def parse_components(text: str) -> list[str]:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(COMPONENTS))
    if unknown or not chosen:
        raise SupabackupError(f"unknown component(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(COMPONENTS)}")
    return chosen


# ------------------------------------------------------------------ commands
def cmd_stack(args) -> int:
    from supabackup_pipeline.dev import stack

    if args.action == "up":
        info = stack.up()
        print(stack.shell_exports(info.env()))
        print(f"# local stack running: database on port {info.pg_port}, Storage API at {info.supabase_url}", file=sys.stderr)
    elif args.action == "down":
        print("stopped" if stack.down() else "no local stack was running", file=sys.stderr)
    else:
        info = stack.load_running()
        if info is None:
            raise SupabackupError("no local stack is running: start it with `supabackup stack up`")
        print(stack.shell_exports(info.env()))
    return 0


def _stack_environment() -> dict[str, str]:
    """Start (or reuse) the local stack and point this process at it."""
    from supabackup_pipeline.dev import stack

    info = stack.up()
    os.environ.update(info.env())
    os.environ.setdefault("BACKUP_PATH", str(Path("backups").resolve()))
    ensure_dagster_home()
    print(f"local stack up: database on port {info.pg_port}, Storage API at {info.supabase_url}", file=sys.stderr)
    return dict(os.environ)


def cmd_demo(args) -> int:
    from supabackup_pipeline.dev.demo import run_demo

    run_demo(_stack_environment())
    if args.no_ui:
        return 0
    return cmd_dev(args)


def cmd_dev(args) -> int:
    env = _stack_environment()
    print("starting dagster dev", file=sys.stderr)
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    cmd = [sys.executable, "-m", "dagster", "dev", "-p", str(args.port)]
    if workspace.exists():
        cmd += ["-w", str(workspace)]
    else:
        cmd += ["-m", "supabackup_pipeline.definitions"]
    os.execvpe(cmd[0], cmd, env)


def cmd_backup(args) -> int:
    from supabackup_pipeline.operations import run_backup

    result = run_backup(description=args.description, components=parse_components(args.components))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"backup_id: {result['backup_id']}\nstatus: {result['status']}\ntotal_size: {result['total_size']} bytes")
        if result.get("error"):
            print(f"error: {result['error']}", file=sys.stderr)
    return 0 if result["status"] in GOOD_STATUSES else 1


def _age(backup_id: str) -> str:
    from datetime import datetime, timezone

    from supabackup_pipeline.core.backup_id import backup_id_time

    seconds = (datetime.now(timezone.utc) - backup_id_time(backup_id)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def cmd_list(args) -> int:
    from supabackup_pipeline.operations import list_backups

    backups = list_backups()
    if args.json:
        print(json.dumps(backups, indent=2))
    elif not backups:
        print("no backups yet")
    else:
        print(f"{'BACKUP ID':<22} {'STATUS':<9} {'SIZE':>13} {'AGE':>6}  {'COMPONENTS':<23} {'LAST VERIFIED':<26} DESCRIPTION")
        for b in backups:
            verified = "never" if not b["last_verified_at"] else \
                f"{b['last_verified_at'][:19]} {'ok' if b['last_verify_valid'] else 'BAD'}"
            print(f"{b['backup_id']:<22} {b['status']:<9} {b['total_size']:>13} {_age(b['backup_id']):>6}"
                  f"  {','.join(b['components']):<23} {verified:<26} {b['description']}")
    return 0


def cmd_show(args) -> int:
    from supabackup_pipeline.operations import show_backup

    details = show_backup(args.backup_id)
    if args.json:
        print(json.dumps(details, indent=2))
    else:
        for key in ("backup_id", "status", "created_at", "description", "total_size", "components"):
            print(f"{key}: {details[key]}")
        print(f"source: {details['source']}")
        last = details.get("last_verification")
        print(f"last verified: {last['verified_at']} ({'valid' if last['valid'] else 'NOT valid'})" if last else "last verified: never")
        for t in details.get("tables", []):
            print(f"  table {t['table']}: {t['rows']} rows")
        for t in details.get("users", []):
            print(f"  users {t['table']}: {t['rows']} rows")
    return 0


def cmd_verify(args) -> int:
    from supabackup_pipeline.operations import verify

    report = verify(args.backup_id, quick=args.quick)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"backup {report['backup_id']}: {'VALID' if report['valid'] else 'NOT VALID'}"
              f" ({report.get('files_checked', 0)} files, {report.get('bytes_read', 0)} bytes read{', quick' if args.quick else ''})")
        for problem in report.get("problems", []):
            print(f"  {problem['file']}: {problem['problem']}")
        if report.get("error"):
            print(f"error: {report['error']}", file=sys.stderr)
    return 0 if report["valid"] else 1


def cmd_rollback(args) -> int:
    from supabackup_pipeline.core.backup_id import validate_backup_id
    from supabackup_pipeline.operations import rollback

    validate_backup_id(args.backup_id)
    options = {
        "components": parse_components(args.components),
        "tables": [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None,
        "dry_run": args.dry_run, "safety_backup": not args.no_safety_backup,
        "allow_other_project": args.allow_other_project, "drop_new_tables": args.drop_new_tables,
    }
    if not args.dry_run and not confirm(f"Roll the live project back to backup {args.backup_id}?", args.backup_id, args.yes):
        print("not confirmed; nothing was changed", file=sys.stderr)
        return 1
    report = rollback(args.backup_id, options)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"rollback to {args.backup_id}: {report['status']}")
        if report.get("safety_backup"):
            print(f"safety backup (undo with `supabackup rollback {report['safety_backup']}`): {report['safety_backup']}")
        print(json.dumps(report.get("plan", {}), indent=2, default=str))
        if report.get("error"):
            print(f"error: {report['error']}", file=sys.stderr)
    ok = report["status"] == ("planned" if args.dry_run else "restored")
    return 0 if ok else 1


def confirm(question: str, expected: str, yes: bool) -> bool:
    """True when the user confirmed (or passed --yes); refuses without a terminal to ask on."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')}: confirm with --yes (no terminal to ask on)")
    return input(f"{question} Type {expected!r} to confirm: ").strip() == expected


def cmd_delete(args) -> int:
    from supabackup_pipeline.core.backup_id import validate_backup_id
    from supabackup_pipeline.operations import delete

    validate_backup_id(args.backup_id)
    if not confirm(f"Delete backup {args.backup_id}?", args.backup_id, args.yes):
        print("not confirmed; nothing was deleted", file=sys.stderr)
        return 1
    result = delete(args.backup_id, force=args.force)
    print(json.dumps(result, indent=2) if args.json else
          (f"deleted {args.backup_id}" if result["deleted"] else f"error: {result['error']}"))
    return 0 if result["deleted"] else 1


def cmd_prune(args) -> int:
    from supabackup_pipeline.jobs.retention import policy_from_env
    from supabackup_pipeline.operations import prune

    defaults = policy_from_env()
    policy = {k: getattr(args, k) if getattr(args, k) is not None else getattr(defaults, k)
              for k in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")}
    plan = prune(policy, dry_run=True)
    if not args.dry_run and plan["forget"]:
        if not confirm(f"Delete {len(plan['forget'])} backup(s) not kept by the policy?", "yes", args.yes):
            print("not confirmed; nothing was deleted", file=sys.stderr)
            return 1
        plan = prune(policy)
    if args.json:
        print(json.dumps(plan, indent=2))
    else:
        for backup_id, reasons in sorted(plan["kept"].items(), reverse=True):
            print(f"keep   {backup_id}  ({', '.join(reasons)})")
        for backup_id, why in sorted(plan["forget"].items(), reverse=True):
            print(f"{'forget' if args.dry_run else 'delete'} {backup_id}  ({why})")
    return 1 if plan.get("error") else 0


def cmd_rollbacks(args) -> int:
    from supabackup_pipeline.operations import list_rollbacks

    reports = list_rollbacks()
    if args.json:
        print(json.dumps(reports, indent=2, default=str))
    elif not reports:
        print("no rollbacks yet")
    for r in reports if not args.json else []:
        kind = "dry run" if r.get("dry_run") else "rollback"
        print(f"{r.get('recorded_at', '')[:19]}  {kind:<8} to {r['backup_id']}: {r['status']}"
              + (f"  (safety backup {r['safety_backup']})" if r.get("safety_backup") else "")
              + (f"  error: {r['error']}" if r.get("error") else ""))
    return 0


def cmd_refresh_tables(args) -> int:
    from supabackup_pipeline.operations import refresh_tables

    tables = refresh_tables()
    print(f"{len(tables)} tables cached; reload the code location to see new assets")
    return 0


def add_yes_and_json(p: argparse.ArgumentParser) -> None:
    """The flags of the commands that change the project or its backups (rollback, delete, prune)."""
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supabackup", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="the local Supabase-like stack (PostgreSQL + Storage API stand-in)")
    p.add_argument("action", choices=["up", "down", "env"])
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("dev", help="start the local stack and `dagster dev` on it")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("demo", help="seed the local stack, back up, damage, roll back, verify; then open the UI")
    p.add_argument("--no-ui", action="store_true", help="exit after the report instead of starting dagster dev")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("backup", help="take a backup now (a backup_job run)")
    p.add_argument("--description", default="")
    p.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated: database,users,storage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("list", help="list backups")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="show one backup")
    p.add_argument("backup_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("verify", help="re-check every file of a backup against its manifest")
    p.add_argument("backup_id")
    p.add_argument("--quick", action="store_true", help="sizes and presence only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("rollback", help="restore the live project from a backup")
    p.add_argument("backup_id")
    p.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated: database,users,storage")
    p.add_argument("--tables", default=None, help="only these tables: schema.table,...")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--no-safety-backup", action="store_true", help="skip the backup of the current state")
    p.add_argument("--allow-other-project", action="store_true", help="restore a backup taken from another project")
    p.add_argument("--drop-new-tables", action="store_true", help="drop tables created after the backup")
    add_yes_and_json(p)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("delete", help="delete one backup")
    p.add_argument("backup_id")
    p.add_argument("--force", action="store_true", help="also delete the only valid backup")
    add_yes_and_json(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("prune", help="delete the backups the retention policy does not keep")
    for rule in ("last", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{rule}", dest=f"keep_{rule}", type=int, default=None)
    p.add_argument("--dry-run", action="store_true")
    add_yes_and_json(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("rollbacks", help="the rollback history")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rollbacks)

    p = sub.add_parser("refresh-tables", help="rediscover tables for the asset list")
    p.set_defaults(func=cmd_refresh_tables)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SupabackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
