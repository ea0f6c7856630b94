"""The rollback plan's users diff (core/users_diff.py): added, deleted and changed users counted
exactly, NULLs and ±infinity timestamps included."""

from __future__ import annotations

from supabackup_pipeline.core.database_backup import backup_database
from supabackup_pipeline.core.snapshot import connect
from supabackup_pipeline.core.users_diff import users_diff


def test_users_added_deleted_and_changed_since_the_backup_are_counted(db, project_db_url, tmp_path):
    db.execute("""
        SET session_replication_role = replica;
        TRUNCATE auth.users CASCADE;
        INSERT INTO auth.users (id, email, encrypted_password, updated_at)
        SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid,
               CASE WHEN g % 10 <> 0 THEN 'u' || g || '@x.io' END,
               '$2a$10$hash' || g, '2026-01-01'::timestamptz + g * interval '1 second'
        FROM generate_series(1, 200) g;
        UPDATE auth.users SET updated_at = 'infinity' WHERE email = 'u7@x.io';
    """)
    backup_database(project_db_url, tmp_path, [], include_users=True, log=lambda _: None)
    parquet = tmp_path / "users" / "auth.users.parquet"
    with connect(project_db_url) as conn:
        assert users_diff(conn, parquet) == {"added_since_backup (removed)": 0, "deleted_since_backup (restored)": 0,
                                             "changed_since_backup (reverted)": 0, "users_after": 200}
    db.execute("""
        SET session_replication_role = replica;
        DELETE FROM auth.users WHERE email IN ('u1@x.io', 'u2@x.io', 'u3@x.io');
        INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'new1@x.io'), (gen_random_uuid(), NULL);
        UPDATE auth.users SET email = NULL WHERE email = 'u4@x.io';                       -- value → NULL
        UPDATE auth.users SET email = 'back@x.io' WHERE email IS NULL AND id::text LIKE '%020'; -- NULL → value
        UPDATE auth.users SET encrypted_password = '$2a$10$other' WHERE email = 'u5@x.io';
        UPDATE auth.users SET updated_at = updated_at + interval '1 microsecond' WHERE email = 'u6@x.io';
        UPDATE auth.users SET updated_at = '-infinity' WHERE email = 'u7@x.io';          -- infinity → -infinity
        UPDATE auth.users SET updated_at = 'infinity' WHERE email = 'u8@x.io';           -- value → infinity
        UPDATE auth.users SET email = email WHERE email = 'u9@x.io';                      -- same values: unchanged
    """)
    with connect(project_db_url) as conn:
        assert users_diff(conn, parquet) == {"added_since_backup (removed)": 2, "deleted_since_backup (restored)": 3,
                                             "changed_since_backup (reverted)": 6, "users_after": 200}
