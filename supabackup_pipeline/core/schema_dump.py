"""The backed-up schemas as pg_dump describes them, split into entries a restore can run itself.

A backup keeps `pg_dump -Fc --schema-only` of its schemas (`database/schema.dump`, read in the
backup's snapshot, with owners and grants) and the same as plain SQL for people
(`database/schema.sql`). pg_restore turns the dump into a dependency-sorted script, pg_restore
ordering: objects, then grants. The script is cut into one `Entry` per table of contents item
(pg_dump heads each with `-- Name: …; Type: …; Schema: …; Owner: …`), so the restore can skip,
rewrite or reorder single entries and run them inside its own transaction, and two dumps (the
backup's and the live project's) can be compared object by object.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.snapshot import client_connection, client_program, connect

SCHEMA_DUMP = "database/schema.dump"
SCHEMA_SQL = "database/schema.sql"

# Entries that pg_restore runs after the data (pg_dump's post-data section) and the grants it runs last.
POST_DATA = {"CONSTRAINT", "FK CONSTRAINT", "INDEX", "INDEX ATTACH", "TRIGGER", "RULE", "POLICY",
             "ROW SECURITY", "STATISTICS", "EVENT TRIGGER", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA"}
GRANTS = {"ACL", "DEFAULT ACL"}

_HEADER = re.compile(r"^--\n-- Name: (?P<name>.*); Type: (?P<kind>[A-Z ]+); Schema: (?P<schema>.*);"
                     r" Owner: (?P<owner>[^;\n]*)(?:; Tablespace: [^\n]*)?\n--\n", re.M)
# Lines of pg_dump's script that are not part of any object: the psql-only \restrict guard
# (pg_dump 15.14+ writes it with a random key), session SETs, and the closing banner.
_NOISE = re.compile(r"^(\\(un)?restrict .*|SET default_tablespace = .*|SET default_table_access_method = .*"
                    r"|-- PostgreSQL database dump complete)$", re.M)


@dataclass(frozen=True)
class Entry:
    """One item of the dump's table of contents and the SQL pg_restore writes for it."""

    kind: str  # pg_dump's type: TABLE, FUNCTION, ACL, COMMENT, ...
    schema: str | None
    name: str  # as pg_dump names it: "orgs", "handle_new_user()", "orgs orgs_pkey", "TABLE orgs"
    owner: str
    sql: str
    section: str  # pre-data, post-data or grants, by its place in pg_restore's order

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind, self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name



def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, **kwargs)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip() if isinstance(done.stderr, bytes) else done.stderr.strip()
        raise SupabackupError(f"{what} failed: {error.splitlines()[-1] if error else done.returncode}")
    return done


def dump_command(db_url: str, schemas: list[str], target: Path, snapshot_id: str | None = None
                 ) -> tuple[list[str], dict[str, str]] | None:
    """The pg_dump command (custom format, schema only, owners and grants kept); None without pg_dump."""
    pg_dump = client_program("pg_dump")
    if not pg_dump:
        return None
    conninfo, env = client_connection(db_url)
    cmd = [pg_dump, "--format=custom", "--schema-only", "--file", str(target), "--dbname", conninfo]
    cmd += [f"--snapshot={snapshot_id}"] if snapshot_id else []
    # double-quoted: pg_dump reads -n as a pattern (unquoted names are folded to lower case, * and ? match)
    cmd += ['--schema="{}"'.format(s.replace('"', '""')) for s in schemas]
    return cmd, env


def script(dump: Path) -> str:
    """The dump as the SQL script pg_restore writes (dependency-sorted; grants last)."""
    pg_restore = client_program("pg_restore")
    if not pg_restore:
        raise SupabackupError("pg_restore not found: install the PostgreSQL client (postgresql-client-15)")
    return _run([pg_restore, "--file=-", str(dump)], f"pg_restore of {dump.name}", text=True).stdout


def parse_script(text: str) -> list[Entry]:
    """Cut pg_restore's script into entries at pg_dump's `-- Name: …` headers. pg_restore writes
    the pre-data objects first, then the post-data ones (a comment follows its object, so a
    comment on an index is post-data too), then the grants."""
    headers = list(_HEADER.finditer(text))
    entries = []
    section = "pre-data"
    for header, following in zip(headers, headers[1:] + [None]):
        body = text[header.end(): following.start() if following else len(text)]
        body = _NOISE.sub("", body).strip()
        schema, kind = header["schema"], header["kind"]
        if kind in POST_DATA and section == "pre-data":
            section = "post-data"
        entries.append(Entry(kind=kind, schema=None if schema == "-" else schema, name=header["name"],
                             owner=header["owner"], sql=body, section="grants" if kind in GRANTS else section))
    return entries


def read_entries(dump: Path) -> list[Entry]:
    return parse_script(script(dump))


def write_plain_sql(dump: Path, target: Path) -> None:
    """schema.sql for people: the same dump as plain SQL."""
    text = _NOISE.sub("", script(dump))
    target.write_text(re.sub(r"\n{3,}", "\n\n", text))


def live_entries(db_url: str, schemas: list[str]) -> list[Entry]:
    """The live project's schemas (those that exist), dumped and cut the same way as a backup's."""
    with connect(db_url) as conn:
        schemas = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", (schemas,)).fetchall()]
    if not schemas:
        return []
    with tempfile.TemporaryDirectory(prefix="supabackup-schema-") as tmp:
        target = Path(tmp) / "live.dump"
        command = dump_command(db_url, schemas, target)
        if command is None:
            raise SupabackupError("pg_dump not found: install the PostgreSQL client (postgresql-client-15)")
        cmd, env = command
        _run(cmd, "pg_dump --schema-only of the live project", env=env, text=True)
        return read_entries(target)


def compare_entries(backup: list[Entry], live: list[Entry]) -> list[dict]:
    """What differs between the live schema and the backup's, object by object: the backup's
    entries missing live are `create`, live ones missing from the backup `drop`, differing
    ones `replace` (grants and comments: `alter`)."""
    ours = {e.key: e for e in backup}
    theirs = {e.key: e for e in live}
    changes = []
    for key in sorted(set(ours) | set(theirs), key=lambda k: (k[0], k[1] or "", k[2])):
        kind, _, _ = key
        entry = ours.get(key) or theirs[key]
        if key not in theirs:
            action = "create"
        elif key not in ours:
            action = "drop"
        elif ours[key].sql != theirs[key].sql or ours[key].owner != theirs[key].owner:
            action = "alter" if kind in GRANTS | {"COMMENT"} else "replace"
        else:
            continue
        changes.append({"kind": kind.lower(), "name": entry.label, "action": action})
    return changes
