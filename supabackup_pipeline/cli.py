"""`supabackup`: the command line. Every operation runs the project's Dagster jobs in-process
against the instance at DAGSTER_HOME, so every CLI run shows in the UI's run history too.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or input or a refused plan,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from supabackup_pipeline.settings import ensure_dagster_home, workspace_file
from supabackup_pipeline.core.parts import COMPONENTS, GOOD_STATUSES
from supabackup_pipeline.core.errors import SupabackupError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

def parse_components(text: str) -> list[str]:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(COMPONENTS))
    if unknown or not chosen:
        raise UsageError(f"unknown component(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(COMPONENTS)}")
    return chosen


# ------------------------------------------------------------------ commands
def _dev(module: str):
    """A module of the local stack (dev/), whose web server and client libraries come with the
    `dev` extra only: a production install says so instead of failing on an import."""
    import importlib

    try:
        return importlib.import_module(f"supabackup_pipeline.dev.{module}")
    except ModuleNotFoundError as exc:
        raise UsageError(f"the local stack needs the dev extra ({exc.name} is not installed):"
                         " pip install 'supabackup_pipeline[dev]'") from None


def cmd_stack(args) -> int:
    stack = _dev("stack")

    if args.action == "up":
        info = stack.up()
        print(stack.shell_exports(_with_backup_path(info.env())))
        print(f"# local stack running: database on port {info.pg_port}, Storage API at {info.supabase_url}", file=sys.stderr)
    elif args.action == "down":
        print("stopped" if stack.down() else "no local stack was running", file=sys.stderr)
    else:
        info = stack.load_running()
        if info is None:
            raise SupabackupError("no local stack is running: start it with `supabackup stack up`")
        print(stack.shell_exports(_with_backup_path(info.env(), starting=False)))
    return 0


def _with_backup_path(env: dict[str, str], starting: bool = True) -> dict[str, str]:
    """The stack's environment plus the BACKUP_PATH its UI and demo use: the one set when starting
    (remembered by the stack), so that `stack env` in any folder prints it."""
    stack = _dev("stack")

    given = os.environ.get("BACKUP_PATH") if starting else None
    return {**env, "BACKUP_PATH": stack.backup_path(given)}


def _stack_environment() -> dict[str, str]:
    """Start (or reuse) the local stack and point this process at it."""
    stack = _dev("stack")

    info = stack.up()
    os.environ.update(_with_backup_path(info.env()))
    ensure_dagster_home()
    print(f"local stack up: database on port {info.pg_port}, Storage API at {info.supabase_url}", file=sys.stderr)
    return dict(os.environ)


def cmd_demo(args) -> int:
    demo = _dev("demo")
    if not args.no_ui:
        check_port_free(args.port)
    demo.run_demo(_stack_environment())
    if args.no_ui:
        return 0
    return cmd_dev(args)


def check_port_free(port: int) -> None:
    """Refuse at once (before starting anything) when the UI's port is taken."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise UsageError(f"port {port} is already in use: stop what listens there or choose another with --port") from None


def cmd_dev(args) -> int:
    check_port_free(args.port)
    env = _stack_environment()
    print("starting dagster dev", file=sys.stderr)
    workspace = workspace_file()
    cmd = [sys.executable, "-m", "dagster", "dev", "-p", str(args.port)]
    if workspace is not None:
        cmd += ["-w", str(workspace)]
    else:
        cmd += ["-m", "supabackup_pipeline.definitions"]
    os.execvpe(cmd[0], cmd, env)


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


def finish(result: dict, code: int, as_json: bool) -> int:
    """With --json, print the result (with `exit_code` when it failed); return the exit code."""
    if as_json:
        print_json({**result, "exit_code": code} if code else result)
    return code


def cmd_backup(args) -> int:
    from supabackup_pipeline.console import human_size, join_names
    from supabackup_pipeline.operations import run_backup

    result = run_backup(description=args.description, components=parse_components(args.components))
    if not args.json:
        print(f"backup {result['backup_id']}: {result['status']}, {human_size(result['total_size'])}"
              f" ({join_names(result['components'])})")
        if result.get("error"):
            print(f"error: {result['error']}", file=sys.stderr)
    return finish(result, EXIT_OK if result["status"] in GOOD_STATUSES else EXIT_FAILED, args.json)


def _age(backup_id: str) -> str:
    from datetime import datetime, timezone

    from supabackup_pipeline.core.backup_id import backup_id_time

    seconds = (datetime.now(timezone.utc) - backup_id_time(backup_id)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _verified(backup: dict) -> str:
    if not backup["last_verified_at"]:
        return "never"
    return f"{backup['last_verified_at'][:19].replace('T', ' ')} {'ok' if backup['last_verify_valid'] else 'NOT VALID'}"


def _print_unpublished(extra: dict) -> None:
    from supabackup_pipeline.console import human_size, render_table

    if extra["staging"]:
        print("\nstaging (not published):")
        print(render_table(["BACKUP ID", "STATE", "SIZE"],
                           [[s["backup_id"], s["state"], human_size(s["bytes"])] for s in extra["staging"]], right={2}))
    if extra["orphan_partitions"]:
        print("\npartitions with no backup:")
        print(render_table(["PARTITION", "WHY"], [[k, v] for k, v in sorted(extra["orphan_partitions"].items())]))
    if any(s["state"] == "stale" for s in extra["staging"]) or extra["orphan_partitions"]:
        print("\n`supabackup prune` removes the stale ones.")


def cmd_list(args) -> int:
    from supabackup_pipeline.console import human_size, join_names, render_table
    from supabackup_pipeline.operations import backup_folder, list_backups, list_unpublished

    backups = list_backups()
    extra = list_unpublished() if args.all else None
    if args.json:
        print_json({"backups": backups, **extra} if extra is not None else backups)
        return EXIT_OK
    if not backups:
        print(f"no backups yet in {backup_folder()}")
    else:
        rows = [[b["backup_id"], b["status"], human_size(b["total_size"]), _age(b["backup_id"]),
                 join_names(b["components"]), _verified(b), b["description"]] for b in backups]
        print(render_table(["BACKUP ID", "STATUS", "SIZE", "AGE", "COMPONENTS", "LAST VERIFIED", "DESCRIPTION"],
                           rows, right={2, 3}))
    if extra is not None:
        _print_unpublished(extra)
    return EXIT_OK


def _show_text(details: dict) -> str:
    from supabackup_pipeline.console import human_size, join_names, render_table

    last = details.get("last_verification")
    source = details.get("source") or {}
    facts = [
        ["backup", details["backup_id"]], ["status", details["status"]],
        ["created", (details.get("created_at") or "")[:19].replace("T", " ") + " UTC"],
        ["description", details.get("description") or "-"], ["size", human_size(details.get("total_size"))],
        ["components", join_names(details.get("components"))], ["files", details.get("files")],
        ["source", f"database {source.get('database', '?')}, PostgreSQL {source.get('server_version', '?')}"],
        ["last verified", f"{last['verified_at'][:19].replace('T', ' ')} ({'valid' if last['valid'] else 'NOT VALID'})"
         if last else "never (fully)"],
    ]
    out = [render_table(["", ""], facts).split("\n", 1)[1]]
    tables = [[t["table"], t["rows"]] for t in details.get("tables", []) + details.get("users", [])]
    if tables:
        out += ["", render_table(["TABLE", "ROWS"], tables, right={1})]
    for warning in details.get("warnings") or []:
        out.append(f"warning: {warning}")
    return "\n".join(out)


def cmd_show(args) -> int:
    from supabackup_pipeline.operations import show_backup

    details = show_backup(args.backup_id)
    if args.json:
        print_json(details)
    else:
        print(_show_text(details))
    return EXIT_OK


def cmd_verify(args) -> int:
    from supabackup_pipeline.console import human_size
    from supabackup_pipeline.operations import verify

    report = verify(args.backup_id, quick=args.quick)
    if not args.json:
        outcome = {"valid": "VALID", "invalid": "NOT VALID", "sizes_ok": "sizes OK"}.get(report.get("status"), "FAILED")
        detail = ("content not read: run without --quick to verify it" if report.get("status") == "sizes_ok"
                  else f"{human_size(report.get('bytes_read', 0))} read")
        print(f"backup {report['backup_id']}: {outcome} ({report.get('files_checked', 0)} files, {detail})")
        for problem in report.get("problems", []):
            print(f"  {problem['file']}: {problem['problem']}")
        if report.get("error"):
            print(f"error: {report['error']}", file=sys.stderr)
    return finish(report, EXIT_OK if report.get("status") in ("valid", "sizes_ok") else EXIT_FAILED, args.json)


ROLLBACK_EXIT = {"planned": EXIT_OK, "restored": EXIT_OK, "refused": EXIT_USAGE}


def cmd_rollback(args) -> int:
    from supabackup_pipeline.console import render_rollback
    from supabackup_pipeline.core.backup_id import validate_backup_id
    from supabackup_pipeline.operations import rollback

    validate_backup_id(args.backup_id)
    options = {
        "components": parse_components(args.components),
        "tables": parse_tables(args.tables),
        "dry_run": args.dry_run, "safety_backup": not args.no_safety_backup,
        "allow_other_project": args.allow_other_project, "drop_new_tables": args.drop_new_tables,
    }
    if options["tables"] is not None and "database" not in options["components"]:
        raise UsageError("--tables needs the database component (--components database,...)")
    if not args.dry_run and not confirm(f"Roll the live project back to backup {args.backup_id}?", args.backup_id, args.yes):
        print("not confirmed; nothing was changed", file=sys.stderr)
        return EXIT_FAILED
    report = rollback(args.backup_id, options)
    if not args.json:
        print(render_rollback(report))
        if report.get("error"):
            print(f"error: {report['error']}", file=sys.stderr)
    return finish(report, ROLLBACK_EXIT.get(report["status"], EXIT_FAILED), args.json)


def parse_tables(value: str | None) -> list[str] | None:
    """--tables: None when not given (every table); given but naming none (`--tables "$T"` with T
    unset) is an error, never "every table"."""
    if value is None:
        return None
    tables = [t.strip() for t in value.split(",") if t.strip()]
    if not tables:
        raise UsageError(f"--tables {value!r} names no table: give schema.table names, or leave --tables out to"
                         " restore every table")
    return tables


def confirm(question: str, expected: str, yes: bool) -> bool:
    """True when the user confirmed (or passed --yes); refuses without a terminal to ask on, and
    an end of input (Ctrl-D) is no confirmation."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')}: confirm with --yes (no terminal to ask on)")
    try:
        return input(f"{question} Type {expected!r} to confirm: ").strip() == expected
    except EOFError:
        print(file=sys.stderr)
        return False


def cmd_delete(args) -> int:
    from supabackup_pipeline.core.backup_id import validate_backup_id
    from supabackup_pipeline.operations import delete

    validate_backup_id(args.backup_id)
    if not confirm(f"Delete backup {args.backup_id}?", args.backup_id, args.yes):
        print("not confirmed; nothing was deleted", file=sys.stderr)
        return EXIT_FAILED
    result = delete(args.backup_id, force=args.force)
    if not args.json:
        print(f"deleted {args.backup_id}" if result["deleted"] else f"error: {result['error']}",
              file=sys.stdout if result["deleted"] else sys.stderr)
    code = EXIT_OK if result["deleted"] else (EXIT_USAGE if result.get("refused") else EXIT_FAILED)
    return finish(result, code, args.json)


def _print_prune(plan: dict, dry_run: bool) -> None:
    from supabackup_pipeline.console import human_size

    for backup_id, reasons in sorted(plan["kept"].items(), reverse=True):
        print(f"keep   {backup_id}  ({', '.join(reasons)})")
    for backup_id, why in sorted(plan["forget"].items(), reverse=True):
        print(f"{'forget' if dry_run else 'delete'} {backup_id}  ({why})")
    verb = "would remove" if dry_run else "removed"
    for backup_id, size in sorted(plan.get("stale_staging", {}).items()):
        print(f"{verb} stale staging folder {backup_id} ({human_size(size)}; its run is gone)")
    for key, why in sorted(plan.get("orphan_partitions", {}).items()):
        print(f"{verb} partition {key} ({why})")


def cmd_prune(args) -> int:
    from supabackup_pipeline.settings import retention_policy
    from supabackup_pipeline.operations import prune

    defaults = retention_policy()
    policy = {k: getattr(args, k) if getattr(args, k) is not None else getattr(defaults, k)
              for k in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")}
    for key, value in policy.items():
        if value < 0:
            raise UsageError(f"--{key.replace('_', '-')} (or SUPABACKUP_{key.upper()}) must be 0 or more, not {value}")
    if not any(policy.values()):
        raise UsageError("a policy that keeps nothing would delete every backup: set at least one --keep-* (or"
                         " SUPABACKUP_KEEP_*) above 0")
    plan = prune(policy, dry_run=True)
    leftovers = plan["stale_staging"] or plan["orphan_partitions"]
    if not args.dry_run and (plan["forget"] or leftovers):
        if plan["forget"] and not confirm(f"Delete {len(plan['forget'])} backup(s) not kept by the policy?", "yes", args.yes):
            print("not confirmed; nothing was deleted", file=sys.stderr)
            return EXIT_FAILED
        plan = prune(policy)
    if not args.json:
        _print_prune(plan, args.dry_run)
        if plan.get("error"):
            print(f"error: {plan['error']}", file=sys.stderr)
    return finish(plan, EXIT_FAILED if plan.get("error") else EXIT_OK, args.json)


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
    from supabackup_pipeline.core.discovery_cache import RELOAD_HINT
    from supabackup_pipeline.operations import refresh_tables

    tables = refresh_tables()
    print(f"{len(tables)} tables cached; {RELOAD_HINT}")
    return 0


def add_yes_and_json(p: argparse.ArgumentParser) -> None:
    """The flags of the commands that change the project or its backups (rollback, delete, prune)."""
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true")


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2, as JSON with --json) instead of printing and exiting."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true",
                        help="show Dagster's event log and stack traces")
    parser = Parser(prog="supabackup", description=__doc__.split("\n\n")[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add = lambda name, **kw: sub.add_parser(name, parents=[common], **kw)  # noqa: E731
    for add_commands in (_local_stack_commands, _backup_commands, _rollback_commands, _maintenance_commands):
        add_commands(add)
    return parser


def _local_stack_commands(add) -> None:
    p = add("stack", help="the local Supabase-like stack (PostgreSQL + Storage API stand-in)")
    p.add_argument("action", choices=["up", "down", "env"])
    p.set_defaults(func=cmd_stack)

    p = add("dev", help="start the local stack and `dagster dev` on it")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_dev)

    p = add("demo", help="seed the local stack, back up, damage, roll back, verify; then open the UI")
    p.add_argument("--no-ui", action="store_true", help="exit after the report instead of starting dagster dev")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_demo)


def _backup_commands(add) -> None:
    p = add("backup", help="take a backup now (a backup_job run)")
    p.add_argument("--description", default="")
    p.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated: database,users,storage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)

    p = add("list", help="list backups")
    p.add_argument("--all", action="store_true", help="also staging folders and partitions with no backup")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = add("show", help="show one backup")
    p.add_argument("backup_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = add("verify", help="re-check every file of a backup against its manifest")
    p.add_argument("backup_id")
    p.add_argument("--quick", action="store_true", help="presence and sizes only (never says valid)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)


def _rollback_commands(add) -> None:
    p = add("rollback", help="restore the live project from a backup")
    p.add_argument("backup_id")
    p.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated: database,users,storage")
    p.add_argument("--tables", default=None, help="only these tables: schema.table,...")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--no-safety-backup", action="store_true", help="skip the backup of the current state")
    p.add_argument("--allow-other-project", action="store_true", help="restore a backup taken from another project")
    p.add_argument("--drop-new-tables", action="store_true", help="drop tables created after the backup")
    add_yes_and_json(p)
    p.set_defaults(func=cmd_rollback)

    p = add("rollbacks", help="the rollback history")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rollbacks)


def _maintenance_commands(add) -> None:
    p = add("delete", help="delete one backup")
    p.add_argument("backup_id")
    p.add_argument("--force", action="store_true", help="also delete the only valid backup")
    add_yes_and_json(p)
    p.set_defaults(func=cmd_delete)

    p = add("prune", help="delete the backups the retention policy does not keep, and what failed runs left")
    for rule in ("last", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{rule}", dest=f"keep_{rule}", type=int, default=None)
    p.add_argument("--dry-run", action="store_true")
    add_yes_and_json(p)
    p.set_defaults(func=cmd_prune)

    p = add("refresh-tables", help="rediscover tables for the asset list")
    p.set_defaults(func=cmd_refresh_tables)


def report_error(message: str, exit_code: int, as_json: bool) -> int:
    """An error for people (one line on stderr) or, with --json, for machines (JSON on stdout)."""
    if as_json:
        print_json({"error": message, "exit_code": exit_code})
    else:
        print(f"error: {message}", file=sys.stderr)
    return exit_code


def _quiet(verbose: bool) -> None:
    """Unless --verbose: no Python warnings, and the runs print one line per phase (see console.py)."""
    import warnings

    if verbose:
        os.environ["SUPABACKUP_VERBOSE"] = "1"
    else:
        os.environ.pop("SUPABACKUP_VERBOSE", None)
        os.environ["PYTHONWARNINGS"] = "ignore"  # the step processes too
        warnings.simplefilter("ignore")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json, verbose = "--json" in argv, "--verbose" in argv or "-v" in argv
    try:
        args = build_parser().parse_args(argv)
        _quiet(args.verbose)
        return args.func(args)
    except SupabackupError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        return report_error(str(exc), exc.exit_code, as_json)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader stopped early (`supabackup list | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug or an unexpected failure: one line, the traceback only with --verbose
        if verbose:
            raise
        return report_error(f"{type(exc).__name__}: {exc} (run with --verbose for details)", EXIT_FAILED, as_json)


if __name__ == "__main__":
    sys.exit(main())
