-- Cluster-wide roles of a hosted Supabase project, for the local stack. Run once per cluster
-- as the bootstrap superuser. As on hosted Supabase, the role users connect as (`postgres`)
-- is NOT a superuser.

CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'authenticator';
GRANT anon, authenticated, service_role TO authenticator;
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE PASSWORD 'supabase_auth_admin';
CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE PASSWORD 'supabase_storage_admin';
CREATE ROLE postgres LOGIN CREATEROLE CREATEDB REPLICATION BYPASSRLS PASSWORD 'postgres';
GRANT anon, authenticated, service_role TO postgres WITH ADMIN OPTION;
-- As on hosted projects (pg_dumpall of one shows `GRANT supabase_auth_admin TO postgres GRANTED BY
-- supabase_admin`, the same for supabase_storage_admin): postgres may manage the app's triggers
-- on auth.users and its policies on storage.objects. It is NOT a member of supabase_admin.
GRANT supabase_auth_admin, supabase_storage_admin TO postgres;
-- Supabase's restore instructions set session_replication_role; hosted projects allow it.
GRANT SET ON PARAMETER session_replication_role TO postgres;
GRANT pg_read_all_settings TO postgres;
