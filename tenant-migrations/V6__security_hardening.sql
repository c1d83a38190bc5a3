-- Security hardening (issue 14, slice "ops"). Expand-only: code at V5 keeps working.
--
-- Built-in roles are seeded here and at provisioning, never on the request path: a request that
-- only reads must not write (a fenced source answered every authenticated read with 503 because
-- the first request of a process seeded the roles with an INSERT).

-- The built-in roles and their permissions: the one definition (provisioning calls this for a
-- new tenant; this migration for existing ones; a later migration that adds a permission
-- replaces the function and calls it again). Idempotent, inserts only what is missing (so an
-- up-to-date tenant is not written to at all), scoped to `p_tenant` explicitly (the owner
-- bypasses row level security). Run by the owner: platform_app cannot call it.
CREATE FUNCTION platform_builtin_roles() RETURNS TABLE (name text, permissions text[])
    LANGUAGE sql IMMUTABLE
    AS $$
    WITH p(member) AS (
        VALUES (ARRAY['projects:read', 'projects:write', 'tasks:read', 'tasks:write', 'users:read'])
    )
    SELECT r.name, r.permissions FROM p, LATERAL (VALUES
        ('owner', p.member || ARRAY['members:manage', 'roles:manage', 'api_keys:manage', 'audit:read', 'sso:manage']),
        ('admin', p.member || ARRAY['members:manage', 'roles:manage', 'api_keys:manage', 'audit:read', 'sso:manage']),
        ('member', p.member),
        ('viewer', ARRAY['projects:read', 'tasks:read', 'users:read'])
    ) r(name, permissions)
$$;

CREATE FUNCTION platform_seed_builtin_roles(p_tenant uuid) RETURNS void
    LANGUAGE plpgsql SET search_path = public
    AS $$
BEGIN
    INSERT INTO roles (tenant_id, id, name, builtin)
        SELECT p_tenant, platform_uuid_v7(), b.name, true FROM platform_builtin_roles() b
        WHERE NOT EXISTS (SELECT 1 FROM roles r WHERE r.tenant_id = p_tenant AND r.name = b.name);
    INSERT INTO role_permissions (tenant_id, role_id, permission)
        SELECT p_tenant, r.id, p FROM platform_builtin_roles() b
        JOIN roles r ON r.tenant_id = p_tenant AND r.name = b.name AND r.builtin
        CROSS JOIN LATERAL unnest(b.permissions) p
        WHERE NOT EXISTS (SELECT 1 FROM role_permissions rp
                          WHERE rp.tenant_id = p_tenant AND rp.role_id = r.id AND rp.permission = p);
END $$;
REVOKE ALL ON FUNCTION platform_seed_builtin_roles(uuid) FROM PUBLIC;

-- Existing tenants: every tenant with a row in this database (the owner sees every row), except
-- one fenced here (its live copy is elsewhere and is seeded there).
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
