-- Tenant-migration ledger and recorded schema versions (issue 3). V2 is reserved for other work;
-- refinery applies missing lower versions only if they are added before this one is applied
-- anywhere, so V2 must land together with or before V3 reaches a real deployment.

-- The schema version each tenant database is known to have reached: a lower bound, written after
-- every migration of that database (provisioning, the fleet runner, the shared database at
-- start-up). The server compares it with the minimum its code needs, without a query per request.
ALTER TABLE tenants ADD COLUMN schema_version bigint;

-- Every dedicated tenant that is live now was migrated to the head of its time before it became
-- active, and V1 has been in every tenant migration set since the beginning: 1 is a true lower
-- bound. The fleet runner records the exact version the next time it looks at the database.
UPDATE tenants SET schema_version = 1
 WHERE placement = 'dedicated' AND status IN ('active', 'suspended');

-- The shared database's version (one row). Shared tenants' effective version is this one.
CREATE TABLE shared_schema (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    schema_version  bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per fleet run. A live run holds the session advisory lock (classid 7301, objid
-- lock_key) on the control plane for as long as it runs, so a run whose lock is free while its
-- state is still 'running' is known dead (killed) and is marked 'interrupted' by the next run.
CREATE SEQUENCE migration_run_lock_key AS integer MINVALUE 1 CYCLE;
CREATE TABLE migration_runs (
    id              uuid PRIMARY KEY,
    lock_key        integer NOT NULL DEFAULT nextval('migration_run_lock_key'),
    runner          text NOT NULL,
    target_version  bigint NOT NULL,
    options         jsonb NOT NULL,
    state           text NOT NULL CHECK (state IN ('running', 'ok', 'failed', 'stopped', 'interrupted')),
    planned         integer NOT NULL DEFAULT 0,
    skipped         integer NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
ALTER SEQUENCE migration_run_lock_key OWNED BY migration_runs.lock_key;

-- One row per run and tenant database that the run had to look at (databases already at the
-- target by their recorded version get no row). `db_key` is 'shared' or a dedicated tenant's id.
CREATE TABLE migration_ledger (
    run_id          uuid NOT NULL REFERENCES migration_runs (id) ON DELETE CASCADE,
    db_key          text NOT NULL,
    server          text NOT NULL,
    db_name         text NOT NULL,
    phase           text NOT NULL CHECK (phase IN ('canary', 'main')),
    state           text NOT NULL CHECK (state IN ('pending', 'running', 'ok', 'failed')),
    target_version  bigint NOT NULL,
    version_before  bigint,
    version_after   bigint,
    started_at      timestamptz,
    finished_at     timestamptz,
    error           text,
    PRIMARY KEY (run_id, db_key)
);
-- "The latest row per database" (run ids are UUIDv7, so time-ordered).
CREATE INDEX migration_ledger_db ON migration_ledger (db_key, run_id DESC);
