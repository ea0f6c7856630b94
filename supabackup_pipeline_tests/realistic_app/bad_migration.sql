-- A migration gone wrong (see realistic_app.py): it touches every kind of object of the app and
-- its data. Steps (`-- step: <role>`) each run in a transaction of their own: a new enum value
-- cannot be used in the transaction that added it.

-- step: postgres
ALTER TYPE public.member_role ADD VALUE 'owner' AFTER 'admin';
-- BEFORE: the new label sorts between existing ones (an odd enumsortorder)
ALTER TYPE public.task_status ADD VALUE 'review' BEFORE 'done';

-- step: postgres
-- ------------------------------------------------------------------ data first (old triggers still in place)
UPDATE public.memberships SET role = 'owner'
WHERE (org_id, user_id) IN (SELECT org_id, user_id FROM public.memberships WHERE role = 'admin'
                            ORDER BY org_id, user_id LIMIT 3);
UPDATE public.tasks SET status = 'review' WHERE id % 13 = 0;
UPDATE public.tasks SET status = 'done', completed_at = timestamp '2025-02-01 09:00' WHERE id % 7 = 0 AND status <> 'review';
DELETE FROM public.task_comments WHERE id % 5 = 0;
UPDATE public.task_comments SET body = body || ' (edited)', edited = true WHERE id % 11 = 0;
DELETE FROM public.attachments WHERE task_id % 4 = 0;
UPDATE public.documents SET content = upper(content), version = version + 1 WHERE id % 2 = 0;
UPDATE public.documents SET slug = 'Renamed Doc ' || id WHERE id % 5 = 0;   -- ALWAYS trigger normalizes it
UPDATE public.app_settings SET value = '{"variant": "c"}', enabled = false WHERE key = 'new_editor';
DELETE FROM public.app_settings WHERE key = 'maintenance';
INSERT INTO public.app_settings (key, value, rollout) VALUES ('migrated_at', '"v2"', int4range(0, 100));
INSERT INTO public.organizations (id, slug, name, plan, hq)
VALUES (md5('org-migrated')::uuid, 'org-migrated', 'Migrated Org', 'pro', ROW('1 New St', 'Oslo', '0150', 'NO'));
UPDATE public.projects SET budget = budget * 1.1 WHERE id % 3 = 0;
UPDATE public.measurements SET samples = samples || 0 WHERE id % 10 = 0;
DELETE FROM public.events WHERE kind = 'logout' AND id % 4 = 0;

-- ------------------------------------------------------------------ NOT NULL, CHECK
UPDATE public.profiles SET full_name = 'Unknown user' WHERE full_name IS NULL;
ALTER TABLE public.profiles ALTER COLUMN full_name SET NOT NULL;
ALTER TABLE public.invoices ADD CONSTRAINT invoices_total_nonnegative CHECK (total >= 0);

-- ------------------------------------------------------------------ functions
-- body, volatility, SECURITY DEFINER -> INVOKER, search_path
CREATE OR REPLACE FUNCTION public.org_role(org uuid) RETURNS public.member_role
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = ''
AS $$
BEGIN
    RETURN coalesce((SELECT m.role FROM public.memberships m WHERE m.org_id = org AND m.user_id = auth.uid()),
                    'viewer'::public.member_role);
END
$$;
-- same signature, new body: profiles get a username and never a NULL full_name
CREATE OR REPLACE FUNCTION public.handle_new_user() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
    INSERT INTO public.profiles (id, email, full_name, username, created_at)
    VALUES (NEW.id, NEW.email,
            coalesce(NEW.raw_user_meta_data ->> 'full_name', split_part(NEW.email, '@', 1), 'Unknown user'),
            'u_' || replace(NEW.id::text, '-', ''),
            coalesce(NEW.created_at, now()));
    RETURN NEW;
END
$$;
CREATE FUNCTION public.project_progress(project bigint) RETURNS numeric
    LANGUAGE sql STABLE
AS $$
    SELECT round(100.0 * count(*) FILTER (WHERE t.status = 'done') / nullif(count(*), 0), 1)
    FROM public.tasks t WHERE t.project_id = project
$$;
COMMENT ON FUNCTION public.is_org_member(uuid) IS 'Membership check (v2)';

-- ------------------------------------------------------------------ views
CREATE OR REPLACE VIEW public.open_tasks AS
    SELECT t.id, t.project_id, t.title, t.status, t.priority, t.due_date, t.assignee, t.labels
    FROM public.tasks t
    WHERE t.status IN ('todo', 'doing', 'blocked', 'review');
CREATE VIEW public.overdue_tasks AS
    SELECT o.id, o.title, o.due_date, o.assignee FROM public.open_tasks o WHERE o.due_date < date '2025-01-01';
DROP MATERIALIZED VIEW public.org_stats;
CREATE MATERIALIZED VIEW public.org_stats AS
    SELECT o.id AS org_id, count(i.id) AS invoices, sum(i.total) FILTER (WHERE i.total <> 'NaN') AS invoiced_total
    FROM public.organizations o LEFT JOIN public.invoices i ON i.org_id = o.id
    GROUP BY o.id;
CREATE INDEX org_stats_org_id_idx ON public.org_stats (org_id);
REFRESH MATERIALIZED VIEW public.task_search;

-- ------------------------------------------------------------------ policies, RLS
DROP POLICY "Devices belong to their user" ON public.devices;
CREATE POLICY "Devices of org admins" ON public.devices
    FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()) OR EXISTS (
        SELECT 1 FROM public.memberships m WHERE m.user_id = devices.user_id AND public.org_role(m.org_id) = 'owner'));
ALTER POLICY "Tasks visible to org members" ON public.tasks TO authenticated, anon USING (true);
ALTER POLICY "Users update their own profile" ON public.profiles WITH CHECK (true);
ALTER TABLE public.app_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Enabled settings are readable" ON public.app_settings FOR SELECT USING (enabled);
ALTER TABLE public.notifications NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.attachments DISABLE ROW LEVEL SECURITY;

-- ------------------------------------------------------------------ grants
GRANT SELECT ON public.invoices TO anon;
REVOKE UPDATE, DELETE ON public.profiles FROM authenticated;
GRANT SELECT (bio), UPDATE (bio) ON public.profiles TO anon;
GRANT EXECUTE ON FUNCTION public.invoice_total(integer) TO anon;
REVOKE EXECUTE ON FUNCTION public.is_org_member(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.is_org_member(uuid) TO authenticated;
GRANT ALL ON public.org_stats TO anon;   -- the recreated view got the default grants back anyway

-- ------------------------------------------------------------------ comments
COMMENT ON TABLE public.tasks IS 'Work items (v2)';
COMMENT ON COLUMN public.profiles.bio IS NULL;
COMMENT ON COLUMN public.tasks.labels IS 'Free-form labels';
COMMENT ON TYPE public.address IS 'Postal address with region';

-- ------------------------------------------------------------------ columns
ALTER TABLE public.measurements ALTER COLUMN small_value TYPE integer;
ALTER TABLE public.devices ALTER COLUMN name TYPE varchar(80);
ALTER TABLE public.devices DROP COLUMN features;
ALTER TABLE public.tasks ADD COLUMN archived boolean NOT NULL DEFAULT false;
ALTER TABLE public.projects ADD COLUMN visibility text NOT NULL DEFAULT 'private'
    CONSTRAINT projects_visibility_check CHECK (visibility IN ('private', 'internal', 'public'));
ALTER TABLE public.organizations ALTER COLUMN plan SET DEFAULT 'pro';

-- ------------------------------------------------------------------ types, domain, sequence
CREATE TYPE public.invoice_state AS ENUM ('draft', 'sent', 'paid', 'void');
ALTER TABLE public.invoices ADD COLUMN state public.invoice_state NOT NULL DEFAULT 'draft';
ALTER DOMAIN public.email_address DROP CONSTRAINT email_address_check;
ALTER DOMAIN public.email_address ADD CONSTRAINT email_address_check
    CHECK (VALUE ~ '^[^@\s]+@[^@\s]+$' AND length(VALUE) <= 254);
ALTER TYPE public.address ADD ATTRIBUTE region text;
ALTER SEQUENCE public.invoice_number_seq INCREMENT BY 10 MAXVALUE 99999999 NO CYCLE CACHE 1;
INSERT INTO public.invoices (org_id, amount, total, issued_on, state)
SELECT md5('org-migrated')::uuid, 99.5, 99.5, date '2025-03-01' + g, 'sent' FROM generate_series(1, 3) g;

-- ------------------------------------------------------------------ indexes
CREATE INDEX tasks_due_date_idx ON public.tasks (due_date) WHERE NOT archived;
DROP INDEX public.projects_metadata_gin;
ALTER INDEX public.tasks_project_idx RENAME TO tasks_project_priority_idx;

-- ------------------------------------------------------------------ triggers
CREATE FUNCTION public.protect_paid_invoices() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF OLD.paid_at IS NOT NULL AND OLD.paid_at <> 'infinity' THEN
        RAISE EXCEPTION 'invoice % is paid', OLD.id;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER invoices_protect_paid BEFORE UPDATE OR DELETE ON public.invoices
    FOR EACH ROW EXECUTE FUNCTION public.protect_paid_invoices();
ALTER TABLE public.documents ENABLE TRIGGER documents_normalize_slug;          -- ALWAYS -> ORIGIN
ALTER TABLE public.tasks ENABLE REPLICA TRIGGER tasks_notify_assignee;        -- DISABLED -> REPLICA
DROP TRIGGER app_settings_updated_at ON public.app_settings;

-- ------------------------------------------------------------------ partitions
ALTER TABLE public.events DETACH PARTITION public.events_2024;
CREATE TABLE public.events_2027 PARTITION OF public.events
    FOR VALUES FROM ('2027-01-01 00:00:00+00') TO ('2028-01-01 00:00:00+00');
INSERT INTO public.events (occurred_at, org_id, kind, payload)
SELECT timestamptz '2027-01-01 00:00:00+00' + g * interval '1 day', md5('org-migrated')::uuid, 'migrated',
       jsonb_build_object('n', g)
FROM generate_series(1, 20) g;

-- ------------------------------------------------------------------ realtime
ALTER PUBLICATION supabase_realtime ADD TABLE public.invoices;
ALTER PUBLICATION supabase_realtime DROP TABLE public.task_comments;

-- ------------------------------------------------------------------ auth users
-- cascades to profiles, memberships, devices, notifications, identities; sets NULL elsewhere
DELETE FROM auth.users WHERE id = md5('user2')::uuid;
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                        raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
VALUES ('00000000-0000-0000-0000-000000000000', md5('user-after-migration')::uuid, 'authenticated',
        'authenticated', 'after.migration@example.com', '$2a$10$' || md5('x') || md5('y'),
        '2025-03-01 00:00:00+00', '{"provider": "email", "providers": ["email"]}', '{}',
        '2025-03-01 00:00:00+00', '2025-03-01 00:00:00+00');
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at, id)
VALUES (md5('user-after-migration')::uuid::text, md5('user-after-migration')::uuid,
        jsonb_build_object('sub', md5('user-after-migration')::uuid::text, 'email', 'after.migration@example.com'),
        'email', '2025-03-01 00:00:00+00', '2025-03-01 00:00:00+00', md5('identity-after-migration')::uuid);

-- step: superuser
-- postgres does not own storage.objects: policies there need its owner (or a superuser)
CREATE POLICY "Org admins upload org files" ON storage.objects
    FOR INSERT TO authenticated
    WITH CHECK (bucket_id = 'org-files' AND public.org_role(split_part(name, '/', 1)::uuid) IN ('admin', 'owner'));
ALTER POLICY "Avatars are public" ON storage.objects TO authenticated;
ALTER POLICY "Users upload their own avatar" ON storage.objects
    WITH CHECK (bucket_id = 'avatars');
DROP POLICY "Buckets are listable" ON storage.buckets;
