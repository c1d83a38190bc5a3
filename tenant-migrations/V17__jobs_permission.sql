-- Background jobs (issue 16): owners and admins may see their tenant's own jobs (`jobs:read`,
-- `GET /api/v1/jobs`). Replaces the one definition of the built-in roles and seeds what is
-- missing (inserts only; an up-to-date tenant is not written to).
CREATE OR REPLACE FUNCTION platform_builtin_roles() RETURNS TABLE (name text, permissions text[])
    LANGUAGE sql IMMUTABLE
    AS $$
    WITH p(member) AS (
        VALUES (ARRAY['projects:read', 'projects:write', 'tasks:read', 'tasks:write', 'users:read'])
    )
    SELECT r.name, r.permissions FROM p, LATERAL (VALUES
        ('owner', p.member || ARRAY['members:manage', 'roles:manage', 'api_keys:manage', 'audit:read', 'sso:manage', 'flags:manage', 'billing:read', 'billing:manage', 'jobs:read']),
        ('admin', p.member || ARRAY['members:manage', 'roles:manage', 'api_keys:manage', 'audit:read', 'sso:manage', 'flags:manage', 'billing:read', 'billing:manage', 'jobs:read']),
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
