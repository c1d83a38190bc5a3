-- Write fences for placement moves, enforced in the database itself: while a tenant is fenced in a
-- database, every write of that tenant there is refused (SQLSTATE TF001), whatever the caller's
-- cached routing says. Writers take a shared per-tenant advisory lock, so the fencing transaction
-- (exclusive lock) waits for in-flight writes to commit: no write can slip past a fence.
CREATE TABLE tenant_fences (
    tenant_id   uuid NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);
ALTER TABLE tenant_fences ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_fences FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_fences USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT ON tenant_fences TO platform_app;

-- The advisory lock key space for fences: (2037, hashtext(tenant id)).
CREATE FUNCTION platform_refuse_fenced() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE t uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN t := OLD.tenant_id; ELSE t := NEW.tenant_id; END IF;
    PERFORM pg_advisory_xact_lock_shared(2037, hashtext(t::text));
    IF EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = t) THEN
        RAISE EXCEPTION 'tenant % is fenced (being moved)', t USING ERRCODE = 'TF001';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.tenant_id <> NEW.tenant_id THEN
        PERFORM pg_advisory_xact_lock_shared(2037, hashtext(OLD.tenant_id::text));
        IF EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = OLD.tenant_id) THEN
            RAISE EXCEPTION 'tenant % is fenced (being moved)', OLD.tenant_id USING ERRCODE = 'TF001';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION platform_refuse_fenced() FROM PUBLIC;

-- Every tenant table carries the fence trigger; later migrations call this for new tables.
CREATE FUNCTION platform_attach_fence(tbl regclass) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TRIGGER platform_fence BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION platform_refuse_fenced()',
        tbl);
END $$;

DO $$
DECLARE r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS tbl
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'tenant_fences'
    LOOP
        PERFORM platform_attach_fence(r.tbl);
    END LOOP;
END $$;
