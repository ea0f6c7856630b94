"""`supabackup demo`: the whole story on the local stack in one command.

Seeds a small realistic project (tables with foreign keys, users with bcrypt passwords, two
buckets with files), takes a backup, damages the project (deletes rows, a user, a file; drops a
table), rolls back, checks that everything is back, and prints a short report with timings.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import psycopg

from supabackup_pipeline.core.errors import SupabackupError

DEMO_BUCKETS = ("demo-avatars", "demo-invoices")

SEED_SQL = """
DROP TABLE IF EXISTS public.invoice_lines, public.invoices, public.customers CASCADE;
DELETE FROM auth.users WHERE email LIKE '%@demo.supabackup';
CREATE TABLE public.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id uuid REFERENCES auth.users(id) ON DELETE SET NULL,
    name text NOT NULL, country char(2), created_at timestamptz DEFAULT now());
CREATE TABLE public.invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id bigint NOT NULL REFERENCES public.customers(id),
    issued date NOT NULL, total numeric(12, 2) NOT NULL, paid boolean DEFAULT false, tags text[]);
CREATE TABLE public.invoice_lines (
    invoice_id bigint REFERENCES public.invoices(id) ON DELETE CASCADE, line int, item text, amount numeric(12, 2),
    PRIMARY KEY (invoice_id, line));
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_invoices ON public.invoices FOR SELECT TO authenticated
    USING (customer_id IN (SELECT id FROM public.customers WHERE user_id = auth.uid()));
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at, created_at, updated_at,
                        raw_app_meta_data, raw_user_meta_data)
SELECT '00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated', 'authenticated',
       'user' || g || '@demo.supabackup', extensions.crypt('password' || g, extensions.gen_salt('bf', 4)), now(), now(), now(),
       '{"provider": "email", "providers": ["email"]}', jsonb_build_object('name', 'User ' || g)
FROM generate_series(1, 20) g;
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at)
SELECT id::text, id, jsonb_build_object('sub', id::text, 'email', email), 'email', now(), now()
FROM auth.users WHERE email LIKE '%@demo.supabackup';
INSERT INTO public.customers (user_id, name, country)
SELECT id, raw_user_meta_data ->> 'name', (ARRAY['DE', 'FR', 'US', 'JP'])[1 + (random() * 3)::int]
FROM auth.users WHERE email LIKE '%@demo.supabackup';
INSERT INTO public.invoices (customer_id, issued, total, paid, tags)
SELECT 1 + g % 20, date '2026-01-01' + g, round((g * 13.37)::numeric, 2), g % 3 = 0, ARRAY['q' || (1 + g % 4)]
FROM generate_series(1, 500) g;
INSERT INTO public.invoice_lines SELECT i, l, 'item ' || l, round((i * l * 1.1)::numeric, 2)
FROM generate_series(1, 500) i, generate_series(1, 3) l;
"""

DAMAGE_SQL = """
DELETE FROM public.invoice_lines WHERE line = 3;
DELETE FROM auth.users WHERE email = 'user7@demo.supabackup';
UPDATE public.invoices SET paid = true;
DROP TABLE public.invoice_lines;
"""

FINGERPRINT_SQL = """
SELECT (SELECT md5(string_agg(to_jsonb(t)::text, ',' ORDER BY to_jsonb(t)::text)) FROM public.customers t),
       (SELECT md5(string_agg(to_jsonb(t)::text, ',' ORDER BY to_jsonb(t)::text)) FROM public.invoices t),
       (SELECT md5(string_agg(to_jsonb(t)::text, ',' ORDER BY to_jsonb(t)::text)) FROM public.invoice_lines t),
       (SELECT md5(string_agg(to_jsonb(t)::text, ',' ORDER BY to_jsonb(t)::text)) FROM auth.users t
         WHERE email LIKE '%@demo.supabackup')
"""


def seed(db_url: str, storage) -> None:
    with psycopg.connect(db_url, autocommit=True) as db:
        db.execute(SEED_SQL)
    for bucket in DEMO_BUCKETS:
        try:
            storage.empty_bucket(bucket)
            storage.delete_bucket(bucket)
        except Exception:  # not there yet
            pass
    storage.create_bucket("demo-avatars", options={"public": True, "allowed_mime_types": ["image/png"]})
    storage.create_bucket("demo-invoices", options={"public": False})
    for i in range(1, 21):
        storage.from_("demo-avatars").upload(f"users/user{i}.png", os.urandom(2048), {"content-type": "image/png"})
    for i in range(1, 31):
        storage.from_("demo-invoices").upload(f"2026/{i:02d}/invoice {i}.pdf", b"%PDF-1.4 demo " + os.urandom(4096),
                                              {"content-type": "application/pdf"})


def state(db_url: str, storage) -> tuple:
    with psycopg.connect(db_url) as db:
        tables = db.execute(FINGERPRINT_SQL).fetchone() if db.execute(
            "SELECT to_regclass('public.invoice_lines')").fetchone()[0] else ("dropped",)
    files = tuple(sorted(  # the demo's buckets are small: one page of the official client's list v2
        (bucket, o.name, storage.from_(bucket).download(o.name))
        for bucket in DEMO_BUCKETS for o in storage.from_(bucket).list_v2({"limit": 1000, "prefix": ""}).objects
    ))
    return tables, files


def run_demo(env: dict[str, str], log: Callable[[str], None] = print) -> dict:
    """Seed, back up, damage, roll back, verify; returns the report (raises if anything is not back)."""
    from supabase import create_client

    from supabackup_pipeline.operations import rollback, run_backup

    storage = create_client(env["SUPABASE_URL"], env["SUPABASE_SERVICE_ROLE_KEY"]).storage
    timings: dict[str, float] = {}

    def step(name: str, fn):
        started = time.monotonic()
        result = fn()
        timings[name] = round(time.monotonic() - started, 2)
        log(f"  {name:<10} {timings[name]:6.2f} s")
        return result

    log("supabackup demo")
    step("seed", lambda: seed(env["SUPABASE_DB_URL"], storage))
    before = state(env["SUPABASE_DB_URL"], storage)
    backup = step("backup", lambda: run_backup(description="demo"))
    if backup["status"] != "valid":
        raise SupabackupError(f"the demo backup failed: {backup.get('error')}")

    def damage():
        with psycopg.connect(env["SUPABASE_DB_URL"], autocommit=True) as db:
            db.execute(DAMAGE_SQL)
        storage.from_("demo-invoices").remove(["2026/01/invoice 1.pdf"])

    step("damage", damage)
    damaged = state(env["SUPABASE_DB_URL"], storage)
    report = step("rollback", lambda: rollback(backup["backup_id"], {}))
    if report["status"] != "restored":
        raise SupabackupError(f"the demo rollback failed: {report.get('error')}")
    after = step("verify", lambda: state(env["SUPABASE_DB_URL"], storage))
    if after != before or damaged == before:
        raise SupabackupError("the demo project is not back to the backup")
    log(f"backup {backup['backup_id']} ({backup['total_size']:,} bytes): rows deleted, a user deleted, a file deleted"
        " and a table dropped, then rolled back — every table, user and file is back.")
    log(f"safety backup of the damaged state: {report.get('safety_backup')}")
    return {"backup_id": backup["backup_id"], "safety_backup": report.get("safety_backup"), "timings": timings}
