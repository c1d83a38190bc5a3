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

-- Audit: the data-plane role can neither suppress nor forge events.
--
-- Before, `platform.audit_erase = on` (a setting any role may SET) silenced the row triggers for
-- everyone, platform_app included, and platform_app could append any action with any outcome.
-- Now the erase setting counts only for a session with a capability platform_app lacks by
-- construction (superuser or BYPASSRLS: the owner path of tenant purge, placement cleanup and
-- retention expiry), and platform_app may append only explicit events of a fixed shape (an
-- attempt that changed nothing); change events come from the row triggers alone, through an
-- internal function it cannot execute.

-- Whether this session may erase audit events: it asked to (`platform.audit_erase = on`) and
-- its login role is a superuser or bypasses row level security. `session_user` is the login
-- role (SET ROLE and SECURITY DEFINER do not change it), so the app role cannot borrow it.
CREATE FUNCTION platform_audit_erasing() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT current_setting('platform.audit_erase', true) = 'on'
              AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = session_user AND (r.rolsuper OR r.rolbypassrls)) $$;

-- The append itself (the body of V4's platform_audit_append), for the row triggers and the
-- owner; platform_app cannot execute it.
CREATE FUNCTION platform_audit_write(
    p_tenant uuid, p_action text, p_target_type text, p_target_id text, p_outcome text, p_summary jsonb
) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    ctx jsonb := platform_audit_context();
    head audit_chain;
    last record;
    e audit_events;
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'an audit event must belong to a tenant' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO head FROM audit_chain WHERE tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain (tenant_id, seq, hash, checkpoint_hash)
            VALUES (p_tenant, 0, repeat('0', 64), repeat('0', 64)) ON CONFLICT DO NOTHING;
        SELECT * INTO head FROM audit_chain WHERE tenant_id = p_tenant FOR UPDATE;
    END IF;
    SELECT a.seq, a.hash INTO last FROM audit_events a WHERE a.tenant_id = p_tenant ORDER BY a.seq DESC LIMIT 1;
    IF FOUND THEN
        e.seq := last.seq + 1;
        e.prev_hash := last.hash;
    ELSE
        e.seq := head.checkpoint_seq + 1;
        e.prev_hash := head.checkpoint_hash;
    END IF;
    e.tenant_id := p_tenant;
    e.id := platform_uuid_v7();
    e.occurred_at := date_trunc('microseconds', clock_timestamp());
    e.actor_type := COALESCE(ctx->>'actor_type', 'system');
    e.actor_id := ctx->>'actor_id';
    e.action := p_action;
    e.target_type := p_target_type;
    e.target_id := p_target_id;
    e.outcome := p_outcome;
    e.route := ctx->>'route';
    e.client_ip := ctx->>'client_ip';
    e.user_agent := left(ctx->>'user_agent', 512);
    e.request_id := ctx->>'request_id';
    e.summary := COALESCE(p_summary, '{}'::jsonb);
    e.hash := platform_audit_hash(e);
    INSERT INTO audit_events SELECT e.*;
    RETURN e.seq;
END $$;
REVOKE ALL ON FUNCTION platform_audit_write(uuid, text, text, text, text, jsonb) FROM PUBLIC;

-- The explicit append the application calls (same signature as before, so V5 code keeps
-- working). Without the erase capability's role attributes (that is, as platform_app), only the
-- transaction's tenant, and only an attempt that changed nothing: outcome `denied` or
-- `failure`, an action `area.verb` outside the row triggers' vocabulary (`*.created`,
-- `*.updated`, `*.deleted`, `security.*`).
CREATE OR REPLACE FUNCTION platform_audit_append(
    p_tenant uuid, p_action text, p_target_type text, p_target_id text, p_outcome text, p_summary jsonb
) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    trusted boolean := EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = session_user AND (r.rolsuper OR r.rolbypassrls));
BEGIN
    IF p_tenant IS NULL OR (NOT trusted AND p_tenant IS DISTINCT FROM app_tenant_id()) THEN
        RAISE EXCEPTION 'an audit event must belong to the transaction''s tenant' USING ERRCODE = '42501';
    END IF;
    IF NOT trusted AND (
        p_outcome IS NULL OR p_outcome NOT IN ('denied', 'failure')
        OR p_action IS NULL OR p_action !~ '^[a-z_]{1,32}\.[a-z_]{1,64}$'
        OR p_action ~ '\.(created|updated|deleted)$' OR p_action LIKE 'security.%'
    ) THEN
        RAISE EXCEPTION 'the application may record only refused or failed attempts (area.verb, outcome denied or failure)'
            USING ERRCODE = '42501';
    END IF;
    RETURN platform_audit_write(p_tenant, p_action, p_target_type, p_target_id, p_outcome, p_summary);
END $$;

-- The row trigger: V4's, erasing only with the capability, appending through the internal
-- function.
CREATE OR REPLACE FUNCTION platform_audit_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    r jsonb;
    o jsonb;
    changed text[];
    ignored text[] := string_to_array(TG_ARGV[2], ',');
    shown text[] := string_to_array(TG_ARGV[3], ',');
    target text;
    action text;
    outcome text := 'success';
    summary jsonb := '{}';
BEGIN
    IF platform_audit_erasing() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
    IF TG_OP = 'UPDATE' THEN
        o := to_jsonb(OLD);
        SELECT array_agg(n.key ORDER BY n.key) INTO changed
            FROM jsonb_each(r) n
            WHERE n.value IS DISTINCT FROM o->n.key AND NOT (n.key = ANY (ignored));
        IF changed IS NULL THEN
            RETURN NULL;
        END IF;
        summary := jsonb_build_object('changed', to_jsonb(changed));
    END IF;
    SELECT string_agg(r->>c, '/') INTO target FROM unnest(string_to_array(TG_ARGV[1], ',')) c;
    SELECT summary || COALESCE(jsonb_object_agg(c, r->c), '{}') INTO summary
        FROM unnest(shown) c WHERE r ? c AND (TG_OP <> 'UPDATE' OR c = ANY (changed));
    IF TG_TABLE_NAME = 'security_events' THEN
        action := 'security.' || (r->>'kind');
        outcome := 'denied';
        target := COALESCE(r->>'session_id', r->>'user_id');
    ELSE
        action := TG_ARGV[0] || '.' || CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'updated' ELSE 'deleted' END;
    END IF;
    -- The triggering row is the transaction's tenant's (row level security let it through).
    PERFORM platform_audit_write((r->>'tenant_id')::uuid, action, TG_ARGV[0], target, outcome, summary);
    RETURN NULL;
END $$;

-- Immutability: changed or removed only on the capable owner path.
CREATE OR REPLACE FUNCTION platform_audit_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF platform_audit_erasing() THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are immutable (% refused)', TG_OP USING ERRCODE = '42501';
END $$;

-- Outbox: single-use tokens (password reset, invitation, verification) are no longer at rest in
-- plain text. New messages keep their body only sealed with the tenant's data key
-- (`body_sealed`, `body` empty) and only until `expires_at` (the life of the token they carry);
-- the application deletes expired messages as it writes new ones. Expand-only: `body` stays (V5
-- code still writes it). Existing messages: their tokens are blanked out of the stored text and
-- they expire like new ones would have (a tenant fenced here is left to its live copy).
ALTER TABLE outbox ADD COLUMN body_sealed bytea, ADD COLUMN expires_at timestamptz;
UPDATE outbox o
    SET body = regexp_replace(regexp_replace(o.body, '([?&]token=)[^\s&]+', '\1[removed]', 'g'),
                              '(token: )\S+', '\1[removed]', 'g'),
        expires_at = o.created_at + interval '7 days'
    WHERE NOT EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = o.tenant_id);
CREATE INDEX outbox_expiry ON outbox (tenant_id, expires_at);
