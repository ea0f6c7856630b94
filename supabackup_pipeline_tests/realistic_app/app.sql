-- A realistic Supabase app, as its migrations would build it (see realistic_app.py).
-- The file is split into steps at lines `-- step: <role>`; each step runs in its own
-- transaction, as `postgres` (the app's migrations) or as `superuser` (supabase_admin: only
-- what postgres may not do on a hosted project either).
-- Data steps read the sizes from custom settings app.seed_users / app.seed_orgs / ...

-- step: postgres
-- ------------------------------------------------------------------ types
CREATE TYPE public.member_role AS ENUM ('viewer', 'member', 'admin');
COMMENT ON TYPE public.member_role IS 'Role of a user inside an organization';
CREATE TYPE public.task_status AS ENUM ('todo', 'doing', 'blocked', 'done');
CREATE TYPE public.address AS (street text, city text, postal_code varchar(12), country char(2));
COMMENT ON TYPE public.address IS 'Postal address';
CREATE DOMAIN public.email_address AS text
    CONSTRAINT email_address_check CHECK (VALUE ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$');
COMMENT ON DOMAIN public.email_address IS 'An e-mail address (loosely validated)';
CREATE DOMAIN public.percentage AS numeric(5,2)
    CONSTRAINT percentage_range CHECK (VALUE >= 0 AND VALUE <= 100);

CREATE SEQUENCE public.invoice_number_seq AS bigint
    INCREMENT BY 5 MINVALUE 1000 MAXVALUE 9999999 START WITH 1000 CACHE 20 CYCLE;
COMMENT ON SEQUENCE public.invoice_number_seq IS 'Invoice numbers: 1000, 1005, ...';

-- ------------------------------------------------------------------ tables
CREATE TABLE public.profiles (
    id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    username varchar(40) UNIQUE,
    full_name text,
    email public.email_address,
    avatar bytea,
    avatar_path text,
    bio text,
    home public.address,
    locale char(5) DEFAULT 'en_US',
    birthday date,
    is_admin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz
);
COMMENT ON TABLE public.profiles IS 'One row per auth user, created by handle_new_user()';
COMMENT ON COLUMN public.profiles.bio IS 'Free text, may be long';

CREATE TABLE public.organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug varchar(64) NOT NULL UNIQUE,
    name text NOT NULL,
    plan text NOT NULL DEFAULT 'free' CONSTRAINT organizations_plan_check CHECK (plan IN ('free', 'pro', 'enterprise')),
    settings jsonb NOT NULL DEFAULT '{}',
    founded date,
    hq public.address,
    owner_id uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz
);
COMMENT ON TABLE public.organizations IS 'Tenants';

CREATE TABLE public.memberships (
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    role public.member_role NOT NULL DEFAULT 'member',
    past_roles public.member_role[] NOT NULL DEFAULT '{}',
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE public.projects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    name varchar(120) NOT NULL,
    description text,
    budget numeric(12,2),
    metadata jsonb,
    is_archived boolean NOT NULL DEFAULT false,
    active_period tstzrange,
    created_by uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz,
    CONSTRAINT projects_org_name_key UNIQUE (org_id, name)
);
COMMENT ON COLUMN public.projects.active_period IS 'When the project is active (open-ended allowed)';

CREATE TABLE public.tasks (
    id bigserial PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
    parent_id bigint REFERENCES public.tasks (id) ON DELETE SET NULL,
    title text NOT NULL,
    body text,
    status public.task_status NOT NULL DEFAULT 'todo',
    status_history public.task_status[],
    labels text[],
    priority smallint NOT NULL DEFAULT 3 CONSTRAINT tasks_priority_check CHECK (priority BETWEEN 1 AND 5),
    estimate interval,
    due_date date,
    due_time time,
    remind_at timetz,
    completed_at timestamp,
    progress public.percentage,
    position double precision,
    assignee uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    search tsvector GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig, coalesce(title, '') || ' ' || coalesce(body, ''))) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz
);
COMMENT ON TABLE public.tasks IS 'Work items';
COMMENT ON COLUMN public.tasks.search IS 'Full-text search vector (generated)';

CREATE TABLE public.task_comments (
    id serial PRIMARY KEY,
    task_id bigint NOT NULL REFERENCES public.tasks (id) ON DELETE CASCADE,
    author_id uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    body text NOT NULL,
    raw json,
    edited boolean,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.attachments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id bigint NOT NULL REFERENCES public.tasks (id) ON DELETE CASCADE,
    file_name text NOT NULL,
    mime_type varchar(100),
    content bytea,
    byte_size integer,
    checksum char(32),
    uploaded_by uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.attachments ALTER COLUMN content SET STORAGE EXTERNAL;

CREATE TABLE public.tags (
    id smallserial PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    name text NOT NULL,
    color bit(24),
    CONSTRAINT tags_org_name_key UNIQUE (org_id, name)
);

CREATE TABLE public.task_tags (
    task_id bigint NOT NULL REFERENCES public.tasks (id) ON DELETE CASCADE,
    tag_id smallint NOT NULL REFERENCES public.tags (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, tag_id)
);

CREATE TABLE public.invoices (
    id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES public.organizations (id),
    number bigint NOT NULL DEFAULT nextval('public.invoice_number_seq') UNIQUE,
    amount money,
    total numeric,
    tax_rate real,
    currency char(3) NOT NULL DEFAULT 'EUR',
    issued_on date NOT NULL,
    due_on date,
    paid_at timestamptz,
    billing_address public.address,
    notes text
);
ALTER SEQUENCE public.invoice_number_seq OWNED BY public.invoices.number;
COMMENT ON COLUMN public.invoices.paid_at IS '''infinity'' = paid by a standing order';

CREATE TABLE public.invoice_lines (
    invoice_id integer NOT NULL REFERENCES public.invoices (id) ON DELETE CASCADE,
    line_no smallint NOT NULL,
    description text NOT NULL,
    quantity numeric(12,2) NOT NULL DEFAULT 1,
    unit_price numeric(12,2) NOT NULL,
    discount public.percentage,
    PRIMARY KEY (invoice_id, line_no)
);

CREATE TABLE public.devices (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    name text,
    ip inet,
    network cidr,
    mac macaddr,
    mac8 macaddr8,
    flags bit(8) NOT NULL DEFAULT B'00000000',
    features varbit,
    location point,
    last_seen timestamptz,
    registered_at timestamp
);

CREATE TABLE public.measurements (
    id bigserial PRIMARY KEY,
    device_id bigint NOT NULL REFERENCES public.devices (id) ON DELETE CASCADE,
    taken_at timestamp NOT NULL,
    reading real,
    value double precision,
    raw_value bigint,
    small_value smallint,
    grid integer[],
    samples integer[],
    ratio numeric
);
COMMENT ON COLUMN public.measurements.grid IS '2-D sensor grid';

CREATE TABLE public.documents (
    id serial PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    slug text NOT NULL,
    title text NOT NULL,
    content text,
    body_xml xml,
    data jsonb,
    is_public boolean NOT NULL DEFAULT false,
    version integer NOT NULL DEFAULT 1,
    deleted_at timestamptz,
    CONSTRAINT documents_org_slug_key UNIQUE (org_id, slug)
);

CREATE TABLE public.notifications (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    kind text NOT NULL,
    payload json,
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.notifications REPLICA IDENTITY FULL;

CREATE TABLE public.app_settings (
    key text PRIMARY KEY,
    value jsonb,
    enabled boolean DEFAULT true,
    rollout int4range,
    valid_during daterange,
    updated_at timestamptz
);
COMMENT ON TABLE public.app_settings IS 'Feature flags; no RLS (read by everyone)';

-- A declaratively partitioned table: two range partitions, one range partition that is
-- itself hash-partitioned, a default partition; FK to organizations; PK includes the key.
CREATE TABLE public.events (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    occurred_at timestamptz NOT NULL,
    org_id uuid REFERENCES public.organizations (id) ON DELETE CASCADE,
    actor_id uuid,
    kind text NOT NULL,
    payload jsonb,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
COMMENT ON TABLE public.events IS 'Audit events, partitioned by time';
CREATE TABLE public.events_2024 PARTITION OF public.events
    FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2025-01-01 00:00:00+00');
CREATE TABLE public.events_2025 PARTITION OF public.events
    FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2026-01-01 00:00:00+00') PARTITION BY HASH (id);
CREATE TABLE public.events_2025_h0 PARTITION OF public.events_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.events_2025_h1 PARTITION OF public.events_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE public.events_2026 PARTITION OF public.events
    FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');
CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;

-- ------------------------------------------------------------------ indexes
CREATE INDEX projects_metadata_gin ON public.projects USING gin (metadata jsonb_path_ops);
CREATE INDEX projects_active_period_idx ON public.projects USING gist (active_period);
CREATE INDEX tasks_search_idx ON public.tasks USING gin (search);
CREATE INDEX tasks_open_assignee_idx ON public.tasks (assignee) WHERE status <> 'done';
CREATE INDEX tasks_project_idx ON public.tasks (project_id, priority DESC);
CREATE UNIQUE INDEX organizations_lower_name_idx ON public.organizations (lower(name));
CREATE INDEX task_comments_task_idx ON public.task_comments (task_id, created_at);
CREATE INDEX measurements_device_time_idx ON public.measurements (device_id, taken_at) INCLUDE (value);
CREATE INDEX events_org_time_idx ON public.events (org_id, occurred_at DESC);
CREATE INDEX events_payload_gin ON public.events USING gin (payload);
CREATE INDEX app_settings_rollout_idx ON public.app_settings USING gist (rollout);
COMMENT ON INDEX public.tasks_open_assignee_idx IS 'Partial: open tasks only';

-- ------------------------------------------------------------------ functions
CREATE FUNCTION public.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION public.set_updated_at() IS 'Trigger: keeps updated_at current';

-- Used by RLS policies; SECURITY DEFINER so that the policy on memberships does not recurse.
CREATE FUNCTION public.is_org_member(org uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (SELECT 1 FROM public.memberships m WHERE m.org_id = org AND m.user_id = auth.uid())
$$;
COMMENT ON FUNCTION public.is_org_member(uuid) IS 'Whether the calling user belongs to the organization';

CREATE FUNCTION public.org_role(org uuid) RETURNS public.member_role
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    r member_role;
BEGIN
    SELECT m.role INTO r FROM memberships m WHERE m.org_id = org AND m.user_id = auth.uid();
    RETURN r;
END
$$;
REVOKE EXECUTE ON FUNCTION public.org_role(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.org_role(uuid) TO authenticated, service_role;

-- SQL-standard body: depends on invoice_lines' columns (pg_depend)
CREATE FUNCTION public.invoice_total(invoice integer) RETURNS numeric
    LANGUAGE sql STABLE
    RETURN (SELECT coalesce(sum(l.quantity * l.unit_price * (1 - coalesce(l.discount, 0) / 100)), 0)
            FROM public.invoice_lines l WHERE l.invoice_id = invoice);
REVOKE EXECUTE ON FUNCTION public.invoice_total(integer) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.invoice_total(integer) TO authenticated;
COMMENT ON FUNCTION public.invoice_total(integer) IS 'Sum of the invoice''s lines after discounts';

CREATE FUNCTION public.project_open_task_count(project bigint) RETURNS bigint
    LANGUAGE sql STABLE
AS $$
    SELECT count(*) FROM public.tasks t WHERE t.project_id = project AND t.status <> 'done'
$$;

-- Overloads returning the table's row type (PostgREST RPC)
CREATE FUNCTION public.search_tasks(q text, max_results integer DEFAULT 20) RETURNS SETOF public.tasks
    LANGUAGE sql STABLE
AS $$
    SELECT * FROM public.tasks t WHERE t.search @@ websearch_to_tsquery('english', q) ORDER BY t.id LIMIT max_results
$$;
CREATE FUNCTION public.search_tasks(q text, project bigint, max_results integer DEFAULT 20) RETURNS SETOF public.tasks
    LANGUAGE sql STABLE
AS $$
    SELECT * FROM public.tasks t
    WHERE t.project_id = project AND t.search @@ websearch_to_tsquery('english', q) ORDER BY t.id LIMIT max_results
$$;

CREATE FUNCTION public.handle_new_user() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
    INSERT INTO public.profiles (id, email, full_name, created_at)
    VALUES (NEW.id, NEW.email, NEW.raw_user_meta_data ->> 'full_name', coalesce(NEW.created_at, now()));
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION public.handle_new_user() IS 'Creates the profile of a new auth user';

CREATE FUNCTION public.handle_avatar_upload() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
    UPDATE public.profiles SET avatar_path = NEW.name WHERE id = NEW.owner;
    RETURN NULL;
END
$$;

CREATE FUNCTION public.normalize_slug() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.slug := lower(regexp_replace(NEW.slug, '[^A-Za-z0-9]+', '-', 'g'));
    RETURN NEW;
END
$$;

CREATE FUNCTION public.notify_assignee() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
    IF NEW.assignee IS NOT NULL THEN
        INSERT INTO public.notifications (user_id, kind, payload)
        VALUES (NEW.assignee, 'task_assigned', json_build_object('task', NEW.id, 'title', NEW.title));
    END IF;
    RETURN NULL;
END
$$;

-- ------------------------------------------------------------------ triggers
-- (the updated_at triggers are created after the seed data, in the last step)
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
    FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
CREATE TRIGGER on_avatar_uploaded AFTER INSERT ON storage.objects
    FOR EACH ROW WHEN (NEW.bucket_id = 'avatars' AND NEW.owner IS NOT NULL)
    EXECUTE FUNCTION public.handle_avatar_upload();
-- Idempotent, and fires even under session_replication_role = replica.
CREATE TRIGGER documents_normalize_slug BEFORE INSERT OR UPDATE OF slug ON public.documents
    FOR EACH ROW EXECUTE FUNCTION public.normalize_slug();
ALTER TABLE public.documents ENABLE ALWAYS TRIGGER documents_normalize_slug;
CREATE TRIGGER tasks_notify_assignee AFTER INSERT OR UPDATE OF assignee ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION public.notify_assignee();
ALTER TABLE public.tasks DISABLE TRIGGER tasks_notify_assignee;
COMMENT ON TRIGGER tasks_notify_assignee ON public.tasks IS 'Disabled until notifications ship';

-- ------------------------------------------------------------------ views
CREATE VIEW public.open_tasks AS
    SELECT t.id, t.project_id, t.title, t.status, t.priority, t.due_date, t.assignee
    FROM public.tasks t
    WHERE t.status IN ('todo', 'doing', 'blocked');
CREATE VIEW public.open_tasks_by_project AS
    SELECT p.id AS project_id, p.name, count(o.id) AS open_count, min(o.due_date) AS next_due
    FROM public.projects p LEFT JOIN public.open_tasks o ON o.project_id = p.id
    GROUP BY p.id, p.name;
CREATE VIEW public.project_overview WITH (security_invoker = true) AS
    SELECT p.id, p.name, o.name AS organization, p.budget,
           public.project_open_task_count(p.id) AS open_tasks, p.active_period
    FROM public.projects p JOIN public.organizations o ON o.id = p.org_id;
COMMENT ON VIEW public.project_overview IS 'Projects with their organization (RLS of the caller applies)';

CREATE MATERIALIZED VIEW public.org_stats AS
    SELECT o.id AS org_id, o.slug,
           (SELECT count(*) FROM public.memberships m WHERE m.org_id = o.id) AS members,
           (SELECT count(*) FROM public.projects p WHERE p.org_id = o.id) AS projects,
           (SELECT sum(i.amount) FROM public.invoices i WHERE i.org_id = o.id) AS invoiced
    FROM public.organizations o
    WITH DATA;
CREATE UNIQUE INDEX org_stats_org_id_idx ON public.org_stats (org_id);
COMMENT ON MATERIALIZED VIEW public.org_stats IS 'Per-organization counters (refreshed nightly)';
CREATE MATERIALIZED VIEW public.task_search AS
    SELECT t.id, t.project_id, t.title, t.search
    FROM public.tasks t WHERE t.status <> 'done'
    WITH NO DATA;

-- ------------------------------------------------------------------ RLS
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.task_comments ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.attachments ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoice_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notifications FORCE ROW LEVEL SECURITY;
ALTER TABLE public.events ENABLE ROW LEVEL SECURITY;
-- tags, task_tags, measurements, app_settings: no RLS

CREATE POLICY "Profiles are viewable by everyone" ON public.profiles
    FOR SELECT TO anon, authenticated USING (true);
CREATE POLICY "Users update their own profile" ON public.profiles
    FOR UPDATE TO authenticated USING ((SELECT auth.uid()) = id) WITH CHECK ((SELECT auth.uid()) = id);
CREATE POLICY "Members see their organizations" ON public.organizations
    FOR SELECT TO authenticated USING (public.is_org_member(id));
CREATE POLICY "Admins update their organizations" ON public.organizations
    FOR UPDATE TO authenticated USING (public.org_role(id) = 'admin');
CREATE POLICY "Members see memberships of their organizations" ON public.memberships
    FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()) OR public.is_org_member(org_id));
CREATE POLICY "Admins add members" ON public.memberships
    FOR INSERT TO authenticated WITH CHECK (public.org_role(org_id) = 'admin');
CREATE POLICY "Members work on projects" ON public.projects
    FOR ALL TO authenticated USING (public.is_org_member(org_id)) WITH CHECK (public.is_org_member(org_id));
CREATE POLICY "Tasks visible to org members" ON public.tasks
    FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.projects p WHERE p.id = project_id AND public.is_org_member(p.org_id)));
CREATE POLICY "Members create tasks" ON public.tasks
    FOR INSERT TO authenticated
    WITH CHECK (EXISTS (SELECT 1 FROM public.projects p WHERE p.id = project_id AND public.is_org_member(p.org_id)));
CREATE POLICY "Assignees update tasks" ON public.tasks
    FOR UPDATE TO authenticated USING (assignee = (SELECT auth.uid()));
CREATE POLICY "Assignees delete tasks" ON public.tasks
    FOR DELETE TO authenticated USING (assignee = (SELECT auth.uid()));
CREATE POLICY "Comments follow tasks" ON public.task_comments
    FOR SELECT TO authenticated USING (EXISTS (SELECT 1 FROM public.tasks t WHERE t.id = task_id));
CREATE POLICY "Authors write comments" ON public.task_comments
    FOR INSERT TO authenticated WITH CHECK (author_id = (SELECT auth.uid()));
CREATE POLICY "Attachments follow tasks" ON public.attachments
    FOR SELECT TO authenticated USING (EXISTS (SELECT 1 FROM public.tasks t WHERE t.id = task_id));
CREATE POLICY "Admins read invoices" ON public.invoices
    FOR SELECT TO authenticated USING (public.org_role(org_id) = 'admin');
CREATE POLICY "Admins read invoice lines" ON public.invoice_lines
    FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.invoices i WHERE i.id = invoice_id AND public.org_role(i.org_id) = 'admin'));
CREATE POLICY "Devices belong to their user" ON public.devices
    FOR ALL TO authenticated USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY "Public documents" ON public.documents
    FOR SELECT TO anon USING (is_public AND deleted_at IS NULL);
CREATE POLICY "Members read documents" ON public.documents
    FOR SELECT TO authenticated USING (public.is_org_member(org_id));
CREATE POLICY "Hide deleted documents" ON public.documents
    AS RESTRICTIVE FOR SELECT TO authenticated USING (deleted_at IS NULL);
CREATE POLICY "Own notifications" ON public.notifications
    FOR SELECT TO authenticated USING (user_id = (SELECT auth.uid()));
CREATE POLICY "Members read events" ON public.events
    FOR SELECT TO authenticated USING (public.is_org_member(org_id));
COMMENT ON POLICY "Hide deleted documents" ON public.documents IS 'Restrictive: soft-deleted rows never show';

-- ------------------------------------------------------------------ grants (differing from the defaults)
REVOKE ALL ON public.invoices, public.invoice_lines FROM anon;
REVOKE ALL ON public.profiles FROM anon;
GRANT SELECT (id, username, full_name, avatar_path) ON public.profiles TO anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.app_settings FROM anon, authenticated;
REVOKE ALL ON public.org_stats FROM anon;
REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM authenticated;

-- ------------------------------------------------------------------ realtime
-- supabase_realtime exists on every project (the local stack creates it too)
ALTER PUBLICATION supabase_realtime ADD TABLE public.tasks, public.task_comments, public.notifications;

-- step: superuser
-- postgres does not own storage.objects / storage.buckets, so it may not create policies there.
CREATE POLICY "Org members read org files" ON storage.objects
    FOR SELECT TO authenticated
    USING (bucket_id = 'org-files' AND EXISTS (
        SELECT 1 FROM public.organizations o
        WHERE o.id::text = split_part(objects.name, '/', 1) AND public.is_org_member(o.id)));
CREATE POLICY "Avatars are public" ON storage.objects
    FOR SELECT TO anon, authenticated USING (bucket_id = 'avatars');
CREATE POLICY "Users upload their own avatar" ON storage.objects
    FOR INSERT TO authenticated WITH CHECK (bucket_id = 'avatars' AND owner = (SELECT auth.uid()));
CREATE POLICY "Task members delete attachments" ON storage.objects
    FOR DELETE TO authenticated
    USING (bucket_id = 'attachments' AND EXISTS (
        SELECT 1 FROM public.attachments a
        JOIN public.tasks t ON t.id = a.task_id
        JOIN public.projects p ON p.id = t.project_id
        WHERE a.file_name = objects.name AND public.is_org_member(p.org_id)));
CREATE POLICY "Buckets are listable" ON storage.buckets
    FOR SELECT TO authenticated USING (public OR owner = (SELECT auth.uid()));

-- step: postgres
-- ------------------------------------------------------------------ seed data (deterministic)
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                        raw_app_meta_data, raw_user_meta_data, is_super_admin, created_at, updated_at,
                        phone, last_sign_in_at, confirmation_token, recovery_token,
                        email_change_token_new, email_change)
SELECT '00000000-0000-0000-0000-000000000000', md5('user' || g)::uuid, 'authenticated', 'authenticated',
       'user' || g || '@example.com',
       '$2a$10$' || substr(md5('pw' || g) || md5('salt' || g), 1, 53),
       CASE WHEN g % 10 <> 0 THEN timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' END,
       jsonb_build_object('provider', 'email', 'providers', jsonb_build_array('email')),
       jsonb_build_object(
           'full_name', CASE WHEN g % 13 = 0 THEN NULL
                             ELSE (ARRAY['Zoë Müller', 'Ολυμπία Παπαδοπούλου', '山田太郎', 'José Ñúñez',
                                         'Анна Каренина', 'שלום עליכם', 'O''Brien "Bob"', '🚀 Rocket',
                                         'Ærøskøbing Ødegård', 'plain name'])[1 + g % 10] || ' ' || g END,
           'signup_source', 'seed'),
       false,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour',
       CASE WHEN g % 4 = 0 THEN '49151' || lpad(g::text, 8, '0') END,
       CASE WHEN g % 3 <> 0 THEN timestamptz '2024-06-01 00:00:00+00' + g * interval '2 hours 3 minutes' END,
       '', '', '', ''
FROM generate_series(1, current_setting('app.seed_users')::int) g;

INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at, created_at, updated_at, id)
SELECT u.id::text, u.id,
       jsonb_build_object('sub', u.id::text, 'email', u.email, 'email_verified', u.email_confirmed_at IS NOT NULL),
       'email', u.last_sign_in_at, u.created_at, u.created_at, md5('identity-email-' || u.email)::uuid
FROM auth.users u;
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at, created_at, updated_at, id)
SELECT (100000 + g)::text, md5('user' || g)::uuid,
       jsonb_build_object('sub', (100000 + g)::text, 'email', 'user' || g || '@example.com',
                          'user_name', 'gh-user-' || g, 'avatar_url', 'https://example.com/a/' || g || '.png'),
       'github', NULL, timestamptz '2024-03-01 00:00:00+00' + g * interval '1 minute',
       timestamptz '2024-03-01 00:00:00+00' + g * interval '1 minute', md5('identity-github-' || g)::uuid
FROM generate_series(1, current_setting('app.seed_users')::int) g WHERE g % 5 = 0;

-- profiles were created by on_auth_user_created; fill in the rest
UPDATE public.profiles p SET
    username = 'user_' || s.g,
    bio = CASE WHEN s.g % 3 = 0 THEN NULL
               WHEN s.g % 50 = 1 THEN repeat('Long bio ' || s.g || ' ⁂ — ', 9000)
               ELSE 'Bio of user ' || s.g || E'\nsecond line, a tab\there and a backslash \\ ' END,
    avatar = CASE WHEN s.g % 4 = 0 THEN
                 (SELECT decode(string_agg(md5('avatar' || s.g || '-' || k), ''), 'hex')
                  FROM generate_series(1, 64 * (1 + s.g % 64)) k) END,
    home = CASE WHEN s.g % 5 = 0 THEN NULL
                ELSE ROW('Street ' || s.g || CASE WHEN s.g % 7 = 0 THEN ', "annex", (rear)' ELSE '' END,
                         (ARRAY['Berlin', 'Zürich', '東京', 'São Paulo'])[1 + s.g % 4],
                         CASE WHEN s.g % 9 = 0 THEN NULL ELSE lpad((s.g * 7)::text, 5, '0') END,
                         (ARRAY['DE', 'CH', 'JP', 'BR'])[1 + s.g % 4])::public.address END,
    birthday = CASE WHEN s.g % 6 = 0 THEN NULL ELSE date '1960-01-01' + (s.g * 97) % 18000 END,
    locale = (ARRAY['en_US', 'de_DE', 'ja_JP', 'pt_BR'])[1 + s.g % 4],
    is_admin = (s.g % 50 = 1)
FROM (SELECT g, md5('user' || g)::uuid AS id FROM generate_series(1, current_setting('app.seed_users')::int) g) s
WHERE p.id = s.id;

INSERT INTO public.organizations (id, slug, name, plan, settings, founded, hq, owner_id, created_at)
SELECT md5('org' || g)::uuid, 'org-' || g,
       (ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Zürich Labs', '東京 Systems'])[1 + g % 7] || ' ' || g,
       (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3],
       jsonb_build_object('theme', CASE WHEN g % 2 = 0 THEN 'dark' ELSE 'light' END,
                          'limits', jsonb_build_object('seats', g * 5, 'storage_gb', g * 1.5),
                          'features', jsonb_build_array('sso', 'audit'), 'note', NULL),
       CASE WHEN g % 4 <> 0 THEN date '2000-01-01' + g * 100 END,
       ROW(g || ' Main St', 'City ' || g, lpad(g::text, 5, '0'), 'US')::public.address,
       md5('user' || (1 + (g * 7) % current_setting('app.seed_users')::int))::uuid,
       timestamptz '2023-06-01 00:00:00+00' + g * interval '1 day'
FROM generate_series(1, current_setting('app.seed_orgs')::int) g;

INSERT INTO public.memberships (org_id, user_id, role, past_roles, joined_at)
SELECT md5('org' || (1 + u % current_setting('app.seed_orgs')::int))::uuid, md5('user' || u)::uuid,
       (ARRAY['viewer', 'member', 'admin']::public.member_role[])[1 + u % 3],
       CASE WHEN u % 4 = 0 THEN ARRAY['viewer', 'member']::public.member_role[] ELSE '{}' END,
       timestamptz '2024-02-01 00:00:00+00' + u * interval '37 minutes'
FROM generate_series(1, current_setting('app.seed_users')::int) u
UNION ALL
SELECT md5('org' || (1 + (u + 3) % current_setting('app.seed_orgs')::int))::uuid, md5('user' || u)::uuid,
       'viewer', '{}', timestamptz '2024-04-01 00:00:00+00' + u * interval '41 minutes'
FROM generate_series(1, current_setting('app.seed_users')::int) u WHERE u % 3 = 0;

INSERT INTO public.projects (org_id, name, description, budget, metadata, is_archived, active_period, created_by, created_at)
SELECT md5('org' || (1 + (g - 1) % current_setting('app.seed_orgs')::int))::uuid,
       'Project ' || g || CASE WHEN g % 5 = 0 THEN ' – ünïcødé ✓' ELSE '' END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE 'Description of project ' || g END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE round((g * 1234.567) % 9999999, 2) END,
       jsonb_build_object('color', '#' || substr(md5('p' || g), 1, 6), 'tags', jsonb_build_array('t' || g % 5),
                          'nested', jsonb_build_object('depth', g % 4, 'ok', g % 2 = 0, 'nothing', NULL)),
       g % 9 = 0,
       CASE WHEN g % 8 = 0 THEN NULL
            WHEN g % 8 = 1 THEN tstzrange('2024-01-01 00:00:00+00', NULL)
            WHEN g % 8 = 2 THEN 'empty'::tstzrange
            ELSE tstzrange(timestamptz '2024-01-01 00:00:00+00' + g * interval '3 days',
                           timestamptz '2024-03-01 00:00:00+00' + g * interval '5 days', '[)') END,
       md5('user' || (1 + g % current_setting('app.seed_users')::int))::uuid,
       timestamptz '2024-01-15 00:00:00+00' + g * interval '6 hours'
FROM generate_series(1, current_setting('app.seed_projects')::int) g
ORDER BY g;

INSERT INTO public.tasks (id, project_id, parent_id, title, body, status, status_history, labels, priority,
                          estimate, due_date, due_time, remind_at, completed_at, progress, position, assignee, created_at)
SELECT g, 1 + g % current_setting('app.seed_projects')::int,
       CASE WHEN g > 10 AND g % 10 = 0 THEN g - 7 END,
       'Task ' || g || ': ' || (ARRAY['Fix bug', 'Write docs', 'Ship feature', 'Réviser le code', 'テストを書く', 'Deploy 🚀'])[1 + g % 6],
       CASE WHEN g % 11 = 0 THEN NULL
            WHEN g % 97 = 0 THEN repeat('Body paragraph ' || md5(g::text) || E'\n', 3000)
            ELSE 'Details for task ' || g || E'\nLine two with a tab\tand a quote '' and a backslash \\ and "double"' END,
       (ARRAY['todo', 'doing', 'blocked', 'done']::public.task_status[])[1 + g % 4],
       CASE WHEN g % 3 = 0 THEN ARRAY['todo', 'doing']::public.task_status[] END,
       CASE WHEN g % 5 = 0 THEN NULL WHEN g % 5 = 1 THEN '{}'::text[]
            ELSE ARRAY['label' || g % 7, 'x,y', 'with "quotes"', NULL, 'NULL', ''] END,
       1 + g % 5,
       CASE WHEN g % 4 = 0 THEN NULL ELSE make_interval(days => g % 10, hours => g % 24, mins => g % 60) END,
       date '2024-06-01' + g % 400,
       time '08:00' + (g % 600) * interval '1 minute',
       CASE WHEN g % 3 = 0 THEN NULL ELSE ('09:30:00' || CASE WHEN g % 2 = 0 THEN '+02' ELSE '-05:30' END)::timetz END,
       CASE WHEN g % 4 = 3 THEN timestamp '2024-07-01 12:00' + g * interval '1 hour 1 second' END,
       CASE WHEN g % 6 = 0 THEN NULL ELSE (g % 101)::numeric END,
       CASE WHEN g % 500 = 0 THEN 'Infinity'::float8 WHEN g % 501 = 0 THEN '-0'::float8 ELSE g / 7.0::float8 END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE md5('user' || (1 + g % current_setting('app.seed_users')::int))::uuid END,
       timestamptz '2024-02-01 00:00:00+00' + g * interval '17 minutes'
FROM generate_series(1, current_setting('app.seed_tasks')::int) g;
SELECT setval(pg_get_serial_sequence('public.tasks', 'id'), current_setting('app.seed_tasks')::int);

INSERT INTO public.task_comments (task_id, author_id, body, raw, edited, created_at)
SELECT 1 + g % current_setting('app.seed_tasks')::int,
       CASE WHEN g % 9 = 0 THEN NULL ELSE md5('user' || (1 + g % current_setting('app.seed_users')::int))::uuid END,
       CASE WHEN g % 40 = 0 THEN ''
            ELSE 'Comment ' || g || ' — ' || (ARRAY['LGTM 👍', 'Bitte prüfen', 'これは良い', 'needs work', '"quoted"'])[1 + g % 5] END,
       CASE WHEN g % 3 = 0 THEN NULL
            WHEN g % 3 = 1 THEN ('{"a": 1, "a": 2, "b": [1, 2, {"c": null}], "g": ' || g || '}')::json
            ELSE ('  {"spaces" :  true,   "n": ' || g || ', "u": "\u00e9\ud83d\ude80" }')::json END,
       CASE WHEN g % 2 = 0 THEN NULL ELSE g % 3 = 0 END,
       timestamptz '2024-03-01 00:00:00+00' + g * interval '7 minutes'
FROM generate_series(1, current_setting('app.seed_comments')::int) g
ORDER BY g;

INSERT INTO public.attachments (id, task_id, file_name, mime_type, content, uploaded_by, uploaded_at)
SELECT md5('attachment' || g)::uuid, 1 + (g * 13) % current_setting('app.seed_tasks')::int,
       'task-files/file_' || g || (ARRAY['.png', '.pdf', '.txt', '.bin'])[1 + g % 4],
       (ARRAY['image/png', 'application/pdf', 'text/plain', NULL])[1 + g % 4],
       CASE WHEN g % 10 = 0 THEN NULL
            WHEN g % 10 = 1 THEN '\x'::bytea
            ELSE (SELECT decode(string_agg(md5('blob' || g || '-' || k), ''), 'hex')
                  FROM generate_series(1, 64 * (1 + g % 64)) k) END,
       md5('user' || (1 + g % current_setting('app.seed_users')::int))::uuid,
       timestamptz '2024-05-01 00:00:00+00' + g * interval '1 hour'
FROM generate_series(1, current_setting('app.seed_attachments')::int) g;
UPDATE public.attachments SET byte_size = length(content), checksum = md5(content) WHERE content IS NOT NULL;

INSERT INTO public.tags (org_id, name, color)
SELECT md5('org' || (1 + g % current_setting('app.seed_orgs')::int))::uuid,
       (ARRAY['bug', 'feature', 'urgent', 'später', 'ドキュメント'])[1 + g % 5] || '-' || g,
       CASE WHEN g % 6 = 0 THEN NULL ELSE ('x' || substr(md5('tag' || g), 1, 6))::bit(24) END
FROM generate_series(1, current_setting('app.seed_orgs')::int * 3) g
ORDER BY g;

INSERT INTO public.task_tags (task_id, tag_id)
SELECT g, 1 + g % (current_setting('app.seed_orgs')::int * 3)
FROM generate_series(1, current_setting('app.seed_tasks')::int) g WHERE g % 2 = 0
UNION
SELECT g, 1 + (g * 7 + 1) % (current_setting('app.seed_orgs')::int * 3)
FROM generate_series(1, current_setting('app.seed_tasks')::int) g WHERE g % 3 = 0;

INSERT INTO public.invoices (org_id, amount, total, tax_rate, currency, issued_on, due_on, paid_at, billing_address, notes)
SELECT md5('org' || (1 + g % current_setting('app.seed_orgs')::int))::uuid,
       CASE WHEN g % 10 = 0 THEN NULL ELSE round((g * 1234.5678) % 100000, 2)::money END,
       CASE WHEN g % 25 = 0 THEN NULL
            WHEN g % 37 = 0 THEN 'NaN'::numeric
            WHEN g % 29 = 0 THEN 123456789012345678901234567890.123456789012345678901234567890
            ELSE g * 3.14159265358979 END,
       CASE WHEN g % 3 = 0 THEN 0.19 ELSE 0.07 END,
       (ARRAY['EUR', 'USD', 'CHF', 'JPY'])[1 + g % 4],
       date '2024-01-01' + g,
       CASE WHEN g % 5 <> 0 THEN date '2024-01-31' + g END,
       CASE WHEN g % 4 = 0 THEN NULL
            WHEN g % 17 = 0 THEN 'infinity'::timestamptz
            WHEN g % 19 = 0 THEN '-infinity'::timestamptz
            ELSE timestamptz '2024-02-01 10:00:00+00' + g * interval '1 day 3 hours 0.123456 seconds' END,
       CASE WHEN g % 8 = 0 THEN NULL ELSE ROW('Billing ' || g, 'Genève', '120' || g % 10, 'CH')::public.address END,
       CASE WHEN g % 2 = 0 THEN NULL ELSE 'Net 30. Merci ✓ ' || g END
FROM generate_series(1, current_setting('app.seed_users')::int) g
ORDER BY g;

INSERT INTO public.invoice_lines (invoice_id, line_no, description, quantity, unit_price, discount)
SELECT i, l, 'Line ' || l || ' of invoice ' || i || CASE WHEN l = 3 THEN ' (Rabatt)' ELSE '' END,
       (1 + (i * l) % 10)::numeric(12,2) / 4, round(((i * 97 + l * 31) % 100000) / 100.0, 2),
       CASE WHEN (i + l) % 4 = 0 THEN 12.5 END
FROM generate_series(1, current_setting('app.seed_users')::int) i, generate_series(1, 1 + i % 4) l;

INSERT INTO public.devices (user_id, name, ip, network, mac, mac8, flags, features, location, last_seen, registered_at)
SELECT md5('user' || (1 + g % current_setting('app.seed_users')::int))::uuid,
       CASE WHEN g % 8 = 0 THEN NULL ELSE 'Device ' || g END,
       CASE WHEN g % 6 = 0 THEN NULL
            WHEN g % 2 = 0 THEN ('10.' || g % 256 || '.' || (g / 256) % 256 || '.' || (1 + g % 200) || '/24')::inet
            ELSE ('2001:db8::' || to_hex(g))::inet END,
       ('10.' || g % 256 || '.0.0/16')::cidr,
       substr(md5('mac' || g), 1, 12)::macaddr,
       CASE WHEN g % 3 = 0 THEN NULL ELSE substr(md5('mac8' || g), 1, 16)::macaddr8 END,
       (g % 256)::bit(8),
       CASE WHEN g % 3 = 0 THEN NULL ELSE substr(repeat('10110', 20), 1 + g % 7, 1 + g % 40)::varbit END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE point(g * 0.5, -g * 0.25) END,
       timestamptz '2025-01-01 00:00:00+00' - g * interval '13 minutes',
       timestamp '2023-01-01 00:00' + g * interval '1 day'
FROM generate_series(1, current_setting('app.seed_devices')::int) g
ORDER BY g;

INSERT INTO public.measurements (device_id, taken_at, reading, value, raw_value, small_value, grid, samples, ratio)
SELECT 1 + g % current_setting('app.seed_devices')::int,
       timestamp '2024-01-01' + g * interval '90 seconds',
       CASE WHEN g % 100 = 0 THEN 'NaN'::real WHEN g % 101 = 0 THEN '-Infinity'::real ELSE ((g % 1000) / 7.0)::real END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE g * 1.000001::float8 END,
       g::bigint * 1000003 * CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END,
       ((g * 31) % 65535 - 32767)::smallint,
       CASE WHEN g % 4 = 0 THEN NULL ELSE ARRAY[[g % 10, g % 11, g % 12], [g % 13, NULL, g % 14]] END,
       CASE WHEN g % 5 = 0 THEN '{}'::int[] ELSE ARRAY(SELECT (g * k) % 1000 FROM generate_series(1, 1 + g % 8) k) END,
       CASE WHEN g % 9 = 0 THEN NULL ELSE g::numeric / 3 END
FROM generate_series(1, current_setting('app.seed_measurements')::int) g
ORDER BY g;

INSERT INTO public.documents (org_id, slug, title, content, body_xml, data, is_public, version, deleted_at)
SELECT md5('org' || (1 + g % current_setting('app.seed_orgs')::int))::uuid,
       'Doc ' || g || ' Title!!', 'Document ' || g,
       CASE WHEN g % 4 = 0 THEN repeat('Lorem ipsum ' || md5(g::text) || ' – ünïcødé ✓ ', 3000)
            WHEN g % 4 = 1 THEN NULL ELSE 'Short doc ' || g END,
       CASE WHEN g % 3 = 0 THEN NULL
            ELSE xmlelement(name doc, xmlattributes(g AS id),
                            xmlelement(name title, 'Document ' || g || ' & <co>'),
                            xmlelement(name body, 'Ünïcødé ✓')) END,
       jsonb_build_object('version', g, 'authors', jsonb_build_array('a', 'b'), 'float', g / 3.0,
                          'big', 12345678901234567890, 'unicode', '東京 🚀', 'escaped', E'line\nbreak "q"'),
       g % 2 = 0, 1 + g % 3,
       CASE WHEN g % 10 = 0 THEN timestamptz '2024-12-01 00:00:00+00' END
FROM generate_series(1, current_setting('app.seed_orgs')::int * 3) g
ORDER BY g;

INSERT INTO public.notifications (user_id, kind, payload, read_at, created_at)
SELECT md5('user' || (1 + g % current_setting('app.seed_users')::int))::uuid,
       (ARRAY['task_assigned', 'comment', 'invoice'])[1 + g % 3],
       CASE WHEN g % 4 = 0 THEN NULL ELSE json_build_object('n', g, 'msg', 'Hallo ' || g, 'list', json_build_array(1, 2, g)) END,
       CASE WHEN g % 2 = 0 THEN timestamptz '2024-08-01 00:00:00+00' + g * interval '1 minute' END,
       timestamptz '2024-07-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, current_setting('app.seed_users')::int * 5) g
ORDER BY g;

INSERT INTO public.app_settings (key, value, enabled, rollout, valid_during, updated_at) VALUES
    ('new_editor', '{"variant": "b", "weights": [0.5, 0.5]}', true, int4range(0, 50), daterange('2024-01-01', NULL), '2024-01-01 00:00:00+00'),
    ('dark_mode', 'true', true, int4range(NULL, NULL), daterange(NULL, NULL), NULL),
    ('maintenance', 'null', false, 'empty', 'empty', NULL),
    ('limits', '{"max_upload_mb": 50, "max_projects": 10}', true, int4range(10, 20, '[]'), daterange('2024-01-01', '2024-12-31', '[]'), '2024-02-02 02:02:02.5+00'),
    ('banner', '"Willkommen! ようこそ 🎉"', NULL, NULL, NULL, NULL),
    ('sql_null', NULL, true, int4range(1, 2), NULL, NULL);

INSERT INTO public.events (id, occurred_at, org_id, actor_id, kind, payload)
SELECT g,
       CASE WHEN g % 20 = 0 THEN timestamptz '2019-06-01 00:00:00+00' + g * interval '1 minute'
            ELSE timestamptz '2024-01-01 00:00:00+00' + ((g * 37) % 1095) * interval '1 day' + g * interval '1 second' END,
       CASE WHEN g % 15 = 0 THEN NULL ELSE md5('org' || (1 + g % current_setting('app.seed_orgs')::int))::uuid END,
       md5('user' || (1 + g % current_setting('app.seed_users')::int))::uuid,
       (ARRAY['login', 'logout', 'task.created', 'task.updated', 'invoice.paid'])[1 + g % 5],
       jsonb_build_object('seq', g, 'ip', '10.0.0.' || g % 255, 'ok', g % 2 = 0)
FROM generate_series(1, current_setting('app.seed_events')::int) g;
SELECT setval(pg_get_serial_sequence('public.events', 'id'), current_setting('app.seed_events')::int);

-- step: postgres
-- ------------------------------------------------------------------ after the seed data
CREATE TRIGGER profiles_updated_at BEFORE UPDATE ON public.profiles
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER organizations_updated_at BEFORE UPDATE ON public.organizations
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER projects_updated_at BEFORE UPDATE ON public.projects
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER tasks_updated_at BEFORE UPDATE ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER app_settings_updated_at BEFORE UPDATE ON public.app_settings
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
REFRESH MATERIALIZED VIEW public.org_stats;
