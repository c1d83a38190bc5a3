-- Tenant schema, applied identically to the shared database and every dedicated database.
-- Every table: tenant_id NOT NULL, primary key starting with tenant_id, UUIDv7 ids,
-- ENABLE + FORCE ROW LEVEL SECURITY with a policy on app.tenant_id (set per transaction with
-- SET LOCAL). The data-plane role `platform_app` owns nothing and has no BYPASSRLS.

CREATE FUNCTION app_tenant_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE api_keys (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    name          text NOT NULL,
    prefix        text NOT NULL,
    key_hash      bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, key_hash)
);

CREATE TABLE projects (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    name          text NOT NULL,
    description   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE tasks (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    project_id    uuid NOT NULL,
    title         text NOT NULL,
    status        text NOT NULL CHECK (status IN ('todo', 'doing', 'done')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX tasks_project ON tasks (tenant_id, project_id, id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'projects', 'tasks'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id())',
            t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO platform_app', t);
    END LOOP;
END $$;

GRANT EXECUTE ON FUNCTION app_tenant_id() TO platform_app;
