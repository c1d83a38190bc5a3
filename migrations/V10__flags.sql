-- Feature flags (issue 20): flags per environment in Unleash's feature shape, segments, the
-- platform's overrides (operator disables per tenant, tenant opt-in/out) and the global kill
-- switch. Every change is in the admin audit chain with the definition before and after.
-- Changes are announced on the `platform_flags` channel (every instance reloads its snapshot).

CREATE TABLE flags (
    environment text NOT NULL CHECK (environment ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('release', 'experiment', 'ops', 'permission')),
    enabled     boolean NOT NULL,
    stale_after date,
    -- The feature as given (Unleash's shape plus owner, staleAfter, tenantOptIn).
    definition  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, name)
);

CREATE TABLE flag_segments (
    environment text NOT NULL,
    id          integer NOT NULL,
    definition  jsonb NOT NULL,
    PRIMARY KEY (environment, id)
);

CREATE TABLE flag_tenant_overrides (
    flag       text NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Turned off for this tenant by an operator (wins over everything but the flag being off).
    disabled   boolean NOT NULL DEFAULT false,
    -- A tenant admin's choice where the flag allows it: in (true) or out (false).
    choice     boolean,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flag, tenant_id)
);

CREATE TABLE flag_kill_switch (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    engaged    boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO flag_kill_switch DEFAULT VALUES;

-- Audit with before and after: who (the request's audit context), what, the values.
CREATE FUNCTION platform_flag_audit() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    r jsonb;
    o jsonb;
    target text;
    tenant uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
    IF TG_OP <> 'INSERT' THEN o := to_jsonb(OLD); END IF;
    IF TG_OP = 'UPDATE' AND (r - 'updated_at') = (o - 'updated_at') THEN
        RETURN NULL;
    END IF;
    target := CASE TG_TABLE_NAME
        WHEN 'flags' THEN (r->>'environment') || '/' || (r->>'name')
        WHEN 'flag_segments' THEN (r->>'environment') || '/' || (r->>'id')
        WHEN 'flag_tenant_overrides' THEN r->>'flag'
        ELSE 'kill-switch' END;
    IF TG_TABLE_NAME = 'flag_tenant_overrides' THEN tenant := (r->>'tenant_id')::uuid; END IF;
    PERFORM platform_admin_audit_append(
        tenant,
        TG_ARGV[0] || '.' || CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'updated' ELSE 'deleted' END,
        TG_ARGV[0], target, 'success',
        jsonb_build_object('before', o - 'updated_at' - 'created_at', 'after',
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE r - 'updated_at' - 'created_at' END));
    RETURN NULL;
END $$;

CREATE TRIGGER platform_audit AFTER INSERT OR UPDATE OR DELETE ON flags
    FOR EACH ROW EXECUTE FUNCTION platform_flag_audit('flag');
CREATE TRIGGER platform_audit AFTER INSERT OR UPDATE OR DELETE ON flag_segments
    FOR EACH ROW EXECUTE FUNCTION platform_flag_audit('flag_segment');
CREATE TRIGGER platform_audit AFTER INSERT OR UPDATE OR DELETE ON flag_tenant_overrides
    FOR EACH ROW EXECUTE FUNCTION platform_flag_audit('flag_override');
CREATE TRIGGER platform_audit AFTER UPDATE ON flag_kill_switch
    FOR EACH ROW EXECUTE FUNCTION platform_flag_audit('flag_kill_switch');
