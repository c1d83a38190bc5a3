-- Test-only migration, never shipped: stands for "the next release" (head + 1). It expands the
-- schema the way docs/migrations.md allows (a new table, a new nullable column), so code at the
-- current head must keep working on a database that has it.
CREATE TABLE test_notes (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE test_notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE test_notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON test_notes
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON test_notes TO platform_app;

ALTER TABLE projects ADD COLUMN test_label text;

-- Counts applications, so a test can prove this ran exactly once in each database.
CREATE TABLE IF NOT EXISTS test_applications (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO test_applications (version) VALUES ({version});
