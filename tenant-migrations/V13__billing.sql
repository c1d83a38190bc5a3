-- Billing, tenant side (issue 19): `billing:read` (owner, admin) and `billing:manage` (owner,
-- admin) in the built-in roles; the metered dimension (tasks created) as append-only usage
-- events written by a trigger in the creating transaction (no counter row, so a tenant's writers
-- never queue on one lock); the periods already reported to Stripe; and the dunning notices sent
-- (one per step and past-due cycle: the email job is enqueued in the transaction that records it).

CREATE OR REPLACE FUNCTION platform_builtin_roles() RETURNS TABLE (name text, permissions text[])
    LANGUAGE sql IMMUTABLE
    AS $$
    WITH p(member) AS (
        VALUES (ARRAY['projects:read', 'projects:write', 'tasks:read', 'tasks:write', 'users:read'])
    )
    SELECT r.name, r.permissions FROM p, LATERAL (VALUES
        ('owner', p.member || ARRAY['members:manage', 'roles:manage', 'api_keys:manage', 'audit:read', 'sso:manage', 'flags:manage', 'billing:read', 'billing:manage']),
        ('admin', p.member || ARRAY['members:manage', 'roles:manage', 'api_keys:manage', 'audit:read', 'sso:manage', 'flags:manage', 'billing:read', 'billing:manage']),
        ('member', p.member),
        ('viewer', ARRAY['projects:read', 'tasks:read', 'users:read'])
    ) r(name, permissions)
$$;

DO $$
DECLARE
    r record;
    tenants uuid[] := '{}';
    found uuid[];
BEGIN
    FOR r IN
        SELECT c.relname::text AS tbl
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'tenant_fences'
    LOOP
        EXECUTE format('SELECT array_agg(DISTINCT tenant_id) FROM %I', r.tbl) INTO found;
        tenants := tenants || COALESCE(found, '{}');
    END LOOP;
    PERFORM platform_seed_builtin_roles(t)
        FROM (SELECT DISTINCT unnest(tenants) AS t) s
        WHERE NOT EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = s.t);
END $$;

CREATE TABLE usage_events (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    metric       text NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX usage_events_period ON usage_events (tenant_id, metric, occurred_at);

CREATE TABLE usage_reports (
    tenant_id    uuid NOT NULL,
    metric       text NOT NULL,
    period       text NOT NULL,
    quantity     bigint NOT NULL,
    reported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric, period)
);

CREATE TABLE billing_notices (
    tenant_id  uuid NOT NULL,
    cycle      text NOT NULL,
    step       text NOT NULL,
    job_id     uuid,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, cycle, step)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['usage_events', 'usage_reports', 'billing_notices'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO platform_app', t);
        PERFORM platform_attach_fence(t::regclass);
    END LOOP;
END $$;

CREATE FUNCTION platform_usage_task_created() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_events (tenant_id, id, metric, occurred_at)
        VALUES (NEW.tenant_id, platform_uuid_v7(), 'tasks_created', now());
    RETURN NULL;
END $$;
CREATE TRIGGER platform_usage_task_created AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION platform_usage_task_created();
